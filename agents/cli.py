"""The work behind ``train_agents.py``: train, evaluate, compare, and the no-argument demo."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from rich.console import Console

import envs
from agents.evaluate import run_episode
from agents.offload_compare import evaluate_instance, summarise
from agents.planning import OFFLOAD_ENV_ID
from agents.report import plot_ratios, print_ratio_table, ratio_markdown
from agents.scheduler import load_scheduler
from agents.train import train
from envs.offload import BANDWIDTH_CLASSES_MBPS, ProfileGenerator, simulate
from envs.offload.render import plot_gantt
from heuristics.offload import HEURISTICS

OBJECTIVE_KEY = {
    "pipesched/DnnOffload-v0": "makespan_s",
    "pipesched/SparkDagShop-v0": "mean_jct_s",
    "pipesched/ParamServer-v0": "iteration_s",
    "pipesched/HeteroPipeline-v0": "iteration_s",
}
#: the demo's brief training: clone ``joint`` on a few instances (no DAgger), then PPO
DEMO_PRETRAIN = {"instances": 40, "epochs": 15, "dagger_rounds": 0}
SHIPPED_OFFLOAD_AGENT = Path(__file__).resolve().parents[1] / "models" / "offload_agent.zip"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train_agents.py", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--env", default=OFFLOAD_ENV_ID, choices=sorted(envs.ENV_IDS))
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--config", help="YAML keyed by env id (overrides agents/configs/)")

    train_cmd = commands.add_parser("train", help="train MaskablePPO")
    common(train_cmd)
    train_cmd.add_argument("--timesteps", type=int)
    train_cmd.add_argument("--n-envs", type=int, default=1, help="> 1 uses SubprocVecEnv")
    train_cmd.add_argument("--out", default="runs")
    train_cmd.add_argument("--device", default="cpu", help="torch device of the policy")

    evaluate_cmd = commands.add_parser("evaluate", help="mean objective of a model over seeds")
    common(evaluate_cmd)
    evaluate_cmd.add_argument("--model", required=True)
    evaluate_cmd.add_argument("--episodes", type=int, default=20)

    compare_cmd = commands.add_parser("compare", help="agent vs heuristics vs optimum (offloading)")
    common(compare_cmd)
    compare_cmd.add_argument("--model", action="append", default=[],
                             help="NAME=PATH or PATH of a trained model (repeatable)")
    compare_cmd.add_argument("--instances", type=int, default=40)
    compare_cmd.add_argument("--out", default="results")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if args.command is None:
        return demo(console)
    if args.command == "train":
        result = train(args.env, args.timesteps, args.seed, args.n_envs, args.config, args.out,
                       console=console, device=args.device)
        console.print(f"saved {result.model_path}")
    elif args.command == "evaluate":
        evaluate(args.env, args.model, args.episodes, args.seed, console)
    elif args.command == "compare":
        if args.env != OFFLOAD_ENV_ID:
            raise SystemExit(f"compare supports {OFFLOAD_ENV_ID}; for {args.env} run its "
                             f"benchmark: python -m benchmarks.<problem>")
        models = dict(_named_model(spec) for spec in args.model)
        compare_offload(models, args.instances, args.seed, Path(args.out), console,
                        name="compare_offload")
    return 0


def _named_model(spec: str) -> tuple[str, str]:
    name, _, path = spec.rpartition("=")
    return (name or Path(path).stem), path


def evaluate(env_id: str, model_path: str, episodes: int, seed: int, console: Console) -> None:
    from agents.config import load_config

    env = gym.make(env_id, **load_config(env_id).env_kwargs)
    scheduler = load_scheduler(model_path)
    key = OBJECTIVE_KEY[env_id]
    values = [run_episode(env.unwrapped, scheduler, seed=seed + k)[key] for k in range(episodes)]
    console.print(f"{env_id}: {key} mean {np.mean(values):.4f} "
                  f"(std {np.std(values):.4f}) over {episodes} episodes of {model_path}")


def compare_offload(models: dict[str, str], instances_per_class: int, seed: int, out: Path,
                    console: Console, name: str) -> dict:
    """Every heuristic, each model and the CP-SAT optimum on seeded 3..6-job instances at each
    bandwidth class; writes ``out/<name>.json``, ``.md`` and ``.png`` plus a Gantt chart."""
    agents = {label: load_scheduler(path) for label, path in models.items()}
    rng = np.random.default_rng(seed)
    outcomes, rows = [], []
    started = time.perf_counter()
    for label in BANDWIDTH_CLASSES_MBPS:
        generator = ProfileGenerator(min_jobs=3, max_jobs=6, bandwidth=label)
        group = [evaluate_instance(generator(rng), agents) for _ in range(instances_per_class)]
        outcomes += group
        rows += summarise(group, label)
    rows += summarise(outcomes, "all")
    overall = [row for row in rows if row["group"] == "all"]
    print_ratio_table(overall, f"makespan / optimum over {len(outcomes)} instances "
                               f"(3..6 jobs, CAT1/3G/4G/WiFi)", console)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"rows": rows, "seed": seed, "models": models,
               "wall_s": time.perf_counter() - started,
               "proven_optimal": sum(o.proven_optimal for o in outcomes),
               "instances": len(outcomes)}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text(f"# {name}\n\n{ratio_markdown(rows)}\n")
    plot_ratios(overall, out / f"{name}.png", "makespan / CP-SAT optimum")
    instance = ProfileGenerator(min_jobs=5, max_jobs=5, bandwidth="4G")(
        np.random.default_rng(seed))
    gantt = {label: simulate(instance, HEURISTICS[label](instance))
             for label in ("neurosurgeon", "partition_only", "joint")}
    plot_gantt(instance, gantt, out / f"{name}_gantt.png")
    console.print(f"wrote {out / (name + '.json')}, .md, .png and {name}_gantt.png")
    return payload


def demo(console: Console) -> int:
    """``python train_agents.py``: brief training, then agent vs heuristics vs optimum."""
    console.rule("pipesched demo: DNN offloading")
    result = train(OFFLOAD_ENV_ID, timesteps=None, seed=0, n_envs=1, out_dir="runs",
                   console=console, pretrain_overrides=DEMO_PRETRAIN)
    models = {f"agent_demo_bc{DEMO_PRETRAIN['instances']}_ppo{result.timesteps}":
              str(result.model_path)}
    if SHIPPED_OFFLOAD_AGENT.exists():
        models["agent_shipped"] = str(SHIPPED_OFFLOAD_AGENT)
    compare_offload(models, instances_per_class=6, seed=2026, out=Path("results"),
                    console=console, name="demo_offload")
    return 0
