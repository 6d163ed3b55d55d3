"""Start one process per node inside its namespace (and cpu cgroup), collect their results.

Each process is ``python -m <module> worker <spec> <rank> <out>`` started by ``ip netns exec``
(so it sees its namespace's /sys/class/net); with quotas, it is told its cgroup and joins it
once set up (:func:`runtimes.cgroup.join_assigned_group`); torch.distributed meets at node
0's address. Any process that fails stops the run: the others are killed, and the caller's
``with`` blocks remove the namespaces and cgroups. SIGTERM is turned into
``KeyboardInterrupt`` for the same clean-up as Ctrl-C. While the nodes run, Ctrl-C (and
SIGTERM) is only noted, and raised as ``KeyboardInterrupt`` at the next check of the polling
loop: raised inside torch's C++ (its save, load or import), it ended the process in
``std::terminate`` before any clean-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runtimes.cgroup import JOIN_ENV, CpuQuotas
from runtimes.netns import Fabric

ROOT = Path(__file__).resolve().parents[1]
MASTER_PORT = 29517


class RunFailed(RuntimeError):
    """A node process failed or timed out; the message names the rank and its last line."""


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_interrupts() -> Iterator[Callable[[], None]]:
    """Within the block, SIGINT and SIGTERM are noted; the yielded ``check()`` raises
    ``KeyboardInterrupt`` once one was (main thread only; elsewhere ``check`` does nothing and
    signals keep their handlers)."""
    noted: list[int] = []

    def check() -> None:
        if noted:
            raise KeyboardInterrupt(f"signal {noted[0]}")

    if threading.current_thread() is not threading.main_thread():
        yield check
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in signals}
    try:
        yield check
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    check()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _failure(processes: list[subprocess.Popen], logs: list[Path]) -> str | None:
    for rank, process in enumerate(processes):
        if process.poll() not in (None, 0):
            return f"rank {rank} exited with code {process.returncode}: {_last_line(logs[rank])}"
    return None


def _move_ready(scratch: Path, processes: list[subprocess.Popen], quotas: CpuQuotas) -> None:
    """Move every process that asked for it into its cgroup (ready<r> -> joined<r>)."""
    for rank, process in enumerate(processes):
        joined = scratch / f"joined{rank}"
        if (scratch / f"ready{rank}").exists() and not joined.exists():
            quotas.move(rank, process.pid)
            joined.touch()


def run_nodes(module: str, spec: dict[str, Any], fabric: Fabric, quotas: CpuQuotas | None,
              timeout_s: float) -> list[Any]:
    """Run ``module``'s worker on every node of ``fabric``; returns each rank's result."""
    world = len(fabric.namespaces)
    spec = {**spec, "master": f"tcp://{fabric.address(0)}:{MASTER_PORT}", "world": world}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "eth0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")]))}
    with deferred_interrupts() as check, \
            tempfile.TemporaryDirectory(prefix="pipesched_run_") as scratch:
        if quotas is not None:
            env[JOIN_ENV] = scratch
        import torch  # here, not at import: `--help` and argument errors answer at once

        spec_path = Path(scratch) / "spec.pt"
        torch.save(spec, spec_path)
        processes: list[subprocess.Popen] = []
        logs = [Path(scratch) / f"rank{rank}.log" for rank in range(world)]
        outs = [Path(scratch) / f"rank{rank}.pt" for rank in range(world)]
        try:
            for rank in range(world):
                argv = [*fabric.exec_prefix(rank), sys.executable, "-m", module, "worker",
                        str(spec_path), str(rank), str(outs[rank])]
                with logs[rank].open("w") as log:
                    processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                      cwd=ROOT, env=env))
            deadline = time.monotonic() + timeout_s
            while True:
                check()
                if quotas is not None:
                    _move_ready(Path(scratch), processes, quotas)
                failure = _failure(processes, logs)
                if failure:
                    raise RunFailed(failure)
                running = [r for r, p in enumerate(processes) if p.poll() is None]
                if not running:
                    break
                if time.monotonic() > deadline:
                    raise RunFailed(f"timed out after {timeout_s:.0f} s; ranks {running} did "
                                    "not finish")
                time.sleep(0.05)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        results = [torch.load(out, weights_only=False) for out in outs]
    return results


def worker_entry(argv: list[str], worker_main: Callable[[dict[str, Any], int], Any]) -> None:
    """``worker SPEC RANK OUT``: run one node's ``worker_main`` and save what it returns."""
    import torch

    spec_path, rank, out = argv[1], int(argv[2]), argv[3]
    torch.save(worker_main(torch.load(spec_path, weights_only=False), rank), out)
