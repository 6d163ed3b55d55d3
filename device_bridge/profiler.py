"""Profile a torchvision model per segment between single-tensor cut points.

    python -m device_bridge.profiler --model resnet18 [--repetitions 20 --warmup 5
        --threads 1 --server-speedup 10 --out results/profiles/] [--force]

Writes ``<out>/<model>.json``:

- ``layers``: the chain of segments between consecutive cut points (see ``graph_split``);
  segment ``l`` ends at cut ``l`` and its ``output_bytes`` is the fp32 tensor crossing that cut
  (the last segment ends at the model output). ``device_s`` is the median over
  ``repetitions`` timed runs (after ``warmup`` untimed ones) of that segment on this CPU with
  ``threads`` torch threads, scaled by ``calibration_factor`` so the segments sum to the
  median of the whole model run in one piece (running segments separately costs a little
  extra dispatch and cache warm-up, about 10%). ``server_s = device_s / server_speedup``.
- ``graph``: the node-level DAG (every fx compute node plus the input placeholder ``x``),
  each node with its parents as ``inputs`` and its own median time from an fx Interpreter
  pass with the same discipline, calibrated the same way to the whole-model median.
- ``provenance``: CPU, torch version, threads, repetitions, warm-up, date, server speed-up,
  whole-model and summed medians, the calibration factors, and the 1-minute load average
  when the run finished (other processes on the machine inflate medians; re-profile on an
  idle machine for clean numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_bridge.model_names import SUPPORTED_MODELS
from envs.machine import cpu_model
from envs.shipped import DATA_DIR

if TYPE_CHECKING:  # torch loads when profiling starts: --help and argument errors answer at once
    import torch
    from torch import fx

    from device_bridge.graph_split import SplitModel

DEFAULT_SERVER_SPEEDUP = 10.0
PROFILE_DIR = DATA_DIR / "profiles"
OUTPUT_DIR = Path("results/profiles")


def _timing_interpreter(module: fx.GraphModule) -> fx.Interpreter:
    """An fx Interpreter that runs the graph node by node and, while ``recording``, appends
    each compute node's wall time to ``samples``."""
    from torch import fx

    from device_bridge.graph_split import _is_compute

    class TimingInterpreter(fx.Interpreter):
        def __init__(self, module: fx.GraphModule):
            super().__init__(module)
            self.samples: dict[str, list[float]] = {}
            self.recording = False

        def run_node(self, node: fx.Node) -> Any:
            if not (self.recording and _is_compute(node)):
                return super().run_node(node)
            start = time.perf_counter()
            result = super().run_node(node)
            self.samples.setdefault(node.name, []).append(time.perf_counter() - start)
            return result

    return TimingInterpreter(module)


def _numel_bytes(shape: Sequence[int] | None) -> int:
    if shape is None:
        return 0
    numel = 1
    for s in shape:
        numel *= s
    return 4 * numel


def boundary_inputs(split: SplitModel) -> list[torch.Tensor]:
    """The seeded model input and every segment's output: segment ``k`` is timed on entry
    ``k - 1``."""
    import torch

    tensors = [torch.randn(split.input_shape, generator=torch.Generator().manual_seed(0))]
    for segment in range(1, split.num_segments + 1):
        tensors.append(split.run_range(segment - 1, segment, tensors[-1]))
    return tensors


def segment_layers(split: SplitModel, segment_s: Sequence[float], calibration: float,
                   server_speedup: float) -> list[dict[str, Any]]:
    """The profile's ``layers``: segment medians times ``calibration`` (whole-model median /
    segment sum), server time = device time / ``server_speedup``."""
    layers = []
    for segment, seconds in enumerate(segment_s, start=1):
        device_s = seconds * calibration
        layers.append({"name": split.segment_name(segment), "device_s": device_s,
                       "server_s": device_s / server_speedup,
                       "output_bytes": split.boundary_bytes(segment)})
    return layers


def profile_model(model_name: str, repetitions: int = 20, warmup: int = 5, threads: int = 1,
                  server_speedup: float = DEFAULT_SERVER_SPEEDUP) -> dict[str, Any]:
    """Measure ``model_name`` and return the profile dict (the JSON format above)."""
    if repetitions < 1 or warmup < 0 or threads < 1 or server_speedup <= 0:
        raise ValueError("repetitions >= 1, warmup >= 0, threads >= 1, server_speedup > 0")
    import torch

    from device_bridge.graph_split import SplitModel, _is_compute, _tensor_shape

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        split = SplitModel(model_name)
        with torch.inference_mode():
            boundary_tensors = boundary_inputs(split)
            sample = boundary_tensors[0]
            segment_fns = [
                (lambda s=segment: split.run_range(s - 1, s, boundary_tensors[s - 1]))
                for segment in range(1, split.num_segments + 1)]
            interpreter = _timing_interpreter(split.graph_module)
            # Interleave whole model, every segment and the node pass in each repetition so a
            # burst of load from other processes hits all of them alike.
            whole_samples: list[float] = []
            segment_samples: list[list[float]] = [[] for _ in segment_fns]
            for repetition in range(warmup + repetitions):
                timed = repetition >= warmup
                interpreter.recording = timed
                start = time.perf_counter()
                split.model(sample)
                elapsed = time.perf_counter() - start
                if timed:
                    whole_samples.append(elapsed)
                for samples, fn in zip(segment_samples, segment_fns, strict=True):
                    start = time.perf_counter()
                    fn()
                    elapsed = time.perf_counter() - start
                    if timed:
                        samples.append(elapsed)
                interpreter.run(sample)
            whole_s = statistics.median(whole_samples)
            segment_s = [statistics.median(samples) for samples in segment_samples]
    finally:
        torch.set_num_threads(previous_threads)

    segment_sum_s = sum(segment_s)
    calibration = whole_s / segment_sum_s
    node_s = {name: statistics.median(v) for name, v in interpreter.samples.items()}
    node_sum_s = sum(node_s.values())
    node_calibration = whole_s / node_sum_s

    layers = segment_layers(split, segment_s, calibration, server_speedup)

    nodes = [{"name": split.input_node.name, "op": "placeholder", "inputs": [],
              "device_s": 0.0, "server_s": 0.0,
              "output_bytes": split.boundary_bytes(0)}]
    for node in split.nodes:
        if not _is_compute(node):
            continue
        device_s = node_s[node.name] * node_calibration
        parents = [p.name for p in node.all_input_nodes
                   if _is_compute(p) or p.op == "placeholder"]
        nodes.append({"name": node.name, "op": node.op, "inputs": parents,
                      "device_s": device_s, "server_s": device_s / server_speedup,
                      "output_bytes": _numel_bytes(_tensor_shape(node))})

    return {
        "model": model_name,
        "input_shape": list(split.input_shape),
        "input_bytes": split.boundary_bytes(0),
        "provenance": {
            "cpu": cpu_model(), "torch": torch.__version__, "threads": threads,
            "repetitions": repetitions, "warmup": warmup,
            "date": datetime.now(UTC).date().isoformat(),
            "server_speedup": float(server_speedup),
            "whole_model_median_s": whole_s, "segment_sum_median_s": segment_sum_s,
            "calibration_factor": calibration,
            "node_sum_median_s": node_sum_s, "node_calibration_factor": node_calibration,
            "load_average_1min": os.getloadavg()[0],
            "model_seed": 0, "dtype": "float32", "batch": 1,
        },
        "layers": layers,
        "graph": {"nodes": nodes},
    }


def write_profile(profile: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{profile['model']}.json"
    lines = [json.dumps({k: v for k, v in profile.items() if k not in ("layers", "graph")})[:-1]]
    # one layer / node per line keeps the file diff-able and small
    layer_lines = ",\n  ".join(json.dumps(layer) for layer in profile["layers"])
    node_lines = ",\n  ".join(json.dumps(node) for node in profile["graph"]["nodes"])
    lines.append(f', "layers": [\n  {layer_lines}],\n "graph": {{"nodes": [\n  {node_lines}]}}}}\n')
    path.write_text("".join(lines))
    json.loads(path.read_text())  # never ship a file that does not parse
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m device_bridge.profiler",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help=f"model name, comma list, or 'all' ({', '.join(SUPPORTED_MODELS)})")
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 = a phone-like single core, the shipped default)")
    parser.add_argument("--server-speedup", type=float, default=DEFAULT_SERVER_SPEEDUP)
    parser.add_argument("--out", default=str(OUTPUT_DIR),
                        help=f"folder of the profiles (the shipped ones are in {PROFILE_DIR}; "
                             f"replacing one of those needs --force)")
    parser.add_argument("--force", action="store_true",
                        help="allow replacing a shipped profile under data/")
    args = parser.parse_args(argv)
    names = SUPPORTED_MODELS if args.model == "all" else tuple(args.model.split(","))
    for name in names:
        if name not in SUPPORTED_MODELS:
            parser.error(f"unknown model {name!r}; supported: {', '.join(SUPPORTED_MODELS)}")
    if args.repetitions < 1 or args.warmup < 0 or args.threads < 1 or args.server_speedup <= 0:
        parser.error("--repetitions and --threads must be >= 1, --warmup >= 0, "
                     "--server-speedup > 0")
    targets = [Path(args.out) / f"{name}.json" for name in names]
    shipped = [t for t in targets if t.exists() and t.resolve().is_relative_to(PROFILE_DIR.parent)]
    if shipped and not args.force:
        parser.error(f"{shipped[0]} is shipped data; pass --force to replace it, or choose --out")
    for name in names:
        start = time.perf_counter()
        profile = profile_model(name, args.repetitions, args.warmup, args.threads,
                                args.server_speedup)
        path = write_profile(profile, Path(args.out))
        prov = profile["provenance"]
        print(f"{name}: {len(profile['layers'])} segments, whole model "
              f"{prov['whole_model_median_s'] * 1e3:.1f} ms, segment sum "
              f"{prov['segment_sum_median_s'] * 1e3:.1f} ms (factor "
              f"{prov['calibration_factor']:.3f}) -> {path} "
              f"[{time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
    main()
