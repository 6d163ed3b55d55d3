import json

import numpy as np
import pytest

from envs.param_server import (
    DatasetGenerator,
    InstanceError,
    ParamServerInstance,
    SparseDataset,
    ZipfTopicGenerator,
    synthesize,
)
from envs.param_server.env import SITEPACKAGES_PATH


def test_json_and_npz_round_trip(zipf_instance, tmp_path):
    again = ParamServerInstance.from_json(zipf_instance.to_json())
    path = tmp_path / "inst.npz"
    zipf_instance.save_npz(path)
    loaded = ParamServerInstance.load_npz(path)
    for other in (again, loaded):
        assert other.to_dict() == zipf_instance.to_dict()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("edges"), "missing field 'edges'"),
    (lambda d: d["blocks"].__setitem__("samples", [1, -2, 3]), "block_samples[1]"),
    (lambda d: d["edges"].append([0, 0, 5]), "appears more than once"),
    (lambda d: d["edges"].append([0, 99, 5]), "names shard 99"),
    (lambda d: d["edges"].__setitem__(0, [0, 1]), "edges[0] must be [block, shard, nnz]"),
    (lambda d: d["machines"][1].__setitem__("bandwidth_bytes_per_s", 0), "machines[1]"),
    (lambda d: d["machines"][0].__setitem__("speed_nnz_per_s", "fast"), "expected a number"),
    (lambda d: [m.__setitem__("memory_bytes", 10) for m in d["machines"]], "memory_bytes sum"),
])
def test_bad_input_names_the_problem(hand_instance, mutate, message):
    data = json.loads(hand_instance.to_json())
    mutate(data)
    with pytest.raises(InstanceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ParamServerInstance.from_json(json.dumps(data))


def test_malformed_json_and_missing_file(tmp_path):
    with pytest.raises(InstanceError, match="malformed JSON"):
        ParamServerInstance.from_json("{not json")
    with pytest.raises(InstanceError, match="cannot read"):
        ParamServerInstance.from_json(tmp_path / "absent.json")


def test_generator_is_deterministic_and_sparsity_is_tunable():
    make = lambda density: ZipfTopicGenerator(density=density)(np.random.default_rng(3))  # noqa: E731
    assert make(0.08).to_dict() == make(0.08).to_dict()
    assert make(0.02).num_edges < make(0.08).num_edges < make(0.3).num_edges


def test_synthesized_data_has_the_instance_graph(zipf_instance):
    dataset = synthesize(zipf_instance, np.random.default_rng(1))
    assert dataset.matches(zipf_instance)
    assert dataset.features.nnz == zipf_instance.edge_nnz.sum()


def test_shipped_real_dataset_builds_an_instance():
    dataset = SparseDataset.load(SITEPACKAGES_PATH)
    info = dataset.describe()
    assert info["blocks"] >= 64 and info["classes"] == 8 and len(info["files"]) == info["blocks"]
    instance = DatasetGenerator(SITEPACKAGES_PATH, 4)(np.random.default_rng(0))
    assert dataset.matches(instance)
    # identifiers follow a heavy tail: the most shared key is touched by most files
    touched = np.bincount(instance.edge_shard, minlength=instance.num_shards)
    assert touched.max() > 0.5 * instance.num_blocks and np.median(touched) <= 4
