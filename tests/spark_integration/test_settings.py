"""Cluster settings: master kinds, --conf and properties files, executor sizing in the
setting each cluster manager understands, the driver's address, and reachability."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from spark_integration.settings import (
    KUBERNETES,
    LOCAL,
    STANDALONE,
    YARN,
    add_cluster_arguments,
    cluster_settings,
    default_driver_conf,
    manager_conf,
    master_endpoints,
    master_kind,
    master_problem,
    parse_conf,
    read_properties_file,
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("master, kind", [
    ("local", LOCAL), ("local[2]", LOCAL), ("local[*]", LOCAL), ("local[2,3]", LOCAL),
    ("spark://10.213.0.1:7077", STANDALONE), ("spark://a:7077,b:7077", STANDALONE),
    ("yarn", YARN), ("k8s://https://10.213.0.1:6443", KUBERNETES)])
def test_master_kinds(master: str, kind: str) -> None:
    assert master_kind(master) == kind


@pytest.mark.parametrize("master", ["local[x]", "spark://nohost", "mesos://h:5050", "k8s://"])
def test_unknown_masters_are_refused(master: str) -> None:
    with pytest.raises(ValueError, match="--master"):
        master_kind(master)


def test_endpoints() -> None:
    assert master_endpoints("spark://a:1,b:2") == [("a", 1), ("b", 2)]
    assert master_endpoints("k8s://https://api.example:6443") == [("api.example", 6443)]
    assert master_endpoints("k8s://api.example") == [("api.example", 443)]


def test_conf_items_must_be_spark_settings() -> None:
    assert parse_conf(["spark.a=1", "spark.b= x=y "]) == {"spark.a": "1", "spark.b": "x=y"}
    with pytest.raises(ValueError, match="expected KEY=VALUE, got 'spark.a'"):
        parse_conf(["spark.a"])
    with pytest.raises(ValueError, match="'hadoop.x' is not a Spark setting"):
        parse_conf(["hadoop.x=1"])


def test_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "spark.conf"
    path.write_text("# comment\nspark.executor.memory  2g\nspark.a=1\n\nspark.b : two words\n")
    assert read_properties_file(path) == {"spark.executor.memory": "2g", "spark.a": "1",
                                          "spark.b": "two words"}
    path.write_text("spark.ok 1\nfoo.bar 2\n")
    with pytest.raises(ValueError, match=r"spark.conf:2: 'foo.bar' is not a Spark setting"):
        read_properties_file(path)


def test_each_manager_gets_only_its_own_sizing() -> None:
    assert manager_conf(LOCAL, 2, 1, "512m") == {}
    standalone = manager_conf(STANDALONE, 2, 2, "1g")
    assert standalone["spark.cores.max"] == "4" and "spark.executor.instances" not in standalone
    for kind in (YARN, KUBERNETES):
        conf = manager_conf(kind, 3, 1, "1g")
        assert conf["spark.executor.instances"] == "3" and "spark.cores.max" not in conf
        assert conf["spark.dynamicAllocation.enabled"] == "false"


def test_driver_address_defaults() -> None:
    assert default_driver_conf("local[2]")["spark.driver.bindAddress"] == "127.0.0.1"
    assert default_driver_conf("spark://127.0.0.1:7077")["spark.driver.host"] == "127.0.0.1"
    assert default_driver_conf("yarn") == {}


def test_a_master_without_a_route_is_an_error_not_loopback() -> None:
    # a UDP socket may not connect to the broadcast address: the route probe fails
    unroutable = "spark://255.255.255.255:7077"
    with pytest.raises(ValueError, match=r"no route from this machine to the Spark master "
                                         r"255\.255\.255\.255:7077 \(.+\); pass --driver-host"):
        default_driver_conf(unroutable)
    # an explicit --driver-host needs no probe
    settings = cluster_settings(_args("--master", unroutable, "--executors", "1",
                                      "--driver-host", "10.0.0.5"), check_master=False)
    assert settings.conf["spark.driver.host"] == "10.0.0.5"


def test_precedence_and_explicit_driver_flags(tmp_path: Path) -> None:
    with socket.socket() as server:  # a master that accepts connections
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"spark://127.0.0.1:{server.getsockname()[1]}"
        props = tmp_path / "p.conf"
        props.write_text("spark.executor.memory 3g\nspark.a from-file\n")
        settings = cluster_settings(_args(
            "--master", url, "--executors", "2", "--executor-cores", "2", "--properties-file",
            str(props), "--conf", "spark.a=from-flag", "--driver-host", "127.0.0.1",
            "--driver-port", "40001", "--block-manager-port", "40002"))
    assert settings.executors == 4 and settings.kind == STANDALONE
    conf = settings.conf
    assert conf["spark.cores.max"] == "4" and conf["spark.executor.memory"] == "3g"
    assert conf["spark.a"] == "from-flag" and conf["spark.driver.host"] == "127.0.0.1"
    assert conf["spark.driver.port"] == "40001" and conf["spark.blockManager.port"] == "40002"


def test_cluster_settings_refuse_before_any_jvm() -> None:
    with pytest.raises(ValueError, match="--executors is required"):
        cluster_settings(_args("--master", "spark://127.0.0.1:9"))
    with pytest.raises(ValueError, match="spark.kubernetes.container.image"):
        cluster_settings(_args("--master", "k8s://https://127.0.0.1:9", "--executors", "1"))
    with pytest.raises(ValueError, match="--driver-port must be a port"):
        cluster_settings(_args("--driver-port", "70000"))


def test_unreachable_master_names_the_url() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    problem = master_problem(f"spark://127.0.0.1:{port}")
    assert problem.startswith(f"cannot reach the Spark master spark://127.0.0.1:{port} (")
    assert master_problem("local[2]") is None


def test_yarn_resource_manager_from_the_site_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (tmp_path / "yarn-site.xml").write_text(
        "<configuration><property><name>yarn.resourcemanager.address</name>"
        f"<value>127.0.0.1:{port}</value></property></configuration>")
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    assert master_problem("yarn") == (f"cannot reach the Spark master yarn (127.0.0.1:{port}: "
                                      f"Connection refused)")
    (tmp_path / "yarn-site.xml").write_text("<configuration>")
    with pytest.raises(ValueError, match="yarn-site.xml: not valid XML"):
        master_problem("yarn")
