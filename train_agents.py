"""pipesched command line: ``train``, ``evaluate``, ``compare``; no arguments runs the demo.

    python train_agents.py                                  # demo (make run)
    python train_agents.py train --env ENV_ID [--budget N] [--set KEY=VALUE ...]
    python train_agents.py evaluate --env ENV_ID --model runs/.../model.zip
    python train_agents.py compare --model agent=models/offload_agent.zip --instances 50

``train`` dispatches on the ``algo:`` of the env's entry in agents/configs/*.yaml
(:data:`agents.algos.ALGOS`; docs/training.md).

Arguments are checked before anything heavy starts; a user mistake ends with one line and
exit code 2 (``--debug`` shows the traceback), Ctrl-C with one line (training saves the best
model so far first, its record marked interrupted). torch and Stable-Baselines3 are imported
only by the command that needs them, so ``--help`` answers at once. This is the top of the
layers: it wires agents to the sweep runner of the Spark bridge (``--engine spark``), so it
is not part of ``agents``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from envs import ENV_IDS, PROBLEMS, problem_for

if TYPE_CHECKING:
    from agents.algos.record import TrainRun
    from agents.config import TrainConfig
    from spark_integration.sweeps import Engine

OFFLOAD_ENV_ID = PROBLEMS["offload"].env_id
#: the demo's brief training: clone ``joint`` on a few instances (no DAgger), then PPO
DEMO_PRETRAIN = {"instances": 40, "epochs": 15, "dagger_rounds": 0}
#: seeds of the instances ``train`` and ``evaluate`` report on (training uses 0.. and 10_000..)
VALIDATION_SEED = 900_000
DESCRIPTION = f"""pipesched: train, evaluate and compare schedulers (no command: the demo, ~4 min).

CPU run times on 2 cores: `train --env {OFFLOAD_ENV_ID} --budget 2048` 1-2 min
(warm-up scaled to the steps), `--budget 49152 --set maskable_ppo.n_envs=8` (the shipped agent's
recipe) about 40 min; `evaluate` about 10-60 s; `compare` on DnnOffload (CP-SAT optimum) about
2 min for --instances 10, on the other envs under a minute for 40 instances."""
#: what ``--budget`` counts, per algo
BUDGET_UNITS = {"maskable_ppo": "PPO steps", "listwise": "gradient steps",
                "cmaes": "CMA-ES generations"}


class UserError(ValueError):
    """A mistake in the command line or its files: reported in one line, exit code 2 (as every
    ValueError and OSError is, by :func:`spark_integration.cli.guarded`)."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="train_agents.py", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--env", default=OFFLOAD_ENV_ID, choices=sorted(ENV_IDS))
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks of errors")

    def engine(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--engine", choices=("local", "spark"), default="local",
                         help="run the episodes here or on Spark (docs/runner.md)")
        sub.add_argument("--master", help="Spark master URL for --engine spark: local[N], "
                                          "spark://HOST:PORT, yarn, k8s://...")
        sub.add_argument("--batch", type=positive_int,
                         help="seeds (offloading: instances) per task (default: 1 locally, "
                              "about 4 tasks per Spark core)")

    train_cmd = commands.add_parser(
        "train", help="train the env's agent with its algo: (DnnOffload, 2048 steps: 1-2 min)",
        description="Train with the env's entry of agents/configs/*.yaml, by its algo: "
                    "maskable_ppo (DnnOffload: first imitates the `joint` planner, a warm-up "
                    "that shrinks with --budget below the recipe's 49152 steps), listwise "
                    "(ParamServer, HeteroPipeline rankers) or cmaes (SparkDagShop policy); "
                    "docs/training.md lists each algo's keys. Writes the model, its record "
                    "(with the command that reproduces it) and a learning-curve PNG under "
                    "OUT/<env>/seed<N>/. Ctrl-C keeps the best model so far, its record "
                    "marked interrupted.")
    common(train_cmd)
    train_cmd.add_argument("--config", help="YAML keyed by env id, deep-merged into the shipped "
                                            "entry (only the keys it names change; printed)")
    train_cmd.add_argument("--set", action="append", default=[], dest="sets",
                           metavar="KEY=VALUE",
                           help="one key of the entry, dotted, with a YAML value (repeatable), "
                                "e.g. cmaes.population=8, maskable_ppo.n_envs=8, pretrain=null")
    train_cmd.add_argument("--budget", "--timesteps", type=positive_int, dest="budget",
                           help="PPO steps, listwise gradient steps (per DAgger iteration) or "
                                "CMA-ES generations (default: the entry's)")
    train_cmd.add_argument("--out", default="runs", help="folder of the runs")
    train_cmd.add_argument("--device", default="cpu", help="torch device (maskable_ppo)")
    engine(train_cmd)

    evaluate_cmd = commands.add_parser(
        "evaluate", help="mean objective of a model against the heuristics (10-60 s)")
    common(evaluate_cmd)
    evaluate_cmd.add_argument("--model", required=True,
                              help="a .zip from train, or a Spark policy .json")
    evaluate_cmd.add_argument("--episodes", type=positive_int, default=20)
    engine(evaluate_cmd)

    compare_cmd = commands.add_parser(
        "compare", help="models vs every heuristic (offloading: and the CP-SAT optimum)")
    common(compare_cmd)
    compare_cmd.add_argument("--model", action="append", default=[],
                             help="NAME=PATH or PATH of a trained model (repeatable; default: "
                                  "the shipped model of --env)")
    compare_cmd.add_argument("--instances", type=positive_int, default=40,
                             help="instances (offloading: per bandwidth class)")
    compare_cmd.add_argument("--out", default="results")
    engine(compare_cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    from spark_integration.cli import guarded

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return guarded(parser, args.debug, lambda: run(args))
    except SystemExit as exit_:  # guarded ends a user mistake through parser.exit(2, line)
        return int(exit_.code or 0)


def run(args: argparse.Namespace) -> int:
    """The command; a sweep task that failed every Spark attempt is a :class:`UserError`."""
    from spark_integration.runner import RunnerError

    try:
        return run_command(args)
    except RunnerError as error:
        raise UserError(str(error)) from None


def run_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if args.command is None:
        return demo(console)
    if args.command == "train":
        return train_command(args, console)
    if args.command == "evaluate":
        from agents.model_check import check_model_file

        engine = _engine(args)
        check_model_file(args.model, args.env)
        evaluate(args.env, args.model, args.episodes, args.seed, console, engine)
        return 0
    engine = _engine(args)
    models = dict(_named_model(spec) for spec in args.model)
    if not args.model:
        from agents.compare import SHIPPED_MODELS

        shipped = SHIPPED_MODELS[args.env]
        models = {"agent_shipped": str(shipped)} if shipped.exists() else {}
    from agents.model_check import check_model_file

    for path in models.values():
        check_model_file(path, args.env)
    name = f"compare_{problem_for(args.env).name}"
    if args.env == OFFLOAD_ENV_ID:
        compare_offload(models, args.instances, args.seed, Path(args.out), console, name=name,
                        engine=engine)
    else:
        compare_env(args.env, models, args.instances, args.seed, Path(args.out), console, name,
                    engine)
    return 0


def _engine(args: argparse.Namespace) -> Engine:
    """The --engine choice, checked before anything starts (an unreachable master included)."""
    from spark_integration.sweeps import Engine

    if args.engine == "local":
        if args.master:
            raise UserError("--master is for --engine spark")
        return Engine(batch=args.batch)
    if not args.master:
        raise UserError("--engine spark needs --master URL (e.g. local[2], spark://HOST:7077)")
    from spark_integration.settings import master_problem

    problem = master_problem(args.master)
    if problem:
        raise UserError(f"--master {args.master}: {problem}")
    return Engine("spark", args.master, args.batch)


def train_command(args: argparse.Namespace, console: Any) -> int:
    """``train``: the entry's algo (:data:`agents.algos.ALGOS`) on a :class:`TrainRun`."""
    from agents.algos import ALGOS
    from agents.config import import_object, load_config_with_overrides

    if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", args.device):
        raise UserError(f"--device must be cpu, cuda, cuda:N, mps or auto, got {args.device!r}")
    config, changed = load_config_with_overrides(args.env, args.config, args.sets, args.budget)
    if changed:
        console.print(f"overridden in {args.env}: {', '.join(changed)} (the rest from "
                      f"agents/configs/{config.problem}.yaml)")
    engine = _engine(args)
    collect = None
    if engine.name == "spark":
        if config.algo != "maskable_ppo":
            raise UserError(f"--engine spark collects maskable_ppo's warm-up labels; algo "
                            f"{config.algo} of {args.env} runs here")
        from spark_integration.sweeps import run_sweep

        def collect(task: str, payloads: list[dict]) -> list[dict]:
            return run_sweep(task, payloads, engine, f"warm-up labels: {len(payloads)} tasks")

    run = make_run(args.env, config, args.seed, Path(args.out), console,
                   train_options(args), args.device, collect)
    result = import_object(ALGOS[config.algo])(run)
    if result.interrupted:
        print(f"interrupted after {result.done} {BUDGET_UNITS[config.algo]}; saved "
              f"{result.model_path} (its record says interrupted)", file=sys.stderr)
        return 130
    console.print(f"saved {result.model_path}")
    episodes = config.maskable_ppo.get("validation_episodes", 10)
    if config.algo == "maskable_ppo" and episodes:
        evaluate(args.env, str(result.model_path), episodes, VALIDATION_SEED, console, engine)
    return 0


def train_options(args: argparse.Namespace) -> list[str]:
    """The options of ``train`` as typed, in one order: the record's command."""
    options = ["--seed", str(args.seed)]
    if args.config:
        options += ["--config", args.config]
    for text in args.sets:
        options += ["--set", text]
    if args.budget is not None:
        options += ["--budget", str(args.budget)]
    options += ["--out", args.out]
    if args.device != "cpu":
        options += ["--device", args.device]
    if args.engine != "local":
        options += ["--engine", args.engine, "--master", args.master]
    if args.batch:
        options += ["--batch", str(args.batch)]
    return options


def make_run(env_id: str, config: TrainConfig, seed: int, out: Path, console: Any,
             options: list[str], device: str = "cpu", collect: Any = None) -> TrainRun:
    """The run of ``env_id`` in ``out/<env>/seed<seed>``; its record's command is
    ``train --env env_id`` with ``options``."""
    from agents.algos.record import TrainRun, front_door_command

    return TrainRun(env_id, config, seed, out / env_id.replace("/", "_") / f"seed{seed}",
                    front_door_command(env_id, options), device, console, collect)


def _named_model(spec: str) -> tuple[str, str]:
    name, _, path = spec.rpartition("=")
    return (name or Path(path).stem), path


def evaluate(env_id: str, model_path: str, episodes: int, seed: int, console: Any,
             engine: Engine) -> None:
    """The model and every heuristic on ``episodes`` seeded instances: a table of objective /
    best heuristic, then one line with the model's mean objective."""
    import numpy as np

    from agents.compare import summarise
    from agents.report import print_ratio_table
    from spark_integration.sweeps import episode_outcomes

    outcomes = episode_outcomes(env_id, {"model": model_path}, range(seed, seed + episodes),
                                 engine, f"evaluating on {episodes} instances")
    print_ratio_table(summarise(outcomes), f"{env_id}: {problem_for(env_id).objective} / best heuristic "
                                           f"per instance, seeds {seed}..{seed + episodes - 1}",
                      console)
    failures = [o.failures["model"] for o in outcomes if "model" in o.failures]
    if failures:
        console.print(f"{env_id}: FAILED: {model_path} did not complete {len(failures)} of "
                      f"{episodes} episodes (objective inf), e.g. {failures[0]}")
        return
    values = np.array([o.objective["model"] for o in outcomes])
    console.print(f"{env_id}: {problem_for(env_id).objective} mean {np.mean(values):.4f} "
                  f"(std {np.std(values):.4f}) over {episodes} episodes of {model_path}")


def compare_env(env_id: str, models: dict[str, str], instances: int, seed: int, out: Path,
                console: Any, name: str, engine: Engine) -> dict:
    """Every heuristic and each model on ``instances`` seeded instances of ``env_id``; writes
    ``out/<name>.json``, ``.md`` and ``.png``."""
    from agents.compare import summarise
    from agents.report import plot_ratios, print_ratio_table, ratio_markdown
    from spark_integration.sweeps import episode_outcomes

    started = time.perf_counter()
    outcomes = episode_outcomes(env_id, models, range(seed, seed + instances), engine,
                                 f"comparing on {instances} instances")
    rows = summarise(outcomes)
    objective = problem_for(env_id).objective
    title = f"{env_id}: {objective} / best heuristic per instance, {instances} instances"
    print_ratio_table(rows, title, console)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"env": env_id, "objective": objective, "rows": rows, "seed": seed,
               "models": models, "instances": instances,
               "wall_s": time.perf_counter() - started,
               "gantt": write_gantt(env_id, models, seed, out, name)}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(f"# {name}\n\n{title}\n\n{ratio_markdown(rows)}\n\n"
                                    f"{gantt_markdown(payload['gantt'])}\n")
    plot_ratios(rows, out / f"{name}.png", title, objective=objective)
    console.print(f"wrote {out / (name + '.json')}, .md, .png and {name}_gantt.png")
    return payload


def write_gantt(env_id: str, models: dict[str, str], seed: int, out: Path, name: str) -> dict:
    """``out/<name>_gantt.png``: the instance of ``seed`` under a baseline heuristic, a strong
    one and each model; returns its JSON record."""
    from agents.gantt import gantt_charts, plot_charts

    charts = gantt_charts(env_id, models, seed)
    path = plot_charts(charts, out / f"{name}_gantt.png", f"{env_id}: instance of seed {seed}")
    return {"png": path.name, "seed": seed, "charts": [chart.to_dict() for chart in charts]}


def gantt_markdown(gantt: dict) -> str:
    titles = "; ".join(chart["title"] for chart in gantt["charts"])
    return f"Gantt chart of the instance of seed {gantt['seed']} ({titles}): ![]({gantt['png']})"


def compare_offload(models: dict[str, str], instances_per_class: int, seed: int, out: Path,
                    console: Any, name: str, engine: Engine) -> dict:
    """Every heuristic, each model and the CP-SAT optimum on seeded 3..6-job instances at each
    bandwidth class; writes ``out/<name>.json``, ``.md`` and ``.png`` plus a Gantt chart."""
    import numpy as np

    from agents.compare import summarise
    from agents.report import plot_ratios, print_ratio_table, ratio_markdown
    from envs.offload import BANDWIDTH_CLASSES_MBPS, ProfileGenerator
    from spark_integration.sweeps import offload_outcomes

    rng = np.random.default_rng(seed)
    classes = list(BANDWIDTH_CLASSES_MBPS)
    instances = [ProfileGenerator(min_jobs=3, max_jobs=6, bandwidth=label)(rng)
                 for label in classes for _ in range(instances_per_class)]
    started = time.perf_counter()
    outcomes = offload_outcomes(instances, models, engine,
                                f"CP-SAT and planners on {len(instances)} instances")
    rows = []
    for k, label in enumerate(classes):
        rows += summarise(outcomes[k * instances_per_class:(k + 1) * instances_per_class], label)
    rows += summarise(outcomes, "all")
    overall = [row for row in rows if row["group"] == "all"]
    print_ratio_table(overall, f"makespan / optimum over {len(outcomes)} instances "
                               f"(3..6 jobs, CAT1/3G/4G/WiFi)", console)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"rows": rows, "seed": seed, "models": models,
               "wall_s": time.perf_counter() - started,
               "proven_optimal": sum(o.proven_optimal for o in outcomes),
               "instances": len(outcomes),
               "gantt": write_gantt(OFFLOAD_ENV_ID, models, seed, out, name)}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(f"# {name}\n\n{ratio_markdown(rows)}\n\n"
                                    f"{gantt_markdown(payload['gantt'])}\n")
    plot_ratios(overall, out / f"{name}.png", "makespan / CP-SAT optimum")
    console.print(f"wrote {out / (name + '.json')}, .md, .png and {name}_gantt.png")
    return payload


def demo(console: Any) -> int:
    """``python train_agents.py``: brief training, then agent vs heuristics vs optimum."""
    from agents.algos.maskable_ppo import train
    from agents.config import load_config

    console.rule("pipesched demo: DNN offloading")
    run = make_run(OFFLOAD_ENV_ID, load_config(OFFLOAD_ENV_ID), 0, Path("runs"), console, [])
    run.command = "python train_agents.py  # the demo: warm-up " + json.dumps(DEMO_PRETRAIN)
    result = train(run, pretrain_overrides=DEMO_PRETRAIN)
    if result.interrupted:
        print(f"interrupted; saved {result.model_path}", file=sys.stderr)
        return 130
    models = {f"agent_demo_bc{DEMO_PRETRAIN['instances']}_ppo{result.done}":
              str(result.model_path)}
    from agents.compare import SHIPPED_MODELS

    if SHIPPED_MODELS[OFFLOAD_ENV_ID].exists():
        models["agent_shipped"] = str(SHIPPED_MODELS[OFFLOAD_ENV_ID])
    from spark_integration.sweeps import Engine

    compare_offload(models, instances_per_class=6, seed=2026, out=Path("results"),
                    console=console, name="demo_offload", engine=Engine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
