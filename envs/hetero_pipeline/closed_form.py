"""The closed-form iteration estimate planners use: bottleneck with pipeline fill and drain.

With the stage costs of :mod:`envs.hetero_pipeline.simulator` (``F_s, B_s, X_s, R_s``,
``M`` micro-batches, ``S`` stages)::

    head_s = sum_{t<s} (F_t + X_t)                    first micro-batch reaches stage s
    tail_0 = R_0,  tail_s = max(R_s, X_{s-1} + B_{s-1} + tail_{s-1})
                                                      after stage s's last backward
    stage_s   = head_s + M (F_s + B_s) + tail_s
    fwdlink_u = sum_{t<=u} F_t + sum_{t<u} X_t + M X_u
                + sum_{t>u} (F_t + B_t) + 2 sum_{u<t<S-1} X_t + X_u + B_u + tail_u
    bwdlink_u = sum_t F_t + sum_t X_t + sum_{t>u} B_t + sum_{u<t<S-1} X_t + M X_u + B_u + tail_u
    estimate  = max(all stage_s, fwdlink_u, bwdlink_u)

Every term is the length of a chain of operations that the 1F1B schedule must run one after
another (a stage runs its 2M ops back to back at best, a link direction its M transfers), so
the estimate is a **lower bound** on the simulated time; it is exact when one stage is the
bottleneck and its warm-up forwards cover the round trip to the end of the pipeline. The gap
is what 1F1B's dependencies add (measured in ``tests/hetero_pipeline`` and
``benchmarks.hetero_pipeline``). Being a lower bound is what lets
:mod:`heuristics.exact.hetero_pipeline` prune the search and still return the optimum.
"""

from __future__ import annotations

import numpy as np

from envs.hetero_pipeline.instance import PipelineInstance, PipelinePlan
from envs.hetero_pipeline.simulator import StageCosts, plan_costs


def lower_bound_s(costs: StageCosts, num_microbatches: int) -> np.ndarray:
    """Closed-form estimate for each of the ``N`` cut vectors in ``costs`` (shape ``(N,)``)."""
    F, B, X, R = costs.forward_s, costs.backward_s, costs.transfer_s, costs.allreduce_s
    M = num_microbatches
    N, S = F.shape
    head = np.zeros((N, S))
    if S > 1:
        head[:, 1:] = np.cumsum(F[:, :-1] + X, axis=1)
    tail = np.empty((N, S))
    tail[:, 0] = R[:, 0]
    for s in range(1, S):
        tail[:, s] = np.maximum(R[:, s], X[:, s - 1] + B[:, s - 1] + tail[:, s - 1])
    best = np.max(head + M * (F + B) + tail, axis=1)
    if S == 1:
        return best
    total_forward = F.sum(axis=1) + X.sum(axis=1)
    for u in range(S - 1):
        beyond = (F[:, u + 1:] + B[:, u + 1:]).sum(axis=1)
        inner_links = X[:, u + 1:].sum(axis=1)  # boundaries u+1 .. S-2
        back = X[:, u] + B[:, u] + tail[:, u]
        forward_link = (F[:, :u + 1].sum(axis=1) + X[:, :u].sum(axis=1) + M * X[:, u]
                        + beyond + 2 * inner_links + back)
        backward_link = (total_forward + B[:, u + 1:].sum(axis=1) + inner_links
                         + M * X[:, u] + B[:, u] + tail[:, u])
        best = np.maximum(best, np.maximum(forward_link, backward_link))
    return best


def estimate_iteration_s(instance: PipelineInstance, plan: PipelinePlan) -> float:
    """Closed-form seconds per iteration of ``plan`` (a lower bound on :func:`simulate`)."""
    return float(lower_bound_s(plan_costs(instance, plan), instance.num_microbatches)[0])
