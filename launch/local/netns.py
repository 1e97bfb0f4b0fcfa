"""Loopback-only local runs: re-execute `bprl run` in a private network namespace.

Reverb's and Courier's servers listen on every interface ("[::]:port"); neither library
lets the caller choose the address. A local run has no need of any interface but
loopback, so `bprl run` re-executes itself under `unshare --net` (with `--map-root-user`,
so no privileges are needed where user namespaces are enabled) after bringing `lo` up.
Every node it launches inherits the namespace: their servers are reachable from inside
the run only. Files (TensorBoard events, checkpoints) are shared as usual.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from absl import logging

_MARKER = "BPRL_NETWORK_NAMESPACE"


def in_isolated_namespace() -> bool:
    return os.environ.get(_MARKER) == "1"


def can_isolate() -> bool:
    """True where `unshare --net --map-root-user` and `ip` work on this machine."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(
        ["unshare", "--net", "--map-root-user", "ip", "link", "set", "lo", "up"],
        capture_output=True,
    )
    return probe.returncode == 0


def reexec_isolated(argv: list[str]) -> None:
    """Replaces this process with the same command inside a loopback-only namespace.

    Returns (without re-executing) when already inside one, or when this machine cannot
    create one; the latter is logged, and the run then uses the host's network.
    """
    if in_isolated_namespace():
        return
    if not can_isolate():
        logging.warning(
            "cannot create a network namespace here (unshare/ip missing or user "
            "namespaces disabled): Reverb and Courier will listen on all interfaces"
        )
        print("warning: network isolation unavailable; servers listen on all interfaces")
        return
    os.environ[_MARKER] = "1"
    command = 'ip link set lo up && exec "$0" "$@"'
    # Same interpreter, same arguments, whether started as `bprl` or `python -m bprl.launch.cli`.
    # exec keeps the process id, so signals sent to the original pid still reach it.
    python = [sys.executable, "-m", "bprl.launch.cli", *argv[1:]]
    os.execvp(
        "unshare",
        ["unshare", "--net", "--map-root-user", "--", "sh", "-c", command, *python],
    )
