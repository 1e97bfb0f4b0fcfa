"""Helpers shared by tests that launch real `bprl` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPRL = os.path.join(os.path.dirname(sys.executable), "bprl")
CONFIG = os.path.join(REPO, "experiments", "configs", "walker_walk.py")


def run_benchmark(
    script: str, args: list[str], tmp_path, timeout: float = 900
) -> tuple[subprocess.CompletedProcess, dict]:
    """Runs benchmarks/`script` with `args` and `--out` in `tmp_path` (also its working
    directory), asserts it exited 0; returns (the process, its JSON report)."""
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def run_processes(workdir: str) -> list[psutil.Process]:
    """Processes whose command line or Launchpad log dir mentions the run directory."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if workdir in text or workdir in env.get("LAUNCHPAD_LOGGING_DIR", ""):
            found.append(proc)
    return found


def actor_workers(workdir: str) -> list[psutil.Process]:
    """The run's actor worker processes (spawned and supervised by the actor nodes)."""
    workers = []
    for proc in run_processes(workdir):
        try:
            if "spawn_main" in " ".join(proc.cmdline()) and proc.is_running():
                if proc.status() != psutil.STATUS_ZOMBIE:
                    workers.append(proc)
        except psutil.NoSuchProcess:
            continue
    return workers


def read_checkpoint_record(workdir: str) -> dict | None:
    """The run's last complete checkpoint record (checkpoints/counts.json), if any."""
    import json

    try:
        with open(os.path.join(workdir, "checkpoints", "counts.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    """Polls `predicate` until it returns something truthy; fails the test on timeout."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def start_run(workdir: str, *overrides: str) -> subprocess.Popen:
    """`bprl run` of the tiny walker config with 3 s checkpoints, as a child process."""
    return subprocess.Popen(
        [
            BPRL,
            "run",
            f"--config={CONFIG}:tiny",
            "--config.checkpoint.every_seconds=3",
            *overrides,
            f"--workdir={workdir}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
