"""Hand-computed cases of the fixed offloading semantics (docs/offload.md).

Instance (see conftest): A = [d=1.0 s=0.5 o=500 kB (0.5 s up), d=2.0 s=0.25], input 1 kB;
B = [d=0.5 s=0.1], input 2 MB (2 s up). Upload time = bytes * 1 us.
"""

import pytest

from envs.offload import InstanceError, Plan, simulate


def test_offload_then_server_only(two_job_instance):
    # A at cut 1: device 0-1, uplink 1-1.5 (500 kB), server 1.5-1.75 (s2 = 0.25).
    # B at cut 0: skips the device, uplink max(1.5, 0) + 2 = 3.5, server 3.5-3.6.
    result = simulate(two_job_instance, [(0, 1), (1, 0)])
    assert result.makespan_s == pytest.approx(3.6)
    assert [(i.start_s, i.end_s) for i in result.device] == [(0.0, 1.0)]
    assert [(i.job, i.start_s, i.end_s) for i in result.uplink] == [
        (0, 1.0, pytest.approx(1.5)), (1, pytest.approx(1.5), pytest.approx(3.5))]
    assert result.job_done_s == {0: pytest.approx(1.75), 1: pytest.approx(3.6)}


def test_order_matters(two_job_instance):
    # B first: uplink 0-2, server 2-2.1. A: device 0-1, uplink max(2, 1) + 0.5 = 2.5,
    # server max(2.1, 2.5) + 0.25 = 2.75.
    assert simulate(two_job_instance, [(1, 0), (0, 1)]).makespan_s == pytest.approx(2.75)


def test_local_job_skips_uplink_and_server(two_job_instance):
    # A all local: device 0-3, done at 3. B at cut 1 (= L): device 3-3.5, done 3.5.
    result = simulate(two_job_instance, [(0, 2), (1, 1)])
    assert result.makespan_s == pytest.approx(3.5)
    assert result.uplink == [] and result.server == []


def test_cut_with_empty_server_part_still_uploads(two_job_instance):
    # A all local (0-3); B at cut 0 uploads its 2 MB input in parallel: uplink 0-2, server 2-2.1.
    result = simulate(two_job_instance, [(0, 2), (1, 0)])
    assert result.makespan_s == pytest.approx(3.0)


def test_sequential_plan_never_overlaps_jobs(two_job_instance):
    # Same as test_order_matters but sequential: A starts at 2.1, device 2.1-3.1,
    # uplink 3.1-3.6, server 3.6-3.85.
    result = simulate(two_job_instance, Plan(((1, 0), (0, 1)), sequential=True))
    assert result.makespan_s == pytest.approx(3.85)


@pytest.mark.parametrize("plan, message", [
    ([(0, 3), (1, 0)], "cut 3 out of range 0..2"),
    ([(0, 1), (0, 1), (1, 0)], "schedules job 0 twice"),
    ([(0, 1), (5, 0)], "names job 5"),
    ([(0, 1)], "leaves out job"),
])
def test_bad_plans_raise_clear_errors(two_job_instance, plan, message):
    with pytest.raises(InstanceError, match=message):
        simulate(two_job_instance, plan)
