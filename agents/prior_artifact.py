"""A behavior prior taken out of one run to be reused in another: the prior artifact.

A prior artifact is a directory:
  prior.json                     what the prior is and reads: its kind and sizes, the
                                 information sets and the exact observation keys (in input
                                 order), shapes and dtypes, the action spec and squash, the
                                 modules saved, a SHA-256 of every weight file, and where it
                                 came from (run, learner step, config, date)
  weights.index, weights.data-*  the modules' variables (tf.train.Checkpoint)
It loads without the run it came from: `load` rebuilds the prior from prior.json alone.
A missing, partial or corrupt artifact raises `ArtifactError` with one clear message.

What is carried over is the prior kind's `transfer_modules`: the prior head, and for a
hierarchical prior that borrows the policy's low level, that low level too.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from bprl.agents import prior_kinds
from bprl.networks.factory import Networks

FORMAT = "bprl-prior"
VERSION = 1
METADATA = "prior.json"
WEIGHTS = "weights"  # checkpoint prefix: weights.index, weights.data-00000-of-00001


class ArtifactError(ValueError):
    """A prior artifact that is missing, partial, corrupt, or does not fit the run."""


@dataclasses.dataclass(frozen=True)
class ObservationEntry:
    key: str
    shape: tuple[int, ...]
    dtype: str


def _open(path: str, mode: str = "r"):
    """A local file, or an object (`gs://...`, e.g. an artifact shipped with a Vertex AI
    run) through TensorFlow's filesystem."""
    if "://" in path:
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(path)
        return tf.io.gfile.GFile(path, mode)
    return open(path, mode)


def _isdir(path: str) -> bool:
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.isdir(path) or tf.io.gfile.exists(os.path.join(path, METADATA))
    return os.path.isdir(path)


def _exists(path: str) -> bool:
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with _open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_observations(observation_spec: Mapping, keys: Sequence[str]) -> list[dict]:
    """[{key, shape, dtype}] of the prior's keys, in the order the prior reads them."""
    return [
        {
            "key": key,
            "shape": [int(d) for d in observation_spec[key].shape],
            "dtype": np.dtype(observation_spec[key].dtype).name,
        }
        for key in keys
    ]


def describe_action(action_spec) -> dict:
    """Shape, dtype and bounds of the actions the prior samples (no bounds: the samples
    are squashed by tanh before the environment sees them; see `action_squash`)."""
    described = {
        "shape": [int(d) for d in action_spec.shape],
        "dtype": np.dtype(action_spec.dtype).name,
    }
    for bound in ("minimum", "maximum"):
        value = getattr(action_spec, bound, None)
        described[bound] = (
            None if value is None else np.broadcast_to(value, action_spec.shape).tolist()
        )
    return described


def save(
    out_dir: str,
    networks: Networks,
    sizes: prior_kinds.HeadSizes,
    information_sets: Sequence[str],
    prior_keys: Sequence[str],
    observation_spec: Mapping,
    action_spec,
    action_squash: str,
    source: dict,
) -> dict:
    """Writes the artifact of `networks.prior` into `out_dir` (must not exist); returns
    its metadata. `prior_keys` are the observation keys of `information_sets`, in the
    order the prior reads them. Written into a temporary directory beside it and renamed
    at the end, so `out_dir` is either complete or absent."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise ArtifactError(f"{out_dir} already exists; choose a new --out")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    kind = networks.kind
    modules = kind.transfer_modules(networks)
    tmp = tempfile.mkdtemp(prefix=".prior-", dir=parent)
    try:
        tf.train.Checkpoint(**modules).write(os.path.join(tmp, WEIGHTS))
        files = {name: _sha256(os.path.join(tmp, name)) for name in sorted(os.listdir(tmp))}
        metadata = {
            "format": FORMAT,
            "version": VERSION,
            "kind": kind.name,
            "sizes": dataclasses.asdict(sizes),
            "information_sets": list(information_sets),
            "observations": describe_observations(observation_spec, prior_keys),
            "action": describe_action(action_spec),
            "action_squash": action_squash,
            "modules": sorted(modules),
            "files": files,
            "source": {
                **source,
                "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
            },
        }
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(metadata, f, indent=1, default=list)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metadata


def read_metadata(path: str, check_files: bool = True) -> dict:
    """prior.json of the artifact at `path`, checked for completeness (and, with
    `check_files`, every weight file against its SHA-256). No TensorFlow needed."""
    meta_path = os.path.join(path, METADATA)
    if not _isdir(path):
        raise ArtifactError(
            f"prior artifact {path!r} does not exist (make one with bprl export-prior)"
        )
    try:
        with _open(meta_path) as f:
            metadata = json.load(f)
    except FileNotFoundError:
        raise ArtifactError(
            f"{path!r} is not a prior artifact: {METADATA} is missing (partial copy?)"
        ) from None
    except json.JSONDecodeError as error:
        raise ArtifactError(f"prior artifact {path!r}: {METADATA} is corrupt ({error})") from None
    if metadata.get("format") != FORMAT:
        raise ArtifactError(f"{path!r}: {METADATA} is not a {FORMAT} description")
    if metadata.get("version") != VERSION:
        raise ArtifactError(
            f"{path!r}: artifact version {metadata.get('version')!r}, this bprl reads {VERSION}"
        )
    for field in ("kind", "sizes", "observations", "action", "files", "modules"):
        if field not in metadata:
            raise ArtifactError(f"prior artifact {path!r}: {METADATA} has no {field!r}")
    if check_files:
        for name, digest in metadata["files"].items():
            file_path = os.path.join(path, name)
            if not _exists(file_path):
                raise ArtifactError(f"prior artifact {path!r} is partial: {name} is missing")
            if _sha256(file_path) != digest:
                raise ArtifactError(
                    f"prior artifact {path!r} is corrupt: {name} does not match its checksum"
                )
    return metadata


def sizes_of(metadata: dict) -> prior_kinds.HeadSizes:
    fields = {f.name for f in dataclasses.fields(prior_kinds.HeadSizes)}
    values = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in metadata["sizes"].items()
        if k in fields
    }
    return prior_kinds.HeadSizes(**values)


def observation_entries(metadata: dict) -> list[ObservationEntry]:
    return [
        ObservationEntry(o["key"], tuple(o["shape"]), o["dtype"]) for o in metadata["observations"]
    ]


def mismatches(
    metadata: dict,
    kind: str,
    sizes: prior_kinds.HeadSizes,
    prior_keys: Sequence[str],
    observation_spec: Mapping,
    action_shape: Sequence[int],
    action_squash: str,
) -> list[str]:
    """What stops this artifact from being the prior of a run with these settings, one
    message per problem (empty: it fits). Keys are compared in the prior's input order."""
    problems = []
    if metadata["kind"] != kind:
        problems.append(f"prior.kind is {metadata['kind']!r} in the artifact, {kind!r} here")
    entries = observation_entries(metadata)
    saved_keys = [e.key for e in entries]
    for entry in entries:
        if entry.key not in prior_keys:
            problems.append(
                f"observation key {entry.key!r} (read by the prior) is not among this run's "
                f"prior keys {list(prior_keys)}"
            )
        elif entry.key not in observation_spec:
            problems.append(f"observation key {entry.key!r} is missing from this task")
        else:
            spec = observation_spec[entry.key]
            shape = tuple(int(d) for d in spec.shape)
            if shape != entry.shape:
                problems.append(
                    f"observation key {entry.key!r} has shape {shape} here, {entry.shape} in "
                    "the artifact"
                )
            elif np.dtype(spec.dtype).name != entry.dtype:
                problems.append(
                    f"observation key {entry.key!r} has dtype {np.dtype(spec.dtype).name} here, "
                    f"{entry.dtype} in the artifact"
                )
    for key in prior_keys:
        if key not in saved_keys:
            problems.append(
                f"observation key {key!r} is read by this run's prior, not by the artifact's"
            )
    if not problems and list(prior_keys) != saved_keys:
        problems.append(
            f"the prior's keys are in the order {list(prior_keys)} here, "
            f"{saved_keys} in the artifact"
        )
    saved_action = tuple(metadata["action"]["shape"])
    if saved_action != tuple(action_shape):
        problems.append(
            f"the action shape is {tuple(action_shape)} here, {saved_action} in the artifact"
        )
    if metadata.get("action_squash") != action_squash:
        problems.append(
            f"agent.action_squash is {action_squash!r} here, "
            f"{metadata.get('action_squash')!r} in the artifact"
        )
    saved_sizes = sizes_of(metadata)
    for name in prior_kinds.get(metadata["kind"]).prior_size_fields if not problems else ():
        here, there = getattr(sizes, name), getattr(saved_sizes, name)
        if here != there:
            problems.append(f"{size_field_path(name)} is {there!r} in the artifact, {here!r} here")
    return problems


def size_field_path(name: str) -> str:
    """The config field of a `HeadSizes` field (for messages)."""
    in_network = ("policy_hidden", "prior_hidden", "critic_hidden", "min_scale", "init_scale")
    in_network += ("max_scale", "mean_bound")
    return f"network.{name}" if name in in_network else f"prior.{name}"


def _restore(path: str, metadata: dict, networks: Networks) -> None:
    modules = networks.kind.transfer_modules(networks)
    if sorted(modules) != sorted(metadata["modules"]):
        raise ArtifactError(
            f"prior artifact {path!r} holds {metadata['modules']}, "
            f"this prior needs {sorted(modules)}"
        )
    try:
        status = tf.train.Checkpoint(**modules).read(os.path.join(path, WEIGHTS))
        status.assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"prior artifact {path!r}: its weights do not load ({first})") from None


def load_into(path: str, networks: Networks) -> dict:
    """Replaces the prior's weights in `networks` (and a shared low level's) with the
    artifact's; returns its metadata. The networks must have the artifact's architecture."""
    metadata = read_metadata(path)
    if metadata["kind"] != networks.kind.name:
        raise ArtifactError(
            f"prior artifact {path!r} is a {metadata['kind']} prior, this run's is "
            f"{networks.kind.name}"
        )
    _restore(path, metadata, networks)
    return metadata


def load(path: str) -> tuple[Networks, dict]:
    """Rebuilds the artifact's prior from its own description: (networks, metadata).

    Only `networks.prior` is meaningful (with a shared low level, `networks.policy`
    holds that low level; its high level is untrained); observations need only the keys
    in metadata["observations"].
    """
    metadata = read_metadata(path)
    sizes = sizes_of(metadata)
    entries = observation_entries(metadata)
    spec = {e.key: tf.TensorSpec(e.shape, tf.dtypes.as_dtype(e.dtype)) for e in entries}
    networks = prior_kinds.make_networks(
        spec,
        int(np.prod(metadata["action"]["shape"])),
        [e.key for e in entries],
        prior_kind=metadata["kind"],
        **dataclasses.asdict(sizes),
    )
    _restore(path, metadata, networks)
    return networks, metadata
