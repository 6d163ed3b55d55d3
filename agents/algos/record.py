"""What every training algorithm shares: the run it is given, seeding, Ctrl-C, the record
written with the model and the learning-curve PNG.

A record names the exact ``python train_agents.py train ...`` command that reproduces the model
(``command``), the seed, the merged configuration entry, the machine, the wall time and whether
Ctrl-C stopped the run early (``interrupted``: the model is then the best found so far).
"""

from __future__ import annotations

import json
import platform
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from agents.config import CONFIG_DIR, TrainConfig


@dataclass
class TrainRun:
    """One ``train`` invocation: the merged config entry, the seed, the run's folder (the model
    and its record go there), the command that reproduces it and where torch runs."""

    env_id: str
    config: TrainConfig
    seed: int
    run_dir: Path
    command: str
    device: str = "cpu"
    console: Any = None
    #: a sweep runner for MaskablePPO's warm-up labels (``--engine spark``); None: in-process
    collect: Any = None
    started: float = field(default_factory=time.perf_counter)

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)
        else:
            print(text, flush=True)


@dataclass
class TrainResult:
    model_path: Path
    #: the budget spent: PPO timesteps, CMA-ES generations or listwise gradient steps
    done: int
    interrupted: bool = False


def seed_all(seed: int) -> None:
    """Python's, numpy's global and (when loaded) torch's generators; algorithms still pass
    ``seed`` to their own generators, this only covers code that draws from the globals."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


class Stop:
    """Set when Ctrl-C ended a loop early (see :func:`interruptible`)."""

    def __init__(self) -> None:
        self.interrupted = False


@contextmanager
def interruptible() -> Iterator[Stop]:
    """``with interruptible() as stop:`` a training loop; Ctrl-C ends the block, not the program,
    and sets ``stop.interrupted`` so that the caller saves what it has so far."""
    stop = Stop()
    try:
        yield stop
    except KeyboardInterrupt:
        stop.interrupted = True


def ignore_sigint() -> None:
    """Worker-process initializer: Ctrl-C reaches the whole process group; the parent stops
    and saves, the workers stay quiet until it closes them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def trained_on() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    return (f"{platform.node()} ({platform.processor() or platform.machine()}), Python "
            f"{platform.python_version()}; commit {commit or 'unknown'}")


def base_record(run: TrainRun, interrupted: bool) -> dict[str, Any]:
    """The fields every algorithm's record starts with."""
    config = run.config
    return {"env_id": run.env_id, "algo": config.algo, "command": run.command, "seed": run.seed,
            "interrupted": interrupted,
            "config": f"{CONFIG_DIR.parent.name}/{CONFIG_DIR.name}/{config.problem}.yaml",
            "config_entry": config.entry,
            "wall_s": round(time.perf_counter() - run.started, 1),
            "trained_on": trained_on()}


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class Panel:
    """One plot of a learning curve: ``lines`` maps a key of the curve's points to its legend;
    ``reference`` draws a horizontal line (e.g. 1.0: the heuristic the agent is divided by)."""

    lines: dict[str, str]
    ylabel: str
    title: str
    reference: float | None = None


def draw_curve(points: Sequence[dict[str, Any]], x: str, xlabel: str, panels: Sequence[Panel],
               path: Path) -> Path:
    """The learning-curve PNG: one plot per panel, against ``points[i][x]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    xs = [point[x] for point in points]
    for axis, panel in zip(axes[0], panels, strict=True):
        for key, label in panel.lines.items():
            axis.plot(xs, [point[key] for point in points], marker="." if len(xs) < 40 else None,
                      label=label)
        if panel.reference is not None:
            axis.axhline(panel.reference, color="grey", linewidth=0.8, linestyle="--")
        axis.set(xlabel=xlabel, ylabel=panel.ylabel, title=panel.title)
        if len(panel.lines) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def front_door_command(env_id: str, options: Sequence[str] = ()) -> str:
    return shlex.join(["python", "train_agents.py", "train", "--env", env_id, *options])


def moved_command(prog: str, problem: str, algo: str, argv: Sequence[str],
                  old_defaults: dict[str, str] | None = None) -> NoReturn:
    """An old trainer's command line: print, in one line on stderr, the ``train_agents.py
    train`` command that does the same (each ``--flag VALUE`` becomes ``--set
    <algo>.flag=VALUE``, comma lists of list settings become YAML lists; ``old_defaults``:
    the old flags' defaults that differ from the entry's, set unless given) and exit 2."""
    import dataclasses

    from agents.config import settings_class
    from envs import PROBLEMS

    env_id = PROBLEMS[problem].env_id
    fields = {f.name: f for f in dataclasses.fields(settings_class(algo, env_id, prog))}
    options: list[str] = []
    given = {word[2:].partition("=")[0] for word in argv if word.startswith("--")}
    words = list(argv) + [word for flag, value in (old_defaults or {}).items()
                          if flag not in given for word in (f"--{flag}", value)]
    while words:
        word = words.pop(0)
        if word in ("-h", "--help") or not word.startswith("--"):
            continue
        name, equals, value = word[2:].partition("=")
        if not equals:
            value = words.pop(0) if words and not words[0].startswith("--") else "true"
        key = name.replace("-", "_")
        if key == "seed":
            options += ["--seed", value]
        elif key != "out":  # the front door names the file inside its --out folder
            if key in fields and "tuple" in str(fields[key].type):
                value = f"[{value}]"
            options += ["--set", f"{algo}.{key}={value}"]
    print(f"{prog} is replaced by: {front_door_command(env_id, options)}", file=sys.stderr)
    raise SystemExit(2)
