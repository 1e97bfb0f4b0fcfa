"""Launches a program on this machine with Launchpad's local_mp, one process per node."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys

import ml_collections
from absl import logging

from bprl.launch.config import xla
from bprl.launch.program import lifeline, node_env
from bprl.launch.rundir import layout


class NodeFailure(RuntimeError):
    """A node process of the program died, or was hung and killed by the launcher
    (launch/local/liveness.py); every other process has been stopped."""

    def __init__(
        self,
        nodes: list[str],
        cause: str,
        log_tails: dict[str, list[str]],
        hang: str = "",
        detected_at: float | None = None,
        after: list[tuple[str, str]] | None = None,
    ):
        self.nodes = nodes  # e.g. ["learner/0"]; empty when it could not be told
        self.cause = cause  # e.g. "SIGKILL", "exit code 1", or "hung"
        self.log_tails = log_tails  # node -> the last lines of its log
        # A hang: "learner/0 made no progress for 180 s (state: stopped)" (already said on
        # the console when it was found); its time.time() in `detected_at`.
        self.hang = hang
        self.detected_at = detected_at
        # The other nodes found dead, in the order they died (most often after the failing
        # one, while stopping or because of it): (node, cause).
        self.after = after or []
        message = f"{', '.join(nodes) or 'a node'} died ({cause})"
        if self.after:
            later = ", ".join(f"{node} ({why or 'unknown'})" for node, why in self.after)
            message += f"; then {later}"
        super().__init__(hang or message)


class LaunchInterrupted(Exception):
    """SIGTERM or Ctrl-C arrived while the nodes were being started."""


NODE_GROUP_ENV = "BPRL_NODE_GROUP"  # each local node's group, read to tell nodes apart
_STOP_REQUESTED = ""


def stop_requested() -> str:
    """The signal ('SIGTERM', 'SIGINT') that asked this launcher to stop, or ''; a failed
    run is then not restarted. (A person, or the stop condition at the budget: its
    `lp.stop()` is a SIGTERM to the launcher too.)"""
    return _STOP_REQUESTED


def launch_local(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Runs the program to completion; node output goes to `<workdir>/logs/<group>/<i>`.

    Raises NodeFailure when a node dies or hangs (a hung node is killed: launch/local/liveness.py),
    LaunchInterrupted on SIGTERM / Ctrl-C before every node was started; either way no
    process of the program is left when it raises.
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    layout.save_config(config, workdir)
    from bprl.launch.program.tensorboard import write_layout

    write_layout(workdir)  # TensorBoard's custom-scalars dashboard for this run
    # Launchpad reads this when its local launcher module is first imported, so it is set
    # before launchpad is imported (a process launches one run).
    os.environ["LAUNCHPAD_LOGGING_DIR"] = layout.logs_dir(workdir)
    # Every node ties itself to this process (launch/program/lifeline.py): none outlives it.
    os.environ[lifeline.LAUNCHER_PID] = str(os.getpid())
    init_file = lifeline.write_node_init_file(workdir)
    import launchpad as lp
    from launchpad.nodes.python.local_multi_processing import PythonProcess

    from bprl.launch.program import builders
    from bprl.launch.program.graph import make_program

    # The learner runs on this machine: its kernels are chosen for this CPU and the size
    # of its update.
    kernels = builders.RunBuilder(config).learner_kernels
    program = make_program(config, workdir, learner_kernels=kernels)
    resources = {}
    for group in program.groups:
        env = node_env.node_environment(group)
        if group == "learner":
            env.update(xla.learner_environment(kernels))
        env[NODE_GROUP_ENV] = group
        resources[group] = PythonProcess(args={"init_file": init_file}, env=env)
    logging.info("launching %s: node logs in %s", program.name, os.environ["LAUNCHPAD_LOGGING_DIR"])
    from absl import flags

    if "lp_termination_notice_secs" in flags.FLAGS:
        # Time for the final checkpoints (learner, counts, replay) before Launchpad kills.
        flags.FLAGS.lp_termination_notice_secs = 25
    from bprl.launch.program.quiet import LaunchpadConsole
    from bprl.launch.rundir.progress import run_progress

    expected = [
        f"{group}/{i}" for group, nodes in program.groups.items() for i in range(len(nodes))
    ]
    console = LaunchpadConsole(sys.stdout, os.environ["LAUNCHPAD_LOGGING_DIR"])
    watchdog = None
    recorder = None
    try:
        with contextlib.redirect_stdout(console):
            with _abort_launch_on_signal():
                manager = lp.launch(
                    program,
                    launch_type="local_mp",
                    terminal="output_to_files",
                    local_resources=resources,
                )
            from bprl.launch.local.exits import ExitRecorder

            recorder = ExitRecorder(node_processes())
            watchdog = _watchdog(config, workdir, program, expected)
            with run_progress(config, workdir), watchdog:
                manager.wait()
    except RuntimeError as error:  # Launchpad: "One of the workers exited with code N."
        alive = _live_nodes()
        dead = [name for name in expected if name not in alive]
        # Launchpad has asked the others to stop and would SIGKILL this process when its
        # countdown ends: take the shutdown over, so the caller can report and restart.
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        stop_children(grace_secs=25.0)
        hangs = watchdog.hangs if watchdog is not None else []
        if hangs:  # the watchdog killed them: a hang, handled as their death
            nodes = [hang.node for hang in hangs]
            tails = {name: log_tail(workdir, name) for name in nodes}
            message = "; ".join(hang.message() for hang in hangs)
            raise NodeFailure(nodes, "hung", tails, message, watchdog.detected_at) from None
        tails = {name: log_tail(workdir, name) for name in dead}
        exits = recorder.exits() if recorder is not None else []
        nodes, cause, after = first_failure(dead, exits, _cause(str(error)))
        raise NodeFailure(nodes, cause, tails, after=after) from None
    finally:
        if recorder is not None:
            recorder.close()


def first_failure(dead: list[str], exits: list, reported: str):
    """(failing nodes, their cause, [(node, cause) that died after]) from the nodes found
    dead, the exits recorded in order (launch/local/exits.py) and Launchpad's cause.

    The failing node is the first recorded to exit other than cleanly; without a record,
    every dead node is named with Launchpad's cause, as Launchpad reports it."""
    recorded = [e for e in exits if e.node in dead]
    failing = next((e for e in recorded if e.cause != "exit code 0"), None)
    if failing is None:
        return dead, reported, []
    causes = {e.node: e.cause for e in recorded}
    later = [e.node for e in recorded if e.node != failing.node]  # in the order they died
    later += [node for node in dead if node not in causes]
    return [failing.node], failing.cause or reported, [(n, causes.get(n, "")) for n in later]


def _watchdog(config, workdir: str, program, expected: list[str]):
    """The liveness watch of a launched program (launch/local/liveness.py)."""
    from bprl.launch.config import shape
    from bprl.launch.local import liveness

    def address(group: str, attribute: str) -> str | None:
        try:
            return getattr(program.groups[group][0], attribute).resolve()
        except (KeyError, IndexError, AttributeError, RuntimeError):
            return None

    event_dirs = {"learner/0": [layout.learner_dir(workdir)]}
    for i, streams in enumerate(shape.actor_streams(config)):  # as make_program groups
        event_dirs[f"actor/{i}"] = [layout.actor_dir(workdir, stream) for stream in streams]
    for i in range(int(config.evaluators.num_evaluators)):
        event_dirs[f"evaluator/{i}"] = [layout.evaluator_dir(workdir, i)]
    watchdog = liveness.Watchdog(
        config,
        workdir,
        node_processes,
        expected,
        counter_address=address("counter", "courier_address"),
        replay_address=address("replay", "reverb_address"),
        learner_address=address("learner", "courier_address"),
        event_dirs={node: dirs for node, dirs in event_dirs.items() if node in expected},
        stopping=lambda: bool(stop_requested()),
    )
    if watchdog.bound > 0:
        logging.info("liveness: a node without progress for %.0f s is hung", watchdog.bound)
    return watchdog


@contextlib.contextmanager
def _abort_launch_on_signal():
    """SIGTERM / SIGINT during `lp.launch` stop the launch and every node it started.

    Launchpad's own handler (installed once its worker manager exists) only asks the
    nodes started so far to stop and schedules a kill countdown, while its launch loop
    goes on starting the rest one process at a time; with thousands of nodes on a few
    cores the loop and the starting interpreters starve that countdown. Here the signal
    raises out of the loop instead (Launchpad keeps a handler installed before its own
    and calls it), and every child is stopped before LaunchInterrupted is raised.
    """
    launching = True

    def handler(signum, frame):
        global _STOP_REQUESTED
        _STOP_REQUESTED = signal.Signals(signum).name
        if launching:
            raise LaunchInterrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except LaunchInterrupted as interrupted:
        launching = False
        print(f"{interrupted}: stopping the nodes started so far", flush=True)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        stop_children(grace_secs=20.0)
        raise
    finally:
        launching = False
        for sig, old in previous.items():
            if signal.getsignal(sig) is handler:  # Launchpad never took over: put back
                signal.signal(sig, old)


def stop_children(grace_secs: float) -> None:
    """SIGTERM to every descendant of this process, SIGKILL to those left after
    `grace_secs`; reaps them."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_secs)
    for child in alive + psutil.Process().children(recursive=True):
        try:
            child.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(psutil.Process().children(recursive=True), timeout=10)


def node_processes(launcher_pid: int | None = None) -> dict:
    """`<group>/<task id>` -> psutil.Process of the live node processes of this launcher
    (or of the launcher `launcher_pid`; {} when it is gone)."""
    import psutil

    found = {}
    try:
        children = psutil.Process(launcher_pid).children()
    except psutil.Error:
        return found
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            group = child.environ().get(NODE_GROUP_ENV)
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if group and "--lp_task_id" in cmdline:
            found[f"{group}/{cmdline[cmdline.index('--lp_task_id') + 1]}"] = child
    return found


def _live_nodes() -> set[str]:
    """`<group>/<task id>` of the node processes of this launcher that are alive."""
    return set(node_processes())


def _cause(message: str) -> str:
    """'SIGKILL' or 'exit code 1' from Launchpad's "exited with code N" message."""
    match = re.search(r"exited with code (-?\d+)", message)
    if not match:
        return message
    code = int(match.group(1))
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def log_tail(workdir: str, node: str, lines: int = 5) -> list[str]:
    """The last non-empty lines of a node's log (`<workdir>/logs/<group>/<i>`)."""
    try:
        with open(layout.node_log(workdir, node), errors="replace") as f:
            text = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return []
    return text[-lines:]


def node_errors(workdir: str) -> list[str]:
    """The last exception line of each node log that has one, as '<group>/<i>: line'."""
    found = []
    root = layout.logs_dir(workdir)
    for group in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for index in sorted(os.listdir(os.path.join(root, group))):
            with open(os.path.join(root, group, index), errors="replace") as f:
                lines = [line.strip() for line in f if "Error:" in line or "Exception:" in line]
            if lines:
                found.append(f"{group}/{index}: {lines[-1]}")
    return found
