"""benchmarks.report's targets: op semantics, and no data or a reason never passes."""

import math

import pytest

from benchmarks.report import Missing, failed_rows_reason, print_targets, target


@pytest.mark.parametrize(("value", "threshold", "op", "met"), [
    (1.0, 1.0, "<=", True), (1.0, 1.0, "<", False), (0.99, 1.0, "<", True),
    (1.0, 1.0, ">=", True), (1.0, 1.0, ">", False), (1.01, 1.0, ">", True),
    (2.0, 1.0, "<=", False), (0.5, 1.0, ">=", False),
    (1.08, 0.10, "abs(value-1) <=", True), (0.85, 0.10, "abs(value-1) <=", False),
    (1.2, 0.10, "abs(value-1) <=", False),
])
def test_op_semantics(value: float, threshold: float, op: str, met: bool) -> None:
    entry = target(value, threshold, op)
    assert entry == {"value": value, "threshold": threshold, "op": op, "met": met}


@pytest.mark.parametrize("value", [None, math.nan])
@pytest.mark.parametrize("op", [">=", "<="])
def test_no_data_fails_with_its_reason(value: float | None, op: str) -> None:
    entry = target(value, 1.0, op)
    assert entry["met"] is False
    assert entry["reason"] == "no data"


def test_a_reason_fails_a_target_whose_value_would_pass() -> None:
    entry = target(0.01, 0.15, "<=", "1 of 4 rows failed")
    assert entry["met"] is False and entry["value"] == 0.01
    assert entry["reason"] == "1 of 4 rows failed"


def test_unknown_op_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'=<'"):
        target(1.0, 1.0, "=<")


def test_failed_rows_reason() -> None:
    assert failed_rows_reason(0, 5) is None
    assert failed_rows_reason(2, 5) == "2 of 5 rows failed"


def test_missing_prints_one_line_each_and_keeps_entries(capsys) -> None:
    missing = Missing()
    missing.add("agent", "models/x.zip not found")
    missing.add("instance 3", "not proven")
    assert capsys.readouterr().err.splitlines() == [
        "MISSING agent: models/x.zip not found", "MISSING instance 3: not proven"]
    assert missing.entries == [{"what": "agent", "reason": "models/x.zip not found"},
                               {"what": "instance 3", "reason": "not proven"}]


def test_print_targets_shows_missed_with_reason(capsys) -> None:
    print_targets({"a": target(None, 1.0, "<=", "no agent rows"), "b": target(0.5, 1.0, "<=")})
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  a: none <= 1.0 -> MISSED (no agent rows)", "  b: 0.5 <= 1.0 -> met"]
