"""What a Spark user configures, turned into session conf and checked before any JVM starts.

Precedence, lowest first: the cluster manager's defaults for this run (executor count, cores
and memory, each in the setting that manager understands), the ``--properties-file``, every
``--conf KEY=VALUE``, then the explicit driver flags (``--driver-host``, ``--bind-address``,
``--driver-port``, ``--block-manager-port``).

Masters: ``local``, ``local[N]``, ``local[*]``, ``local[N,F]``; ``spark://HOST:PORT`` (a
standalone master, or ``spark://H1:P1,H2:P2`` for standby masters); ``yarn`` (needs
``HADOOP_CONF_DIR`` or ``YARN_CONF_DIR``); ``k8s://https://HOST:PORT`` (needs
``spark.kubernetes.container.image``). Executors are sized with ``spark.cores.max`` on a
standalone master and ``spark.executor.instances`` on YARN and Kubernetes (with dynamic
allocation off, so the count the scheduler plans with is the count it gets).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

LOCAL, STANDALONE, YARN, KUBERNETES = "local", "standalone", "yarn", "kubernetes"
LOOPBACK = "127.0.0.1"
# the whole reachability check of a master stays under this
REACH_BUDGET_S = 25.0
_LOCAL = re.compile(r"local(\[(\d+|\*)(,\s*\d+)?\])?")


def master_kind(master: str) -> str:
    """``local``, ``standalone``, ``yarn`` or ``kubernetes``; ValueError for anything else."""
    if _LOCAL.fullmatch(master):
        return LOCAL
    if master.startswith("spark://"):
        if not master_endpoints(master):
            raise ValueError(f"--master {master!r}: expected spark://HOST:PORT[,HOST:PORT]")
        return STANDALONE
    if master == "yarn":
        return YARN
    if master.startswith("k8s://"):
        if not master_endpoints(master):
            raise ValueError(f"--master {master!r}: expected k8s://https://HOST:PORT")
        return KUBERNETES
    raise ValueError(f"--master {master!r}: use local[N], spark://HOST:PORT, yarn or "
                     f"k8s://https://HOST:PORT")


def master_endpoints(master: str) -> list[tuple[str, int]]:
    """The (host, port) pairs a ``spark://`` or ``k8s://`` master URL names (empty if none)."""
    if master.startswith("spark://"):
        pairs = []
        for part in master.removeprefix("spark://").split(","):
            host, _, port = part.rpartition(":")
            if not host or not port.isdigit():
                return []
            pairs.append((host.strip("[]"), int(port)))
        return pairs
    if master.startswith("k8s://"):
        rest = master.removeprefix("k8s://")
        url = urlparse(rest if "://" in rest else f"https://{rest}")
        try:
            port = url.port or (80 if url.scheme == "http" else 443)
        except ValueError:
            return []
        return [(url.hostname, port)] if url.hostname else []
    return []


def local_slots(master: str) -> int:
    """Task slots of a ``local`` master: N of ``local[N]``, the cores for ``local[*]``."""
    match = _LOCAL.fullmatch(master)
    if match is None:
        raise ValueError(f"{master!r} is not a local master")
    count = match.group(2)
    if count is None:
        return 1
    return os.cpu_count() or 1 if count == "*" else int(count)


def parse_conf(items: Sequence[str], source: str = "--conf") -> dict[str, str]:
    """``KEY=VALUE`` strings -> conf; every key must be a Spark setting (``spark.*``)."""
    conf: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{source}: expected KEY=VALUE, got {item!r}")
        if not key.startswith("spark."):
            raise ValueError(f"{source}: {key!r} is not a Spark setting (keys start with spark.)")
        conf[key] = value.strip()
    return conf


def read_properties_file(path: str | Path) -> dict[str, str]:
    """A Spark properties file (``spark-defaults.conf`` format: ``key value`` or
    ``key=value`` per line, ``#`` comments); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--properties-file: {path} does not exist")
    conf: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.fullmatch(r"(\S+?)\s*(?:[=:]|\s)\s*(.*)", line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected 'key value', got {line!r}")
        conf.update(parse_conf([f"{match.group(1)}={match.group(2)}"], f"{path}:{number}"))
    return conf


def manager_conf(kind: str, executors: int | None, executor_cores: int,
                 executor_memory: str) -> dict[str, str]:
    """Executor sizing in the settings the master's cluster manager understands."""
    if kind == LOCAL or executors is None:
        return {}
    conf = {"spark.executor.cores": str(executor_cores),
            "spark.executor.memory": executor_memory}
    if kind == STANDALONE:
        conf["spark.cores.max"] = str(executors * executor_cores)
    else:
        conf["spark.executor.instances"] = str(executors)
        conf["spark.dynamicAllocation.enabled"] = "false"
    return conf


def route_address(host: str, port: int) -> str:
    """This machine's address on the route to ``host`` (no packet is sent): what executors
    next to that host can reach the driver at. No route is a ValueError naming the master
    (the executors could not reach a driver on loopback)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return probe.getsockname()[0]
    except OSError as error:
        raise ValueError(f"no route from this machine to the Spark master {host}:{port} "
                         f"({error.strerror or error}); pass --driver-host ADDR (an address "
                         f"its executors can reach)") from None


def default_driver_conf(master: str) -> dict[str, str]:
    """Where the driver listens when nothing says so: loopback for ``local``; on a standalone
    master the local address that routes to it; YARN and Kubernetes: Spark's own default."""
    kind = master_kind(master)
    if kind == LOCAL:
        return {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}
    if kind == STANDALONE:
        host, port = master_endpoints(master)[0]
        if host in ("localhost", LOOPBACK):
            return {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}
        return {"spark.driver.host": route_address(host, port)}
    return {}


def _reachable(host: str, port: int, timeout_s: float) -> str | None:
    """None when ``host:port`` accepts a TCP connection, else why not."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__
    return None


def _yarn_resource_manager() -> tuple[str, int] | None:
    """``yarn.resourcemanager.address`` (or its hostname with the default port) from
    ``yarn-site.xml`` in ``$YARN_CONF_DIR`` / ``$HADOOP_CONF_DIR``."""
    for variable in ("YARN_CONF_DIR", "HADOOP_CONF_DIR"):
        site = Path(os.environ.get(variable, "")) / "yarn-site.xml"
        if not os.environ.get(variable) or not site.is_file():
            continue
        try:
            values = {p.findtext("name"): (p.findtext("value") or "").strip()
                      for p in ET.parse(site).getroot().iter("property")}
        except ET.ParseError as error:
            raise ValueError(f"{site}: not valid XML ({error})") from None
        address = values.get("yarn.resourcemanager.address")
        if address and ":" in address:
            host, _, port = address.rpartition(":")
            if not port.isdigit():
                raise ValueError(f"{site}: yarn.resourcemanager.address {address!r} has no port")
            return host, int(port)
        if values.get("yarn.resourcemanager.hostname"):
            return values["yarn.resourcemanager.hostname"], 8032
    return None


def master_problem(master: str, timeout_s: float = 5.0) -> str | None:
    """Why ``master`` cannot be used now (one line naming it), or None. Bounded by
    :data:`REACH_BUDGET_S` whatever the number of endpoints."""
    kind = master_kind(master)
    if kind == LOCAL:
        return None
    if kind == YARN:
        if not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
            return "--master yarn needs HADOOP_CONF_DIR or YARN_CONF_DIR in the environment"
        endpoints = [e for e in [_yarn_resource_manager()] if e is not None]
    else:
        endpoints = master_endpoints(master)
    deadline = time.monotonic() + REACH_BUDGET_S
    reasons = []
    for host, port in endpoints:
        left = deadline - time.monotonic()
        if left <= 0:
            reasons.append(f"{host}:{port}: not tried (time budget spent)")
            continue
        reason = _reachable(host, port, min(timeout_s, left))
        if reason is None:
            return None
        reasons.append(f"{host}:{port}: {reason}")
    if not reasons:
        return None  # YARN without an address in yarn-site.xml: Spark's client finds it
    return f"cannot reach the Spark master {master} ({'; '.join(reasons)})"


@dataclass(frozen=True)
class ClusterSettings:
    """A validated master and the full conf to start its session with."""

    master: str
    kind: str
    executors: int  # task slots the run plans with (executor processes x their cores)
    conf: dict[str, str]
    processes: int = 0  # executor processes to wait for (0 for local)
    start_timeout_s: float | None = None  # None for local


def add_cluster_arguments(parser: argparse.ArgumentParser,
                          master_default: str | None = "local[2]") -> None:
    """The flags a Spark user expects (module docstring)."""
    group = parser.add_argument_group("Spark cluster")
    group.add_argument("--master", default=master_default,
                       help="local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT")
    group.add_argument("--executors", type=int,
                       help="executors to request and plan with (needed for cluster masters)")
    group.add_argument("--executor-cores", type=int, default=1)
    group.add_argument("--executor-memory", default="512m")
    group.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                       help="Spark setting passed to the session (repeatable; overrides the "
                            "properties file)")
    group.add_argument("--properties-file", help="Spark properties file (spark-defaults.conf "
                                                 "format)")
    group.add_argument("--driver-host", help="address executors reach the driver at (default: "
                                             "127.0.0.1 for local, the address routing to a "
                                             "spark:// master)")
    group.add_argument("--bind-address", help="address the driver's sockets bind to")
    group.add_argument("--driver-port", type=int, help="driver RPC port (default: any free)")
    group.add_argument("--block-manager-port", type=int,
                       help="driver block manager port (default: any free)")
    group.add_argument("--start-timeout", type=float, default=25.0, metavar="SECONDS",
                       help="how long a cluster master may take to accept the application "
                            "(raise it for a busy YARN queue)")


def user_conf(args: argparse.Namespace) -> dict[str, str]:
    """What the user set: the properties file, then ``--conf``, then the driver flags."""
    for flag, value in (("--driver-port", args.driver_port),
                        ("--block-manager-port", args.block_manager_port)):
        if value is not None and not 0 < value < 65536:
            raise ValueError(f"{flag} must be a port number 1..65535, got {value}")
    conf = read_properties_file(args.properties_file) if args.properties_file else {}
    conf.update(parse_conf(args.conf))
    explicit = {"spark.driver.host": args.driver_host,
                "spark.driver.bindAddress": args.bind_address,
                "spark.driver.port": args.driver_port,
                "spark.blockManager.port": args.block_manager_port}
    conf.update({k: str(v) for k, v in explicit.items() if v is not None})
    return conf


def cluster_settings(args: argparse.Namespace, check_master: bool = True) -> ClusterSettings:
    """Validate the cluster flags and build the conf; ValueError with one line otherwise."""
    kind = master_kind(args.master)
    for flag, value in (("--executors", args.executors),
                        ("--executor-cores", args.executor_cores)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if not re.fullmatch(r"\d+[kmgt]?", args.executor_memory.lower()):
        raise ValueError(f"--executor-memory: expected e.g. 512m or 2g, got "
                         f"{args.executor_memory!r}")
    if kind == LOCAL:
        executors = local_slots(args.master)
    elif args.executors is None:
        raise ValueError(f"--executors is required for the cluster master {args.master}")
    else:
        executors = args.executors
    user = user_conf(args)
    conf = {**({} if "spark.driver.host" in user else default_driver_conf(args.master)),
            **manager_conf(kind, None if kind == LOCAL else executors, args.executor_cores,
                           args.executor_memory), **user}
    if kind == KUBERNETES and not conf.get("spark.kubernetes.container.image"):
        raise ValueError(f"--master {args.master}: set --conf "
                         f"spark.kubernetes.container.image=IMAGE (the executors' image)")
    if check_master:
        problem = master_problem(args.master)
        if problem is not None:
            raise ValueError(problem)
    if kind == LOCAL:
        return ClusterSettings(args.master, kind, executors, conf)
    if not args.start_timeout > 0:
        raise ValueError(f"--start-timeout must be > 0, got {args.start_timeout}")
    return ClusterSettings(args.master, kind, executors * args.executor_cores, conf, executors,
                           args.start_timeout)


def jvm_environment(conf: Mapping[str, str]) -> dict[str, str]:
    """Environment for the driver JVM: ``SPARK_LOCAL_IP`` at the bind address (else Spark
    picks one itself and warns that the hostname resolves to loopback)."""
    address = conf.get("spark.driver.bindAddress") or conf.get("spark.driver.host")
    return {"SPARK_LOCAL_IP": address} if address else {}
