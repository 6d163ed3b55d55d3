"""``python -m benchmarks``: a failing benchmark (an exception or a nonzero SystemExit such as
a missing model's refusal) is recorded, the later ones still run, the summary lists each
failure in one line, and KeyboardInterrupt still stops everything."""

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.__main__ import main

BENCHMARKS = {
    "refuses": 'raise SystemExit("MISSING model: models/x.zip not found")',
    "exits_two": "raise SystemExit(2)",
    "raises": 'raise ValueError("bad row\\nsecond line")',
    "finishes": "pass",
    "exits_zero": "raise SystemExit(0)",
    "interrupted": "raise KeyboardInterrupt",
}


@pytest.fixture
def fake_benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package of small benchmark modules; each appends its name and argv to ran.txt."""
    package = tmp_path / "fake_benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    log = tmp_path / "ran.txt"
    for name, body in BENCHMARKS.items():
        (package / f"{name}.py").write_text(textwrap.dedent(f"""
            def main(argv):
                with open({str(log)!r}, "a") as handle:
                    handle.write("{name} " + " ".join(argv) + "\\n")
                {body}
            """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield log
    for module in [m for m in sys.modules if m.split(".")[0] == "fake_benchmarks"]:
        del sys.modules[module]  # the next test's package lives in another folder


def modules(*names: str) -> list[str]:
    return [f"fake_benchmarks.{name}" for name in names]


def test_failures_are_recorded_and_later_benchmarks_run(fake_benchmarks: Path, capsys) -> None:
    code = main(["--quick"], modules("refuses", "exits_two", "raises", "finishes",
                                     "exits_zero"))
    assert code == 1
    assert fake_benchmarks.read_text().splitlines() == [
        "refuses --quick", "exits_two --quick", "raises --quick", "finishes --quick",
        "exits_zero --quick"]
    summary = capsys.readouterr().err.split("3 of 5 benchmarks failed:\n")[1].splitlines()
    assert summary == [
        "FAILED fake_benchmarks.refuses: MISSING model: models/x.zip not found",
        "FAILED fake_benchmarks.exits_two: exit 2",
        "FAILED fake_benchmarks.raises: ValueError: bad row"]


def test_all_passing_exits_zero(fake_benchmarks: Path, capsys) -> None:
    assert main([], modules("finishes", "exits_zero")) == 0
    assert "FAILED" not in capsys.readouterr().err


def test_a_module_that_cannot_be_imported_is_a_failure(fake_benchmarks: Path, capsys) -> None:
    assert main([], ["fake_benchmarks.absent", *modules("finishes")]) == 1
    assert fake_benchmarks.read_text().splitlines() == ["finishes "]
    assert "FAILED fake_benchmarks.absent: ModuleNotFoundError" in capsys.readouterr().err


def test_keyboard_interrupt_stops_everything(fake_benchmarks: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        main([], modules("interrupted", "finishes"))
    assert fake_benchmarks.read_text().splitlines() == ["interrupted "]
