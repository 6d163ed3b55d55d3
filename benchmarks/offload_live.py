"""Live offloading benchmark: real split models over a real TCP uplink.

    python -m benchmarks.offload_live [--quick] [--out DIR] [--link auto|kernel|bucket]

16 mixed-model jobs (8 with ``--quick``) at the CAT1, 3G, 4G and WiFi uplink rates, run
end to end by ``device_bridge`` (server in a separate process, CUDA when present) for
all-local, all-server, neurosurgeon (one job after another), joint (pipelined) and the trained
agent, each next to the simulator's prediction for the same plan on the same measured
instance. The device computes with ``--device-threads`` torch threads (1: one phone-like
core) and is profiled in place under that setting before anything runs; every planned
prefix runs once untimed before each batch. The uplink is a veth
pair between two network namespaces rate-limited by the kernel (``--link kernel``; ``auto``
picks it when root can build it) or the client's token bucket on loopback (``bucket``).
Runs whose predicted makespan exceeds ``--max-run-s`` are listed as skipped, not run. A
planner that raises is a failed row (``status`` ``"failed: ..."``) that fails the accuracy
target ("k of n rows failed"); a missing agent prints a ``MISSING`` line, its rows say
``"missing: ..."`` and the JSON lists it under ``"missing"``.

Also measured (alone with ``--protocol-only``; ``benchmarks.offload_live_protocol``): the
channel's cost against a raw socket send of the same 1 MiB (framed, HMAC-SHA256 or keyed
BLAKE2b tags, TLS 1.3 untagged and tagged; loopback, a WiFi-rate token bucket and kernel
uplink, and a 1 Gbit/s full-duplex kernel link, with the targets on the last), the CPU per
MiB of each primitive, and the rate each shaper delivers with the device idle and computing;
the link is probed idle and while the device computes (the plan uses the latter); and 8
concurrent clients against one server.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import select
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.offload_live_protocol import (
    print_beside_targets,
    protocol_markdown,
    protocol_section,
    protocol_targets,
)
from benchmarks.report import (
    Missing,
    failed_rows_reason,
    markdown_table,
    parse_args,
    print_targets,
    target,
    write_report,
)
from device_bridge import netem
from device_bridge.client import OffloadClient, make_planner, parse_jobs
from device_bridge.graph_split import SplitModel
from device_bridge.link import ServerLink
from device_bridge.shaping import ShapedSender
from envs import PROBLEMS
from envs.offload import simulate
from envs.offload.simulator import makespan_from_times
from envs.shipped import MODELS_DIR

NAME = "offload_live"
BANDWIDTH_CLASSES_MBPS = {"CAT1": 0.13, "3G": 1.1, "4G": 5.85, "WiFi": 18.88}
# Chosen with the simulator before running live (docs/device_bridge.md, "Job mix"): AlexNet
# and VGG16 have a small late cut (36 KB, 100 KB) behind memory-bound classifier layers
# (about half of AlexNet's device time, a tenth of VGG16's, which dominates the device's
# work); ResNet-50 has no small cut before its end, so it mostly stays on the device and
# keeps it busy while the uplink carries the others.
FULL_JOBS = "alexnet:6,vgg16:6,resnet50:4"
QUICK_JOBS = "alexnet:3,vgg16:3,resnet50:2"
AGENT_PATH = MODELS_DIR / PROBLEMS["offload"].agent
TOKEN = os.urandom(24).hex().encode()


# ---- server process -----------------------------------------------------------------------
def start_server(models: Sequence[str], token_file: Path, kernel_path: bool,
                 device: str, threads: int) -> tuple[subprocess.Popen, str, int, str]:
    host = netem.SERVER_IP if kernel_path else "127.0.0.1"
    command = [sys.executable, "-m", "device_bridge.server", "--models", ",".join(models),
               "--host", host, "--port", "0", "--token-file", str(token_file),
               "--threads", str(threads), "--device", device, "--log-level", "WARNING"]
    if kernel_path:
        # the veth pair between two namespaces of this machine: no one else is on that wire
        command = netem.netns_command(netem.SERVER_NS, [*command, "--insecure-plaintext"])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 300)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("listening on"):
        process.kill()
        raise RuntimeError(f"server did not start (got {line!r})")
    address, device_field = line.split()[2], line.split()[3]
    return process, host, int(address.rsplit(":", 1)[1]), device_field.split("=", 1)[1]


# ---- concurrent clients -------------------------------------------------------------------
def concurrent_clients(client: OffloadClient, host: str, port: int, count: int = 8,
                       requests: int = 4) -> dict[str, Any]:
    splits = client.splits
    references = {}
    for name, split in splits.items():
        x = torch.randn(split.input_shape, generator=torch.Generator().manual_seed(11))
        references[name] = (x, split.run_range(0, split.num_segments, x))
    errors: list[str] = []
    served = [0]
    lock = threading.Lock()

    def one_client(number: int) -> None:
        rng = random.Random(number)
        results: dict[int, torch.Tensor] = {}
        arrived = threading.Condition()

        def on_result(request_id, tensor, elapsed_s, when):
            with arrived:
                results[request_id] = tensor
                arrived.notify_all()

        try:
            link = ServerLink(host, port, TOKEN, client.hashes, ShapedSender(None), on_result,
                              lambda link, reason: errors.append(f"client {number}: {reason}"))
            link.connect()
            expected = {}
            for request in range(requests):
                name = rng.choice(sorted(splits))
                split = splits[name]
                cut = rng.randrange(split.num_segments)
                x, full = references[name]
                link.send_infer(request, name, cut, split.run_range(0, cut, x))
                expected[request] = full
            with arrived:
                if not arrived.wait_for(lambda: len(results) == requests, 120):
                    raise TimeoutError(f"{len(results)} of {requests} results")
            link.close()
            for request, full in expected.items():
                # a CUDA server sums in another order than the CPU: fp32 rounding differs
                if not torch.allclose(results[request], full, rtol=1e-3, atol=1e-4):
                    raise AssertionError(f"request {request}: wrong result")
            with lock:
                served[0] += requests
        except Exception as error:  # deliberate: counted as a failure of this client only
            errors.append(f"client {number}: {error!r}")

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"clients": count, "requests_served": served[0], "errors": len(errors),
            "error_messages": errors[:5], "wall_s": time.perf_counter() - start}


# ---- the offloading runs ------------------------------------------------------------------
def windowed_agent(agent_path: Path):
    """The trained agent as a planner for any number of jobs: a policy trained for at most
    ``max_jobs`` plans the batch in consecutive windows of that many jobs (jobs taken
    round-robin over models, so windows are mixed) and the window plans run back to back,
    pipelined like any other plan."""
    from agents.offload.planning import plan_with_model
    from agents.scheduler import load_scheduler
    from envs.offload import OffloadInstance, Plan

    max_jobs = load_scheduler(str(agent_path)).model.observation_space["cut_features"].shape[0]

    def plan(instance: OffloadInstance) -> Plan:
        by_model: dict[str, list[int]] = {}
        for index, job in enumerate(instance.jobs):
            by_model.setdefault(job.name.rsplit("-", 1)[0], []).append(index)
        order = [i for group in itertools.zip_longest(*by_model.values()) for i in group
                 if i is not None]
        steps: list[tuple[int, int]] = []
        for start in range(0, len(order), max_jobs):
            window = order[start:start + max_jobs]
            sub = OffloadInstance(instance.bandwidth_mbps, instance.latency_s,
                                  tuple(instance.jobs[i] for i in window))
            steps += [(window[j], cut) for j, cut in plan_with_model(str(agent_path), sub)]
        return Plan(tuple(steps))

    return plan, max_jobs


def planners(names: Sequence[str], agent_path: Path,
             missing: Missing) -> tuple[dict[str, Any], str]:
    """Name -> planner; ``None`` (and a ``MISSING`` line) for an agent that is not there."""
    chosen: dict[str, Any] = {}
    note = ""
    for name in names:
        if name == "agent":
            if agent_path.exists():
                chosen[name], max_jobs = windowed_agent(agent_path)
                note = (f"agent: {agent_path.name}, trained for at most {max_jobs} jobs, plans "
                        f"windows of {max_jobs} (round-robin over models) run back to back")
            else:
                missing.add("agent", f"{agent_path} not found: its rows are reported missing")
                chosen[name] = None
        else:
            chosen[name] = make_planner(name)
    return chosen, note


def replayed_makespan_s(result) -> float:
    """The simulator's timing rules applied to the device, upload and server times this run
    actually measured for each job, in the executed order: measured / replayed near 1 means
    the model's pipelining holds and any error against the prediction lies in its inputs
    (how fast the device, link and server really were)."""
    jobs = {job.index: job for job in result.jobs}
    steps = [(jobs[index].device_s, jobs[index].upload_s, jobs[index].server_s,
              jobs[index].where == "server") for index, _ in result.plan.steps]
    if result.plan.sequential:
        return sum(device_s + upload_s + server_s for device_s, upload_s, server_s, _ in steps)
    return makespan_from_times(steps)


def run_bandwidth(client: OffloadClient, label: str, mbps: float, jobs, chosen: dict[str, Any],
                  max_run_s: float, link_kind: str, traces: list[dict[str, Any]],
                  repeats_wanted: int = 1, repeat_max_s: float = math.inf
                  ) -> list[dict[str, Any]]:
    """Plan each scheduler once on this bandwidth's measured instance and run the plan
    ``repeats_wanted`` times (once when predicted over ``repeat_max_s``); the row's
    ``measured_s`` is the median run."""
    rows = []
    idle_mbps, _ = client.measure_link(under_load=False)
    measured_mbps, measured_latency_s = client.measure_link()  # plans use this one
    instance = client.plan_instance(jobs)
    for name, planner in chosen.items():
        row: dict[str, Any] = {"bandwidth": label, "mbps": mbps, "scheduler": name,
                               "link": link_kind, "probe_mbps": measured_mbps,
                               "probe_idle_mbps": idle_mbps,
                               "probe_latency_ms": measured_latency_s * 1e3}
        if planner is None:
            rows.append({**row, "status": "missing: agent not found"})
            continue
        try:
            plan = planner(instance)
        except Exception as error:  # deliberate: a failed row, counted against the targets
            rows.append({**row, "status": f"failed: planning: {type(error).__name__}: {error}"})
            continue
        predicted = simulate(instance, plan).makespan_s
        row["predicted_s"] = predicted
        # the skip rule also uses the nominal rate, so a mis-measured link cannot make
        # the benchmark run for many minutes
        nominal = simulate(instance.with_bandwidth(mbps), plan).makespan_s
        if max(predicted, nominal) > max_run_s:
            rows.append({**row, "status": f"skipped: predicted {max(predicted, nominal):.1f} s "
                                          f"> {max_run_s} s"})
            continue
        repeats = repeats_wanted if max(predicted, nominal) <= repeat_max_s else 1
        makespans, replayed, device_s, device_cpu_s = [], [], 0.0, 0.0
        for repeat in range(repeats):
            # the prefixes are warmed before the first repeat; the others follow at once
            result = client.run(jobs, lambda _instance, plan=plan: plan, instance=instance,
                                warmup=repeat == 0)
            makespans.append(result.makespan_s)
            replayed.append(result.makespan_s / replayed_makespan_s(result))
            device_s += sum(job.device_s for job in result.jobs)
            device_cpu_s += sum(job.device_cpu_s for job in result.jobs)
            trace = result.to_dict()
            trace.pop("instance")  # the same for every scheduler of this bandwidth
            traces.append({"bandwidth": label, "scheduler": name, "repeat": repeat, **trace})
        measured = statistics.median(makespans)
        where = [job.where for job in result.jobs]
        rows.append({**row, "status": "ok", "measured_s": measured,
                     "measured_over_predicted": measured / predicted,
                     "repeats": repeats, "measured_runs_s": makespans,
                     "spread": max(makespans) / min(makespans) - 1,
                     "measured_over_replayed": statistics.median(replayed),
                     # < 1: the device's compute thread waited for a CPU (other processes)
                     **({"device_cpu_share": device_cpu_s / device_s} if device_s else {}),
                     "offloaded": where.count("server"), "local": where.count("local"),
                     "upload_mbps_seen": result.link.get("measured_upload_mbps")})
        runs = ", ".join(f"{m:.3f}" for m in makespans)
        print(f"  {label:>4} {name:<14} measured {measured:7.3f} s  predicted "
              f"{predicted:7.3f} s  ({where.count('server')} offloaded; runs {runs})",
              flush=True)
    return rows


def _row_reason(row: dict[str, Any] | None, what: str) -> str | None:
    if row is None:
        return f"no {what} row"
    return None if row["status"] == "ok" else f"{what}: {row['status']}"


def live_targets(rows: list[dict[str, Any]], concurrency: dict[str, Any]) -> dict[str, dict]:
    """The live targets. A failed row (its planner raised) fails the accuracy target with
    "k of n rows failed"; rows skipped as too long or missing (listed apart) are not runs.
    ``joint_over_neurosurgeon_4g`` fails with the reason when either 4G row did not run."""
    by_key = {(row["bandwidth"], row["scheduler"]): row for row in rows}
    joint, ns = by_key.get(("4G", "joint")), by_key.get(("4G", "neurosurgeon"))
    reason = _row_reason(joint, "4G joint") or _row_reason(ns, "4G neurosurgeon")
    ratio = None if reason else joint["measured_s"] / ns["measured_s"]
    attempted = [row for row in rows if row["status"] == "ok"
                 or row["status"].startswith("failed")]
    errors = [abs(row["measured_over_predicted"] - 1) for row in attempted
              if row["status"] == "ok"]
    failed = failed_rows_reason(len(attempted) - len(errors), len(attempted))
    return {
        "joint_over_neurosurgeon_4g": target(ratio, 0.8, "<=", reason),
        "max_abs_measured_vs_predicted": target(max(errors) if errors else None, 0.15, "<=",
                                                failed),
        "concurrent_client_errors_8": target(concurrency["errors"], 0, "<="),
    }


@dataclass(frozen=True)
class LiveSettings:
    """The flags with their ``--quick`` defaults resolved, and the link the runs use."""

    jobs: list[tuple[str, str]]
    models: list[str]
    server_threads: int
    profile_repetitions: int
    repeats: int
    max_run_s: float
    kernel_path: bool
    link_kind: str


@dataclass
class LiveRuns:
    """What the live section measured, for the report."""

    rows: list[dict[str, Any]]
    traces: list[dict[str, Any]]
    concurrency: dict[str, Any]
    device_profiles: dict[str, Any]
    server_device: str
    agent_note: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default=None, help=f"default {FULL_JOBS} ({QUICK_JOBS} quick)")
    parser.add_argument("--schedulers", default="all_local,all_server,neurosurgeon,joint,agent")
    parser.add_argument("--agent", default=str(AGENT_PATH))
    parser.add_argument("--link", choices=("auto", "kernel", "bucket"), default="auto")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--max-run-s", type=float, default=None,
                        help="skip runs predicted longer (default 120 s, 20 s with --quick)")
    parser.add_argument("--server-device", default="auto",
                        help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--device-threads", type=int, default=1,
                        help="torch threads of the device runtime (1: one phone-like core); "
                             "the device is profiled in place under the same setting")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="torch threads of the server (default: the cores the device "
                             "leaves, at least 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of each plan, the median reported (default 3, 1 quick)")
    parser.add_argument("--repeat-max-s", type=float, default=10.0,
                        help="plans predicted longer run once (uplink-bound, and time)")
    parser.add_argument("--protocol-only", action="store_true",
                        help="only the protocol overhead, MAC and shaper-under-load "
                             "measurements (about 2 minutes)")
    parser.add_argument("--profile-repetitions", type=int, default=None,
                        help="repetitions of the in-place device profile (default 10, 3 quick)")
    return parser


def resolve_settings(args: argparse.Namespace) -> LiveSettings:
    """Apply the ``--quick`` defaults and pick the link (``--link kernel`` refuses without it)."""
    server_threads = args.server_threads or max(1, (os.cpu_count() or 1) - args.device_threads)
    profile_repetitions = args.profile_repetitions or (3 if args.quick else 10)
    repeats = args.repeats or (1 if args.quick else 3)
    jobs = parse_jobs(args.jobs or (QUICK_JOBS if args.quick else FULL_JOBS))
    models = sorted({model for _, model in jobs})
    max_run_s = args.max_run_s or (20.0 if args.quick else 120.0)
    unavailable = netem.netem_unavailable() if args.link != "bucket" else "not requested"
    if args.link == "kernel" and unavailable:
        raise SystemExit(f"--link kernel: {unavailable}")
    kernel_path = unavailable is None
    link_kind = "veth+tbf (kernel)" if kernel_path else "loopback+token bucket"
    print(f"link: {link_kind}" + (f" (kernel path unavailable: {unavailable})"
                                  if not kernel_path else ""), flush=True)
    return LiveSettings(jobs, models, server_threads, profile_repetitions, repeats, max_run_s,
                        kernel_path, link_kind)


def write_protocol_report(args: argparse.Namespace, settings: LiveSettings,
                          protocol_results: dict[str, Any]) -> None:
    """The ``--protocol-only`` report: the channel targets and the shaper rows."""
    targets = protocol_targets(protocol_results)
    path = write_report(NAME, args.out, protocol_results["shaper_rows"], targets,
                        protocol_markdown(protocol_results),
                        extra={"protocol": protocol_results, "link": settings.link_kind})
    print_targets(targets)
    print_beside_targets(protocol_results)
    print(f"wrote {path}")


@contextmanager
def live_server(args: argparse.Namespace,
                settings: LiveSettings) -> Iterator[tuple[str, int, str, bool]]:
    """The server process behind the uplink (the kernel link and the device's namespace when
    ``kernel_path``), torn down on exit; yields its host, port and device, and whether the
    kernel link adds the latency (else the client does)."""
    token_file = Path(args.out) / ".offload_live_token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_bytes(TOKEN)
    token_file.chmod(0o600)  # the server refuses a token others can read
    kernel_delay = False
    previous_ns = None
    if settings.kernel_path:
        kernel_delay = netem.up(BANDWIDTH_CLASSES_MBPS["4G"], args.latency_ms)
    server = None
    try:
        server, host, port, server_device = start_server(
            settings.models, token_file, settings.kernel_path, args.server_device,
            settings.server_threads)
        if settings.kernel_path:
            previous_ns = netem.enter_namespace(netem.DEVICE_NS)
        yield host, port, server_device, kernel_delay
    finally:
        if previous_ns is not None:
            netem.leave_namespace(previous_ns)
        if server is not None:
            server.terminate()
            server.wait(30)
        if settings.kernel_path:
            netem.down()
        token_file.unlink(missing_ok=True)


def connect_client(args: argparse.Namespace, settings: LiveSettings, host: str, port: int,
                   user_latency_s: float) -> OffloadClient:
    """The device: profiled in place, then connected to the server at the 4G rate."""
    print(f"profiling the device in place ({args.device_threads} torch thread(s), "
          f"{settings.profile_repetitions} repetitions)", flush=True)
    client = OffloadClient((host, port), TOKEN, settings.models, BANDWIDTH_CLASSES_MBPS["4G"],
                           user_latency_s, shape_uplink=not settings.kernel_path,
                           replan_drift=math.inf, threads=args.device_threads,
                           profile_repetitions=settings.profile_repetitions)
    if client.link is None:
        raise RuntimeError(f"cannot reach the server at {host}:{port}")
    return client


def run_all_bandwidths(client: OffloadClient, args: argparse.Namespace,
                       settings: LiveSettings, chosen: dict[str, Any], user_latency_s: float
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every bandwidth class in turn: set the uplink, run every planner; rows and traces."""
    rows: list[dict[str, Any]] = []
    traces: list[dict[str, Any]] = []
    for label, mbps in BANDWIDTH_CLASSES_MBPS.items():
        if settings.kernel_path:
            netem.set_rate(mbps, args.latency_ms)
        client.set_uplink(mbps, user_latency_s, shape=not settings.kernel_path)
        rows += run_bandwidth(client, label, mbps, settings.jobs, chosen, settings.max_run_s,
                              settings.link_kind, traces, settings.repeats, args.repeat_max_s)
    return rows, traces


def run_live(args: argparse.Namespace, settings: LiveSettings, missing: Missing) -> LiveRuns:
    """Start the server, connect the device, run every planner at every bandwidth, then the
    concurrent clients."""
    with live_server(args, settings) as (host, port, server_device, kernel_delay):
        user_latency_s = 0.0 if kernel_delay else args.latency_ms / 1e3
        client = connect_client(args, settings, host, port, user_latency_s)
        chosen, agent_note = planners(args.schedulers.split(","), Path(args.agent), missing)
        rows, traces = run_all_bandwidths(client, args, settings, chosen, user_latency_s)
        concurrency = concurrent_clients(client, host, port)
        device_profiles = client.device_profiles
        client.close()
    return LiveRuns(rows, traces, concurrency, device_profiles, server_device, agent_note)


def live_markdown(args: argparse.Namespace, settings: LiveSettings, live: LiveRuns,
                  protocol_results: dict[str, Any]) -> str:
    """The report's text: the setup, the rows, the prediction error, protocol and probes."""
    rows, concurrency, jobs, models = live.rows, live.concurrency, settings.jobs, settings.models
    done = [row for row in rows if row.get("status") == "ok"]
    probes = {row["bandwidth"]: row for row in rows if "probe_idle_mbps" in row}
    by_key = {(row["bandwidth"], row["scheduler"]): row for row in done}
    joint_4g, ns_4g = by_key.get(("4G", "joint")), by_key.get(("4G", "neurosurgeon"))
    errors = [abs(row["measured_over_predicted"] - 1) for row in done]
    predicted_ratio_4g = (joint_4g["predicted_s"] / ns_4g["predicted_s"]
                          if joint_4g and ns_4g else math.nan)
    columns = ["bandwidth", "scheduler", "status", "predicted_s", "measured_s",
               "measured_over_predicted", "repeats", "spread", "measured_over_replayed",
               "device_cpu_share",
               "offloaded", "local"]
    return "\n".join([
        f"Jobs: `{','.join(sorted({f'{m}:{sum(1 for _, x in jobs if x == m)}' for m in models}))}` "
        f"({len(jobs)} jobs), link: {settings.link_kind}, server device: {live.server_device}, "
        f"latency {args.latency_ms} ms, device {args.device_threads} torch thread(s) "
        f"(profiled in place, {settings.profile_repetitions} repetitions), server "
        f"{settings.server_threads} torch thread(s). Each plan ran {settings.repeats} time(s) "
        f"(once when predicted over "
        f"{args.repeat_max_s} s); measured_s is the median, spread = max/min - 1 over the "
        f"runs; measured_over_replayed compares each run with the simulator's rules applied "
        f"to the per-job device, upload and server times that run measured (near 1: the "
        f"timing model holds, and any miss against the prediction is in its inputs); "
        f"device_cpu_share = CPU time / wall time of the device's compute thread (below 1: "
        f"it waited for a core). {live.agent_note}", "",
        markdown_table(rows, columns), "",
        f"Median |measured/predicted - 1| over {len(errors)} runs: "
        f"{statistics.median(errors) if errors else float('nan'):.3f}. The simulator's own "
        f"joint/neurosurgeon at 4G: {predicted_ratio_4g:.3f}.", "",
        protocol_markdown(protocol_results), "",
        "Link probes (the plan uses the one taken while the device computes): " + ", ".join(
            f"{label} {by_bandwidth['probe_idle_mbps']:.2f} idle / "
            f"{by_bandwidth['probe_mbps']:.2f} computing"
            for label, by_bandwidth in probes.items()) + " Mbit/s.",
        "", f"8 concurrent clients: {concurrency['requests_served']} requests served, "
        f"{concurrency['errors']} errors in {concurrency['wall_s']:.1f} s."])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(NAME, argv, build_parser())
    settings = resolve_settings(args)
    torch.set_num_threads(args.device_threads)  # the device load computes as the device
    protocol_results = protocol_section(
        args.quick, args.latency_ms, settings.kernel_path,
        [SplitModel(model) for model in settings.models], BANDWIDTH_CLASSES_MBPS["WiFi"],
        (BANDWIDTH_CLASSES_MBPS["4G"], BANDWIDTH_CLASSES_MBPS["WiFi"]))
    if args.protocol_only:
        write_protocol_report(args, settings, protocol_results)
        return
    missing = Missing()
    live = run_live(args, settings, missing)
    targets = {**live_targets(live.rows, live.concurrency), **protocol_targets(protocol_results)}
    body = live_markdown(args, settings, live, protocol_results)
    path = write_report(NAME, args.out, live.rows, targets, body, extra={
        "missing": missing.entries, "protocol": protocol_results,
        "concurrency": live.concurrency, "link": settings.link_kind,
        "server_device": live.server_device, "jobs": [name for name, _ in settings.jobs],
        "device_threads": args.device_threads, "server_threads": settings.server_threads,
        "device_profiles": {name: profile["layers"]
                            for name, profile in live.device_profiles.items()},
        "traces": live.traces, "agent_note": live.agent_note})
    print_targets(targets)
    print_beside_targets(protocol_results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
