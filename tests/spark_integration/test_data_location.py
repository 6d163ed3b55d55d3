"""TPC-H data under any Hadoop URI: copied there once through the session's Hadoop
FileSystem (exercised with a ``file://`` URI, the one filesystem this machine has) and reused."""

from __future__ import annotations

from pathlib import Path

from spark_integration.tpch import (
    data_location,
    ensure_remote_tpch,
    is_local,
    root_problem,
    table_paths,
)


def test_remote_root_is_filled_once_and_read_back(spark, tables, tmp_path: Path) -> None:
    root = tmp_path.as_uri() + "/shared"
    uri = ensure_remote_tpch(spark, 0.1, root)
    assert uri == root + "/sf0.1"
    marker = tmp_path / "shared" / "sf0.1" / "_COMPLETE"
    assert marker.exists() and not (tmp_path / "shared" / "sf0.1.tmp").exists()
    stamp = marker.stat().st_mtime_ns
    assert ensure_remote_tpch(spark, 0.1, root) == uri
    assert marker.stat().st_mtime_ns == stamp  # reused, not copied again
    remote = table_paths("hdfs://namenode:8020/tpch/sf0.1")
    assert remote["lineitem"] == "hdfs://namenode:8020/tpch/sf0.1/lineitem"
    copied = spark.read.parquet(f"{uri}/lineitem").count()
    assert copied == spark.read.parquet(tables["lineitem"]).count()


def test_local_roots_are_checked_before_any_jvm(tmp_path: Path) -> None:
    assert is_local("/x") and is_local("file:///x") and not is_local("s3a://bucket/x")
    assert root_problem(str(tmp_path / "missing")).startswith("--data: ")
    assert root_problem("hdfs://namenode/tpch") is None  # checked when first used
    assert root_problem(None) is None
    assert data_location(0.1).endswith("/.cache/tpch/sf0.1")
