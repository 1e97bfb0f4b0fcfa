"""The rehearsal's emulated hosts: a private bridge, and a network namespace per replica.

Each replica of the rehearsed job (launch/vertex/rehearsal.py) gets a namespace whose only
interfaces are `lo` and `eth0` (a veth to the bridge), its own 10.213.x address and a
Vertex-style host name the others resolve (`/etc/netns/<ns>/hosts`); a services namespace
holds the storage emulator and the stand-in API. The bridge has no address on this
machine and the subnet is unreachable from it: only the job's namespaces reach a node's
port. What one rehearsal creates is recorded under STATE_DIR, so it is removed afterwards
and, where its launcher was SIGKILLed, by the next rehearsal. Also here: `in_netns`, which
runs a function inside one of these namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import random
import re
import shutil
import subprocess
import threading

from bprl.launch.config.errors import ConfigError
from bprl.launch.vertex import worker_pools

STATE_DIR = "/run/bprl-rehearsal"  # one <run id>.json per rehearsal: what to remove
NETNS_ETC = "/etc/netns"
PREFIX = "bprlv"  # namespaces bprlv-<id>-<pool>-<i>, bridge bprlv<id>, veths bv<id>...
_CLONE_NEWNET = 0x40000000


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

    def __init__(self, run_id: str, pools: list[worker_pools.Pool]):
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
