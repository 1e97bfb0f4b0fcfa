"""The run a chaos soak (benchmarks/chaos.py) disturbs, seen from outside: its `bprl run`
command and config, its console line by line, its node and worker processes, their memory,
the counter's and the replay's answers, and what is left of it after it ended.

Apart from the soak's loop (benchmarks/chaos_soak.py) because it is how the soak looks,
not what it does; the probes and the process lookups are the launcher's own
(launch/local/node_probes.py, launch/local/launcher.py), so both see a node the same way.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import threading
import time

from benchmarks.machine import ROOT
from bprl.launch.local import node_probes
from bprl.launch.rundir import layout

BPRL = os.path.join(os.path.dirname(sys.executable), "bprl")


def load_config(args: argparse.Namespace):
    """The run's config with the overrides applied (for the node layout: actor streams)."""
    from bprl.launch.config import loading

    config = loading.load_config(os.path.join(ROOT, args.config))
    for override in args.override:
        key, _, text = override.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        config.update_from_flattened_dict({key: value})
    return config


def run_command(args: argparse.Namespace, workdir: str, chaos: bool) -> list[str]:
    command = [BPRL, "run", f"--config={os.path.join(ROOT, args.config)}"]
    command += [f"--network={args.network}"]
    command += [f"--config.checkpoint.every_seconds={args.checkpoint_secs:g}"]
    command += [f"--config.{override}" for override in args.override]
    if chaos:
        command += [
            f"--config.reliability.max_program_restarts={args.max_restarts}",
            f"--config.reliability.restart_backoff_secs={args.restart_backoff_secs:g}",
        ]
        if args.hang_timeout_secs:
            command += [f"--config.reliability.hang_timeout_secs={args.hang_timeout_secs:g}"]
    return [*command, f"--workdir={workdir}"]


def stream_dirs(config, workdir: str) -> dict[str, list[str]]:
    from bprl.launch.config import packing

    return {
        f"actor/{i}": [layout.actor_dir(workdir, s) for s in streams]
        for i, streams in enumerate(packing.stream_groups(config))
    }


class Console:
    """The launcher's stdout and stderr, line by line with the time each arrived (also
    written to `path`)."""

    def __init__(self, proc: subprocess.Popen, path: str):
        self.lines: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._file = open(path, "w")  # noqa: SIM115 - closed by close()
        self._threads = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((proc.stdout, "out"), (proc.stderr, "err"))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            now = time.time()
            with self._lock:
                self.lines.append((now, name, line.rstrip("\n")))
                self._file.write(f"{now:.3f} {name} {line}")
                self._file.flush()

    def after(self, since: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [entry for entry in self.lines if entry[0] >= since]

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=10)
        self._file.close()


def node_processes(launcher_pid: int) -> dict:
    """`group/i` -> psutil.Process of the launcher's live node processes."""
    from bprl.launch.local import launcher as local

    return local.node_processes(launcher_pid)


def actor_worker(node) -> object | None:
    """The worker process an actor node supervises (multiprocessing spawn), if alive."""
    import psutil

    for worker in node_probes.node_tree(node)[1:]:
        try:
            if worker.status() != "zombie":
                return worker
        except psutil.Error:
            continue
    return None


def program_memory(launcher_pid: int) -> tuple[int, float]:
    """(processes, summed RSS in GiB) of the launcher and all its descendants."""
    import psutil

    try:
        root = psutil.Process(launcher_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0.0
    count, rss = 0, 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
            count += 1
        except psutil.Error:
            continue
    return count, rss / 2**30


def listen_port(proc) -> int | None:
    import psutil

    try:
        ports = [c.laddr.port for c in proc.net_connections("inet") if c.status == "LISTEN"]
    except psutil.Error:
        return None
    return min(ports) if ports else None


class Probes:
    """The counter's counts and the replay's size, asked directly (host network)."""

    def __init__(self, launcher_pid: int, enabled: bool):
        self.enabled = enabled

        def address(node: str):  # found when connecting: stopped, restarting, gone: next time
            return lambda: f"localhost:{listen_port(node_processes(launcher_pid)[node])}"

        self.counts = node_probes.counter_probe(
            address("counter/0") if enabled else None, timeout=3
        )
        self.replay_items = node_probes.replay_probe(
            address("replay/0") if enabled else None, replay_items, timeout=3
        )


def replay_items(tables: dict) -> int:
    """The items in all the replay's tables (from Reverb's `server_info`)."""
    return int(sum(info.current_size for info in tables.values()))


def run_processes(workdir: str) -> list:
    """The run's processes: the launcher (`--workdir=WORKDIR`) and every process that
    inherited its Launchpad log directory (nodes, actor workers); never this one."""
    import psutil

    found = []
    logs = layout.logs_dir(workdir)
    for proc in psutil.process_iter(["cmdline", "environ"]):
        if proc.pid == os.getpid():
            continue
        try:
            args = proc.info["cmdline"] or []
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if f"--workdir={workdir}" in args or env.get("LAUNCHPAD_LOGGING_DIR") == logs:
            found.append(proc)
    return found


def cleanup(workdir: str) -> int:
    """SIGKILL to anything of the run still there 35 s after it ended (a stopped process
    included; the nodes' own lifelines end them within 30 s); how many there were."""
    import psutil

    deadline = time.time() + 35
    while run_processes(workdir) and time.time() < deadline:
        time.sleep(1)
    left = run_processes(workdir)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            continue
    return len(left)
