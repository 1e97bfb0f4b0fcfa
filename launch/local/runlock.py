"""One launcher per run directory: an exclusive `flock` on `<dir>/.lock`.

Two launchers on one directory would write the same checkpoints and event files. The
lock is an advisory `fcntl.flock`, released by the kernel when its holder dies however
it dies, so a lock can never be left behind by a crash: a lock file whose lock is free is
stale (its writer is gone) and is taken over with a warning. The file holds the holder's
pid and command, to name it when a second launch is refused.

`bprl run` re-executes itself (network namespace, program restarts); the descriptor is
kept open across `exec` (the kernel lock belongs to the open file, not to the process
image), and its number is passed in `BPRL_LOCK_FD`.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os

from bprl.launch.config.errors import ConfigError

LOCK_NAME = ".lock"
_FD_ENV = "BPRL_LOCK_FD"


def lock_path(directory: str) -> str:
    return os.path.join(directory, LOCK_NAME)


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    return f"{holder.get('command', 'bprl')} (pid {holder.get('pid', '?')})"


def _inherited(path: str) -> int | None:
    """The descriptor of `path`'s lock this process already holds (kept across exec)."""
    value = os.environ.get(_FD_ENV, "")
    fd_text, _, held_path = value.partition(":")
    if not fd_text.isdigit() or held_path != path:
        return None
    fd = int(fd_text)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
        if same:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: succeeds
            return fd
    except OSError:
        pass
    return None


def acquire(directory: str, command: str) -> int:
    """Locks `directory` for `command`; returns the descriptor (kept open until exit).

    Raises ConfigError naming the live holder when another process has it.
    """
    path = lock_path(os.path.abspath(directory))
    fd = _inherited(path)
    if fd is not None:
        return fd
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise ConfigError(
            f"{os.path.dirname(path)} is in use by {_describe(holder)}; stop it, or use "
            f"another --workdir"
        ) from None
    previous = _read_holder(fd)
    if previous.get("pid") and previous.get("pid") != os.getpid():
        print(
            f"warning: {os.path.dirname(path)}: taking over the lock of "
            f"{_describe(previous)}, which is no longer running",
            flush=True,
        )
    holder = {
        "pid": os.getpid(),
        "command": command,
        "since": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    os.set_inheritable(fd, True)
    os.environ[_FD_ENV] = f"{fd}:{path}"
    return fd


def release(fd: int) -> None:
    """Clears the holder record and unlocks (a clean exit leaves no stale-lock warning)."""
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    except OSError:
        pass
    os.environ.pop(_FD_ENV, None)
