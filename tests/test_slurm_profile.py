"""SLURM profiles: loading, validation errors that name file/line/key, and submitit parameters."""
from pathlib import Path

import pytest
import submitit
from submitit.slurm.slurm import _make_sbatch_string

from bench.launch.slurm_profile import ProfileError, SlurmProfile, available_profiles, load_profile

FULL_PROFILE = """\
partition: gpu
account: lab
qos: high
time_min: 120
nodes: 2
gpus_per_node: 8
cpus_per_gpu: 6
mem_gb: 400
constraint: "a100|h100"
setup:
  - module load cuda
extra_sbatch:
  mail-type: FAIL
  exclusive: true
"""


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_profiles_load():
    assert {"local-test", "example-8gpu"} <= set(available_profiles())
    for name in available_profiles():
        assert load_profile(name).name == name


def test_local_test_profile_fits_the_test_cluster():
    profile = load_profile("local-test")
    assert (profile.partition, profile.gpus_per_node, profile.nodes) == ("test", 1, 1)
    # submitit signals 90 s before the limit; a test job needs room beyond that.
    assert profile.time_min * 60 - 90 >= 300


def test_full_profile_loads_by_path(tmp_path):
    profile = load_profile(write(tmp_path, FULL_PROFILE))
    assert profile == SlurmProfile(
        name="site", partition="gpu", account="lab", qos="high", time_min=120, nodes=2,
        gpus_per_node=8, cpus_per_gpu=6, mem_gb=400, constraint="a100|h100",
        setup=("module load cuda",), extra_sbatch={"mail-type": "FAIL", "exclusive": True})
    assert load_profile(str(tmp_path / "site.yaml")) == profile


def test_to_submitit_params(tmp_path):
    params = load_profile(write(tmp_path, FULL_PROFILE)).to_submitit_params()
    assert params == {
        "timeout_min": 120, "nodes": 2, "gpus_per_node": 8, "tasks_per_node": 8,
        "cpus_per_task": 6, "mem_gb": 400, "slurm_partition": "gpu", "slurm_account": "lab",
        "slurm_qos": "high", "slurm_constraint": "a100|h100", "slurm_setup": ["module load cuda"],
        "slurm_additional_parameters": {"mail-type": "FAIL", "exclusive": True},
    }


def test_submitit_turns_params_into_the_expected_sbatch_lines(tmp_path):
    executor = submitit.AutoExecutor(tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(**load_profile(write(tmp_path, FULL_PROFILE)).to_submitit_params())
    script = _make_sbatch_string(command="true", folder=tmp_path, **executor._executor.parameters)
    for line in ["--partition=gpu", "--account=lab", "--qos=high", "--time=120", "--nodes=2",
                 "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=6", "--mem=400GB",
                 "--constraint='a100|h100'", "--mail-type=FAIL", "#SBATCH --exclusive\n"]:
        assert line in script
    assert "module load cuda" in script


def test_tasks_share_the_cpus_of_the_gpus(tmp_path):
    text = "gpus_per_node: 4\ncpus_per_gpu: 8\ntasks_per_node: 2\n"
    params = load_profile(write(tmp_path, text)).to_submitit_params()
    assert (params["tasks_per_node"], params["cpus_per_task"]) == (2, 16)
    assert "slurm_partition" not in params  # left to the cluster's default


@pytest.mark.parametrize("text, key, line, words", [
    ("partition: gpu\ngpu_per_node: 8\n", "gpu_per_node", 2, "did you mean 'gpus_per_node'"),
    ("gpus_per_node: eight\n", "gpus_per_node", 1, "expected an integer"),
    ("nodes: true\n", "nodes", 1, "expected an integer"),
    ("partition: [a, b]\n", "partition", 1, "expected a string"),
    ("time_min: 0\n", "time_min", 1, "at least 1"),
    ("mem_gb: -1\n", "mem_gb", 1, "positive"),
    ("setup: module load cuda\n", "setup", 1, "a list of shell lines"),
    ("extra_sbatch:\n  partition: other\n", "extra_sbatch", 1, "profile key 'partition'"),
    ("extra_sbatch:\n  --mail-type: FAIL\n", "extra_sbatch", 1, "without leading dashes"),
    ("extra_sbatch:\n  exclusive: false\n", "extra_sbatch", 1, "leave a flag out"),
    ("gpus_per_node: 1\ncpus_per_gpu: 1\ntasks_per_node: 2\n", "tasks_per_node", 3, "cannot share"),
])
def test_bad_values_name_file_line_and_key(tmp_path, text, key, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert (info.value.path, info.value.key, info.value.line) == (path, key, line)
    assert f"{path}:{line}: key '{key}':" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("- partition: gpu\n", "expected a mapping"),
    ("partition: [gpu\n", "not valid YAML"),
])
def test_malformed_files_are_refused(tmp_path, text, words):
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path, text))
    assert words in str(info.value)


def test_unknown_profile_name_lists_the_available_ones():
    with pytest.raises(ProfileError) as info:
        load_profile("no-such-cluster")
    message = str(info.value)
    assert "no profile named 'no-such-cluster'" in message
    assert "local-test" in message and "example-8gpu" in message


def test_missing_profile_path(tmp_path):
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "absent.yaml")
