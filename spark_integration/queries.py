"""TPC-H queries as DAGs of materialised Spark SQL nodes.

Each :class:`QueryDag` splits one TPC-H query along its plan: leaf nodes scan, filter and
project (or pre-aggregate) base tables, inner nodes join or aggregate their parents' results,
and the single sink node produces the query's answer. Every node's SQL names base tables and
parent results as ``{table}`` / ``{node}`` placeholders that :func:`node_dataframe` fills
through ``SparkSession.sql(..., **frames)``. ``reference_sql`` is the query's single statement in
:data:`spark_integration.tpch_sql.STATEMENTS` (TPC-H validation parameters) that the DAG's
answer is checked against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

from spark_integration.tpch import TABLES
from spark_integration.tpch_sql import STATEMENTS

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class QueryNode:
    """One materialised intermediate result of a query."""

    name: str
    sql: str
    parents: tuple[str, ...] = ()

    def tables(self) -> tuple[str, ...]:
        """Base tables this node scans."""
        return tuple(sorted({p for p in _PLACEHOLDER.findall(self.sql) if p in TABLES}))


@dataclass(frozen=True)
class QueryDag:
    """A query as a DAG of nodes in topological order; the last node is the answer."""

    name: str
    nodes: tuple[QueryNode, ...]
    reference_sql: str
    ordered: bool = True
    by_name: dict[str, QueryNode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, QueryNode] = {}
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"query {self.name}: duplicate node {node.name!r}")
            for parent in node.parents:
                if parent not in seen:
                    raise ValueError(f"query {self.name}: node {node.name!r} has parent "
                                     f"{parent!r} that is not an earlier node")
            refs = set(_PLACEHOLDER.findall(node.sql))
            unknown = refs - set(TABLES) - set(node.parents)
            if unknown:
                raise ValueError(f"query {self.name}: node {node.name!r} references "
                                 f"{sorted(unknown)}, neither a table nor a parent")
            if node.name in TABLES:
                raise ValueError(f"query {self.name}: node name {node.name!r} is a table name")
            seen[node.name] = node
        if not self.nodes:
            raise ValueError(f"query {self.name}: no nodes")
        object.__setattr__(self, "by_name", seen)

    @property
    def sink(self) -> QueryNode:
        return self.nodes[-1]

    def children(self, name: str) -> list[str]:
        return [n.name for n in self.nodes if name in n.parents]


def node_dataframe(session: SparkSession, node: QueryNode, tables: dict[str, str],
                   parent_paths: dict[str, str]) -> DataFrame:
    """The node's result as a (lazy) DataFrame over base tables and materialised parents."""
    frames: dict[str, DataFrame] = {}
    for ref in set(_PLACEHOLDER.findall(node.sql)):
        path = parent_paths.get(ref) if ref in node.parents else tables.get(ref)
        if path is None:
            raise KeyError(f"node {node.name!r}: no input path for {ref!r}")
        frames[ref] = session.read.parquet(path)
    return session.sql(node.sql, **frames)


def _q(name: str, reference: str, *nodes: tuple, ordered: bool = True) -> QueryDag:
    return QueryDag(name, tuple(QueryNode(n[0], n[1], tuple(n[2]) if len(n) > 2 else ())
                                for n in nodes), reference, ordered)


REV = "l_extendedprice * (1 - l_discount)"

QUERIES: dict[str, QueryDag] = {q.name: q for q in [
    _q("q1", STATEMENTS["q1"],
       ("agg", f"""select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
          sum(l_extendedprice) as sum_base_price, sum({REV}) as sum_disc_price,
          sum({REV} * (1 + l_tax)) as sum_charge, sum(l_discount) as sum_disc,
          count(*) as count_order
        from {{lineitem}} where l_shipdate <= date '1998-09-02'
        group by l_returnflag, l_linestatus"""),
       ("report", """select l_returnflag, l_linestatus, sum_qty, sum_base_price,
          sum_disc_price, sum_charge,
          cast(sum_qty / count_order as decimal(19, 6)) as avg_qty,
          cast(sum_base_price / count_order as decimal(19, 6)) as avg_price,
          cast(sum_disc / count_order as decimal(19, 6)) as avg_disc,
          count_order from {agg} order by l_returnflag, l_linestatus""", ["agg"])),
    _q("q3", STATEMENTS["q3"],
       ("cust", "select c_custkey from {customer} where c_mktsegment = 'BUILDING'"),
       ("ord", """select o_orderkey, o_custkey, o_orderdate, o_shippriority from {orders}
          where o_orderdate < date '1995-03-15'"""),
       ("line", f"""select l_orderkey, {REV} as rev from {{lineitem}}
          where l_shipdate > date '1995-03-15'"""),
       ("cust_ord", """select o_orderkey, o_orderdate, o_shippriority
          from {ord} join {cust} on c_custkey = o_custkey""", ["cust", "ord"]),
       ("top", """select l_orderkey, sum(rev) as revenue, o_orderdate, o_shippriority
          from {line} join {cust_ord} on l_orderkey = o_orderkey
          group by l_orderkey, o_orderdate, o_shippriority
          order by revenue desc, o_orderdate limit 10""", ["line", "cust_ord"])),
    _q("q4", STATEMENTS["q4"],
       ("ord", """select o_orderkey, o_orderpriority from {orders}
          where o_orderdate >= date '1993-07-01' and o_orderdate < date '1993-10-01'"""),
       ("late", """select distinct l_orderkey from {lineitem}
          where l_commitdate < l_receiptdate"""),
       ("count", """select o_orderpriority, count(*) as order_count
          from {ord} left semi join {late} on l_orderkey = o_orderkey
          group by o_orderpriority order by o_orderpriority""", ["ord", "late"])),
    _q("q5", STATEMENTS["q5"],
       ("asia", """select n_nationkey, n_name from {nation} join {region}
          on n_regionkey = r_regionkey where r_name = 'ASIA'"""),
       ("ord", """select o_orderkey, o_custkey from {orders}
          where o_orderdate >= date '1994-01-01' and o_orderdate < date '1995-01-01'"""),
       ("sup", """select s_suppkey, s_nationkey, n_name from {supplier}
          join {asia} on s_nationkey = n_nationkey""", ["asia"]),
       ("cust", """select c_custkey, c_nationkey from {customer}
          join {asia} on c_nationkey = n_nationkey""", ["asia"]),
       ("cust_ord", """select o_orderkey, c_nationkey from {ord}
          join {cust} on c_custkey = o_custkey""", ["ord", "cust"]),
       ("revenue", f"""select n_name, sum({REV}) as revenue
          from {{lineitem}} join {{cust_ord}} on l_orderkey = o_orderkey
          join {{sup}} on l_suppkey = s_suppkey and c_nationkey = s_nationkey
          group by n_name order by revenue desc""", ["cust_ord", "sup"])),
    _q("q6", STATEMENTS["q6"],
       ("revenue", """select sum(l_extendedprice * l_discount) as revenue from {lineitem}
          where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01'
            and l_discount between 0.05 and 0.07 and l_quantity < 24""")),
    _q("q7", STATEMENTS["q7"],
       ("nat", """select n_nationkey, n_name from {nation}
          where n_name in ('FRANCE', 'GERMANY')"""),
       ("sup", """select s_suppkey, n_name as supp_nation from {supplier}
          join {nat} on s_nationkey = n_nationkey""", ["nat"]),
       ("cust", """select c_custkey, n_name as cust_nation from {customer}
          join {nat} on c_nationkey = n_nationkey""", ["nat"]),
       ("line", f"""select l_orderkey, supp_nation, extract(year from l_shipdate) as l_year,
            {REV} as volume
          from {{lineitem}} join {{sup}} on s_suppkey = l_suppkey
          where l_shipdate between date '1995-01-01' and date '1996-12-31'""", ["sup"]),
       ("ord", """select o_orderkey, cust_nation from {orders}
          join {cust} on c_custkey = o_custkey""", ["cust"]),
       ("revenue", """select supp_nation, cust_nation, l_year, sum(volume) as revenue
          from {line} join {ord} on o_orderkey = l_orderkey
          where supp_nation <> cust_nation
          group by supp_nation, cust_nation, l_year
          order by supp_nation, cust_nation, l_year""", ["line", "ord"])),
    _q("q8", STATEMENTS["q8"],
       ("part_f", "select p_partkey from {part} where p_type = 'ECONOMY ANODIZED STEEL'"),
       ("cust", """select c_custkey from {customer}
          join {nation} on c_nationkey = n_nationkey
          join {region} on n_regionkey = r_regionkey where r_name = 'AMERICA'"""),
       ("sup", """select s_suppkey, n_name as nation from {supplier}
          join {nation} on s_nationkey = n_nationkey"""),
       ("ord", """select o_orderkey, extract(year from o_orderdate) as o_year from {orders}
          join {cust} on o_custkey = c_custkey
          where o_orderdate between date '1995-01-01' and date '1996-12-31'""", ["cust"]),
       ("line", f"""select l_orderkey, l_suppkey, {REV} as volume from {{lineitem}}
          join {{part_f}} on p_partkey = l_partkey""", ["part_f"]),
       ("share", """select o_year,
            sum(case when nation = 'BRAZIL' then volume else 0 end) / sum(volume) as mkt_share
          from {line} join {ord} on l_orderkey = o_orderkey
          join {sup} on s_suppkey = l_suppkey
          group by o_year order by o_year""", ["line", "ord", "sup"])),
    _q("q9", STATEMENTS["q9"],
       ("part_f", "select p_partkey from {part} where p_name like '%green%'"),
       ("sup", """select s_suppkey, n_name as nation from {supplier}
          join {nation} on s_nationkey = n_nationkey"""),
       ("ps", """select ps_partkey, ps_suppkey, ps_supplycost from {partsupp}
          join {part_f} on ps_partkey = p_partkey""", ["part_f"]),
       ("line", f"""select l_orderkey, l_partkey, l_suppkey, l_quantity, {REV} as rev
          from {{lineitem}} join {{part_f}} on p_partkey = l_partkey""", ["part_f"]),
       ("profit", """select l_orderkey, nation, rev - ps_supplycost * l_quantity as amount
          from {line} join {ps} on ps_suppkey = l_suppkey and ps_partkey = l_partkey
          join {sup} on s_suppkey = l_suppkey""", ["line", "ps", "sup"]),
       ("report", """select nation, extract(year from o_orderdate) as o_year,
            sum(amount) as sum_profit
          from {profit} join {orders} on o_orderkey = l_orderkey
          group by nation, o_year order by nation, o_year desc""", ["profit"])),
    _q("q10", STATEMENTS["q10"],
       ("ord", """select o_orderkey, o_custkey from {orders}
          where o_orderdate >= date '1993-10-01' and o_orderdate < date '1994-01-01'"""),
       ("line", f"""select l_orderkey, {REV} as rev from {{lineitem}}
          where l_returnflag = 'R'"""),
       ("by_cust", """select o_custkey, sum(rev) as revenue
          from {line} join {ord} on l_orderkey = o_orderkey group by o_custkey""",
        ["ord", "line"]),
       ("top", """select c_custkey, c_name, revenue, c_acctbal, n_name, c_address, c_phone,
            c_comment
          from {by_cust} join {customer} on c_custkey = o_custkey
          join {nation} on c_nationkey = n_nationkey
          order by revenue desc limit 20""", ["by_cust"])),
    _q("q11", STATEMENTS["q11"],
       ("sup", """select s_suppkey from {supplier} join {nation} on s_nationkey = n_nationkey
          where n_name = 'GERMANY'"""),
       ("value", """select ps_partkey, sum(ps_supplycost * ps_availqty) as value
          from {partsupp} join {sup} on ps_suppkey = s_suppkey group by ps_partkey""",
        ["sup"]),
       ("threshold", "select sum(value) * 0.0001 as threshold from {value}", ["value"]),
       ("report", """select ps_partkey, value from {value} cross join {threshold}
          where value > threshold order by value desc""", ["value", "threshold"])),
    _q("q12", STATEMENTS["q12"],
       ("line", """select l_orderkey, l_shipmode from {lineitem}
          where l_shipmode in ('MAIL', 'SHIP') and l_commitdate < l_receiptdate
            and l_shipdate < l_commitdate and l_receiptdate >= date '1994-01-01'
            and l_receiptdate < date '1995-01-01'"""),
       ("ord", """select o_orderkey,
            o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' as high
          from {orders}"""),
       ("count", """select l_shipmode, sum(case when high then 1 else 0 end) as high_line_count,
            sum(case when high then 0 else 1 end) as low_line_count
          from {line} join {ord} on o_orderkey = l_orderkey
          group by l_shipmode order by l_shipmode""", ["line", "ord"])),
    _q("q13", STATEMENTS["q13"],
       ("ord", """select o_custkey, count(*) as n_orders from {orders}
          where o_comment not like '%special%requests%' group by o_custkey"""),
       ("cust", """select c_custkey, coalesce(n_orders, 0) as c_count
          from {customer} left outer join {ord} on c_custkey = o_custkey""", ["ord"]),
       ("dist", """select c_count, count(*) as custdist from {cust}
          group by c_count order by custdist desc, c_count desc""", ["cust"])),
    _q("q14", STATEMENTS["q14"],
       ("line", f"""select l_partkey, {REV} as rev from {{lineitem}}
          where l_shipdate >= date '1995-09-01' and l_shipdate < date '1995-10-01'"""),
       ("part_f", "select p_partkey, p_type like 'PROMO%' as promo from {part}"),
       ("share", """select 100.00 * sum(case when promo then rev else 0 end) / sum(rev)
            as promo_revenue
          from {line} join {part_f} on l_partkey = p_partkey""", ["line", "part_f"])),
    _q("q17", STATEMENTS["q17"],
       ("part_f", """select p_partkey from {part}
          where p_brand = 'Brand#23' and p_container = 'MED BOX'"""),
       ("line", """select l_partkey, l_quantity, l_extendedprice from {lineitem}
          join {part_f} on p_partkey = l_partkey""", ["part_f"]),
       ("limit", """select l_partkey as partkey, 0.2 * avg(l_quantity) as max_quantity
          from {line} group by l_partkey""", ["line"]),
       ("avg_yearly", """select sum(l_extendedprice) / 7.0 as avg_yearly
          from {line} join {limit} on l_partkey = partkey
          where l_quantity < max_quantity""", ["line", "limit"])),
    _q("q18", STATEMENTS["q18"],
       ("big", """select l_orderkey, sum(l_quantity) as quantity from {lineitem}
          group by l_orderkey having sum(l_quantity) > 300"""),
       ("ord", """select o_orderkey, o_custkey, o_orderdate, o_totalprice, quantity
          from {orders} join {big} on o_orderkey = l_orderkey""", ["big"]),
       ("top", """select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, quantity
          from {ord} join {customer} on c_custkey = o_custkey
          order by o_totalprice desc, o_orderdate limit 100""", ["ord"])),
    _q("q19", STATEMENTS["q19"],
       ("line", f"""select l_partkey, l_quantity, {REV} as rev from {{lineitem}}
          where l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON'
            and l_quantity between 1 and 30"""),
       ("part_f", """select p_partkey, p_brand, p_container, p_size from {part}
          where p_brand in ('Brand#12', 'Brand#23', 'Brand#34') and p_size between 1 and 15"""),
       ("revenue", """select sum(rev) as revenue from {line} join {part_f} on p_partkey = l_partkey
          where (p_brand = 'Brand#12'
              and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG')
              and l_quantity between 1 and 11 and p_size between 1 and 5)
            or (p_brand = 'Brand#23'
              and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK')
              and l_quantity between 10 and 20 and p_size between 1 and 10)
            or (p_brand = 'Brand#34'
              and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG')
              and l_quantity between 20 and 30 and p_size between 1 and 15)""",
        ["line", "part_f"])),
]}
