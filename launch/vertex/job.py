"""`--launch=vertex_ai`: the program (launch/program/graph.py) as one Vertex AI custom job.

Every node is one replica (one VM) running the project's own image; the worker pools come
from launch/vertex/worker_pools.py, the CustomJob request and the node pickles it names
from launch/vertex/job_request.py. This module checks `config.cluster`
(`validate_cluster`), writes the run's files under the bucket and has `submit` POST the
request to the Vertex AI REST API. `bprl run --launch=vertex_ai_local`
(launch/vertex/rehearsal.py) runs exactly that request on this machine.
"""

from __future__ import annotations

import os
import re

import ml_collections

from bprl.launch.config.errors import ConfigError
from bprl.launch.rundir import layout, storage
from bprl.launch.vertex.job_request import (
    custom_job_spec,
    display_name,
    ship_prior_artifact,
    write_node_pickles,
)
from bprl.launch.vertex.worker_pools import (
    ACCELERATORS,
    GROUPS,
    default_image,
    machine_type,
    plan_pools,
)

_ACCELERATOR_COUNTS = (1, 2, 4, 8)


def validate_cluster(config: ml_collections.ConfigDict, submit: bool = True) -> None:
    """Raises ConfigError (one line) for the first problem in `config.cluster`.

    `submit=False` checks what a rehearsal needs (not the project and bucket).
    """
    if "cluster" not in config:
        raise ConfigError("the config has no `cluster` section (launch/config/defaults.py)")
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
        if not cluster.get("learner_image", ""):
            raise ConfigError(
                f"cluster.learner.accelerator={accelerator}: the project image installs "
                f"tensorflow-cpu, so the GPU would sit idle; set cluster.learner_image to "
                f"an image with a GPU TensorFlow 2.8 build (docs/cluster.md) or "
                f"accelerator=''"
            )
    elif count:
        raise ConfigError("cluster.learner.accelerator_count is set but accelerator is ''")
    if not cluster.region:
        raise ConfigError("cluster.region is empty (e.g. us-central1)")
    try:
        plan_pools(config)
    except ConfigError as error:
        raise ConfigError(f"cluster: {error}") from None
    if cluster.get("network", ""):
        # Reverb and Courier take unauthenticated connections and Courier unpickles what
        # it receives: a peered VPC would let any of its machines run code in the nodes.
        raise ConfigError(
            f"cluster.network={cluster.network!r} would peer the job with a VPC whose every "
            f"machine could reach the nodes' unauthenticated ports (Reverb, Courier); leave "
            f"it '' so only the job's own replicas reach them (docs/cluster.md)"
        )
    account = str(cluster.get("service_account", "") or "")
    if account and not re.fullmatch(r"[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com", account):
        raise ConfigError(
            f"cluster.service_account {account!r} is not a service account e-mail "
            f"(NAME@PROJECT.iam.gserviceaccount.com)"
        )
    if submit:
        if "@sha256:" not in default_image(config):
            raise ConfigError(
                f"cluster.image must be pinned by digest (IMAGE@sha256:...), got "
                f"{default_image(config)!r}: the node pickles name the image's modules, so "
                f"every replica must run the same build (docs/cluster.md, 'The image')"
            )
        if not cluster.project:
            raise ConfigError("cluster.project is empty: set --config.cluster.project=PROJECT")
        if not str(cluster.bucket).startswith("gs://"):
            raise ConfigError(
                f"cluster.bucket must be a gs:// path for the run directories, "
                f"got {cluster.bucket!r}"
            )


def run_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """A run directory under the bucket (`workdir` relative to it, or a gs:// path)."""
    if str(workdir).startswith("gs://"):
        return str(workdir).rstrip("/")
    return f"{str(config.cluster.bucket).rstrip('/')}/{str(workdir).strip('/')}"


def access_token() -> str:
    """An OAuth token for the REST API: google-auth's default credentials where they are
    set up, else `gcloud auth print-access-token`."""
    adc = os.path.expanduser("~/.config/gcloud/application_default_credentials.json")
    try:  # only with credentials on disk: no probe of a metadata server from a workstation
        if not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.exists(adc)):
            raise FileNotFoundError(adc)
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
        return credentials.token
    except Exception:  # noqa: BLE001 - fall back to the gcloud CLI
        import subprocess

        try:
            out = subprocess.run(
                ["gcloud", "auth", "print-access-token"],
                capture_output=True,
                text=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as error:
            raise ConfigError(
                f"no Google Cloud credentials: run `gcloud auth application-default login` "
                f"(google-auth) or `gcloud auth login` ({error})"
            ) from None
        return out.stdout.strip()


# A job in one of these states still runs, or will, from the run directory's node files.
LIVE_STATES = (
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_PAUSED",
    "JOB_STATE_UPDATING",
)


def api_endpoint(region: str) -> str:
    """The Vertex AI REST endpoint of `region` (BPRL_VERTEX_API_ENDPOINT overrides it)."""
    from bprl.launch.vertex.stop import API_ENDPOINT_ENV

    return (
        os.environ.get(API_ENDPOINT_ENV) or f"https://{region}-aiplatform.googleapis.com"
    ).rstrip("/")


def refuse_a_live_job(directory: str, region: str, token: str) -> None:
    """ConfigError when the job last submitted on `directory` (its VERTEX_JOB record) is
    still live: a new submission would overwrite the node files it runs from under it."""
    import requests

    path = storage.join(directory, layout.VERTEX_JOB)
    if not storage.exists(path):
        return
    name = storage.read_json(path)["name"]  # projects/P/locations/R/customJobs/ID
    response = requests.get(
        f"{api_endpoint(region)}/v1/{name}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if response.status_code == 404:  # deleted: nothing runs from the directory
        return
    if response.status_code >= 400:
        raise ConfigError(
            f"cannot tell whether job {name}, submitted on {directory} before, still runs "
            f"(Vertex AI answered {response.status_code}); resubmitting could overwrite its "
            "node files: check it, or use another --workdir"
        )
    state = response.json().get("state", "")
    if state in LIVE_STATES:
        job_id = name.rsplit("/", 1)[-1]
        raise ConfigError(
            f"job {name} is still {state} on {directory}: resubmitting would overwrite the "
            f"node files it runs from; wait for it to end, cancel it (gcloud ai custom-jobs "
            f"cancel {job_id} --region={region}), or use another --workdir"
        )


def submit(spec: dict, project: str, region: str, token: str) -> dict:
    """POSTs the CustomJob to Vertex AI (REST v1); returns the created job resource."""
    import requests

    url = f"{api_endpoint(region)}/v1/projects/{project}/locations/{region}/customJobs"
    response = requests.post(
        url, json=spec, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    if response.status_code >= 400:
        raise ConfigError(
            f"Vertex AI refused the job ({response.status_code}): "
            f"{' '.join(response.text.split())[:500]}"
        )
    return response.json()


def launch_vertex(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the node pickles under the bucket and submits one run; returns its run dir."""
    validate_cluster(config, submit=True)
    token = access_token()  # before anything is written
    directory = run_dir(config, workdir)
    refuse_a_live_job(directory, config.cluster.region, token)
    config = ship_prior_artifact(config, directory)
    write_node_pickles(config, directory)
    layout.save_config(config, directory)
    spec = custom_job_spec(config, directory, display_name(config, workdir))
    job = submit(spec, config.cluster.project, config.cluster.region, token)
    if job.get("name"):
        storage.write_json(storage.join(directory, layout.VERTEX_JOB), {"name": job["name"]})
    print(f"submitted {job.get('name', '?')}; run directory {directory}")
    for pool in plan_pools(config):
        print(f"  {pool.name}: {', '.join(pool.groups)} ({len(pool.nodes)} x {pool.machine_type})")
    print(f"watch it with: tensorboard --logdir {directory}")
    return directory


def launch_sweep(runs, workdir: str) -> int:
    """Submits every run of a sweep (launch/sweep.py plan) to Vertex AI; returns 0."""
    for run in runs:
        relative = storage.join(workdir, run.variant, layout.seed_dir_name(run.seed))
        launch_vertex(run.config, relative)
    return 0
