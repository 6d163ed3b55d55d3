"""Real pipeline vs simulator on kernel-emulated devices and links.

``python -m benchmarks.pipeline_real [--quick] [--out DIR] [--models resnet18,mobilenet_v2]
[--iterations N]`` (``--quick``: mobilenet_v2 only, 3 iterations per plan)

For each model: profile it afresh on this machine in a cgroup of one CPU
(:func:`runtimes.pipeline.profile_on_device`: the reference speed 1.0), build a 4-device
instance with speeds 0.6, 0.3, 0.15, 0.075 CPUs (8x spread) and links of 200/100/100/50
Mbit/s, plan it with every heuristic, run each distinct plan with :mod:`runtimes.pipeline`
(one process per device, CPU quota = speed, ``tc tbf`` on each device's veth, gloo) and
compare, per plan, the measured time per iteration (median after one warm-up iteration) and
the bytes the interfaces counted with the simulator on the framed instance
(:mod:`envs.hetero_pipeline.wire`). "replayed" is the same simulation with each stage's op
times taken from the run: it separates schedule/link-model error from op-time error.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks.report import markdown_table, parse_args, print_targets, target, write_report
from envs.hetero_pipeline.instance import Device, ModelProfile, PipelineInstance, PipelinePlan
from envs.hetero_pipeline.simulator import plan_costs, simulate
from envs.hetero_pipeline.wire import framed_instance, wire_bytes
from heuristics.hetero_pipeline import HEURISTICS
from runtimes.compare import kendall_tau, ranking_kept, relative_errors
from runtimes.launch import RunFailed
from runtimes.netns import KernelRefused
from runtimes.pipeline import PipelineResult, profile_on_device, run_pipeline, split_samples

NAME = "pipeline_real"
SPEEDS = (0.6, 0.3, 0.15, 0.075)
BANDWIDTH_MBPS = (200.0, 100.0, 100.0, 50.0)
MICRO_BATCH, IMAGE_SIZE, MICROBATCHES = 8, 64, 4
COLUMNS = ["model", "scheduler", "stages", "simulated_s", "measured_median_s", "measured_min_s",
           "measured_max_s", "rel_error", "replayed_sim_s", "replay_rel_error",
           "payload_sim_s", "sim_wire_MB", "real_wire_MB", "bytes_rel_error", "loss_first",
           "loss_last"]


def replayed_instance(instance: PipelineInstance, plan: PipelinePlan, run: PipelineResult
                      ) -> PipelineInstance:
    """The instance with each stage's layer times rescaled so that the simulated stage op
    times equal the slowest member's median op time measured in the run."""
    costs = plan_costs(instance, plan)
    layers = list(instance.model.layers)
    for s, stage in enumerate(plan.stages):
        members = [r for r, st in enumerate(run.stages) if st == s]
        f_scale = max(run.forward_op_s[r] for r in members) / max(costs.forward_s[0, s], 1e-12)
        b_scale = max(run.backward_op_s[r] for r in members) / max(costs.backward_s[0, s], 1e-12)
        for index in range(stage.start, stage.stop):
            layer = layers[index]
            layers[index] = replace(layer, forward_s=layer.forward_s * f_scale,
                                    backward_s=layer.backward_s * b_scale)
    return replace(instance, model=ModelProfile(instance.model.name, instance.model.input_bytes,
                                                tuple(layers)))


def describe(plan: PipelinePlan) -> str:
    return " / ".join("+".join(f"dev{d}" for d in st.devices) + f" L{st.start}-{st.stop - 1}"
                      for st in plan.stages)


def measure_model(model_name: str, iterations: int, failures: list[str]) -> list[dict[str, Any]]:
    profile = ModelProfile.from_dict(profile_on_device(model_name, MICRO_BATCH, IMAGE_SIZE),
                                     source=model_name)
    devices = tuple(Device(f"dev{i}", speed, 1e11, bw)
                    for i, (speed, bw) in enumerate(zip(SPEEDS, BANDWIDTH_MBPS, strict=True)))
    instance = PipelineInstance(devices=devices, model=profile, latency_s=0.0,
                                num_microbatches=MICROBATCHES)
    framed = framed_instance(instance)
    plans: dict[str, PipelinePlan] = {}
    for name, planner in HEURISTICS.items():
        plan = planner(instance)
        if plan not in plans.values():
            plans[name] = plan
    rows = []
    for name, plan in plans.items():
        sim_s = simulate(framed, plan).iteration_s
        print(f"{model_name} {name}: {describe(plan)} (simulated {sim_s:.3f} s)", flush=True)
        try:
            run = run_pipeline(instance, plan, model_name, MICRO_BATCH, IMAGE_SIZE,
                               iterations=iterations)
        except RunFailed as error:  # one failing run must not stop the others
            failures.append(f"{model_name}/{name}: {error}")
            print(f"  failed: {error}", flush=True)
            continue
        measured = np.array(run.iteration_s[1:])
        median = float(np.median(measured))
        replay_s = simulate(framed_instance(replayed_instance(instance, plan, run)),
                            plan).iteration_s
        ranges = [split_samples(MICRO_BATCH, [instance.devices[d].speed for d in st.devices])
                  for st in plan.stages]
        sim_bytes = wire_bytes(instance, plan, ranges, MICRO_BATCH)
        real_bytes = float(np.median(run.wire_bytes[1:]))
        rows.append({
            "model": model_name, "scheduler": name, "plan": plan.to_dict(),
            "stages": describe(plan), "processes": len(run.devices), "simulated_s": sim_s,
            "measured_median_s": median, "measured_min_s": float(measured.min()),
            "measured_max_s": float(measured.max()), "rel_error": median / sim_s - 1,
            "replayed_sim_s": replay_s, "replay_rel_error": median / replay_s - 1,
            "payload_sim_s": simulate(instance, plan).iteration_s,
            "sim_wire_MB": sim_bytes / 1e6, "real_wire_MB": real_bytes / 1e6,
            "bytes_rel_error": real_bytes / sim_bytes - 1 if sim_bytes else float(real_bytes > 0),
            "forward_op_s": run.forward_op_s, "backward_op_s": run.backward_op_s,
            "loss_first": run.losses[0], "loss_last": run.losses[-1]})
        print(f"  measured median {median:.3f} s (min {measured.min():.3f}, max "
              f"{measured.max():.3f}); replayed {replay_s:.3f} s; wire {real_bytes / 1e6:.2f} MB"
              f" (simulated {sim_bytes / 1e6:.2f} MB)", flush=True)
    return rows


def compute_targets(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    errors = relative_errors([r["measured_median_s"] for r in rows],
                             [r["simulated_s"] for r in rows]) if rows else np.array([np.inf])
    targets = {
        "bytes_max_rel_error": target(max((abs(r["bytes_rel_error"]) for r in rows),
                                          default=float("inf")), 0.10, "<="),
        "time_median_rel_error": target(float(np.median(errors)), 0.25, "<="),
    }
    kept = pairs = 0
    notes = []
    for model_name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model_name]
        real = [r["measured_median_s"] for r in mine]
        sim = [r["simulated_s"] for r in mine]
        model_kept, model_pairs = ranking_kept(real, sim)
        kept, pairs = kept + model_kept, pairs + model_pairs
        notes.append(f"{model_name}: {model_kept}/{model_pairs} plan pairs (simulated >10% "
                     f"apart) ordered alike, Kendall tau {kendall_tau(real, sim):.2f}")
        by_name = {r["scheduler"]: r for r in mine}
        if "cluster_dp" in by_name and "pipedream_dp" in by_name:
            ratio = (by_name["cluster_dp"]["measured_median_s"]
                     / by_name["pipedream_dp"]["measured_median_s"])
            targets[f"{model_name}_real_cluster_dp_over_pipedream_dp"] = target(ratio, 1.0, "<")
    targets["ranking_pairs_kept"] = target(kept / pairs if pairs else None, 1.0, ">=",
                                          None if pairs else "no plan pairs >10% apart")
    return targets, notes


def main(argv: list[str] | None = None) -> None:
    extra = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}")
    extra.add_argument("--models", default=None,
                       help="comma-separated (default resnet18,mobilenet_v2; quick: mobilenet_v2)")
    extra.add_argument("--iterations", type=int, default=None,
                       help="real iterations per plan, the first is warm-up (default 5; 3 quick)")
    args = parse_args(NAME, argv, extra)
    iterations = args.iterations or (3 if args.quick else 5)
    models = args.models or ("mobilenet_v2" if args.quick else "resnet18,mobilenet_v2")
    from envs.hetero_pipeline.profile_training import SUPPORTED_MODELS

    unknown = [m for m in models.split(",") if m not in SUPPORTED_MODELS]
    if iterations < 2 or unknown:
        extra.exit(2, f"{extra.prog}: error: " + (
            f"--iterations must be >= 2 (the first is warm-up), got {iterations}"
            if iterations < 2 else
            f"--models: unknown {unknown}; supported: {', '.join(SUPPORTED_MODELS)}") + "\n")
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for model_name in models.split(","):
        try:
            rows.extend(measure_model(model_name, iterations, failures))
        except (KernelRefused, RunFailed) as error:
            failures.append(f"{model_name}: {error}")
            print(f"{model_name}: {error}", flush=True)
    targets, notes = compute_targets(rows)
    errors = relative_errors([r["measured_median_s"] for r in rows],
                             [r["replayed_sim_s"] for r in rows]) if rows else []
    body = [
        f"4 devices: CPU quotas {list(SPEEDS)} (cgroup, 20 ms period), links "
        f"{list(BANDWIDTH_MBPS)} Mbit/s each way (tc tbf on each veth), {MICROBATCHES} "
        f"micro-batches of {MICRO_BATCH} images {IMAGE_SIZE}x{IMAGE_SIZE}, 1F1B, gloo; "
        f"{iterations} iterations per plan, the first is warm-up. Profiles measured afresh in "
        "a 1-CPU cgroup just before. simulated = simulate() on the framed instance; "
        "payload_sim_s = simulate() on the payload instance.", "",
        markdown_table(rows, COLUMNS), "",
        f"median |measured/replayed - 1| = {100 * float(np.median(errors)):.1f}%" if rows else "",
        *notes]
    if failures:
        body += ["", "Failed runs:", *[f"- {f}" for f in failures]]
    path = write_report(NAME, args.out, rows, targets, "\n".join(body),
                        extra={"failures": failures, "speeds": SPEEDS,
                               "bandwidth_mbps": BANDWIDTH_MBPS, "iterations": iterations})
    print("\n".join(body))
    print_targets(targets)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
