"""`--launch=vertex_ai_local`: the Vertex AI job of a run, rehearsed on this machine.

It runs exactly the request `--launch=vertex_ai` would submit (`vertex.custom_job_spec`:
the same node pickles, commands and per-pool environment), every replica as its own
host: one network namespace per replica, whose only interfaces are `lo` and `eth0`, a
veth to a private bridge; its own 10.x address and a Vertex-style host name that the
others resolve (`/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over /etc/hosts).
What Vertex AI adds is added here: `CLUSTER_SPEC` / `TF_CONFIG` (every replica's
`host:2222`, its own pool and index), `CLOUD_ML_JOB_ID`, `CLOUD_ML_PROJECT_ID`. A
stand-in on the bridge plays the VM metadata server (`metadata.google.internal`, the
token) and the job-cancel endpoint the stop node calls (`BPRL_VERTEX_API_ENDPOINT`, the
one variable Vertex does not set): a cancel SIGTERMs every replica, as Vertex AI does,
then SIGKILLs what is left after the grace period. Nothing is shared but the run
directory. Namespaces, veths, the bridge and the hosts files are removed afterwards,
also on errors and signals; a later rehearsal removes those of one that was SIGKILLed.
Needs root (`ip netns`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import http.server
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

import ml_collections

from launch import vertex
from launch.validate import ConfigError

STATE_DIR = "/run/bprl-rehearsal"  # one <run id>.json per rehearsal: what to remove
NETNS_ETC = "/etc/netns"
PREFIX = "bprlv"  # namespaces bprlv-<id>-<pool>-<i>, bridge bprlv<id>, veths bv<id>...
RECORD = "rehearsal.json"  # in the run directory: the job as run, replicas, cancel calls
_DROP_ENV = ("BPRL_", "LAUNCHPAD_", "CLUSTER_SPEC", "TF_CONFIG", "CLOUD_ML_")


def check_can_rehearse() -> None:
    """ConfigError (one line) where this machine cannot make the replicas' hosts."""
    if os.geteuid() != 0:
        raise ConfigError("--launch=vertex_ai_local needs root (it creates network namespaces)")
    if not shutil.which("ip"):
        raise ConfigError("--launch=vertex_ai_local needs `ip` (iproute2)")


@dataclasses.dataclass
class Replica:
    """One replica of the job: one node, one namespace, one process."""

    node: str  # <group>/<index in group>
    pool: str
    index: int  # replica index in its pool (CLUSTER_SPEC's task index)
    namespace: str
    veth: str
    address: str
    hostname: str
    process: subprocess.Popen | None = None
    returncode: int | None = None


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


@contextlib.contextmanager
def _state_lock():
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(os.path.join(STATE_DIR, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _process_alive(pid: int, started: float) -> bool:
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


def remove_hosts(run_id: str) -> None:
    """Removes every namespace, hosts directory and the bridge of rehearsal `run_id`."""
    listed = _run(["ip", "netns", "list"]).stdout.split()
    for name in listed:
        if name.startswith(f"{PREFIX}-{run_id}-"):
            _run(["ip", "netns", "delete", name])  # its veth end goes with it
    if os.path.isdir(NETNS_ETC):
        for name in os.listdir(NETNS_ETC):
            if name.startswith(f"{PREFIX}-{run_id}-"):
                shutil.rmtree(os.path.join(NETNS_ETC, name), ignore_errors=True)
    # A namespace goes (with its veth) once its last process is reaped, which may be after
    # this: delete the veths' host ends now, then the bridge.
    for line in _links():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(f"bv{run_id}"):
            _run(["ip", "link", "delete", name])
    _run(["ip", "link", "delete", f"{PREFIX}{run_id}"])
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(STATE_DIR, f"{run_id}.json"))


def remove_stale_hosts() -> list[str]:
    """Removes the hosts of rehearsals whose launcher is gone; returns their run ids."""
    stale = set()
    live = set()
    for name in os.listdir(STATE_DIR) if os.path.isdir(STATE_DIR) else []:
        if not name.endswith(".json"):
            continue
        run_id = name[: -len(".json")]
        try:
            with open(os.path.join(STATE_DIR, name)) as f:
                state = json.load(f)
            alive = _process_alive(int(state["pid"]), float(state["started"]))
        except (OSError, ValueError, KeyError):
            alive = False
        (live if alive else stale).add(run_id)
    # namespaces and bridges without a state file (their launcher died while writing it)
    names = _run(["ip", "netns", "list"]).stdout.split()
    names += [line.split(":")[1].strip().split("@")[0] for line in _links()]
    for name in names:
        if name.startswith(f"{PREFIX}-"):
            run_id = name.split("-")[1]
        elif name.startswith(PREFIX) and not name.startswith(f"{PREFIX}-"):
            run_id = name[len(PREFIX) :]
        elif re.fullmatch(r"bv[0-9a-f]{6}\d+x\d+", name):  # a veth's host end
            run_id = name[2:8]
        else:
            continue
        if run_id not in live:
            stale.add(run_id)
    for run_id in sorted(stale):
        remove_hosts(run_id)
    return sorted(stale)


def _links() -> list[str]:
    return [line for line in _run(["ip", "-o", "link"]).stdout.splitlines() if ":" in line]


def _free_subnet() -> str:
    """A 10.213.x.0/24 that no interface or route of this machine uses."""
    used = _run(["ip", "-o", "addr"]).stdout + _run(["ip", "route"]).stdout
    choices = [x for x in range(256) if f"10.213.{x}." not in used]
    if not choices:
        raise ConfigError("no free 10.213.x.0/24 subnet for the rehearsal's hosts")
    return f"10.213.{random.choice(choices)}"


class Hosts:
    """The replicas' hosts: a bridge, and a namespace with a veth and an address each."""

    def __init__(self, run_id: str, pools: list[vertex.Pool]):
        self.run_id = run_id
        self.bridge = f"{PREFIX}{run_id}"
        self.subnet = ""
        self.gateway = ""
        self.replicas: list[Replica] = []
        self._pools = pools

    def create(self) -> None:
        with _state_lock():
            remove_stale_hosts()
            self.subnet = _free_subnet()
            self.gateway = f"{self.subnet}.1"
            with open(os.path.join(STATE_DIR, f"{self.run_id}.json"), "w") as f:
                json.dump({"pid": os.getpid(), "started": _create_time(), "bridge": self.bridge}, f)
            k = 0
            for p, pool in enumerate(self._pools):
                for i, (group, index) in enumerate(pool.nodes):
                    k += 1
                    if k > 250:
                        raise ConfigError("the rehearsal runs at most 250 replicas")
                    self.replicas.append(
                        Replica(
                            node=f"{group}/{index}",
                            pool=pool.name,
                            index=i,
                            namespace=f"{PREFIX}-{self.run_id}-{p}-{i}",
                            veth=f"bv{self.run_id}{p}x{i}",
                            address=f"{self.subnet}.{k + 1}",
                            hostname=f"cmle-training-{pool.name}-{self.run_id}-{i}",
                        )
                    )
            batch = [
                f"link add {self.bridge} type bridge",
                f"addr add {self.gateway}/24 dev {self.bridge}",
                f"link set {self.bridge} up",
            ]
            for r in self.replicas:
                batch.append(f"netns add {r.namespace}")
            for r in self.replicas:
                batch += [
                    f"link add {r.veth} type veth peer name eth0 netns {r.namespace}",
                    f"link set {r.veth} master {self.bridge}",
                    f"link set {r.veth} up",
                ]
            _ip_batch([], batch)
            for r in self.replicas:
                inside = [f"addr add {r.address}/24 dev eth0", "link set eth0 up", "link set lo up"]
                _ip_batch(["-n", r.namespace], inside)
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
        lines += [f"{r.address} {r.hostname}" for r in self.replicas]
        lines.append(f"{self.gateway} metadata.google.internal metadata")
        for r in self.replicas:
            os.makedirs(os.path.join(NETNS_ETC, r.namespace), exist_ok=True)
            with open(os.path.join(NETNS_ETC, r.namespace, "hosts"), "w") as f:
                f.write("\n".join(lines) + "\n")

    def remove(self) -> None:
        remove_hosts(self.run_id)


def _ip_batch(options: list[str], commands: list[str]) -> None:
    result = _run(["ip", *options, "-batch", "-"], input="\n".join(commands) + "\n")
    if result.returncode != 0:
        message = " ".join(result.stderr.split())
        raise ConfigError(f"could not create the rehearsal's hosts: {message}")


def _create_time() -> float:
    import psutil

    return psutil.Process().create_time()


def cluster_spec(replicas: list[Replica], me: Replica) -> str:
    """Vertex AI's CLUSTER_SPEC for replica `me` (pool -> host:port list, own task)."""
    cluster: dict[str, list[str]] = {}
    for r in replicas:
        cluster.setdefault(r.pool, []).append(f"{r.hostname}:{vertex.PORT}")
    return json.dumps(
        {
            "cluster": cluster,
            "environment": "cloud",
            "task": {"type": me.pool, "index": me.index, "trial": ""},
        }
    )


class StandIn:
    """The metadata server's token and the job-cancel endpoint, on the bridge's address."""

    def __init__(self, address: str, project: str, region: str, job_id: str, on_cancel):
        self.token = secrets.token_hex(16)
        self.cancel_path = f"/v1/projects/{project}/locations/{region}/customJobs/{job_id}:cancel"
        self.requests: list[dict] = []  # every request: method, path, client, status
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                # Logged before the reply goes out: a client acts on the reply at once (the
                # token's GET is followed by the cancel's POST on another handler thread),
                # so logging after it could record the POST first, or the GET too late.
                stand_in.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "client": self.client_address[0],
                        "status": status,
                        "time": time.time(),
                    }
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                token_path = "/computeMetadata/v1/instance/service-accounts/default/token"
                if self.path != token_path or self.headers.get("Metadata-Flavor") != "Google":
                    self._reply(404, {"error": "not found"})
                    return
                self._reply(
                    200,
                    {"access_token": stand_in.token, "expires_in": 3599, "token_type": "Bearer"},
                )

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    self._reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
                elif self.path != stand_in.cancel_path:
                    self._reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                else:
                    self._reply(200, {})
                    on_cancel(self.client_address[0])

        try:  # port 80: the metadata server's, which the stop node's urllib call uses
            self.server = http.server.ThreadingHTTPServer((address, 80), Handler)
        except OSError as error:
            message = f"the rehearsal's stand-in cannot listen on {address}:80: {error}"
            raise ConfigError(message) from None
        self.endpoint = f"http://{address}:80"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _set_parent_death_signal() -> None:
    from launch import lifeline

    lifeline.set_parent_death_signal(signal.SIGKILL)  # no replica outlives the launcher


def replica_environment(
    pool_spec: dict, replicas: list[Replica], me: Replica, project: str, job_id: str, api: str
) -> dict[str, str]:
    """A replica's environment: the pool's (from the job request), what Vertex AI sets,
    and the stand-in's address; over this machine's basics (PATH, PYTHONPATH, locale)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_ENV)}
    env.update({e["name"]: e["value"] for e in pool_spec["containerSpec"]["env"]})
    spec = cluster_spec(replicas, me)
    env.update(
        {
            "CLUSTER_SPEC": spec,
            "TF_CONFIG": spec,
            "CLOUD_ML_JOB_ID": job_id,
            "CLOUD_ML_PROJECT_ID": project,
            "BPRL_VERTEX_API_ENDPOINT": api,
        }
    )
    return env


@dataclasses.dataclass
class Outcome:
    """How the rehearsed job ended."""

    state: str  # CANCELLED (a cancel request or a signal), FAILED, SUCCEEDED
    reason: str
    failed: list[str]  # nodes that exited with an error before the job ended
    cancel_from: str  # the node whose cancel request ended the job, or ""


def launch_rehearsal(config: ml_collections.ConfigDict, workdir: str, grace_secs: float = 0):
    """Runs the run's Vertex AI job on emulated hosts until it ends; returns its Outcome."""
    from launch import local
    from launch.progress import run_progress
    from launch.tensorboard import write_layout

    check_can_rehearse()
    vertex.validate_cluster(config, submit=False)
    grace_secs = grace_secs or vertex.TERMINATION_NOTICE_SECS + 5
    workdir = os.path.abspath(workdir)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    local.save_config(config, workdir)
    write_layout(workdir)
    run_id = secrets.token_hex(3)
    job_id = str(random.randrange(10**18, 10**19))
    project = str(config.cluster.project or "rehearsal")
    region = str(config.cluster.region)
    pools = vertex.plan_pools(config)
    vertex.write_node_pickles(config, workdir)
    job = vertex.custom_job_spec(config, workdir, vertex.display_name(config, workdir))
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
    stand_in = None
    record = {"run_id": run_id, "job_id": job_id, "job": job, "replicas": []}
    try:
        hosts.create()
        stand_in = StandIn(hosts.gateway, project, region, job_id, on_cancel)
        stand_in.start()
        record["bridge"] = hosts.bridge
        record["stand_in"] = stand_in.endpoint
        specs = dict(zip([p.name for p in pools], job["jobSpec"]["workerPoolSpecs"], strict=True))
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for r in hosts.replicas:
            spec = specs[r.pool]["containerSpec"]
            command = [sys.executable if c == "python" else c for c in spec["command"]]
            env = replica_environment(
                specs[r.pool], hosts.replicas, r, project, job_id, stand_in.endpoint
            )
            log = os.path.join(workdir, "logs", r.node)
            os.makedirs(os.path.dirname(log), exist_ok=True)
            with open(log, "w") as out:
                r.process = subprocess.Popen(
                    ["ip", "netns", "exec", r.namespace, *command, *spec["args"]],
                    env=env,
                    cwd=repo,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_set_parent_death_signal,
                )
            fields = ("node", "pool", "index", "namespace", "veth", "address", "hostname")
            entry = {name: getattr(r, name) for name in fields}
            record["replicas"].append(entry | {"pid": r.process.pid})
        _write_record(workdir, record)
        print(
            f"rehearsing Vertex AI job {job_id}: {len(hosts.replicas)} replicas on bridge "
            f"{hosts.bridge} ({hosts.subnet}.0/24)",
            flush=True,
        )
        for pool in pools:
            print(
                f"  {pool.name}: {', '.join(pool.groups)} ({len(pool.nodes)} x {pool.machine_type})"
            )
        with run_progress(config, workdir):
            outcome = _wait(hosts.replicas, cancel, why, grace_secs)
        record["outcome"] = dataclasses.asdict(outcome)
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
        hosts.remove()
        _write_record(workdir, record)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _write_record(workdir: str, record: dict) -> None:
    path = os.path.join(workdir, RECORD)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2, default=str)
    os.replace(path + ".tmp", path)


def _wait(
    replicas: list[Replica], cancel: threading.Event, why: dict, grace_secs: float
) -> Outcome:
    """Vertex AI's job lifecycle: a cancel (or a signal) SIGTERMs every replica; a replica
    that fails fails the job (the others get SIGTERM); the first pool's replica finishing
    ends it. SIGKILL for what is left `grace_secs` after the SIGTERM."""
    state, failed, deadline = "RUNNING", [], None
    chief = replicas[0]
    while True:
        for r in replicas:
            if r.returncode is None and r.process.poll() is not None:
                r.returncode = r.process.returncode
                if state == "RUNNING" and r.returncode != 0:
                    failed.append(r.node)
        if state == "RUNNING":
            if cancel.is_set():
                state = "CANCELLED"
            elif failed:
                state = "FAILED"
                why.setdefault("reason", f"{failed[0]} exited with {_code(failed[0], replicas)}")
            elif chief.returncode == 0:
                state = "SUCCEEDED"
                why.setdefault("reason", f"{chief.node} ({chief.pool}-0) finished")
            if state != "RUNNING":
                deadline = time.monotonic() + grace_secs
                for r in replicas:
                    if r.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            r.process.send_signal(signal.SIGTERM)
        if all(r.returncode is not None for r in replicas):
            break
        if deadline is not None and time.monotonic() > deadline:
            for r in replicas:
                if r.returncode is None:
                    r.process.kill()
            deadline = None
        time.sleep(0.3)
    return Outcome(state, why.get("reason", ""), failed, why.get("cancel_from", ""))


def _code(node: str, replicas: list[Replica]) -> str:
    code = next(r.returncode for r in replicas if r.node == node)
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return f"exit code {code}"
