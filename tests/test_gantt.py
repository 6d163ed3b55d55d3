"""Gantt charts for every env: rows are the env's resources, every bar sits on one of them
and inside the schedule, the legend names every colour."""

from pathlib import Path

import pytest

from agents.compare import SHIPPED_MODELS
from agents.gantt import GANTT_HEURISTICS, gantt_charts, plot_charts
from envs import problem_for


@pytest.mark.parametrize("env_id", ["pipesched/DnnOffload-v0", "pipesched/HeteroPipeline-v0"])
def test_charts_of_heuristics_and_the_shipped_model(env_id: str, tmp_path: Path) -> None:
    charts = gantt_charts(env_id, {"agent": str(SHIPPED_MODELS[env_id])}, seed=3)
    assert [c.title.split(":")[0] for c in charts] == [*GANTT_HEURISTICS[problem_for(env_id).name], "agent"]
    for chart in charts:
        assert chart.bars and all(bar.row in chart.rows for bar in chart.bars)
        assert all(0.0 <= bar.start_s <= bar.end_s for bar in chart.bars)
        record = chart.to_dict()
        assert record["bars"] == len(chart.bars) and record["keys"]
    path = plot_charts(charts, tmp_path / "gantt.png", env_id)
    assert path.stat().st_size > 10_000


def test_pipeline_chart_ends_at_the_iteration_time() -> None:
    chart = gantt_charts("pipesched/HeteroPipeline-v0", {}, seed=1)[-1]
    iteration_s = float(chart.title.split("iteration ")[1].split(" s")[0])
    assert max(bar.end_s for bar in chart.bars) == pytest.approx(iteration_s, abs=1e-4)
