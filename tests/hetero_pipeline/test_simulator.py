import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.hetero_pipeline.closed_form import estimate_iteration_s
from envs.hetero_pipeline.generator import ToyIdenticalGenerator
from envs.hetero_pipeline.instance import PipelinePlan
from envs.hetero_pipeline.simulator import (
    inflight_microbatches,
    one_f_one_b_order,
    render_gantt,
    simulate,
)

from .conftest import two_layer_instance


def test_two_stage_schedule_by_hand():
    # S0: F0 [0,1] F1 [1,2]; S1: F0 [1.5,2.5] B0 [2.5,4.5] F1 [4.5,5.5] B1 [5.5,7.5];
    # gradients arrive at S0 at 5.0 and 8.0: B0 [5,7], B1 [8,10].
    instance = two_layer_instance(num_microbatches=2)
    plan = PipelinePlan.from_groups([(0,), (1,)], [0, 1, 2])
    result = simulate(instance, plan, trace=True)
    assert result.iteration_s == pytest.approx(10.0)
    stage0 = [(i.kind, i.microbatch, i.start_s, i.end_s) for i in result.trace
              if i.resource == "stage 0"]
    assert stage0 == [("F", 0, 0.0, 1.0), ("F", 1, 1.0, 2.0), ("B", 0, 5.0, 7.0),
                      ("B", 1, 8.0, 10.0)]


def test_data_parallel_stage_and_allreduce():
    # One stage of both devices: F+B halves; ring all-reduce of 2e6 bytes over 1e6 B/s:
    # 2 (n-1) * P / (n bw) = 2 s.
    instance = two_layer_instance(num_microbatches=2)
    plan = PipelinePlan.from_groups([(0, 1)], [0, 2])
    assert simulate(instance, plan).iteration_s == pytest.approx(2 * 6.0 / 2 + 2.0)
    assert estimate_iteration_s(instance, plan) == pytest.approx(8.0)


def test_toy_optimum_is_total_work_bound():
    toy = ToyIdenticalGenerator()
    instance = toy(np.random.default_rng(0))
    plan = PipelinePlan.from_groups([tuple(range(toy.num_devices))], [0, toy.num_layers])
    assert simulate(instance, plan).iteration_s == pytest.approx(toy.optimum_s())


@given(st.integers(1, 8), st.integers(1, 12))
def test_1f1b_order_is_complete_and_bounded(num_stages, num_microbatches):
    inflight = inflight_microbatches(num_stages, num_microbatches)
    for stage in range(num_stages):
        order = one_f_one_b_order(stage, num_stages, num_microbatches)
        assert sorted(order) == sorted([("F", m) for m in range(num_microbatches)]
                                       + [("B", m) for m in range(num_microbatches)])
        live, peak = set(), 0
        for kind, m in order:
            if kind == "F":
                live.add(m)
            else:
                assert m in live  # backward after its forward
                live.remove(m)
            peak = max(peak, len(live))
        assert peak == inflight[stage]  # the memory model's in-flight count is exact


def _random_plan(instance, rng):
    K, L = instance.num_devices, instance.num_layers
    used = rng.permutation(K)[: rng.integers(1, K + 1)]
    num_stages = int(rng.integers(1, min(len(used), L) + 1))
    splits = np.sort(rng.choice(np.arange(1, len(used)), num_stages - 1, replace=False)) \
        if num_stages > 1 else []
    groups = [tuple(int(d) for d in g) for g in np.split(used, splits)]
    cuts = [0] + sorted(rng.choice(np.arange(1, L), num_stages - 1, replace=False).tolist()) + [L]
    return PipelinePlan.from_groups(groups, cuts)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 11))
def test_closed_form_is_a_lower_bound(generated_instances, seed, which):
    instance = generated_instances[which]
    plan = _random_plan(instance, np.random.default_rng(seed))
    assert estimate_iteration_s(instance, plan) <= simulate(instance, plan).iteration_s + 1e-9


def test_closed_form_is_close_on_average(generated_instances):
    rng = np.random.default_rng(3)
    gaps = []
    for instance in generated_instances:
        for _ in range(10):
            plan = _random_plan(instance, rng)
            gaps.append(simulate(instance, plan).iteration_s / estimate_iteration_s(instance, plan)
                        - 1)
    assert np.mean(gaps) < 0.05, np.mean(gaps)


def test_gantt_draws_the_hand_computed_schedule():
    # the schedule of test_two_stage_schedule_by_hand at 2 columns per second (20 over 10 s):
    # an interval [a, b] fills columns int(2a) .. round(2b) - 1. Activations [1, 1.5] and
    # [2, 2.5] -> columns 2 and 4; gradients [4.5, 5] and [7.5, 8] -> columns 9 and 15.
    instance = two_layer_instance(num_microbatches=2)
    plan = PipelinePlan.from_groups([(0,), (1,)], [0, 1, 2])
    assert render_gantt(instance, plan, width=20).splitlines() == [
        "iteration 10.0000 s, memory ok  (F: digit = micro-batch, B: letter, > act, < grad, "
        "# all-reduce)",
        "stage 0 dev[0] layers 0..0",
        "stage 1 dev[1] layers 1..1",
        "   stage 0 |0011      aaaa  bbbb|",
        "   stage 1 |   00aaaa11bbbb     |",
        "  link 0>1 |  > >               |",
        "  link 1>0 |         <     <    |"]


def test_memory_per_device_matches_formula():
    instance = two_layer_instance(num_microbatches=4)
    plan = PipelinePlan.from_groups([(0,), (1,)], [0, 1, 2])
    memory = simulate(instance, plan).device_memory_bytes
    # stage 0 holds min(S - 0, M) = 2 micro-batches, stage 1 holds 1
    assert memory[0] == pytest.approx(3.0 * 1e6 + 2 * 1e6)
    assert memory[1] == pytest.approx(3.0 * 1e6 + 1 * 1e6)
