"""The newcomer's walk: README's commands, shortened, as a new user would type them.

    .venv/bin/python scripts/newcomer_walk.py            # every step (several minutes on 2 cores)
    .venv/bin/python scripts/newcomer_walk.py --quick    # the steps make test runs (under a minute)

Each step must exit 0 and print no traceback; every ``--help`` must answer within 2 s (up to
three tries, the fastest counts, so a busy machine does not fail it); commands that start a JVM must
print a pipesched line before anything else. Prints one line per step and exits 1 when any
step fails.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from envs import PROBLEMS

OFFLOAD = PROBLEMS["offload"].env_id
PARAM_SERVER = PROBLEMS["param_server"].env_id
#: per problem, `train --env` options that make its shipped algorithm's run short
SHORT_TRAINING = {
    "offload": ["--budget", "256", "--set", "maskable_ppo.warmup_episodes=8",
                "--set", "maskable_ppo.validation_episodes=2"],
    "param_server": ["--set", "listwise.train=1", "--set", "listwise.validation=1",
                     "--set", "listwise.eval_every=5", "--budget", "10"],
    "spark_dag": ["--set", "cmaes.population=4", "--set", "cmaes.train_workloads=2",
                  "--set", "cmaes.validation_workloads=2", "--set", "cmaes.validate_every=1",
                  "--set", "cmaes.workers=1", "--budget", "2"],
    "hetero_pipeline": ["--set", "listwise.train=3", "--set", "listwise.validation=2",
                        "--set", "listwise.dagger=2", "--set", "listwise.eval_every=5",
                        "--budget", "10"],
}
ROOT = Path(__file__).resolve().parents[1]
HELP_LIMIT_S = 2.0
# what a JVM or library prints before the project when it is not kept quiet
NOISE = re.compile(r"^(WARNING:|Using Spark's|Setting default log level|\d\d/\d\d/\d\d \d\d:\d\d"
                   r":\d\d (WARN|INFO|ERROR)|.*Warning: )")
HELP_COMMANDS = [
    ["train_agents.py", "--help"],
    ["train_agents.py", "train", "--help"],
    ["-m", "spark_integration.run", "--help"],
    ["-m", "spark_integration.tracegen", "--help"],
    ["-m", "spark_integration.cluster", "--help"],
    ["-m", "device_bridge.server", "--help"],
    ["-m", "device_bridge.client", "--help"],
    ["-m", "device_bridge.profiler", "--help"],
    ["-m", "runtimes.ps", "--help"],
    ["-m", "runtimes.pipeline", "--help"],
]
GYM_SNIPPET = ("import gymnasium as gym\n"
               "import envs\n"
               "env = gym.make('pipesched/DnnOffload-v0', render_mode='ansi')\n"
               "env.reset(seed=0)\n"
               "print(env.render().splitlines()[0])\n")


@dataclass
class Step:
    name: str
    argv: list[str]
    quick: bool = False
    timeout_s: float = 600.0
    max_s: float | None = None
    project_first: bool = False
    needs: Callable[[Path], list[str]] | None = field(default=None, repr=False)


def steps(work: Path) -> list[Step]:
    run_dir = work / "run"
    model = run_dir / OFFLOAD.replace("/", "_") / "seed0" / "model.zip"
    helps = [Step(" ".join(argv), argv, quick=True, timeout_s=30, max_s=HELP_LIMIT_S)
             for argv in HELP_COMMANDS]
    return [
        *helps,
        Step("README snippet: gym.make after import envs", ["-c", GYM_SNIPPET], quick=True),
        Step(f"compare --env {PARAM_SERVER} (shipped model, 3 instances)",
             ["train_agents.py", "compare", "--env", PARAM_SERVER,
              "--instances", "3", "--out", str(work / "compare_ps")], quick=True),
        Step("evaluate the shipped offloading agent (2 episodes)",
             ["train_agents.py", "evaluate", "--env", OFFLOAD,
              "--model", f"models/{PROBLEMS['offload'].agent}", "--episodes", "2"], quick=True),
        *[Step(f"train --env {problem.env_id} ({problem.algo}, short)",
               ["train_agents.py", "train", "--env", problem.env_id, "--seed", "0",
                *SHORT_TRAINING[name], "--out", str(run_dir)])
          for name, problem in PROBLEMS.items()],
        *[Step(f"compare --env {problem.env_id} (its shipped agent, 2 instances)",
               ["train_agents.py", "compare", "--env", problem.env_id, "--instances", "2",
                "--out", str(work / f"compare_{name}")])
          for name, problem in PROBLEMS.items() if name not in ("offload", "param_server")],
        Step("evaluate the model just trained (2 episodes)",
             ["train_agents.py", "evaluate", "--env", OFFLOAD,
              "--model", str(model), "--episodes", "2"]),
        Step("compare offload_agent on DnnOffload (1 instance per class, CP-SAT optimum)",
             ["train_agents.py", "compare", "--model", f"agent=models/{PROBLEMS['offload'].agent}",
              "--instances", "1", "--out", str(work / "compare_offload")]),
        Step("spark_integration.run --scheduler fair (q3,q6, scale 0.1)",
             ["-m", "spark_integration.run", "--scheduler", "fair", "--queries", "q3,q6",
              "--scale", "0.1"], project_first=True),
        Step("offloader: device_bridge.client against a local server (alexnet x2, joint)",
             [], needs=_offloader_client),
    ]


def _offloader_client(work: Path) -> list[str]:
    """Start the README's server on a free loopback port; the step is the client."""
    token = work / "token.txt"
    token.write_text(os.urandom(32).hex() + "\n")
    token.chmod(0o600)  # the server refuses a token file others can read
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "device_bridge.server", "--models", "alexnet", "--host",
         "127.0.0.1", "--port", str(port), "--token-file", str(token), "--threads", "1",
         "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _SERVERS.append(server)
    seen = []
    for line in server.stdout:  # start-up log lines, then "listening on", or EOF on failure
        if line.startswith("listening on"):
            break
        seen.append(line.strip())
    else:
        raise RuntimeError(f"server did not start: {seen[-1] if seen else 'no output'!r}")
    return ["-m", "device_bridge.client", "--server", f"127.0.0.1:{port}", "--jobs",
            "alexnet:2", "--scheduler", "joint", "--bandwidth-mbps", "5.85", "--token-file",
            str(token), "--profile-repetitions", "2", "--json", str(work / "offload.json")]


_SERVERS: list[subprocess.Popen] = []


def run_step(step: Step, work: Path, tries: int = 3) -> tuple[bool, float, str]:
    """``(passed, seconds, one-line reason)``; a timed step gets up to ``tries`` runs."""
    argv = step.argv
    try:
        if step.needs is not None:
            argv = step.needs(work)
        best = float("inf")
        for _ in range(tries if step.max_s is not None else 1):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True,
                                  text=True, timeout=step.timeout_s)
            best = min(best, time.perf_counter() - start)
            if step.max_s is None or best <= step.max_s:
                break
    except subprocess.TimeoutExpired:
        return False, step.timeout_s, f"no answer within {step.timeout_s:.0f} s"
    except RuntimeError as error:
        return False, 0.0, str(error)
    finally:
        while _SERVERS:
            server = _SERVERS.pop()
            server.terminate()
            server.wait(timeout=30)
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    if done.returncode != 0:
        return False, best, f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"
    if "Traceback (most recent call last)" in output:
        return False, best, "printed a traceback"
    if step.max_s is not None and best > step.max_s:
        return False, best, f"took {best:.2f} s (limit {step.max_s:.0f} s)"
    if step.project_first and lines and NOISE.match(lines[0]):
        return False, best, f"first line is not the project's: {lines[0][:80]!r}"
    return True, best, ""


def walk(quick: bool) -> list[tuple[str, bool, float, str]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="newcomer-") as tmp:
        for step in steps(Path(tmp)):
            if quick and not step.quick:
                continue
            passed, seconds, reason = run_step(step, Path(tmp))
            print(f"{'ok  ' if passed else 'FAIL'} {seconds:6.1f} s  {step.name}"
                  + (f": {reason}" if reason else ""), flush=True)
            results.append((step.name, passed, seconds, reason))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/newcomer_walk.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the steps make test runs")
    args = parser.parse_args(argv)
    try:
        results = walk(args.quick)
    except KeyboardInterrupt:
        sys.exit("newcomer walk: interrupted")
    failed = [name for name, passed, _, _ in results if not passed]
    print(f"{len(results) - len(failed)}/{len(results)} steps clean")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
