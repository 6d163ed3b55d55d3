"""A Spark standalone cluster on 127.0.0.1 from the pyspark package's ``spark-class``.

    python -m spark_integration.cluster up --workers 2 [--cores 1] [--memory 1g]
    python -m spark_integration.cluster status
    python -m spark_integration.cluster kill-worker 1     # simulate a lost worker
    python -m spark_integration.cluster down

Every daemon runs in its own process group and binds to loopback only
(``SPARK_LOCAL_IP=127.0.0.1``); pids, ports and logs live in the state directory
(default ``.cache/spark-cluster``) so ``down`` can stop exactly what ``up`` started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyspark

from spark_integration.session import LEAN_JVM_OPTIONS

DEFAULT_STATE_DIR = Path(".cache/spark-cluster")
LOOPBACK = "127.0.0.1"


@dataclass
class ClusterInfo:
    master_url: str
    master_pid: int
    web_port: int
    worker_pids: list[int] = field(default_factory=list)
    cores_per_worker: int = 1
    state_dir: str = str(DEFAULT_STATE_DIR)

    @property
    def total_cores(self) -> int:
        return self.cores_per_worker * len(self.worker_pids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _spark_class() -> Path:
    path = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not path.exists():
        raise FileNotFoundError(f"spark-class not found in the pyspark package at {path}")
    return path


def _daemon_env(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_HOME=str(Path(pyspark.__file__).parent), SPARK_LOCAL_IP=LOOPBACK,
               SPARK_LOCAL_HOSTNAME="localhost", SPARK_WORKER_DIR=str(state_dir / "work"),
               PYSPARK_PYTHON=sys.executable, SPARK_DAEMON_JAVA_OPTS=LEAN_JVM_OPTIONS)
    return env


def _start(args: list[str], log: Path, env: dict[str, str]) -> int:
    with log.open("ab") as out:
        process = subprocess.Popen([str(_spark_class()), *args], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    return process.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours counts as dead
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def master_state(web_port: int, timeout_s: float = 2.0) -> dict:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{web_port}/json/", timeout=timeout_s) as r:
        return json.loads(r.read())


def alive_workers(info: ClusterInfo) -> int:
    return sum(1 for w in master_state(info.web_port).get("workers", [])
               if w.get("state") == "ALIVE")


def state_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / "cluster.json"


def load_info(state_dir: str | Path = DEFAULT_STATE_DIR) -> ClusterInfo:
    path = state_file(state_dir)
    if not path.exists():
        raise FileNotFoundError(f"no cluster state at {path}: run `cluster up` first")
    return ClusterInfo(**json.loads(path.read_text()))


def up(workers: int = 2, cores: int = 1, memory: str = "1g",
       state_dir: str | Path = DEFAULT_STATE_DIR, timeout_s: float = 90.0) -> ClusterInfo:
    """Start a master and ``workers`` workers; return once every worker is ALIVE."""
    if workers < 1 or cores < 1:
        raise ValueError(f"need workers >= 1 and cores >= 1, got {workers}, {cores}")
    state_dir = Path(state_dir).resolve()
    if state_file(state_dir).exists():
        info = load_info(state_dir)
        if _alive(info.master_pid):
            raise RuntimeError(f"a cluster is already up at {info.master_url} "
                               f"(state {state_file(state_dir)}); run `cluster down` first")
        state_file(state_dir).unlink()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = _daemon_env(state_dir)
    port, web_port = _free_port(), _free_port()
    master_url = f"spark://{LOOPBACK}:{port}"
    master_pid = _start(["org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
                         "--port", str(port), "--webui-port", str(web_port)],
                        state_dir / "logs" / "master.log", env)
    info = ClusterInfo(master_url, master_pid, web_port, [], cores, str(state_dir))
    state_file(state_dir).write_text(json.dumps(asdict(info), indent=2))
    try:
        for index in range(workers):
            pid = _start(["org.apache.spark.deploy.worker.Worker", "--host", LOOPBACK,
                          "--cores", str(cores), "--memory", memory,
                          "--webui-port", str(_free_port()), master_url],
                         state_dir / "logs" / f"worker-{index}.log", env)
            info.worker_pids.append(pid)
            state_file(state_dir).write_text(json.dumps(asdict(info), indent=2))
        deadline = time.monotonic() + timeout_s
        while True:
            dead = [p for p in [master_pid, *info.worker_pids] if not _alive(p)]
            if dead:
                raise RuntimeError(f"cluster daemon(s) {dead} exited; see {state_dir / 'logs'}")
            try:
                if alive_workers(info) >= workers:
                    return info
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} workers not registered with {master_url} "
                                   f"within {timeout_s:.0f} s; see {state_dir / 'logs'}")
            time.sleep(0.5)
    except BaseException:
        down(state_dir)
        raise


def _stop_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def kill_worker(index: int, state_dir: str | Path = DEFAULT_STATE_DIR) -> int:
    """SIGKILL worker ``index`` and its executors (a lost machine); returns its pid."""
    info = load_info(state_dir)
    if not 0 <= index < len(info.worker_pids):
        raise IndexError(f"worker index {index} out of range (0..{len(info.worker_pids) - 1})")
    pid = info.worker_pids[index]
    _stop_group(pid, signal.SIGKILL)
    _reap(pid)
    return pid


def down(state_dir: str | Path = DEFAULT_STATE_DIR, timeout_s: float = 20.0) -> list[int]:
    """Stop every daemon ``up`` started (workers first); returns the pids stopped."""
    path = state_file(state_dir)
    if not path.exists():
        return []
    info = ClusterInfo(**json.loads(path.read_text()))
    pids = [*info.worker_pids, info.master_pid]
    for pid in pids:
        _stop_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if _alive(pid):
            _stop_group(pid, signal.SIGKILL)
        _reap(pid)
    path.unlink()
    return pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start a master and workers on 127.0.0.1")
    start.add_argument("--workers", type=int, default=2)
    start.add_argument("--cores", type=int, default=1, help="cores per worker")
    start.add_argument("--memory", default="1g", help="memory per worker")
    sub.add_parser("down", help="stop the cluster")
    sub.add_parser("status", help="print the master URL and alive workers")
    kill = sub.add_parser("kill-worker", help="SIGKILL one worker (fault injection)")
    kill.add_argument("index", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            info = up(args.workers, args.cores, args.memory, args.state_dir)
            print(f"master {info.master_url} with {len(info.worker_pids)} workers x "
                  f"{info.cores_per_worker} cores (state {state_file(args.state_dir)})")
        elif args.command == "down":
            pids = down(args.state_dir)
            print(f"stopped {len(pids)} processes" if pids else "no cluster running")
        elif args.command == "status":
            info = load_info(args.state_dir)
            print(json.dumps({"master_url": info.master_url,
                              "alive_workers": alive_workers(info)}))
        else:
            print(f"killed worker {args.index} (pid {kill_worker(args.index, args.state_dir)})")
    except (RuntimeError, OSError, ValueError, IndexError) as error:
        print(f"cluster {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
