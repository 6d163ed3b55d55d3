"""The wheel works outside the repository (docs/install.md).

Built from a copy of the sources, installed with ``pip install --no-deps --target DIR`` and run
from another folder with ``python -S`` and ``PYTHONPATH=DIR:<venv site-packages>``: ``-S``
skips the ``.pth`` files, so the editable install's finder cannot put the checkout back on the
path. Every env is made and stepped, every shipped agent loads from DIR, ``compare`` plays the
shipped agent, both bridges find their shipped files in DIR and the device bridge serves a run,
and nothing is opened or listed inside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "envs" / "_shipped"
COMPARE_ENV = "pipesched/HeteroPipeline-v0"  # the quickest compare (~6 s of CPU)
#: the learning-curve plots stay out of the wheel: nothing reads them at run time
NOT_SHIPPED_SUFFIXES = (".png",)
MAX_WHEEL_BYTES = 4_000_000

pytestmark = pytest.mark.slow

CHECK = r'''
import json
import os
import sys
from pathlib import Path

out, compare_env = Path(sys.argv[1]).resolve(), sys.argv[2]
touched = []


def audit(event, args):
    if event in ("open", "os.listdir", "os.scandir") and isinstance(args[0], (str, bytes)):
        touched.append(os.fsdecode(args[0]))


sys.addaudithook(audit)

import gymnasium
import numpy as np

import envs
from envs.shipped import DATA_DIR, MODELS_DIR

report = {"envs": {}, "agents": {}, "shipped_dirs": [str(MODELS_DIR), str(DATA_DIR)]}
for env_id in envs.ENV_IDS:
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    action = int(np.flatnonzero(env.unwrapped.action_masks())[0])
    report["envs"][env_id] = float(env.step(action)[1])
    env.close()

for problem in envs.PROBLEMS.values():
    path = MODELS_DIR / problem.agent
    agent = problem.load("agent_loader")(path)
    report["agents"][problem.name] = [str(path), type(agent).__name__]

from device_bridge.profiler import PROFILE_DIR
from envs.offload.profiles import available_models
from spark_integration.schedulers import agent_path, make_driver
from spark_integration.tracegen import default_trace_path, load_templates

report["bridge_files"] = [str(PROFILE_DIR), str(agent_path("local[2]")),
                          str(default_trace_path(0.1))]
report["offload_profiles"] = available_models()
report["spark_driver"] = make_driver("agent", executors=2, master="local[2]").name
report["trace_queries"] = sorted(load_templates(default_trace_path(0.1)))

from importlib.metadata import entry_points

(command,) = entry_points(group="console_scripts", name="pipesched")
report["compare_rc"] = command.load()(["compare", "--env", compare_env, "--instances", "2",
                                       "--out", str(out)])
report["modules"] = {name: getattr(module, "__file__", None) or next(iter(module.__path__))
                     for name, module in list(sys.modules.items())
                     if name.split(".")[0] in {"envs", "agents", "heuristics", "spark_integration",
                                               "device_bridge", "runtimes", "benchmarks",
                                               "train_agents"}}
report["touched"] = sorted({str(Path(p).resolve()) for p in touched})
(out / "report.json").write_text(json.dumps(report))
'''


def sources(into: Path) -> Path:
    """Copy what the build reads (pyproject's packages, modules and readme, and the folders
    ``envs/_shipped`` links to) into ``into``: building in the checkout would leave ``build/``
    there, under the feet of anything else running."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    names = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    names += [f"{module}.py" for module in setuptools["py-modules"]]
    names += ["pyproject.toml", config["project"]["readme"]]
    names += [str(link.resolve().relative_to(REPO)) for link in SHIPPED.iterdir()]
    for name in names:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / name)
    return into


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = sources(work / "src")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(work / "dist")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (work / "dist").glob("pipesched-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    target = wheel.parent.parent / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return target.resolve()


def isolated_env(target: Path) -> dict[str, str]:
    """Only the installed wheel and the venv's dependencies on the path (used with ``-S``)."""
    paths = dict.fromkeys([str(target), sysconfig.get_paths()["purelib"],
                           sysconfig.get_paths()["platlib"]])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONNOUSERSITE": "1"}


def test_wheel_carries_the_shipped_files_but_no_plots_or_caches(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"envs/_shipped/{path.relative_to(REPO)}"
                for link in SHIPPED.iterdir() for path in link.resolve().rglob("*")
                if path.is_file() and path.suffix not in NOT_SHIPPED_SUFFIXES}
    assert expected, "no shipped files found"
    assert {name for name in names if name.startswith("envs/_shipped/")} == expected
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert {name.split("/")[0] for name in names} >= {"envs", "agents", "heuristics",
                                                      "train_agents.py"}
    assert any(name.startswith("agents/configs/") for name in names)
    assert wheel.stat().st_size < MAX_WHEEL_BYTES, f"wheel is {wheel.stat().st_size} bytes"


def test_installed_wheel_runs_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-S", str(script), str(out), COMPARE_ENV],
                          cwd=tmp_path, env=isolated_env(installed), capture_output=True,
                          text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    inside = [Path(path).is_relative_to(installed) for path in (
        *report["shipped_dirs"], *report["bridge_files"],
        *(path for path, _ in report["agents"].values()), *report["modules"].values())]
    assert all(inside), report
    assert sorted(report["envs"]) == sorted(_env_ids().values())
    assert sorted(report["agents"]) == sorted(_env_ids())
    assert report["offload_profiles"] and report["trace_queries"]
    assert report["spark_driver"] == "agent"
    assert report["compare_rc"] == 0, done.stdout[-2000:]
    (result,) = [json.loads(path.read_text()) for path in out.glob("compare_*.json")]
    assert Path(result["models"]["agent_shipped"]).is_relative_to(installed)
    venv = Path(sys.prefix).resolve()
    from_checkout = [path for path in report["touched"] if Path(path).is_relative_to(REPO)
                     and not Path(path).is_relative_to(venv)]
    assert not from_checkout, from_checkout


def _env_ids() -> dict[str, str]:
    from envs import PROBLEMS

    return {problem.name: problem.env_id for problem in PROBLEMS.values()}


def test_installed_device_bridge_serves_a_run(installed: Path, tmp_path: Path) -> None:
    env = isolated_env(installed)
    token = tmp_path / "token.txt"
    token.write_text(os.urandom(32).hex() + "\n")
    token.chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-S", "-m", "device_bridge.server", "--models", "alexnet", "--host",
         "127.0.0.1", "--port", str(port), "--token-file", str(token), "--threads", "1",
         "--log-level", "WARNING"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline, seen = time.monotonic() + 90, []
        for line in server.stdout:
            if line.startswith("listening on") or time.monotonic() > deadline:
                break
            seen.append(line)
        assert line.startswith("listening on"), "".join(seen)[-2000:]
        done = subprocess.run(
            [sys.executable, "-S", "-m", "device_bridge.client", "--server", f"127.0.0.1:{port}",
             "--jobs", "alexnet:2", "--scheduler", "joint", "--bandwidth-mbps", "5.85",
             "--token-file", str(token), "--profile-repetitions", "2", "--json",
             str(tmp_path / "offload.json")], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=90)
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "offload.json").read_text())
    assert len(record["jobs"]) == 2 and record["makespan_s"] > 0, record
