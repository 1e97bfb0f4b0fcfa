"""One filesystem layer for run directories: local paths and object storage (`gs://`).

Local paths use the os module (atomic replace, fsync, flock) as before. Any `scheme://`
path goes through TensorFlow's filesystem (`tf.io.gfile`), which is what every node
already has. On object storage:
- an object appears whole or not at all, so a record is replaced by writing it again
  (there is no rename to make atomic, and no partial object is ever visible);
- there is no flock: each record has a single writer (the learner writes the checkpoint
  records; the replay node only mirrors its own checkpoints), so `lock` is a process-local
  lock there;
- "directories" are prefixes: `makedirs` is harmless, `isdir` is true once an object
  exists under the prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading

_LOCAL_LOCKS: dict[str, threading.Lock] = {}


def is_remote(path: str) -> bool:
    """True for `gs://...` and any other `scheme://` path."""
    return "://" in str(path)


def join(path: str, *parts: str) -> str:
    if is_remote(path):
        return "/".join([str(path).rstrip("/"), *(p.strip("/") for p in parts if p)])
    return os.path.join(path, *parts)


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_remote(path) else os.path.basename(path)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    gfile = _gfile()
    try:
        return gfile.isdir(path) or bool(gfile.listdir(path))
    except Exception:  # noqa: BLE001 - NotFoundError and friends: not a directory
        return False


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names directly under `path` (no trailing slashes); [] when there is none."""
    if not is_remote(path):
        return os.listdir(path) if os.path.isdir(path) else []
    try:
        return sorted({name.rstrip("/") for name in _gfile().listdir(path)})
    except Exception:  # noqa: BLE001 - a missing prefix
        return []


def mtime(path: str) -> float:
    if is_remote(path):
        return _gfile().stat(path).mtime_nsec / 1e9
    return os.path.getmtime(path)


EMULATOR_ENV = "CLOUD_STORAGE_EMULATOR_ENDPOINT"


def _emulator_get(path: str) -> bytes:
    """Object `gs://BUCKET/NAME` from the storage emulator's JSON API (a rehearsal).

    TensorFlow's modular GCS filesystem, the only one that can reach an emulator, crashes
    the process (segmentation fault, double free) on most reads of objects of a few
    hundred KB or more under TF 2.8.4, in every tensorflow-io-gcs-filesystem release tried
    (0.23.1-0.27.0; writes and small reads work): so a rehearsal reads objects here. On
    Vertex AI (no emulator) reads go through TensorFlow's built-in GCS filesystem."""
    import urllib.error
    import urllib.parse
    import urllib.request

    bucket, _, name = str(path)[len("gs://") :].partition("/")
    endpoint = os.environ[EMULATOR_ENV].rstrip("/")
    url = (
        f"{endpoint}/download/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    )
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise FileNotFoundError(path) from None
        raise OSError(f"cannot read {path}: {error}") from None


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        if str(path).startswith("gs://") and os.environ.get(EMULATOR_ENV):
            return _emulator_get(path)
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def read_json(path: str):
    """The JSON at `path`; raises OSError when it is missing or unreadable, ValueError
    when it is not JSON."""
    try:
        return json.loads(read_text(path))
    except OSError:
        raise
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - TF's NotFoundError etc. are not OSErrors
        raise OSError(str(error)) from None


def write_text(path: str, text: str) -> None:
    """Writes `path` whole: local files through a temporary file, fsync and rename (a full
    disk fails before the old file is touched); objects in one upload, after removing the
    old object (see below: a record's writer reads it back)."""
    if is_remote(path):
        gfile = _gfile()
        try:
            # The modular GCS filesystem's read cache (which must be on, job_request.py) keeps
            # serving an object's old bytes to this process after a plain rewrite; a
            # delete evicts them (tests/test_gcs_emulator.py).
            if gfile.exists(path):
                gfile.remove(path)
            with gfile.GFile(path, "w") as f:
                f.write(text)
        except Exception as error:  # noqa: BLE001 - surface as OSError like local writes
            raise OSError(f"cannot write {path}: {error}") from None
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, value, indent: int = 1) -> None:
    write_text(path, json.dumps(value, indent=indent, default=list))


def replace(src: str, dst: str) -> None:
    """Moves `src` over `dst` (a copy and a delete on object storage)."""
    if is_remote(src) or is_remote(dst):
        try:
            _gfile().rename(src, dst, overwrite=True)
        except Exception as error:  # noqa: BLE001
            raise OSError(f"cannot move {src} to {dst}: {error}") from None
    else:
        os.replace(src, dst)


def remove(path: str) -> None:
    """Removes a file or object; nothing when it is missing."""
    if is_remote(path):
        with contextlib.suppress(Exception):
            _gfile().remove(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_tree(path: str) -> None:
    if is_remote(path):
        with contextlib.suppress(Exception):
            _gfile().rmtree(path)
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def copy_tree(src: str, dst: str, last: str | None = None, exclude: tuple[str, ...] = ()) -> None:
    """Copies the files under `src` to `dst` (either may be remote); `last`, a file name,
    is copied after every other (a completion marker such as Reverb's DONE); files under
    a folder named in `exclude` (at any depth) are left out."""
    gfile = _gfile()
    files = []
    for root, _, names in gfile.walk(src):
        for name in names:
            full = join(root, name)
            rel = full[len(str(src).rstrip("/")) + 1 :]
            if not set(rel.split("/")[:-1]) & set(exclude):
                files.append(rel)
    files.sort(key=lambda rel: rel == last)
    for rel in files:
        copy(join(src, rel), join(dst, rel))


def copy(src: str, dst: str) -> None:
    """Copies one file or object (either may be remote), creating local folders."""
    if not is_remote(dst):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if is_remote(src) and os.environ.get(EMULATOR_ENV):
        data = read_bytes(src)  # not through the modular filesystem's reads (above)
        if is_remote(dst):
            with _gfile().GFile(dst, "wb") as f:
                f.write(data)
        else:
            with open(dst, "wb") as f:
                f.write(data)
        return
    _gfile().copy(src, dst, overwrite=True)


@contextlib.contextmanager
def lock(directory: str, name: str = ".record.lock"):
    """Serialises writers of a run directory's records: an flock on local disks (the
    learner and replay node are two processes there), a process-local lock on object
    storage (where each record has one writer)."""
    if is_remote(directory):
        key = join(directory, name)
        with _LOCAL_LOCKS.setdefault(key, threading.Lock()):
            yield
        return
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
