"""Real pipeline vs simulator: run planned pipelines as torch processes on 127.0.0.1.

``python -m benchmarks.pipeline_real [--quick] [--out DIR] [--models resnet18,mobilenet_v2]``
(``--quick``: mobilenet_v2 only, 2 iterations per plan)

For each model: profile it afresh on this machine (one thread, the same code as
``data/profiles/training``, so the simulator and the run see the same CPU conditions), build
a 4-device instance with speeds 1, 1/2, 1/4, 1/8 (slow-down factors 1, 2, 4, 8; see
:mod:`benchmarks.pipeline_runtime`), plan it with every heuristic, run each distinct plan as
a real gloo pipeline and compare the measured time per iteration (median after one warm-up
iteration) with (a) the 1F1B simulation on the profile and (b) the same simulation replayed
with the forward/backward op times measured in the run (isolating schedule-model error from
profile error).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from benchmarks.pipeline_runtime import PipelineRuntimeError, run_pipeline
from benchmarks.report import markdown_table, parse_args, target, write_report
from envs.hetero_pipeline.instance import Device, ModelProfile, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.profile_training import profile_model
from envs.hetero_pipeline.simulator import plan_costs, simulate
from heuristics.hetero_pipeline import HEURISTICS

SPEEDS = (1.0, 0.5, 0.25, 0.125)
BANDWIDTH_MBPS = (800.0, 400.0, 400.0, 200.0)
MICRO_BATCH, IMAGE_SIZE, MICROBATCHES = 8, 64, 4


def replayed_instance(instance: PipelineInstance, plan: PipelinePlan, ranks: list[dict]
                      ) -> PipelineInstance:
    """The instance with each stage's layer times rescaled to the op times measured in the run."""
    costs = plan_costs(instance, plan)
    layers = list(instance.model.layers)
    for s, stage in enumerate(plan.stages):
        members = [r for r in ranks if r["stage"] == s]
        forward = max(r["forward_op_s"] / r["speed"] for r in members)
        backward = max(r["backward_op_s"] / r["speed"] for r in members)
        f_scale = forward / max(costs.forward_s[0, s], 1e-12)
        b_scale = backward / max(costs.backward_s[0, s], 1e-12)
        for index in range(stage.start, stage.stop):
            layer = layers[index]
            layers[index] = replace(layer, forward_s=layer.forward_s * f_scale,
                                    backward_s=layer.backward_s * b_scale)
    model = ModelProfile(instance.model.name, instance.model.input_bytes, tuple(layers))
    return replace(instance, model=model)


def main(argv: list[str] | None = None) -> None:
    extra = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_real")
    extra.add_argument("--models", default=None,
                       help="comma-separated (default resnet18,mobilenet_v2; quick: mobilenet_v2)")
    extra.add_argument("--iterations", type=int, default=None,
                       help="real iterations per plan, the first is warm-up (default 5; 2 quick)")
    args = parse_args("pipeline_real", argv, extra)
    iterations = args.iterations or (2 if args.quick else 5)
    models = args.models or ("mobilenet_v2" if args.quick else "resnet18,mobilenet_v2")
    rows, failures = [], []
    for model_name in models.split(","):
        profile = ModelProfile.from_dict(profile_model(model_name, MICRO_BATCH, IMAGE_SIZE,
                                                       repetitions=5), source=model_name)
        devices = tuple(Device(f"dev{i}", speed, 1e11, bw)
                        for i, (speed, bw) in enumerate(zip(SPEEDS, BANDWIDTH_MBPS, strict=True)))
        instance = PipelineInstance(devices=devices, model=profile, latency_s=0.001,
                                    num_microbatches=MICROBATCHES)
        plans: dict[str, PipelinePlan] = {}
        for name, planner in HEURISTICS.items():
            plan = planner(instance)
            if plan not in plans.values():
                plans[name] = plan
        for name, plan in plans.items():
            sim_s = simulate(instance, plan).iteration_s
            print(f"{model_name} {name}: running {plan.to_json()} (simulated {sim_s:.3f} s)",
                  flush=True)
            try:
                run = run_pipeline(instance, plan, model_name, MICRO_BATCH, IMAGE_SIZE,
                                   iterations=iterations)
            except PipelineRuntimeError as error:  # one failing run must not stop the others
                failures.append(f"{model_name}/{name}: {error}")
                print(f"  failed: {error}", flush=True)
                continue
            measured = np.array(run["iteration_s"][1:])
            replay_s = simulate(replayed_instance(instance, plan, run["ranks"]), plan).iteration_s
            median = float(np.median(measured))
            rows.append({
                "model": model_name, "scheduler": name, "plan": plan.to_dict(),
                "stages": " / ".join("+".join(f"dev{d}" for d in st.devices)
                                     + f" L{st.start}-{st.stop - 1}" for st in plan.stages),
                "processes": run["processes"], "simulated_s": sim_s, "measured_median_s": median,
                "measured_min_s": float(measured.min()), "measured_max_s": float(measured.max()),
                "rel_error": median / sim_s - 1, "replayed_sim_s": replay_s,
                "replay_rel_error": median / replay_s - 1,
                "loss_first": run["losses"][0], "loss_last": run["losses"][-1]})
            print(f"  measured median {median:.3f} s (min {measured.min():.3f}, max "
                  f"{measured.max():.3f}); replayed simulation {replay_s:.3f} s", flush=True)
    errors = np.abs([r["rel_error"] for r in rows]) if rows else np.array([np.inf])
    replay_errors = np.abs([r["replay_rel_error"] for r in rows]) if rows else np.array([np.inf])
    agree = []
    for model_name in {r["model"] for r in rows}:
        mine = [r for r in rows if r["model"] == model_name]
        for a in mine:
            for b in mine:
                if a["simulated_s"] < 0.9 * b["simulated_s"]:
                    agree.append(a["measured_median_s"] < b["measured_median_s"])
    targets = {
        # The issue names no numeric target for the real check; this bound is the project's
        # own, fixed before measuring: the simulator predicts real time within 25 % (median).
        "median_abs_rel_error_sim_vs_real": target(float(np.median(errors)), 0.25, "<="),
    }
    body = [
        f"4 devices with speeds {list(SPEEDS)} (slow-down factors 1/speed), links "
        f"{list(BANDWIDTH_MBPS)} Mbps (emulated by ready-at timestamps), {MICROBATCHES} "
        f"micro-batches of {MICRO_BATCH} images {IMAGE_SIZE}x{IMAGE_SIZE}, 1F1B, gloo on "
        f"127.0.0.1, one thread per process; {iterations} iterations per plan, the first is "
        "warm-up. Profiles measured afresh on this machine just before.", "",
        markdown_table(rows, ["model", "scheduler", "stages", "simulated_s",
                              "measured_median_s", "measured_min_s", "measured_max_s",
                              "rel_error", "replayed_sim_s", "replay_rel_error",
                              "loss_first", "loss_last"]), "",
        f"median |measured/simulated - 1| = {100 * np.median(errors):.1f}% (profile-based), "
        f"{100 * np.median(replay_errors):.1f}% (replayed with measured op times).",
        f"plan ranking: {sum(agree)}/{len(agree)} pairs whose simulated times differ by >10% "
        "are ordered the same way by the measurement."]
    if failures:
        body += ["", "Failed runs:", *[f"- {f}" for f in failures]]
    path = write_report("pipeline_real", args.out, rows, targets, "\n".join(body),
                        extra={"failures": failures})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
