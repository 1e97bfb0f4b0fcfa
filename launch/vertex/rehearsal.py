"""`--launch=vertex_ai_local`: the Vertex AI job of a run, rehearsed on this machine.

It runs exactly the request `--launch=vertex_ai` would submit (`vertex.custom_job_spec`:
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
"""

from __future__ import annotations

import contextlib
import ctypes
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

from bprl.launch.config.validate import ConfigError
from bprl.launch.rundir import layout
from bprl.launch.vertex import job as vertex

STATE_DIR = "/run/bprl-rehearsal"  # one <run id>.json per rehearsal: what to remove
NETNS_ETC = "/etc/netns"
PREFIX = "bprlv"  # namespaces bprlv-<id>-<pool>-<i>, bridge bprlv<id>, veths bv<id>...
RECORD = "rehearsal.json"  # the job as run, replicas, requests (local folder and bucket)
BUCKET = "bprl-rehearsal"  # the emulated bucket; the run directory is gs://BUCKET/run
RUN_NAME = "run"
STORAGE_DIR = "bucket"  # under the local --workdir: the emulator's objects
STORAGE_PORT = 4443
MAX_JOB_RESTARTS = 3  # Vertex AI retries a whole job up to 3 times
IMAGE_UID = 1000  # the Dockerfile's user
IMAGE_WORKDIR = "/opt/bprl"  # the Dockerfile's WORKDIR
IMAGE_HOME = "/home/bprl"
CANCEL_STATUS_ENV = "BPRL_REHEARSAL_CANCEL_STATUS"  # e.g. 403: the stand-in refuses cancels
_KEEP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # this machine's numerical-library fixes
_CLONE_NEWNET = 0x40000000
# Run inside a replica's new mount, PID and UTS namespaces, as root, before it becomes
# the image's user: its host name, a private /tmp, the launcher's folder hidden, the
# project at the image's working directory (read-only), a home, the interpreter's folder
# reachable where it sits under root's home; then the pool's command (which starts with
# the image's init), killed if its launcher dies (the user switch clears the parent-death
# signal that unshare --kill-child set, so setpriv sets it again).
_SANDBOX = r"""
set -e
hide="$1"; repo="$2"; expose="$3"; host="$4"; shift 4
hostname "$host"
mount --make-rprivate /
# The checkout (and its venv) and the interpreter are set aside before the machine's
# /root, /tmp, /opt and /home are replaced by empty ones, then put back at their own paths,
# read-only (a checkout under /tmp stays reachable; the image has both at fixed paths).
mkdir -p /run/bprl-repo && mount --bind "$repo" /run/bprl-repo
if [ -n "$expose" ]; then
  mkdir -p /run/bprl-expose && mount --bind "$expose" /run/bprl-expose
  mount -t tmpfs -o mode=755 tmpfs /root
fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /opt
mount -t tmpfs -o mode=755 tmpfs /home
mkdir -p /home/bprl && chown 1000:1000 /home/bprl
mkdir -p /opt/bprl && mount --bind /run/bprl-repo /opt/bprl && mount -o remount,bind,ro /opt/bprl
mkdir -p "$repo" && mount --move /run/bprl-repo "$repo" && mount -o remount,bind,ro "$repo"
if [ -n "$expose" ]; then
  mkdir -p "$expose" && mount --move /run/bprl-expose "$expose"
fi
# The launcher's own folder (logs, the bucket's files) where it is still in view.
if [ -d "$hide" ]; then mount -t tmpfs -o mode=700 tmpfs "$hide"; fi
cd /opt/bprl
exec setpriv --reuid=1000 --regid=1000 --clear-groups --pdeathsig KILL -- "$@"
"""


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
    if not os.access(vertex.INIT[0], os.X_OK):
        raise ConfigError(
            f"--launch=vertex_ai_local needs the image's init {vertex.INIT[0]} "
            f"(apt-get install tini)"
        )
    from bprl.launch.vertex import gcs_emulator

    try:
        gcs_emulator.binary_path()
    except FileNotFoundError as error:
        raise ConfigError(f"--launch=vertex_ai_local needs a storage emulator: {error}") from None


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
    init_pid: int | None = None  # the replica's PID 1 (tini), as this machine numbers it


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


ROUTE_PROTO = "213"  # marks the rehearsals' unreachable routes (`ip route ... proto 213`)


def _subnet_route(subnet: str) -> list[str]:
    """The route that makes the replicas' subnet unreachable from this machine (without
    it, packets to it would follow the default route and leave the machine)."""
    return ["unreachable", f"{subnet}.0/24", "proto", ROUTE_PROTO]


def remove_hosts(run_id: str) -> None:
    """Removes every namespace, hosts directory, the bridge and the route of rehearsal
    `run_id`."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(os.path.join(STATE_DIR, f"{run_id}.json")) as f:
            subnet = json.load(f)["subnet"]
        _run(["ip", "route", "del", *_subnet_route(subnet)])
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
        elif re.fullmatch(r"bv[0-9a-f]{6}(\d+x\d+|sv)", name):  # a veth's host end
            run_id = name[2:8]
        else:
            continue
        if run_id not in live:
            stale.add(run_id)
    for run_id in sorted(stale):
        remove_hosts(run_id)
    # routes whose rehearsal left no state file
    live_subnets = set()
    for run_id in live:
        with contextlib.suppress(OSError, ValueError, KeyError):
            with open(os.path.join(STATE_DIR, f"{run_id}.json")) as f:
                live_subnets.add(json.load(f)["subnet"])
    for line in _run(["ip", "route", "show", "proto", ROUTE_PROTO]).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "unreachable":
            subnet = fields[1].rsplit(".", 1)[0]
            if subnet not in live_subnets:
                _run(["ip", "route", "del", *_subnet_route(subnet)])
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
        self.gateway = ""  # the services namespace's address (storage, metadata, API)
        self.services = f"{PREFIX}-{run_id}-sv"
        self.replicas: list[Replica] = []
        self._pools = pools

    def create(self) -> None:
        with _state_lock():
            remove_stale_hosts()
            self.subnet = _free_subnet()
            self.gateway = f"{self.subnet}.1"
            with open(os.path.join(STATE_DIR, f"{self.run_id}.json"), "w") as f:
                state = {"pid": os.getpid(), "started": _create_time(), "bridge": self.bridge}
                json.dump({**state, "subnet": self.subnet}, f)
            # This machine has no address on the bridge: the replicas' subnet must be
            # unreachable from here, or packets to it would leave by the default route.
            result = _run(["ip", "route", "add", *_subnet_route(self.subnet)])
            if result.returncode != 0:
                message = " ".join(result.stderr.split())
                raise ConfigError(f"could not make the rehearsal's subnet private: {message}")
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
            # The bridge has no address here: this machine has no route to the replicas.
            batch = [f"link add {self.bridge} type bridge", f"link set {self.bridge} up"]
            ends = [(r.namespace, r.veth, r.address) for r in self.replicas]
            ends.append((self.services, f"bv{self.run_id}sv", self.gateway))
            for namespace, _, _ in ends:
                batch.append(f"netns add {namespace}")
            for namespace, veth, _ in ends:
                batch += [
                    f"link add {veth} type veth peer name eth0 netns {namespace}",
                    f"link set {veth} master {self.bridge}",
                    f"link set {veth} up",
                ]
            _ip_batch([], batch)
            for namespace, _, address in ends:
                inside = [f"addr add {address}/24 dev eth0", "link set eth0 up", "link set lo up"]
                _ip_batch(["-n", namespace], inside)
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
        self.cancel_status = int(os.environ.get(CANCEL_STATUS_ENV, "200") or 200)
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
                elif stand_in.cancel_status != 200:  # e.g. 403: the account may not cancel
                    status = stand_in.cancel_status
                    self._reply(status, {"error": {"code": status, "status": "PERMISSION_DENIED"}})
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
    from bprl.launch.program import lifeline

    lifeline.set_parent_death_signal(signal.SIGKILL)  # no replica outlives the launcher


def in_netns(namespace: str, fn):
    """`fn()` run in a new thread that first enters network namespace `namespace`; its
    result. Sockets it creates, threads it starts and processes it spawns stay there."""
    out: dict = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}")
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller
            out["error"] = error

    thread = threading.Thread(target=target, name=f"in-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def image_environment(python: str) -> dict[str, str]:
    """The environment the image gives every container (the Dockerfile's ENV and its
    user's HOME), with this machine's interpreter first on PATH."""
    env = dict(vertex.IMAGE_ENV)
    env["HOME"] = IMAGE_HOME
    env["PATH"] = f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin"
    env["LANG"] = "C.UTF-8"
    env.update({k: os.environ[k] for k in _KEEP_ENV if k in os.environ})
    return env


def replica_environment(
    pool_spec: dict,
    replicas: list[Replica],
    me: Replica,
    project: str,
    job_id: str,
    api: str,
    storage: str = "",
    python: str = sys.executable,
) -> dict[str, str]:
    """A replica's environment: the image's, the pool's (from the job request), what
    Vertex AI sets, and where the stand-ins are."""
    env = image_environment(python)
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
    if storage:
        from bprl.launch.vertex import gcs_emulator

        env[gcs_emulator.ENDPOINT_ENV] = storage
        env.update(vertex.STORAGE_ENV)  # the filesystem that can reach the emulator
    return env


def _interpreter_home() -> str:
    """The top folder of this interpreter when it sits under root's home (which the
    image's user cannot enter): the sandbox makes only that folder reachable."""
    for path in (os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)):
        if path.startswith("/root/"):
            return "/root/" + path.split("/")[2]
    return ""


def _checkout() -> str:
    """The repository this code runs from: the folder that holds the `launch` package
    (this file is launch/vertex/rehearsal.py in it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


def replica_command(r: Replica, container: dict, hide: str) -> list[str]:
    """The replica's process: its network namespace, new mount and PID namespaces, the
    sandbox, then the pool's command as the image's user."""
    repo = _checkout()
    command = [sys.executable if c == "python" else c for c in container["command"]]
    return [
        "ip",
        "netns",
        "exec",
        r.namespace,
        "unshare",
        "--mount",
        "--pid",
        "--uts",
        "--fork",
        "--mount-proc",
        "--kill-child=SIGKILL",
        "/bin/sh",
        "-c",
        _SANDBOX,
        "sandbox",
        hide,
        repo,
        _interpreter_home(),
        r.hostname,
        *command,
        *container["args"],
    ]


@dataclasses.dataclass
class Outcome:
    """How the rehearsed job ended."""

    state: str  # SUCCEEDED, CANCELLED (a cancel request or a signal), FAILED
    reason: str
    failed: list[str]  # nodes that exited with an error before the job ended
    cancel_from: str  # the node whose cancel request ended the job, or ""
    restarts: int = 0  # whole-job restarts after a replica failed


def launch_rehearsal(config: ml_collections.ConfigDict, workdir: str, grace_secs: float = 0):
    """Runs the run's Vertex AI job on emulated hosts until it ends; returns its Outcome."""
    from bprl.launch.rundir.progress import run_progress
    from bprl.launch.vertex import gcs_emulator

    check_can_rehearse()
    vertex.validate_cluster(config, submit=False)
    grace_secs = grace_secs or vertex.TERMINATION_NOTICE_SECS + 5
    workdir = os.path.abspath(workdir)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    run_id = secrets.token_hex(3)
    job_id = str(random.randrange(10**18, 10**19))
    project = str(config.cluster.project or "rehearsal")
    region = str(config.cluster.region)
    pools = vertex.plan_pools(config)
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
            os.path.join(workdir, STORAGE_DIR), BUCKET, hosts.gateway, STORAGE_PORT
        )
        in_netns(hosts.services, emulator.start)
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
                outcome = _wait(hosts.replicas, cancel, why, grace_secs)
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
    request; what `vertex.launch_vertex` writes before it submits."""
    from bprl.launch.vertex import gcs_emulator

    # This process's own TensorFlow reaches gs:// through the modular filesystem too.
    os.environ[gcs_emulator.ENDPOINT_ENV] = endpoint
    for name, value in vertex.STORAGE_ENV.items():
        os.environ.setdefault(name, value)
    _load_modular_filesystem()
    from bprl.launch.program.tensorboard import write_layout

    config = vertex.ship_prior_artifact(config, run_dir)
    vertex.write_node_pickles(config, run_dir)
    layout.save_config(config, run_dir)
    write_layout(run_dir)
    job = vertex.custom_job_spec(config, run_dir, vertex.display_name(config, run_dir))
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
        log = os.path.join(workdir, "logs", r.node)
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
                if os.path.basename(child.exe()) == os.path.basename(vertex.INIT[0]):
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


def _signal_replica(r: Replica, signum: int) -> None:
    """A signal to the replica's PID 1 (its init forwards it to the node), as Vertex AI
    stops a container; to its launcher process when the init is not known."""
    target = r.init_pid or (r.process.pid if r.process is not None else None)
    if target:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signum)


def _wait(
    replicas: list[Replica], cancel: threading.Event, why: dict, grace_secs: float
) -> Outcome:
    """Vertex AI's job lifecycle: the primary replica exiting 0 ends the job SUCCEEDED; a
    cancel (or a signal) SIGTERMs every replica (CANCELLED); a replica that fails while
    others run ends this attempt as RESTART (the caller restarts the job); SIGKILL for
    what is left `grace_secs` after the SIGTERM."""
    state, failed, deadline, failed_at = "RUNNING", [], None, None
    chief = replicas[0]
    while True:
        for r in replicas:
            if r.returncode is None and r.process.poll() is not None:
                r.returncode = r.process.returncode
                if state == "RUNNING" and r.returncode != 0:
                    failed.append(r.node)
                    failed_at = failed_at or time.monotonic()
        if state == "RUNNING":
            alive = [r for r in replicas if r.returncode is None]
            # Replicas that ended as a SIGTERM ends a node (a stop from outside: a cancel,
            # a pre-emption, a VM's maintenance) and those that crashed or were killed.
            stopped = [n for n in failed if _stopped(n, replicas)]
            crashed = [n for n in failed if n not in stopped]
            waited = time.monotonic() - failed_at if failed_at else 0.0
            if cancel.is_set():
                state = "CANCELLED"
            elif chief.returncode == 0:
                state = "SUCCEEDED"
                why.setdefault("reason", f"{chief.node} ({chief.pool}-0) finished")
            elif failed and not alive and not crashed:
                state = "CANCELLED"  # every replica stopped: a stop from outside
                why.setdefault("reason", f"every replica stopped ({failed[0]} first)")
            elif (crashed and waited > 3.0) or (failed and waited > grace_secs):
                # A replica restarted in place restarts the whole job
                # (restartJobOnWorkerRestart); the others are stopped first.
                state = "RESTART"
                first = (crashed or failed)[0]
                why.setdefault("reason", f"{first} exited with {_code(first, replicas)}")
            if state != "RUNNING":
                deadline = time.monotonic() + grace_secs
                for r in replicas:
                    if r.returncode is None:
                        _signal_replica(r, signal.SIGTERM)
        if all(r.returncode is not None for r in replicas):
            break
        if deadline is not None and time.monotonic() > deadline:
            for r in replicas:
                if r.returncode is None:
                    r.process.kill()
            deadline = None
        time.sleep(0.3)
    return Outcome(state, why.get("reason", ""), failed, why.get("cancel_from", ""))


def _stopped(node: str, replicas: list[Replica]) -> bool:
    """True when `node`'s replica ended as a stopped node does: by SIGTERM, or by
    Launchpad's SIGALRM countdown after one (through the init: 128 + the signal)."""
    code = next(r.returncode for r in replicas if r.node == node)
    stops = {int(signal.SIGTERM), int(signal.SIGALRM)}
    return code is not None and (-code in stops or code - 128 in stops)


def _code(node: str, replicas: list[Replica]) -> str:
    code = next(r.returncode for r in replicas if r.node == node)
    if code is not None and code < 0:
        return signal.Signals(-code).name
    if code is not None and code > 128:
        with contextlib.suppress(ValueError):
            return signal.Signals(code - 128).name
    return f"exit code {code}"
