"""TPC-H DAGs: structure, validation, and answers equal to the single-SQL queries."""

from __future__ import annotations

import pytest

from spark_integration.queries import QUERIES, QueryDag, QueryNode
from spark_integration.tpch import TABLES, ensure_tpch, parts_for, scale_label


def test_at_least_twelve_queries_with_real_dag_structure() -> None:
    assert len(QUERIES) >= 12
    multi_parent = [q for q in QUERIES.values() if any(len(n.parents) >= 2 for n in q.nodes)]
    assert len(multi_parent) >= 10  # joins of materialised parents, not just chains
    used = {t for q in QUERIES.values() for n in q.nodes for t in n.tables()}
    assert used == set(TABLES)
    for dag in QUERIES.values():
        reachable = {dag.sink.name}
        for node in reversed(dag.nodes):
            if node.name in reachable:
                reachable.update(node.parents)
        assert reachable == set(dag.by_name), f"{dag.name}: a node does not feed the answer"


def test_dag_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="node 'b' has parent 'zz'"):
        QueryDag("bad", (QueryNode("a", "select 1 from {nation}"),
                         QueryNode("b", "select * from {zz}", ("zz",))), "select 1")
    with pytest.raises(ValueError, match="references \\['nowhere'\\]"):
        QueryDag("bad", (QueryNode("a", "select * from {nowhere}"),), "select 1")
    with pytest.raises(ValueError, match="duplicate node 'a'"):
        QueryDag("bad", (QueryNode("a", "select 1 from {nation}"),
                         QueryNode("a", "select 1 from {nation}")), "select 1")


def test_tpch_cache_is_reused_and_rejects_bad_scale(tmp_path) -> None:
    path = ensure_tpch(0.1)
    assert path.name == scale_label(0.1) and (path / "lineitem").is_dir()
    assert len(list((path / "lineitem").glob("*.parquet"))) == parts_for(0.1)
    mtime = (path / "_COMPLETE").stat().st_mtime
    assert ensure_tpch(0.1).joinpath("_COMPLETE").stat().st_mtime == mtime
    with pytest.raises(ValueError, match="scale factor must be positive"):
        ensure_tpch(0, tmp_path)
