"""The cluster-launcher files pass Ray's own validation and install artsy on every node.

``cluster.yaml`` (provider ``local``) and ``cluster-aws.yaml`` (provider ``aws``, GPU workers) are
run through the same two steps ``ray up`` runs before it contacts any machine:
``prepare_config`` (merge Ray's provider defaults, fill the node types) and ``validate_config``
(Ray's JSON schema plus its cross-field checks). The AWS provider's own bootstrap (boto3 calls) is
left out: it needs an AWS account.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ray_util = pytest.importorskip("ray.autoscaler._private.util")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = ("cluster.yaml", "cluster-aws.yaml")
PLACEHOLDER = re.compile(r"REPLACE_ME_[A-Z0-9_]+")
MOUNT = "~/artsy"


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _prepared(name: str) -> dict:
    """The config as ``ray up`` sees it after ``prepare_config`` and ``validate_config``."""
    config = ray_util.prepare_config(copy.deepcopy(_load(name)))
    ray_util.validate_config(config)
    return config


def _setup_commands_by_node_type(config: dict) -> dict[str, list[str]]:
    """Setup commands each kind of node really runs (a node type's own list replaces the global)."""
    commands = {"head": config["head_setup_commands"]}
    for node_type, node in config["available_node_types"].items():
        if node_type != config["head_node_type"] or config["provider"]["type"] == "local":
            # The local provider has one node type, used for the head and for the workers.
            commands[node_type] = node.get("worker_setup_commands",
                                           config["worker_setup_commands"])
    return commands


def _installs_artsy(command: str) -> bool:
    return bool(re.search(r"pip install .*-e (~/artsy|\"\$HOME/artsy(\[\w+\])?\")", command))


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_file_passes_ray_validation(name):
    config = _prepared(name)
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_validation_rejects_a_misspelt_field(name):
    # The validator in use really checks these files: one typo in a field name fails it.
    config = _load(name)
    config["setup_comands"] = config.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):
        ray_util.validate_config(ray_util.prepare_config(config))


def test_cluster_local_ips_and_user_are_marked_placeholders():
    provider = _load("cluster.yaml")["provider"]
    auth = _load("cluster.yaml")["auth"]
    assert provider["type"] == "local"
    assert PLACEHOLDER.fullmatch(provider["head_ip"])
    assert provider["worker_ips"]
    assert all(PLACEHOLDER.fullmatch(ip) for ip in provider["worker_ips"])
    assert PLACEHOLDER.fullmatch(auth["ssh_user"])


def test_cluster_aws_region_and_images_are_marked_placeholders():
    config = _load("cluster-aws.yaml")
    assert config["provider"]["type"] == "aws"
    assert PLACEHOLDER.fullmatch(config["provider"]["region"])
    for node in config["available_node_types"].values():
        assert PLACEHOLDER.fullmatch(node["node_config"]["ImageId"])


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_placeholders_are_explained_in_the_header(name):
    text = (ROOT / name).read_text()
    header = text.split("\ncluster_name:")[0]
    assert "REPLACE_ME_" in header
    for placeholder in set(PLACEHOLDER.findall(text)):
        line = next(line for line in text.splitlines() if placeholder in line)
        assert "# e.g." in line, f"{name}: give an example value next to {placeholder}"


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_mounts_this_checkout_on_every_node(name):
    config = _load(name)
    assert (ROOT / config["file_mounts"][MOUNT] / "pyproject.toml").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "artsy"
    # rsync skips what .gitignore lists, so a local .venv is never copied to the nodes.
    assert ".gitignore" in config["rsync_filter"]
    assert ".venv/" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_every_node_type_installs_artsy_into_the_venv_on_path(name):
    for node_type, commands in _setup_commands_by_node_type(_prepared(name)).items():
        joined = "\n".join(commands)
        assert "python3 -m venv ~/artsy-venv" in joined, node_type
        assert "SSH_CONNECTION" in joined and ">> ~/.bashrc" in joined, node_type
        installs = [index for index, command in enumerate(commands) if _installs_artsy(command)]
        assert len(installs) == 1, f"{name}/{node_type} must pip-install ~/artsy once"
        # The install runs after the venv is created and put on PATH.
        assert installs[0] == len(commands) - 1, node_type


def test_cluster_aws_gpu_workers_have_a_gpu_and_the_gpu_extra():
    config = _prepared("cluster-aws.yaml")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu_types = [name for name, node in config["available_node_types"].items()
                 if node["resources"].get("GPU", 0) >= 1]
    assert gpu_types == ["gpu_worker"]
    gpu_worker = config["available_node_types"]["gpu_worker"]
    assert gpu_worker["node_config"]["InstanceType"] == "g5.xlarge"
    install = _setup_commands_by_node_type(config)["gpu_worker"][-1]
    assert '"$HOME/artsy[gpu]"' in install
    assert "gpu" in extras["optional-dependencies"]
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_start_commands_disable_usage_stats_and_require_token_auth(name):
    config = _prepared(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [command for command in config[key] if "ray start" in command]
        assert len(start) == 1, key
        assert "RAY_USAGE_STATS_ENABLED=0" in start[0]
        assert "RAY_AUTH_MODE=token" in start[0]
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head_start
    # The token every node needs travels with the file mounts.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
