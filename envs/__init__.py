"""Gymnasium environments of pipesched.

Importing this package registers the ids (idempotently; Gymnasium 1.x has no plugin entry
points), so ``import envs; gymnasium.make("pipesched/DnnOffload-v0")`` works.
"""

from gymnasium.envs.registration import register, registry

ENV_IDS: dict[str, str] = {
    "pipesched/DnnOffload-v0": "envs.offload.env:DnnOffloadEnv",
    "pipesched/SparkDagShop-v0": "envs.spark_dag.env:SparkDagShopEnv",
    "pipesched/ParamServer-v0": "envs.param_server.env:ParamServerEnv",
    "pipesched/HeteroPipeline-v0": "envs.hetero_pipeline.env:HeteroPipelineEnv",
}

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point)
