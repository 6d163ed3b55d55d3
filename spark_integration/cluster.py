"""A Spark standalone cluster from the pyspark package's ``spark-class``: on 127.0.0.1, or
each daemon in its own network namespace.

    python -m spark_integration.cluster up --workers 2 [--cores 1] [--memory 1g] \
        [--netns | --link-mbps 100] [--cpus 0.9] [--prefix psc]
    python -m spark_integration.cluster status
    python -m spark_integration.cluster kill-worker 1     # simulate a lost worker
    python -m spark_integration.cluster down

Every daemon runs in its own process group and binds to loopback only
(``SPARK_LOCAL_IP=127.0.0.1``); pids, ports and logs live in the state directory
(default ``.cache/spark-cluster``) so ``down`` can stop exactly what ``up`` started.

With ``--netns`` (root and iproute2 needed) the daemons leave loopback: the master runs in
network namespace ``<prefix>_hub`` on a bridge at 10.213.0.1/24, worker ``i`` (and so its
executors) in namespace ``<prefix>_w<i>`` at 10.213.0.<11+i>, and a namespace
``<prefix>_drv`` at 10.213.0.2 is left for the driver; each is joined to the bridge by a veth
pair. ``--link-mbps R`` (implies ``--netns``) puts a ``tbf`` rate limit of R Mbit/s on both
ends of every worker's veth, so shuffle blocks fetched between executors and broadcasts from
the driver cross kernel-shaped links. Run the driver as a client of a cluster it did not start:
``ip netns exec <prefix>_drv python -m spark_integration.run --master spark://10.213.0.1:PORT
--executors N``; it reaches the master and the executors reach it over the bridge only.
``down`` deletes the namespaces.

``--cpus C`` starts each worker daemon inside its own cpu cgroup with a quota of C CPUs
(:mod:`runtimes.cgroup`); the executors it forks inherit the group, so a worker's K task slots
share C CPUs whatever else the machine runs, and compute stays steady while links are shared.
The groups are named after the master's pid (they live as long as the cluster) and ``down``
deletes them.

The multi-slot bed of docs/spark_integration.md (executors sharing a link):
``up --workers 2 --cores 2 --link-mbps 50 --cpus 0.9``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyspark

from runtimes.cgroup import CpuQuotas, remove_groups
from spark_integration.session import LEAN_JVM_OPTIONS

DEFAULT_STATE_DIR = Path(".cache/spark-cluster")
LOOPBACK = "127.0.0.1"
HUB_IP, DRIVER_IP, BRIDGE = "10.213.0.1", "10.213.0.2", "pscbr"
DEFAULT_PREFIX = "psc"


@dataclass
class ClusterInfo:
    master_url: str
    master_pid: int
    web_port: int
    worker_pids: list[int] = field(default_factory=list)
    cores_per_worker: int = 1
    state_dir: str = str(DEFAULT_STATE_DIR)
    link_mbps: float | None = None
    namespaces: list[str] = field(default_factory=list)
    prefix: str = DEFAULT_PREFIX
    cpus_per_worker: float | None = None
    cpu_groups: list[str] = field(default_factory=list)

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


def _daemon_env(state_dir: Path, address: str = LOOPBACK) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_HOME=str(Path(pyspark.__file__).parent), SPARK_LOCAL_IP=address,
               SPARK_LOCAL_HOSTNAME="localhost" if address == LOOPBACK else address,
               SPARK_WORKER_DIR=str(state_dir / "work"),
               PYSPARK_PYTHON=sys.executable, SPARK_DAEMON_JAVA_OPTS=LEAN_JVM_OPTIONS)
    return env


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def hub_ns(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}_hub"


def driver_ns(prefix: str = DEFAULT_PREFIX) -> str:
    """The namespace left for a driver that reaches the cluster over the bridge."""
    return f"{prefix}_drv"


def worker_ns(index: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}_w{index}"


def worker_ip(index: int) -> str:
    return f"10.213.0.{11 + index}"


def _tbf(namespace: str, device: str, mbps: float) -> None:
    # a bucket of ~10 ms of traffic (at least two frames) and a deep queue, so TCP is shaped,
    # not policed
    burst = max(3028, int(mbps * 1e6 / 8 / 100))
    _ip("netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root", "tbf",
        "rate", f"{mbps}mbit", "burst", str(burst), "limit", str(4 * 2**20))


def _attach(namespace: str, device: str, address: str, hub: str) -> None:
    """A new namespace joined to the hub's bridge by a veth pair, at ``address``."""
    _ip("netns", "add", namespace)
    _ip("-n", namespace, "link", "set", "lo", "up")
    _ip("link", "add", device, "netns", namespace, "type", "veth",
        "peer", "name", f"{device}h", "netns", hub)
    _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", device)
    _ip("-n", namespace, "link", "set", device, "up")
    _ip("-n", hub, "link", "set", f"{device}h", "master", BRIDGE)
    _ip("-n", hub, "link", "set", f"{device}h", "up")


def links_up(workers: int, mbps: float | None = None, prefix: str = DEFAULT_PREFIX
             ) -> list[str]:
    """The hub namespace with its bridge, a driver namespace and one veth per worker namespace
    (rate-limited to ``mbps`` when given); returns the namespaces created (all of them removed
    again on failure)."""
    if mbps is not None and not mbps > 0:
        raise ValueError(f"link rate must be > 0 Mbit/s, got {mbps}")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
        raise ValueError(f"namespace prefix must be 1-8 lowercase letters/digits, got {prefix!r}")
    hub = hub_ns(prefix)
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if any(line.split()[0] == hub for line in existing.splitlines() if line.strip()):
        raise RuntimeError(f"namespace {hub} exists: another namespaced cluster is up "
                           f"(`cluster down` it, or `ip netns del {hub}`)")
    created: list[str] = []
    try:
        _ip("netns", "add", hub)
        created.append(hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{HUB_IP}/24", "dev", BRIDGE)
        _ip("-n", hub, "link", "set", BRIDGE, "up")
        created.append(driver_ns(prefix))
        _attach(driver_ns(prefix), "pscd", DRIVER_IP, hub)
        for index in range(workers):
            namespace, device = worker_ns(index, prefix), f"pscw{index}"
            created.append(namespace)
            _attach(namespace, device, worker_ip(index), hub)
            if mbps is not None:
                _tbf(namespace, device, mbps)  # worker -> bridge
                _tbf(hub, f"{device}h", mbps)  # bridge -> worker
    except BaseException:  # deliberate: cleanup of the links made so far, then re-raised
        links_down(created)
        raise
    return created


def links_down(namespaces: list[str]) -> None:
    for namespace in reversed(namespaces):
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _start(args: list[str], log: Path, env: dict[str, str], namespace: str | None = None,
           preexec: Callable[[], None] | None = None) -> int:
    prefix = [] if namespace is None else ["ip", "netns", "exec", namespace]
    with log.open("ab") as out:
        process = subprocess.Popen([*prefix, str(_spark_class()), *args], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, preexec_fn=preexec)
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


def _hub_master_state(web_port: int, prefix: str, timeout_s: float = 5.0) -> dict:
    """The master's JSON status read from inside the hub namespace (not reachable from here)."""
    fetch = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], "
             "timeout=2).read().decode())")
    try:
        result = subprocess.run(["ip", "netns", "exec", hub_ns(prefix), sys.executable, "-c",
                                 fetch, f"http://{HUB_IP}:{web_port}/json/"],
                                capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise OSError(f"master status in {hub_ns(prefix)}: no answer in {timeout_s:.0f} s"
                      ) from None
    if result.returncode != 0:
        raise OSError(f"master status in {hub_ns(prefix)}: {result.stderr.strip()[-200:]}")
    return json.loads(result.stdout)


def alive_workers(info: ClusterInfo) -> int:
    state = (_hub_master_state(info.web_port, info.prefix) if info.namespaces
             else master_state(info.web_port))
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def state_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / "cluster.json"


def load_info(state_dir: str | Path = DEFAULT_STATE_DIR) -> ClusterInfo:
    path = state_file(state_dir)
    if not path.exists():
        raise FileNotFoundError(f"no cluster state at {path}: run `cluster up` first")
    return ClusterInfo(**json.loads(path.read_text()))


def up(workers: int = 2, cores: int = 1, memory: str = "1g",
       state_dir: str | Path = DEFAULT_STATE_DIR, timeout_s: float = 90.0,
       link_mbps: float | None = None, netns: bool = False, prefix: str = DEFAULT_PREFIX,
       cpus: float | None = None) -> ClusterInfo:
    """Start a master and ``workers`` workers; return once every worker is ALIVE. With
    ``netns`` (or ``link_mbps``) every daemon runs in its own network namespace, behind links
    rate-limited to ``link_mbps`` when given; with ``cpus`` each worker and its executors
    share a quota of that many CPUs (module docstring)."""
    if workers < 1 or cores < 1:
        raise ValueError(f"need workers >= 1 and cores >= 1, got {workers}, {cores}")
    if cpus is not None and not cpus > 0:
        raise ValueError(f"--cpus must be > 0 CPUs per worker, got {cpus}")
    state_dir = Path(state_dir).resolve()
    if state_file(state_dir).exists():
        info = load_info(state_dir)
        if _alive(info.master_pid):
            raise RuntimeError(f"a cluster is already up at {info.master_url} "
                               f"(state {state_file(state_dir)}); run `cluster down` first")
        state_file(state_dir).unlink()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    namespaces = (links_up(workers, link_mbps, prefix) if netns or link_mbps is not None
                  else [])
    host = HUB_IP if namespaces else LOOPBACK
    port, web_port = _free_port(), _free_port()
    master_url = f"spark://{host}:{port}"
    try:
        master_pid = _start(["org.apache.spark.deploy.master.Master", "--host", host,
                             "--port", str(port), "--webui-port", str(web_port)],
                            state_dir / "logs" / "master.log", _daemon_env(state_dir, host),
                            hub_ns(prefix) if namespaces else None)
    except BaseException:  # deliberate: cleanup (nothing else to stop yet), then re-raised
        links_down(namespaces)
        raise
    info = ClusterInfo(master_url, master_pid, web_port, [], cores, str(state_dir), link_mbps,
                       namespaces, prefix, cpus)
    state_file(state_dir).write_text(json.dumps(asdict(info), indent=2))
    try:
        quotas = CpuQuotas("spark", [cpus] * workers, owner=master_pid) if cpus else None
        if quotas is not None:
            quotas.up()
            info.cpu_groups = [str(group) for group in quotas.groups]
            state_file(state_dir).write_text(json.dumps(asdict(info), indent=2))
        for index in range(workers):
            address = worker_ip(index) if namespaces else LOOPBACK
            pid = _start(["org.apache.spark.deploy.worker.Worker", "--host", address,
                          "--cores", str(cores), "--memory", memory,
                          "--webui-port", str(_free_port()), master_url],
                         state_dir / "logs" / f"worker-{index}.log",
                         _daemon_env(state_dir, address),
                         worker_ns(index, prefix) if namespaces else None,
                         quotas.preexec(index) if quotas is not None else None)
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
    except BaseException:  # deliberate: cleanup of the daemons started, then re-raised
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
    remove_groups([Path(group) for group in info.cpu_groups])
    links_down(info.namespaces)
    path.unlink()
    return pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_integration.cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start a master and workers")
    start.add_argument("--workers", type=int, default=2)
    start.add_argument("--cores", type=int, default=1, help="cores per worker")
    start.add_argument("--memory", default="1g", help="memory per worker")
    start.add_argument("--link-mbps", type=float,
                       help="run each daemon in its own network namespace behind veth links "
                            "rate-limited to this many Mbit/s each way (implies --netns)")
    start.add_argument("--netns", action="store_true",
                       help="run each daemon in its own network namespace (10.213.0.0/24)")
    start.add_argument("--cpus", type=float,
                       help="CPUs per worker: each worker and its executors run under a cpu "
                            "cgroup quota of this many CPUs")
    start.add_argument("--prefix", default=DEFAULT_PREFIX,
                       help="namespace name prefix (two namespaced clusters need two)")
    sub.add_parser("down", help="stop the cluster")
    sub.add_parser("status", help="print the master URL and alive workers")
    kill = sub.add_parser("kill-worker", help="SIGKILL one worker (fault injection)")
    kill.add_argument("index", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            info = up(args.workers, args.cores, args.memory, args.state_dir,
                      link_mbps=args.link_mbps, netns=args.netns, prefix=args.prefix,
                      cpus=args.cpus)
            print(f"master {info.master_url} with {len(info.worker_pids)} workers x "
                  f"{info.cores_per_worker} cores (state {state_file(args.state_dir)})")
            if info.namespaces:
                rate = f"{args.link_mbps} Mbit/s each way" if args.link_mbps else "unshaped"
                print(f"links: {rate}; run the driver with `ip netns exec "
                      f"{driver_ns(args.prefix)} python -m spark_integration.run --master "
                      f"{info.master_url} --executors {info.total_cores}`")
        elif args.command == "down":
            pids = down(args.state_dir)
            print(f"stopped {len(pids)} processes" if pids else "no cluster running")
        elif args.command == "status":
            info = load_info(args.state_dir)
            print(json.dumps({"master_url": info.master_url,
                              "alive_workers": alive_workers(info)}))
        else:  # deliberate: argparse's required sub-command leaves only kill-worker here
            print(f"killed worker {args.index} (pid {kill_worker(args.index, args.state_dir)})")
    except (RuntimeError, OSError, ValueError, IndexError) as error:
        print(f"cluster {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
