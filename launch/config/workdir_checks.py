"""The run directory's checks before launch: writable, and an earlier run in it resumable
by this config."""

from __future__ import annotations

import os
import tempfile

import ml_collections

from bprl.launch.config.errors import ConfigError
from bprl.launch.rundir import layout


def validate_workdir(workdir: str) -> None:
    """The run directory must be creatable and writable."""
    if not workdir:
        raise ConfigError("--workdir is required")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"workdir {workdir!r} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise ConfigError(f"workdir {workdir!r} is not writable: {error.strerror}") from None


def validate_resume(config: ml_collections.ConfigDict, workdir: str) -> bool:
    """True when `workdir` holds an earlier run to resume; raises if `config` cannot."""
    from bprl.launch.config import defaults
    from bprl.launch.rundir import resume

    saved_path = layout.config_path(workdir)
    if not os.path.exists(saved_path):
        return False
    saved = defaults.load_saved(saved_path).to_dict()
    try:
        resume.check_resume_compatible(saved, config.to_dict())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return True
