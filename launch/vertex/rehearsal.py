"""`--launch=vertex_ai_local`: the Vertex AI job of a run, rehearsed on this machine.

It runs exactly the request `--launch=vertex_ai` would submit (`job_request.custom_job_spec`:
the same node pickles, commands and per-pool environment), every replica as its own
machine, as far as this machine can make one:
- its own network namespace, whose only interfaces are `lo` and `eth0`, a veth to a
  private bridge; its own 10.x address and a Vertex-style host name that the others
  resolve (`/etc/netns/<ns>/hosts`). The bridge has no address on this machine: nothing
  outside the job's namespaces can reach a node's port (Reverb and Courier take
  unauthenticated connections; on Vertex AI only the job's replicas reach them);
- its own mount and PID namespaces: a private /tmp, the launcher's folder hidden, the
  project at /opt/bprl (read-only, the image's working directory), the image's init
  (tini) as PID 1 and the node its child, run as the image's user (uid 1000) with the
  image's environment plus the pool's;
- no shared local directory: the run directory is `gs://<bucket>/run` on a local Cloud
  Storage emulator (launch/vertex/gcs_emulator.py), reached through TensorFlow's GCS filesystem
  as on Vertex AI; its objects live under `<workdir>/bucket/`, so a later rehearsal of
  the same `--workdir` resumes from them.
What Vertex AI adds is added here: `CLUSTER_SPEC` / `TF_CONFIG`, `CLOUD_ML_JOB_ID`,
`CLOUD_ML_PROJECT_ID`; replicas start a second or two apart, as VMs do. A services
namespace on the bridge holds the storage emulator and a stand-in for the VM metadata
server and the job-cancel endpoint (`BPRL_VERTEX_API_ENDPOINT` and
`CLOUD_STORAGE_EMULATOR_ENDPOINT` are the two variables the real job does not have;
`BPRL_REHEARSAL_CANCEL_STATUS=403` makes the stand-in refuse cancels). The job's life
follows Vertex AI: the primary replica (workerpool0, the stop node) exiting 0 ends it
SUCCEEDED; a replica that fails while the others run restarts the whole job
(`restartJobOnWorkerRestart`), at most 3 times; a cancel SIGTERMs every replica and
SIGKILLs what is left after the grace period. Namespaces, veths, the bridge and the hosts
files are removed afterwards, also on errors and signals; a later rehearsal removes those
of one that was SIGKILLed. Needs root (`ip netns`, `unshare`, `setpriv`) and tini.

This module is the run loop; the hosts are made in launch/vertex/rehearsal_hosts.py, each
replica's sandbox, command and environment in launch/vertex/rehearsal_sandbox.py, the
stand-in API in launch/vertex/rehearsal_stand_in.py, and the job's life (when it ends, and
how) is launch/vertex/rehearsal_lifecycle.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time

import ml_collections

from bprl.launch.config.errors import ConfigError
from bprl.launch.rundir import layout
from bprl.launch.vertex import job_request, worker_pools
from bprl.launch.vertex.job import validate_cluster
from bprl.launch.vertex.rehearsal_hosts import Hosts, in_netns
from bprl.launch.vertex.rehearsal_lifecycle import wait
from bprl.launch.vertex.rehearsal_sandbox import replica_command, replica_environment
from bprl.launch.vertex.rehearsal_stand_in import StandIn

RECORD = "rehearsal.json"  # the job as run, replicas, requests (local folder and bucket)
BUCKET = "bprl-rehearsal"  # the emulated bucket; the run directory is gs://BUCKET/run
RUN_NAME = "run"
STORAGE_DIR = "bucket"  # under the local --workdir: the emulator's objects
STORAGE_PORT = 4443
MAX_JOB_RESTARTS = 3  # Vertex AI retries a whole job up to 3 times


def run_dir_view(workdir: str) -> str:
    """Where this machine reads a rehearsal's run directory (gs://BUCKET/run): the
    emulator's files of its objects under `<workdir>/bucket/`. Read-only: the nodes write
    the run directory through the emulator."""
    return os.path.join(os.path.abspath(workdir), STORAGE_DIR, BUCKET, RUN_NAME)


def check_can_rehearse() -> None:
    """ConfigError (one line) where this machine cannot make the replicas' hosts."""
    if os.geteuid() != 0:
        raise ConfigError("--launch=vertex_ai_local needs root (it creates network namespaces)")
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("setpriv", "util-linux")):
        if not shutil.which(tool):
            raise ConfigError(f"--launch=vertex_ai_local needs `{tool}` ({package})")
    if not os.access(job_request.INIT[0], os.X_OK):
        raise ConfigError(
            f"--launch=vertex_ai_local needs the image's init {job_request.INIT[0]} "
            f"(apt-get install tini)"
        )
    from bprl.launch.vertex import gcs_emulator

    try:
        gcs_emulator.binary_path()
    except FileNotFoundError as error:
        raise ConfigError(f"--launch=vertex_ai_local needs a storage emulator: {error}") from None


def launch_rehearsal(config: ml_collections.ConfigDict, workdir: str, grace_secs: float = 0):
    """Runs the run's Vertex AI job on emulated hosts until it ends; returns its Outcome."""
    from bprl.launch.rundir.progress import run_progress
    from bprl.launch.vertex import gcs_emulator

    check_can_rehearse()
    validate_cluster(config, submit=False)
    grace_secs = grace_secs or job_request.TERMINATION_NOTICE_SECS + 5
    workdir = os.path.abspath(workdir)
    os.makedirs(layout.logs_dir(workdir), exist_ok=True)
    run_id = secrets.token_hex(3)
    job_id = str(random.randrange(10**18, 10**19))
    project = str(config.cluster.project or "rehearsal")
    region = str(config.cluster.region)
    pools = worker_pools.plan_pools(config)
    run_dir = f"gs://{BUCKET}/{RUN_NAME}"
    hosts = Hosts(run_id, pools)
    cancel = threading.Event()
    why: dict[str, str] = {}

    def on_cancel(client: str) -> None:
        caller = next((r.node for r in hosts.replicas if r.address == client), client)
        why.setdefault("cancel_from", caller)
        why.setdefault("reason", f"cancel request from {caller}")
        cancel.set()

    def on_signal(signum, frame) -> None:
        why.setdefault("reason", f"{signal.Signals(signum).name} to the launcher")
        cancel.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    stand_in = emulator = None
    record: dict = {"run_id": run_id, "job_id": job_id, "run_dir": run_dir, "replicas": []}
    try:
        hosts.create()
        emulator = gcs_emulator.StorageEmulator(
            os.path.join(workdir, STORAGE_DIR), BUCKET, hosts.gateway, STORAGE_PORT, hosts.services
        )
        emulator.start()  # in the services namespace; it dies with this process
        stand_in = in_netns(
            hosts.services, lambda: StandIn(hosts.gateway, project, region, job_id, on_cancel)
        )
        in_netns(hosts.services, stand_in.start)
        # What the submission writes, written the way it does: into the bucket, through
        # TensorFlow's GCS filesystem (from the services namespace, the emulator's).
        job = in_netns(
            hosts.services,
            lambda: _write_job_files(config, run_dir, emulator.endpoint),
        )
        config = job.pop("config")
        record.update(job=job, bridge=hosts.bridge, stand_in=stand_in.endpoint)
        record["storage"] = {"endpoint": emulator.endpoint, "root": emulator.root}
        view = emulator.local_path(run_dir)  # the bucket's objects, read from the host
        print(
            f"rehearsing Vertex AI job {job_id}: {len(hosts.replicas)} replicas on bridge "
            f"{hosts.bridge} ({hosts.subnet}.0/24); run directory {run_dir} "
            f"(objects under {view})",
            flush=True,
        )
        for pool in pools:
            print(
                f"  {pool.name}: {', '.join(pool.groups)} ({len(pool.nodes)} x {pool.machine_type})"
            )
        specs = dict(zip([p.name for p in pools], job["jobSpec"]["workerPoolSpecs"], strict=True))
        restarts, outcome = 0, None
        with run_progress(config, view):
            while True:
                _start_replicas(hosts, specs, project, job_id, stand_in, emulator, workdir, record)
                _write_record(workdir, record, emulator, hosts.services)
                outcome = wait(hosts.replicas, cancel, why, grace_secs)
                if outcome.state != "RESTART" or restarts >= MAX_JOB_RESTARTS:
                    break
                restarts += 1
                print(
                    f"rehearsed job: {outcome.reason}; restarting the whole job from its last "
                    f"complete checkpoint (restart {restarts} of {MAX_JOB_RESTARTS})",
                    flush=True,
                )
                record.setdefault("job_restarts", []).append(
                    {"time": time.time(), "reason": outcome.reason, "failed": outcome.failed}
                )
                why.clear()
            if outcome.state == "RESTART":
                outcome.state = "FAILED"
        outcome.restarts = restarts
        record["outcome"] = dataclasses.asdict(outcome)
        record["storage"].update(emulator.meter.summary())
        return outcome
    finally:
        for r in hosts.replicas:  # whatever happened: no replica is left
            if r.process is not None and r.process.poll() is None:
                r.process.kill()
                r.process.wait()
        if stand_in is not None:
            stand_in.stop()
            record["requests"] = stand_in.requests
        record["exit_codes"] = {r.node: r.returncode for r in hosts.replicas}
        if emulator is not None:
            with contextlib.suppress(Exception):
                _write_record(workdir, record, emulator, hosts.services)
            emulator.stop()
        else:
            _write_record(workdir, record)
        hosts.remove()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _write_job_files(config: ml_collections.ConfigDict, run_dir: str, endpoint: str) -> dict:
    """The node pickles, config.json and TensorBoard layout in the bucket, and the job
    request; what `job.launch_vertex` writes before it submits."""
    from bprl.launch.vertex import gcs_emulator

    # This process's own TensorFlow reaches gs:// through the modular filesystem too.
    os.environ[gcs_emulator.ENDPOINT_ENV] = endpoint
    for name, value in job_request.STORAGE_ENV.items():
        os.environ.setdefault(name, value)
    _load_modular_filesystem()
    from bprl.launch.program.tensorboard import write_layout

    config = job_request.ship_prior_artifact(config, run_dir)
    job_request.write_node_pickles(config, run_dir)
    layout.save_config(config, run_dir)
    write_layout(run_dir)
    job = job_request.custom_job_spec(config, run_dir, job_request.display_name(config, run_dir))
    return {**job, "config": config}


def _load_modular_filesystem() -> None:
    """Registers tensorflow-io's gs:// filesystem in this process (where TensorFlow was
    imported before TF_USE_MODULAR_FILESYSTEM was set, it is not loaded by itself)."""
    import tensorflow as tf
    import tensorflow_io_gcs_filesystem  # noqa: F401 - registers on import

    del tf


def _start_replicas(hosts, specs, project, job_id, stand_in, emulator, workdir, record) -> None:
    """Starts every replica of the job, a second or two apart (as VMs come up)."""
    record["replicas"] = []
    for k, r in enumerate(hosts.replicas):
        if k:
            time.sleep(random.uniform(0.5, 2.0))
        container = specs[r.pool]["containerSpec"]
        env = replica_environment(
            specs[r.pool], hosts.replicas, r, project, job_id, stand_in.endpoint, emulator.endpoint
        )
        log = layout.node_log(workdir, r.node)
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "a") as out:
            r.returncode, r.init_pid = None, None
            r.process = subprocess.Popen(
                replica_command(r, container, workdir),
                env=env,
                cwd="/",
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_set_parent_death_signal,
            )
    for r in hosts.replicas:
        r.init_pid = _init_pid(r.process)
        fields = ("node", "pool", "index", "namespace", "veth", "address", "hostname")
        entry = {name: getattr(r, name) for name in fields}
        record["replicas"].append(entry | {"pid": r.init_pid, "launcher_pid": r.process.pid})


def _init_pid(process: subprocess.Popen, timeout: float = 90.0) -> int | None:
    """The host pid of the replica's PID 1 (the image's init), once it has exec'd; None
    at once when the replica's process ended before (its sandbox failed)."""
    import psutil

    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            for child in psutil.Process(process.pid).children():
                if os.path.basename(child.exe()) == os.path.basename(job_request.INIT[0]):
                    return child.pid
        except psutil.Error:
            return None
        time.sleep(0.05)
    return None


def _write_record(workdir: str, record: dict, emulator=None, services: str = "") -> None:
    """rehearsal.json in the local folder and, with the emulator, in the bucket too."""
    text = json.dumps(record, indent=2, default=str)
    path = os.path.join(workdir, RECORD)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    if emulator is not None:
        in_netns(services, lambda: emulator.upload(f"{RUN_NAME}/{RECORD}", text.encode()))


def _set_parent_death_signal() -> None:
    from bprl.launch.program import lifeline

    lifeline.set_parent_death_signal(signal.SIGKILL)  # no replica outlives the launcher
