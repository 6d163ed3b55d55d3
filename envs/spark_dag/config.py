"""Settings of ``pipesched/SparkDagShop-v0`` (:class:`envs.spark_dag.env.SparkDagShopEnv`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from envs.env_config import (
    freeze_weights,
    is_number,
    require,
    require_choice,
    require_integer,
    require_number,
)
from envs.spark_dag.generator import TPCHLikeGenerator
from envs.spark_dag.observation import ObservationLimits
from envs.spark_dag.workload import ClusterSpec

#: the default weight of each reward term, per mode; ``reward_weights`` overrides some of them
REWARD_WEIGHTS = {
    "online": {"job_seconds": -0.01, "makespan_increase_s": 0.0, "invalid_action": -1.0},
    "batch": {"job_seconds": 0.0, "makespan_increase_s": -0.1, "invalid_action": -1.0},
}


@dataclass(frozen=True)
class SparkDagShopConfig:
    """Workload (``mode`` "online" | "batch", ``num_jobs``, ``load`` as a number or a
    ``(low, high)`` range, ``network_mix``: the default :class:`TPCHLikeGenerator`), cluster
    and timing rules (the fields of :class:`ClusterSpec`), the padded view
    (``observation_mode`` "padded" | "graph", ``max_jobs``, ``max_stages``,
    ``cap_share_multiples``: :class:`ObservationLimits`), ``reward_weights`` (None: the mode's
    defaults in :data:`REWARD_WEIGHTS`; a mapping overrides some terms), ``max_steps`` before
    truncation and ``record`` (keep the simulator's task log for Gantt charts)."""

    mode: str = "online"
    num_jobs: int = 30
    load: float | tuple[float, float] = 0.85
    network_mix: float = 0.5
    # the timing rules default to the simulator's own (ClusterSpec); the env's network is wider
    num_executors: int = ClusterSpec.num_executors
    network_capacity: float = 25.0
    network_flow_overhead: float = ClusterSpec.network_flow_overhead
    moving_delay_s: float = ClusterSpec.moving_delay_s
    warmup_s: float = ClusterSpec.warmup_s
    duration_model: str = ClusterSpec.duration_model
    warmup_scope: str = ClusterSpec.warmup_scope
    move_from_pool: bool = ClusterSpec.move_from_pool
    commit_when: str = ClusterSpec.commit_when
    observation_mode: str = "padded"
    max_jobs: int = 16
    max_stages: int = 20
    cap_share_multiples: tuple[float, ...] = (0.5, 1.0, 2.0)
    reward_weights: Mapping[str, float] | None = None
    max_steps: int = 100_000
    record: bool = False

    def __post_init__(self) -> None:
        require_choice(self, "mode", ("online", "batch"))
        require_choice(self, "observation_mode", ("padded", "graph"))
        require_integer(self, "num_jobs")
        if isinstance(self.load, list | tuple):
            object.__setattr__(self, "load", tuple(self.load))
            require(self, "load", len(self.load) == 2 and all(is_number(x, 0.0, True)
                                                              for x in self.load)
                    and self.load[0] <= self.load[1], "a (low, high) range with 0 < low <= high")
        else:
            require_number(self, "load", 0.0, strict=True)
        require(self, "network_mix", is_number(self.network_mix, 0.0) and self.network_mix <= 1,
                "a number in [0, 1]")
        require_number(self, "network_capacity", 0.0, strict=True)
        require_number(self, "network_flow_overhead", 0.0)
        require_number(self, "moving_delay_s", 0.0)
        require_number(self, "warmup_s", 0.0)
        for flag in ("move_from_pool", "record"):
            require(self, flag, isinstance(getattr(self, flag), bool), "true or false")
        require(self, "cap_share_multiples", isinstance(self.cap_share_multiples, list | tuple)
                and all(is_number(m, 0.0, True) for m in self.cap_share_multiples),
                "a sequence of numbers > 0")
        object.__setattr__(self, "cap_share_multiples",
                           tuple(float(m) for m in self.cap_share_multiples))
        if self.reward_weights is not None:
            freeze_weights(self, "reward_weights", REWARD_WEIGHTS[self.mode], merge=False)
        require_integer(self, "max_steps")
        require_integer(self, "max_jobs")
        require_integer(self, "max_stages")
        _ = self.cluster, self.limits  # num_executors and the timing rules: ClusterSpec's checks

    @property
    def cluster(self) -> ClusterSpec:
        """The cluster and timing rules of the simulator."""
        return ClusterSpec(**{f.name: getattr(self, f.name) for f in fields(ClusterSpec)})

    @property
    def limits(self) -> ObservationLimits:
        """Padding and parallelism levels of the padded view."""
        return ObservationLimits(max_jobs=self.max_jobs, max_stages=self.max_stages,
                                 cap_share_multiples=self.cap_share_multiples)

    @property
    def weights(self) -> dict[str, float]:
        """Every reward term's weight: the mode's defaults with ``reward_weights`` on top."""
        return {**REWARD_WEIGHTS[self.mode], **(self.reward_weights or {})}

    def default_generator(self) -> TPCHLikeGenerator:
        return TPCHLikeGenerator(num_jobs=self.num_jobs, mode=self.mode, load=self.load,
                                 num_executors=self.num_executors, network_mix=self.network_mix,
                                 max_stages=min(20, self.max_stages))
