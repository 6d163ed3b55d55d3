"""The 22 single-statement TPC-H queries on SF 0.1, and users' SQL files split into statements.

The answers are checked against facts of the TPC-H data that do not come from the statements'
text: the domains of the grouping columns, row limits, orderings, and totals computed with
separate DataFrame queries."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from spark_integration.queries import QUERIES
from spark_integration.tpch_sql import STATEMENTS, register_tables, statements_from_file

PRIORITIES = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
ASIA = {"CHINA", "INDIA", "INDONESIA", "JAPAN", "VIETNAM"}
Q22_CODES = {"13", "31", "23", "29", "30", "18", "17"}


@pytest.fixture(scope="module")
def user_session(spark, tables) -> SparkSession:
    """A session of its own (the shared one's temp views stay untouched) with the tables
    registered under their names, as a user's session has them."""
    session = spark.newSession()
    register_tables(session, tables)
    return session


@pytest.fixture(scope="module")
def answers(statement_runs) -> dict[str, list[Row]]:
    return {name: run.rows for name, run in statement_runs.items()}


def _non_increasing(values: list) -> bool:
    return all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_statements_are_the_22_single_queries_that_queries_py_checks_against() -> None:
    assert list(STATEMENTS) == [f"q{i}" for i in range(1, 23)]
    for name, sql in STATEMENTS.items():
        assert ";" not in sql and sql == sql.strip(), name
        assert not {"create", "drop", "insert"} & set(sql.lower().split()), name
    assert len(QUERIES) == 16 and set(QUERIES) <= set(STATEMENTS)
    for name, dag in QUERIES.items():
        assert dag.reference_sql.encode() == STATEMENTS[name].encode(), name


def test_every_statement_answers(answers) -> None:
    assert set(answers) == set(STATEMENTS)
    empty = [name for name, rows in answers.items() if not rows]
    assert not empty


def test_pricing_summary_q1_covers_every_shipped_line(answers, user_session) -> None:
    rows = answers["q1"]
    assert [(r.l_returnflag, r.l_linestatus) for r in rows] == [
        ("A", "F"), ("N", "F"), ("N", "O"), ("R", "F")]
    shipped = user_session.table("lineitem").where(F.col("l_shipdate") <= date(1998, 9, 2))
    assert sum(r.count_order for r in rows) == shipped.count()
    assert sum(r.sum_qty for r in rows) == shipped.agg(F.sum("l_quantity")).first()[0]


def test_single_row_answers_q6_q14_q17_q19(answers, user_session) -> None:
    for name in ("q6", "q14", "q17", "q19"):
        assert len(answers[name]) == 1 and answers[name][0][0] > 0, name
    assert 0 < answers["q14"][0].promo_revenue < 100
    lineitem = user_session.table("lineitem")
    q6 = lineitem.where((F.col("l_shipdate") >= date(1994, 1, 1))
                        & (F.col("l_shipdate") < date(1995, 1, 1))
                        & F.col("l_discount").between(Decimal("0.05"), Decimal("0.07"))
                        & (F.col("l_quantity") < 24))
    expected = q6.agg(F.sum(F.col("l_extendedprice") * F.col("l_discount"))).first()[0]
    assert answers["q6"][0].revenue == expected


def test_limits_and_orderings(answers, user_session) -> None:
    assert len(answers["q3"]) == 10 and _non_increasing([r.revenue for r in answers["q3"]])
    assert len(answers["q10"]) == 20 and _non_increasing([r.revenue for r in answers["q10"]])
    for name in ("q2", "q18", "q21"):
        assert 0 < len(answers[name]) <= 100, name
    assert _non_increasing([r.s_acctbal for r in answers["q2"]])
    assert _non_increasing([r.numwait for r in answers["q21"]])
    assert all(r.numwait > 0 for r in answers["q21"])
    big_orders = (user_session.table("lineitem").groupBy("l_orderkey")
                  .agg(F.sum("l_quantity").alias("quantity")).where(F.col("quantity") > 300))
    assert len(answers["q18"]) == min(100, big_orders.count())
    assert all(r[5] > 300 for r in answers["q18"])


def test_grouping_domains(answers, user_session) -> None:
    assert [r.o_orderpriority for r in answers["q4"]] == PRIORITIES
    quarter = user_session.table("orders").where(
        (F.col("o_orderdate") >= date(1993, 7, 1)) & (F.col("o_orderdate") < date(1993, 10, 1)))
    assert 0 < sum(r.order_count for r in answers["q4"]) <= quarter.count()
    assert {r.n_name for r in answers["q5"]} == ASIA
    assert _non_increasing([r.revenue for r in answers["q5"]])
    assert {(r.supp_nation, r.cust_nation, r.l_year) for r in answers["q7"]} == {
        (s, c, y) for s, c in (("FRANCE", "GERMANY"), ("GERMANY", "FRANCE"))
        for y in (1995, 1996)}
    assert [r.o_year for r in answers["q8"]] == [1995, 1996]
    assert all(0 <= r.mkt_share <= 1 for r in answers["q8"])
    nations = {r.n_name for r in user_session.table("nation").collect()}
    assert {r.nation for r in answers["q9"]} == nations and len(answers["q9"]) == 25 * 7
    assert [r.l_shipmode for r in answers["q12"]] == ["MAIL", "SHIP"]
    assert {r.cntrycode for r in answers["q22"]} <= Q22_CODES
    assert all(r.numcust > 0 for r in answers["q22"])


def test_customer_distribution_q13_counts_every_customer(answers, user_session) -> None:
    assert sum(r.custdist for r in answers["q13"]) == user_session.table("customer").count()
    assert _non_increasing([r.custdist for r in answers["q13"]])


def test_important_stock_q11_is_above_the_threshold(answers, user_session) -> None:
    germany = (user_session.table("partsupp")
               .join(user_session.table("supplier"), F.col("ps_suppkey") == F.col("s_suppkey"))
               .join(user_session.table("nation"), F.col("s_nationkey") == F.col("n_nationkey"))
               .where(F.col("n_name") == "GERMANY"))
    total = germany.agg(F.sum(F.col("ps_supplycost") * F.col("ps_availqty"))).first()[0]
    values = [r.value for r in answers["q11"]]
    assert _non_increasing(values) and min(values) > total * Decimal("0.0001")
    assert sum(values) <= total


def test_top_supplier_q15_has_the_largest_quarter_revenue(answers, user_session) -> None:
    quarter = user_session.table("lineitem").where(
        (F.col("l_shipdate") >= date(1996, 1, 1)) & (F.col("l_shipdate") < date(1996, 4, 1)))
    best = (quarter.groupBy("l_suppkey")
            .agg(F.sum(F.col("l_extendedprice") * (1 - F.col("l_discount"))).alias("revenue"))
            .agg(F.max("revenue")).first()[0])
    assert answers["q15"] and all(r.total_revenue == best for r in answers["q15"])


def test_filters_of_q16_and_q20(answers, user_session) -> None:
    assert all(r.p_brand != "Brand#45" and r.p_size in (49, 14, 23, 45, 19, 3, 36, 9)
               and not r.p_type.startswith("MEDIUM POLISHED") for r in answers["q16"])
    assert _non_increasing([r.supplier_cnt for r in answers["q16"]])
    canada = {r.s_name for r in user_session.table("supplier")
              .join(user_session.table("nation"), F.col("s_nationkey") == F.col("n_nationkey"))
              .where(F.col("n_name") == "CANADA").collect()}
    names = [r.s_name for r in answers["q20"]]
    assert set(names) <= canada and names == sorted(names)


def test_register_tables_names_missing_and_unknown_tables(spark, tables) -> None:
    partial = {t: p for t, p in tables.items() if t != "lineitem"} | {"lineitems": "x"}
    with pytest.raises(ValueError, match=r"missing \['lineitem'\], unknown \['lineitems'\]"):
        register_tables(spark, partial)


def _write(tmp_path: Path, text: str, name: str = "report.sql") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_splits_on_semicolons_outside_quotes_and_comments(tmp_path) -> None:
    path = _write(tmp_path, """-- header; not a statement
select 'a;b' as x, "c;d" as `e;f`;
/* block; /* nested; */ still comment; */
select 'it\\'s; fine' -- trailing; comment
;
-- name: weekly_top
select 3
;  -- nothing after the last statement; this is fine
""")
    assert statements_from_file(path) == [
        ("report#0", """select 'a;b' as x, "c;d" as `e;f`"""),
        ("report#1", "select 'it\\'s; fine' -- trailing; comment"),
        ("weekly_top", "select 3"),
    ]


def test_file_statement_without_final_semicolon(tmp_path) -> None:
    path = _write(tmp_path, "select 1;\n\n  select 2\n")
    assert statements_from_file(path) == [("report#0", "select 1"), ("report#1", "select 2")]


def test_file_round_trips_the_22_statements_and_they_run(tmp_path, user_session) -> None:
    text = "".join(f"-- name: {name}\n{sql};\n\n" for name, sql in STATEMENTS.items())
    parsed = statements_from_file(_write(tmp_path, text, "tpch.sql"))
    assert parsed == list(STATEMENTS.items())
    assert user_session.sql(parsed[5][1]).count() == 1  # q6 from the file runs as written


@pytest.mark.parametrize(("text", "message"), [
    ("", r"report.sql: no SQL statement in the file"),
    ("  -- only a comment\n/* and another */\n", r"no SQL statement in the file"),
    ("select 1;\n;\nselect 2;", r"report.sql: statement #1 \(ending at line 2\) is empty"),
    (";", r"statement #0 \(ending at line 1\) is empty"),
    ("select 1;\nselect 'open;\n", r"report.sql: ' opened at line 2 is never closed"),
    ("select 1 /* open\n", r"comment opened at line 1 is never closed"),
    ("-- name: a\nselect 1;\n-- name: a\nselect 2;", r"statement #1: name 'a' is used twice"),
    ("-- name: two words\nselect 1;", r"line 1: statement name 'two words' is not letters"),
    ("-- name: a\n\nselect 1;", r"line 1: a '-- name:' line must be directly above"),
    ("select 1;\n-- name: dangling\n", r"line 2: a '-- name:' line must be directly above"),
])
def test_file_errors_name_the_file_and_statement(tmp_path, text, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        statements_from_file(_write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_missing_file_is_a_one_line_error(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"nope.sql: cannot read SQL file"):
        statements_from_file(tmp_path / "nope.sql")
