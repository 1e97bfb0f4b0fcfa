"""Keeps actor work alive: retries inside a process, restarts a process that died.

Launchpad's local_mp tears the whole program down when any node process exits with an
error, so an actor node does not run the environment loop itself: it supervises a child
process that does (multiprocessing, spawn), and starts a new one if the child dies, for
example from SIGKILL or an out-of-memory kill. Inside the child, an exception from the
environment or the policy is logged and the loop is rebuilt, within a retry budget.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import dm_env
import launchpad as lp
import numpy as np
from absl import logging


def exit_with_parent(poll_secs: float = 1.0) -> None:
    """Ends this process if its parent dies (never leaves an orphaned worker behind):
    SIGKILL from the kernel at the parent's death, and a polling thread as a backstop."""
    from bprl.launch.program import lifeline

    lifeline.set_parent_death_signal(signal.SIGKILL)
    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None else os.getppid()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_secs)
        os._exit(1)

    threading.Thread(target=watch, name="exit_with_parent", daemon=True).start()


class FaultInjector(dm_env.Environment):
    """Testing aid: raises RuntimeError from `step` about every `every_steps` steps."""

    def __init__(self, environment: dm_env.Environment, every_steps: int, seed: int):
        self._env = environment
        self._every = every_steps
        self._rng = np.random.default_rng(seed)
        self._countdown = self._draw()

    def _draw(self) -> int:
        return int(self._rng.integers(self._every // 2 + 1, self._every + 1))

    def reset(self) -> dm_env.TimeStep:
        return self._env.reset()

    def step(self, action) -> dm_env.TimeStep:
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = self._draw()
            raise RuntimeError("injected actor fault (actors.inject_fault_every_steps)")
        return self._env.step(action)

    def observation_spec(self):
        return self._env.observation_spec()

    def action_spec(self):
        return self._env.action_spec()

    def reward_spec(self):
        return self._env.reward_spec()

    def discount_spec(self):
        return self._env.discount_spec()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def run_with_retries(build_and_run: Callable[[], None], max_errors: int, name: str) -> None:
    """Calls `build_and_run` again after an exception, up to `max_errors` exceptions."""
    errors = 0
    while True:
        try:
            build_and_run()
            return
        except Exception:  # noqa: BLE001 - any actor-side failure is retried
            errors += 1
            logging.exception("%s failed (%d/%d); rebuilding", name, errors, max_errors)
            if errors >= max_errors:
                raise
            time.sleep(min(1.0 * errors, 10.0))


def supervise(
    target: Callable[..., None],
    args: tuple,
    max_restarts: int,
    name: str,
    poll_secs: float = 0.5,
) -> None:
    """Runs `target(*args)` in a child process until the program stops; restarts it when
    it dies, up to `max_restarts` times. Returns when Launchpad asks the program to stop.
    """
    context = multiprocessing.get_context("spawn")
    stop = lp.stop_event()
    restarts = 0
    while not stop.is_set():
        receive, send = context.Pipe(duplex=False)
        child = context.Process(
            target=_report_error, args=(target, args, send), name=name, daemon=True
        )
        child.start()
        send.close()  # the child holds its own end
        logging.info("%s: started worker process %d", name, child.pid)
        while child.is_alive() and not stop.is_set():
            stop.wait(poll_secs)
        if stop.is_set():
            receive.close()
            child.terminate()
            child.join(5.0)
            if child.is_alive():
                child.kill()
                child.join()
            return
        error = _received(receive)
        if child.exitcode == 0:
            return  # the work finished by itself
        restarts += 1
        logging.warning(
            "%s: worker process %d died (exit code %s%s); restart %d of %d",
            name,
            child.pid,
            child.exitcode,
            f", {error}" if error else "",
            restarts,
            max_restarts,
        )
        if restarts > max_restarts:
            # The worker's error, in the node's own last exception line: what the launcher
            # reads (launch/local/restart_policy.py) and shows.
            last = f" (its last error: {error})" if error else ""
            raise RuntimeError(f"{name}: worker died {restarts} times; giving up{last}")
        stop.wait(1.0)


def _report_error(target: Callable[..., None], args: tuple, send) -> None:
    """The worker's entry: runs `target(*args)`; an exception that ends it is also sent,
    as one line, to the supervising process before it propagates."""
    try:
        target(*args)
    except Exception as error:
        text = " ".join(str(error).split())
        try:
            send.send(f"{type(error).__name__}: {text}" if text else type(error).__name__)
        except OSError:
            pass
        raise
    finally:
        send.close()


def _received(receive) -> str:
    """What a dead worker sent before it died ('' when nothing: a kill, an exit)."""
    try:
        return receive.recv() if receive.poll() else ""
    except (EOFError, OSError):
        return ""
    finally:
        receive.close()
