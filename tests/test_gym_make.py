"""What docs/gymnasium.md promises about gym.make, each in a fresh interpreter."""

import subprocess
import sys
from pathlib import Path

from envs import ENV_IDS

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_module_prefix_makes_every_env_without_importing_envs(tmp_path):
    code = ("import sys, gymnasium as gym\n"
            f"for env_id in {sorted(ENV_IDS)!r}:\n"
            "    env = gym.make('envs:' + env_id)\n"
            "    env.reset(seed=0)\n"
            "    print(env_id, type(env.unwrapped).__name__)\n")
    done = _python(code, tmp_path)  # outside the checkout: the installed package
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{env_id} {entry.split(':')[1]}"
                                        for env_id, entry in sorted(ENV_IDS.items())]


def test_bare_id_needs_the_registration():
    done = _python("import gymnasium as gym; gym.make('pipesched/DnnOffload-v0')", ROOT)
    assert done.returncode != 0 and "Namespace pipesched not found" in done.stderr
