"""A rehearsed replica's process: its sandbox, its command and its environment.

A replica runs in its network namespace (launch/vertex/rehearsal_hosts.py) and in new
mount, PID and UTS namespaces, set up as the image would be: a private /tmp, the
launcher's folder hidden, the project at the image's working directory (read-only), the
image's init as PID 1 and the node its child, as the image's user. Its environment is the
image's, its pool's (from the job request, launch/vertex/job_request.py) and what Vertex AI
adds (`CLUSTER_SPEC` / `TF_CONFIG`, the job and project ids), plus where the rehearsal's
stand-ins are.
"""

from __future__ import annotations

import json
import os
import sys

from bprl.launch.vertex import job_request
from bprl.launch.vertex.rehearsal_hosts import Replica

IMAGE_UID = 1000  # the Dockerfile's user
IMAGE_WORKDIR = "/opt/bprl"  # the Dockerfile's WORKDIR
IMAGE_HOME = "/home/bprl"
_KEEP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # this machine's numerical-library fixes
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
mkdir -p /run/bprl-repo
if [ "$(( 0$(stat -c %a "$repo") & 05 ))" = 5 ]; then
  mount --bind "$repo" /run/bprl-repo
else
  # A checkout whose own folder others may not enter (`mktemp -d`: 0700): the image's user
  # sees the same entries in a folder it may enter, each bound from the checkout.
  mount -t tmpfs -o mode=755 tmpfs /run/bprl-repo
  for entry in "$repo"/* "$repo"/.[!.]*; do
    [ -e "$entry" ] || continue
    target="/run/bprl-repo/$(basename "$entry")"
    if [ -d "$entry" ]; then mkdir "$target"; else touch "$target"; fi
    mount --bind "$entry" "$target" && mount -o remount,bind,ro "$target"
  done
fi
if [ -n "$expose" ]; then
  mkdir -p /run/bprl-expose && mount --bind "$expose" /run/bprl-expose
  mount -t tmpfs -o mode=755 tmpfs /root
fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /opt
mount -t tmpfs -o mode=755 tmpfs /home
mkdir -p /home/bprl && chown 1000:1000 /home/bprl
mkdir -p /opt/bprl && mount --rbind /run/bprl-repo /opt/bprl && mount -o remount,bind,ro /opt/bprl
mkdir -p "$repo" && mount --move /run/bprl-repo "$repo" && mount -o remount,bind,ro "$repo"
if [ -n "$expose" ]; then
  mkdir -p "$expose" && mount --move /run/bprl-expose "$expose"
fi
# The launcher's own folder (logs, the bucket's files) where it is still in view.
if [ -d "$hide" ]; then mount -t tmpfs -o mode=700 tmpfs "$hide"; fi
cd /opt/bprl
exec setpriv --reuid=1000 --regid=1000 --clear-groups --pdeathsig KILL -- "$@"
"""


def cluster_spec(replicas: list[Replica], me: Replica) -> str:
    """Vertex AI's CLUSTER_SPEC for replica `me` (pool -> host:port list, own task)."""
    cluster: dict[str, list[str]] = {}
    for r in replicas:
        cluster.setdefault(r.pool, []).append(f"{r.hostname}:{job_request.PORT}")
    return json.dumps(
        {
            "cluster": cluster,
            "environment": "cloud",
            "task": {"type": me.pool, "index": me.index, "trial": ""},
        }
    )


def image_environment(python: str) -> dict[str, str]:
    """The environment the image gives every container (the Dockerfile's ENV and its
    user's HOME), with this machine's interpreter first on PATH."""
    env = dict(job_request.IMAGE_ENV)
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
        env.update(job_request.STORAGE_ENV)  # the filesystem that can reach the emulator
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
    (this file is launch/vertex/rehearsal_sandbox.py in it)."""
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
