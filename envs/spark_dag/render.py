"""Text Gantt chart of a Spark DAG-shop simulation (``render_mode="ansi"``)."""

from __future__ import annotations

import numpy as np

from envs.spark_dag.simulator import DagShopSimulator


def ansi_gantt(sim: DagShopSimulator, width: int = 60, max_rows: int = 30) -> str:
    """One row per job: ``.`` before arrival, ``#`` in the system, ``=`` after completion
    (``>`` marks an unfinished job at the current time); executor and network use below."""
    horizon = max(sim.time_s, float(np.nanmax(sim.job_completion_s, initial=0.0)),
                  float(sim.job_arrival_s.max()), 1e-9)
    scale = width / horizon
    lines = [f"t={sim.time_s:.1f}s  free {sim.free_count}/{sim.num_executors} executors  "
             f"network flows {sim._flows} (capacity {sim.capacity:g})  "
             f"jobs done {sim.jobs_done}/{len(sim.jobs)}"]
    name_width = max(len(job.name) for job in sim.jobs[:max_rows])
    for j, job in enumerate(sim.jobs[:max_rows]):
        start = min(int(job.arrival_s * scale), width)
        done = sim.job_completion_s[j]
        end = int((done if not np.isnan(done) else sim.time_s) * scale)
        row = ["."] * start + ["#"] * max(end - start, 1 if job.arrival_s <= sim.time_s else 0)
        if np.isnan(done) and job.arrival_s <= sim.time_s:
            row.append(">")
        row += ["="] * (width - len(row))
        lines.append(f"{job.name:<{name_width}} |{''.join(row[:width])}| "
                     f"held {int(sim.job_executors[j])}")
    if len(sim.jobs) > max_rows:
        lines.append(f"... {len(sim.jobs) - max_rows} more jobs")
    return "\n".join(lines)
