"""Every broad ``except`` in the product is a documented decision, not a swallowed error.

A handler for ``Exception``, ``BaseException`` or everything (bare ``except``) must say why on
its own line with ``# deliberate: <reason>`` (cleanup that re-raises, one request isolated from
the others, a CLI's last-resort one-line error).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["envs", "heuristics", "agents", "runtimes", "spark_integration", "device_bridge",
           "benchmarks", "scripts", "train_agents.py"]
BROAD = {"Exception", "BaseException"}


def _broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(name, ast.Name) and name.id in BROAD for name in names)


def _undocumented(path: Path, root: Path = ROOT) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    return [f"{path.relative_to(root)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ExceptHandler) and _broad(node)
            and "# deliberate:" not in lines[node.lineno - 1]]


def _product_files() -> list[Path]:
    files = []
    for entry in PRODUCT:
        path = ROOT / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def test_every_broad_except_is_marked_deliberate():
    offenders = [line for path in _product_files() for line in _undocumented(path)]
    assert not offenders, "broad except without '# deliberate: <reason>':\n" + "\n".join(offenders)


def test_the_check_sees_an_unmarked_handler(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("try:\n    pass\nexcept Exception:\n    pass\n"
                      "try:\n    pass\n"
                      "except (ValueError, BaseException):  # deliberate: cleanup\n    raise\n")
    assert _undocumented(sample, tmp_path) == ["sample.py:3: except Exception:"]
