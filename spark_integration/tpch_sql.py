"""The 22 TPC-H queries as single Spark SQL statements, and users' SQL files split into statements.

:data:`STATEMENTS` holds each query of the TPC-H specification (v3, Clause 2.4) with the
substitution parameters fixed to the spec's validation values (Clause 2.4.x.4 of each query:
Q1 DELTA 90, Q2 SIZE 15 / TYPE BRASS / REGION EUROPE, Q3 BUILDING 1995-03-15, ..., Q22 country
codes 13, 31, 23, 29, 30, 18, 17), written as one statement that Spark SQL runs unchanged over the
eight tables registered as temporary views (:func:`register_tables`). Deviations from the spec
text, each because Spark SQL or the one-statement form needs it:

- No terminating ``;``: ``SparkSession.sql`` takes one statement without it.
- Q1: ``interval '90' day (3)`` is written ``interval '90' day``; Spark SQL does not accept the
  interval's leading-field precision ``(3)`` (same value).
- Q15: the ``create view revenue0 ... ; select ... ; drop view revenue0`` triple becomes one
  ``with revenue0 (supplier_no, total_revenue) as (...) select ...`` (no DDL: one statement
  whose answer is the query's).
- Q2, Q3, Q10, Q18, Q21: the spec's "return the first 100 / 10 / 20 / 100 / 100 selected rows",
  which it leaves outside the query text, is a ``limit`` clause (the statement alone is the
  answer).
- Q11: FRACTION stays at the validation value 0.0001 at every scale factor (the spec scales it
  as 0.0001 / SF), so a statement's text does not depend on the data it runs over.

:func:`statements_from_file` splits a user's SQL file into named statements for the scheduler,
which runs each one as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent
from typing import NamedTuple

from pyspark.sql import SparkSession

from spark_integration.tpch import TABLES


def _statement(text: str) -> str:
    return dedent(text).strip()


STATEMENTS: dict[str, str] = {name: _statement(text) for name, text in {
    "q1": """
        select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
          sum(l_extendedprice) as sum_base_price,
          sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
          sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
          avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price,
          avg(l_discount) as avg_disc, count(*) as count_order
        from lineitem
        where l_shipdate <= date '1998-12-01' - interval '90' day
        group by l_returnflag, l_linestatus
        order by l_returnflag, l_linestatus""",
    "q2": """
        select s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment
        from part, supplier, partsupp, nation, region
        where p_partkey = ps_partkey and s_suppkey = ps_suppkey and p_size = 15
          and p_type like '%BRASS' and s_nationkey = n_nationkey
          and n_regionkey = r_regionkey and r_name = 'EUROPE'
          and ps_supplycost = (
            select min(ps_supplycost) from partsupp, supplier, nation, region
            where p_partkey = ps_partkey and s_suppkey = ps_suppkey
              and s_nationkey = n_nationkey and n_regionkey = r_regionkey
              and r_name = 'EUROPE')
        order by s_acctbal desc, n_name, s_name, p_partkey
        limit 100""",
    "q3": """
        select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate,
          o_shippriority
        from customer, orders, lineitem
        where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey
          and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15'
        group by l_orderkey, o_orderdate, o_shippriority
        order by revenue desc, o_orderdate
        limit 10""",
    "q4": """
        select o_orderpriority, count(*) as order_count
        from orders
        where o_orderdate >= date '1993-07-01'
          and o_orderdate < date '1993-07-01' + interval '3' month
          and exists (select * from lineitem
                      where l_orderkey = o_orderkey and l_commitdate < l_receiptdate)
        group by o_orderpriority
        order by o_orderpriority""",
    "q5": """
        select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue
        from customer, orders, lineitem, supplier, nation, region
        where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey
          and c_nationkey = s_nationkey and s_nationkey = n_nationkey
          and n_regionkey = r_regionkey and r_name = 'ASIA'
          and o_orderdate >= date '1994-01-01'
          and o_orderdate < date '1994-01-01' + interval '1' year
        group by n_name
        order by revenue desc""",
    "q6": """
        select sum(l_extendedprice * l_discount) as revenue
        from lineitem
        where l_shipdate >= date '1994-01-01'
          and l_shipdate < date '1994-01-01' + interval '1' year
          and l_discount between 0.06 - 0.01 and 0.06 + 0.01
          and l_quantity < 24""",
    "q7": """
        select supp_nation, cust_nation, l_year, sum(volume) as revenue
        from (
          select n1.n_name as supp_nation, n2.n_name as cust_nation,
            extract(year from l_shipdate) as l_year,
            l_extendedprice * (1 - l_discount) as volume
          from supplier, lineitem, orders, customer, nation n1, nation n2
          where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey
            and s_nationkey = n1.n_nationkey and c_nationkey = n2.n_nationkey
            and ((n1.n_name = 'FRANCE' and n2.n_name = 'GERMANY')
              or (n1.n_name = 'GERMANY' and n2.n_name = 'FRANCE'))
            and l_shipdate between date '1995-01-01' and date '1996-12-31') as shipping
        group by supp_nation, cust_nation, l_year
        order by supp_nation, cust_nation, l_year""",
    "q8": """
        select o_year,
          sum(case when nation = 'BRAZIL' then volume else 0 end) / sum(volume) as mkt_share
        from (
          select extract(year from o_orderdate) as o_year,
            l_extendedprice * (1 - l_discount) as volume, n2.n_name as nation
          from part, supplier, lineitem, orders, customer, nation n1, nation n2, region
          where p_partkey = l_partkey and s_suppkey = l_suppkey and l_orderkey = o_orderkey
            and o_custkey = c_custkey and c_nationkey = n1.n_nationkey
            and n1.n_regionkey = r_regionkey and r_name = 'AMERICA'
            and s_nationkey = n2.n_nationkey
            and o_orderdate between date '1995-01-01' and date '1996-12-31'
            and p_type = 'ECONOMY ANODIZED STEEL') as all_nations
        group by o_year
        order by o_year""",
    "q9": """
        select nation, o_year, sum(amount) as sum_profit
        from (
          select n_name as nation, extract(year from o_orderdate) as o_year,
            l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity as amount
          from part, supplier, lineitem, partsupp, orders, nation
          where s_suppkey = l_suppkey and ps_suppkey = l_suppkey and ps_partkey = l_partkey
            and p_partkey = l_partkey and o_orderkey = l_orderkey
            and s_nationkey = n_nationkey and p_name like '%green%') as profit
        group by nation, o_year
        order by nation, o_year desc""",
    "q10": """
        select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue,
          c_acctbal, n_name, c_address, c_phone, c_comment
        from customer, orders, lineitem, nation
        where c_custkey = o_custkey and l_orderkey = o_orderkey
          and o_orderdate >= date '1993-10-01'
          and o_orderdate < date '1993-10-01' + interval '3' month
          and l_returnflag = 'R' and c_nationkey = n_nationkey
        group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
        order by revenue desc
        limit 20""",
    "q11": """
        select ps_partkey, sum(ps_supplycost * ps_availqty) as value
        from partsupp, supplier, nation
        where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = 'GERMANY'
        group by ps_partkey
        having sum(ps_supplycost * ps_availqty) > (
          select sum(ps_supplycost * ps_availqty) * 0.0001
          from partsupp, supplier, nation
          where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = 'GERMANY')
        order by value desc""",
    "q12": """
        select l_shipmode,
          sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH'
              then 1 else 0 end) as high_line_count,
          sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH'
              then 1 else 0 end) as low_line_count
        from orders, lineitem
        where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP')
          and l_commitdate < l_receiptdate and l_shipdate < l_commitdate
          and l_receiptdate >= date '1994-01-01'
          and l_receiptdate < date '1994-01-01' + interval '1' year
        group by l_shipmode
        order by l_shipmode""",
    "q13": """
        select c_count, count(*) as custdist
        from (
          select c_custkey, count(o_orderkey)
          from customer left outer join orders
            on c_custkey = o_custkey and o_comment not like '%special%requests%'
          group by c_custkey) as c_orders (c_custkey, c_count)
        group by c_count
        order by custdist desc, c_count desc""",
    "q14": """
        select 100.00 * sum(case when p_type like 'PROMO%'
            then l_extendedprice * (1 - l_discount) else 0 end)
          / sum(l_extendedprice * (1 - l_discount)) as promo_revenue
        from lineitem, part
        where l_partkey = p_partkey and l_shipdate >= date '1995-09-01'
          and l_shipdate < date '1995-09-01' + interval '1' month""",
    "q15": """
        with revenue0 (supplier_no, total_revenue) as (
          select l_suppkey, sum(l_extendedprice * (1 - l_discount))
          from lineitem
          where l_shipdate >= date '1996-01-01'
            and l_shipdate < date '1996-01-01' + interval '3' month
          group by l_suppkey)
        select s_suppkey, s_name, s_address, s_phone, total_revenue
        from supplier, revenue0
        where s_suppkey = supplier_no
          and total_revenue = (select max(total_revenue) from revenue0)
        order by s_suppkey""",
    "q16": """
        select p_brand, p_type, p_size, count(distinct ps_suppkey) as supplier_cnt
        from partsupp, part
        where p_partkey = ps_partkey and p_brand <> 'Brand#45'
          and p_type not like 'MEDIUM POLISHED%'
          and p_size in (49, 14, 23, 45, 19, 3, 36, 9)
          and ps_suppkey not in (select s_suppkey from supplier
                                 where s_comment like '%Customer%Complaints%')
        group by p_brand, p_type, p_size
        order by supplier_cnt desc, p_brand, p_type, p_size""",
    "q17": """
        select sum(l_extendedprice) / 7.0 as avg_yearly
        from lineitem, part
        where p_partkey = l_partkey and p_brand = 'Brand#23' and p_container = 'MED BOX'
          and l_quantity < (select 0.2 * avg(l_quantity) from lineitem
                            where l_partkey = p_partkey)""",
    "q18": """
        select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity)
        from customer, orders, lineitem
        where o_orderkey in (select l_orderkey from lineitem group by l_orderkey
                             having sum(l_quantity) > 300)
          and c_custkey = o_custkey and o_orderkey = l_orderkey
        group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
        order by o_totalprice desc, o_orderdate
        limit 100""",
    "q19": """
        select sum(l_extendedprice * (1 - l_discount)) as revenue
        from lineitem, part
        where (p_partkey = l_partkey and p_brand = 'Brand#12'
            and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG')
            and l_quantity >= 1 and l_quantity <= 1 + 10 and p_size between 1 and 5
            and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')
          or (p_partkey = l_partkey and p_brand = 'Brand#23'
            and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK')
            and l_quantity >= 10 and l_quantity <= 10 + 10 and p_size between 1 and 10
            and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')
          or (p_partkey = l_partkey and p_brand = 'Brand#34'
            and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG')
            and l_quantity >= 20 and l_quantity <= 20 + 10 and p_size between 1 and 15
            and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')""",
    "q20": """
        select s_name, s_address
        from supplier, nation
        where s_suppkey in (
            select ps_suppkey from partsupp
            where ps_partkey in (select p_partkey from part where p_name like 'forest%')
              and ps_availqty > (
                select 0.5 * sum(l_quantity) from lineitem
                where l_partkey = ps_partkey and l_suppkey = ps_suppkey
                  and l_shipdate >= date('1994-01-01')
                  and l_shipdate < date('1994-01-01') + interval '1' year))
          and s_nationkey = n_nationkey and n_name = 'CANADA'
        order by s_name""",
    "q21": """
        select s_name, count(*) as numwait
        from supplier, lineitem l1, orders, nation
        where s_suppkey = l1.l_suppkey and o_orderkey = l1.l_orderkey
          and o_orderstatus = 'F' and l1.l_receiptdate > l1.l_commitdate
          and exists (select * from lineitem l2
                      where l2.l_orderkey = l1.l_orderkey and l2.l_suppkey <> l1.l_suppkey)
          and not exists (select * from lineitem l3
                          where l3.l_orderkey = l1.l_orderkey
                            and l3.l_suppkey <> l1.l_suppkey
                            and l3.l_receiptdate > l3.l_commitdate)
          and s_nationkey = n_nationkey and n_name = 'SAUDI ARABIA'
        group by s_name
        order by numwait desc, s_name
        limit 100""",
    "q22": """
        select cntrycode, count(*) as numcust, sum(c_acctbal) as totacctbal
        from (
          select substring(c_phone from 1 for 2) as cntrycode, c_acctbal
          from customer
          where substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17')
            and c_acctbal > (
              select avg(c_acctbal) from customer
              where c_acctbal > 0.00
                and substring(c_phone from 1 for 2)
                  in ('13', '31', '23', '29', '30', '18', '17'))
            and not exists (select * from orders where o_custkey = c_custkey)) as custsale
        group by cntrycode
        order by cntrycode""",
}.items()}


def register_tables(spark: SparkSession, tables: Mapping[str, str]) -> None:
    """Register the eight TPC-H tables (table name -> parquet path) as temporary views of
    ``spark`` under their own names, as a user's session would have them."""
    missing = [t for t in TABLES if t not in tables]
    unknown = sorted(set(tables) - set(TABLES))
    if missing or unknown:
        raise ValueError(f"TPC-H tables: missing {missing}, unknown {unknown}")
    for table in TABLES:
        spark.read.parquet(tables[table]).createOrReplaceTempView(table)


_NAME_LINE = re.compile(r"\s*--\s*name\s*:(.*)", re.IGNORECASE)
_VALID_NAME = re.compile(r"[\w.\-]+")


class _Segment(NamedTuple):
    """One ``;``-delimited piece ``sql[start:end]`` of a SQL file; ``code_start`` is its first
    character that is neither blank nor comment (None when it has none)."""

    start: int
    end: int
    code_start: int | None


def _split_segments(sql: str, path: Path) -> list[_Segment]:
    """Split ``sql`` on every ``;`` outside quotes ('', "", ``) and ``--`` and ``/* */``
    comments (nested, as Spark reads them); inside quotes a backslash escapes, as in Spark."""
    segments: list[_Segment] = []
    start, code_start, i = 0, None, 0
    while i < len(sql):
        char = sql[i]
        if sql.startswith("--", i):
            i = _line_comment_end(sql, i)
        elif sql.startswith("/*", i):
            i = _block_comment_end(sql, i, path)
        elif char == ";":
            segments.append(_Segment(start, i, code_start))
            start, code_start, i = i + 1, None, i + 1
        else:
            if code_start is None and not char.isspace():
                code_start = i
            i = _quote_end(sql, i, path) if char in "'\"`" else i + 1
    segments.append(_Segment(start, len(sql), code_start))
    return segments


def _line_comment_end(sql: str, i: int) -> int:
    end = sql.find("\n", i)
    return len(sql) if end < 0 else end + 1


def _block_comment_end(sql: str, i: int, path: Path) -> int:
    depth, j = 0, i
    while j < len(sql):
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise ValueError(f"{path}: comment opened at line {_line_of(sql, i)} is never closed")


def _quote_end(sql: str, i: int, path: Path) -> int:
    quote, j = sql[i], i + 1
    while j < len(sql):
        if sql[j] == "\\" and quote != "`":
            j += 2
        elif sql[j] == quote:
            return j + 1
        else:
            j += 1
    raise ValueError(f"{path}: {quote} opened at line {_line_of(sql, i)} is never closed")


def _line_of(sql: str, index: int) -> int:
    return sql.count("\n", 0, index) + 1


def _declared_name(sql: str, segment: _Segment, path: Path) -> str | None:
    """The X of a ``-- name: X`` line directly above the segment's statement, if any; a name
    line anywhere else before it is an error rather than ignored."""
    lead_end = segment.end if segment.code_start is None else segment.code_start
    lead_lines = sql[segment.start:lead_end].split("\n")
    first_line = _line_of(sql, segment.start)
    name = None
    for offset, text in enumerate(lead_lines):
        match = _NAME_LINE.fullmatch(text)
        if match is None:
            continue
        line = first_line + offset
        if segment.code_start is None or offset != len(lead_lines) - 2:
            raise ValueError(f"{path}: line {line}: a '-- name:' line must be directly above "
                             "its statement")
        name = match.group(1).strip()
        if not _VALID_NAME.fullmatch(name):
            raise ValueError(f"{path}: line {line}: statement name {name!r} is not letters, "
                             "digits, '_', '.' or '-'")
    return name


def _read_sql(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read SQL file ({error})") from None


def statements_from_file(path: str | Path) -> list[tuple[str, str]]:
    """The statements of a SQL file as ``(name, sql)`` in file order: split on ``;`` outside
    quotes and comments, each named by a ``-- name: X`` line directly above it or else
    ``<file stem>#<i>`` (i counting statements from 0). Blanks and comments after the last
    ``;`` are allowed; an empty statement anywhere else, an empty file, an unclosed quote or
    comment, a misplaced or bad name and a repeated name are each a one-line ValueError."""
    path = Path(path)
    sql = _read_sql(path)
    segments = _split_segments(sql, path)
    if segments[-1].code_start is None:
        _declared_name(sql, segments.pop(), path)  # a name line with no statement after it
    statements: list[tuple[str, str]] = []
    for index, segment in enumerate(segments):
        if segment.code_start is None:
            raise ValueError(f"{path}: statement #{index} (ending at line "
                             f"{_line_of(sql, segment.end)}) is empty")
        name = _declared_name(sql, segment, path) or f"{path.stem}#{index}"
        if name in dict(statements):
            raise ValueError(f"{path}: statement #{index}: name {name!r} is used twice")
        statements.append((name, sql[segment.code_start:segment.end].rstrip()))
    if not statements:
        raise ValueError(f"{path}: no SQL statement in the file")
    return statements
