"""The run's config schema (launch/config/defaults.py): every field read, no unknown one passes.

An experiment config that sets a field the schema does not have would otherwise be
silently ignored (an ml_collections ConfigDict accepts new attributes); a default that no
code reads is a field that promises behaviour nobody implements.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from bprl.launch.config import errors, loading
from bprl.launch.config.defaults import base_config
from tests_support import REPO

CODE_DIRS = ("agents", "networks", "environments", "launch", "experiments", "benchmarks")


def _leaf_names(config, prefix=""):
    for key, value in config.items():
        if hasattr(value, "items") and key != "task_kwargs":
            yield from _leaf_names(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _code_outside_the_schema() -> str:
    texts = []
    for folder in CODE_DIRS:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            if os.sep + "configs" in root:  # experiment configs set fields; they do not read them
                continue
            for name in files:
                path = os.path.join(root, name)
                if name.endswith(".py") and path != os.path.join(
                    REPO, "launch", "config", "defaults.py"
                ):
                    with open(path) as f:
                        texts.append(f.read())
    return "\n".join(texts)


def test_every_field_of_the_schema_is_read_by_some_code():
    code = _code_outside_the_schema()
    unread = []
    for dotted in _leaf_names(base_config()):
        leaf = dotted.rsplit(".", 1)[-1]
        # config.a.b / hyper.b / ["b"] / "b" / f"{...}_b" (e.g. f"{name}_learning_rate")
        pattern = rf"(\.{leaf}\b|[\"']{leaf}[\"']|_{leaf.split('_', 1)[-1]}\b\"|\[\"{leaf}\"\])"
        if not re.search(pattern, code):
            unread.append(dotted)
    assert not unread, f"config fields no code reads: {unread}"


def test_an_experiment_config_setting_an_unknown_field_is_refused(tmp_path):
    config = base_config()
    config.actors.num_actor = 4  # a typo of num_actors
    with pytest.raises(errors.ConfigError, match=r"'actors.num_actor'.*'actors.num_actors'"):
        loading.check_known_fields(config)
    config = base_config()
    config.task_kwargs.anything = 1  # the task's factory decides about its keywords
    loading.check_known_fields(config)


def test_the_cli_refuses_a_config_file_with_an_unknown_field_before_launch(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text(
        "from bprl.experiments.configs import base\n\n"
        "def get_config(variant=''):\n"
        "    config = base.base_config()\n"
        "    config.replay.batchsize = 64\n"
        "    return config\n"
    )
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bprl.launch.cli",
            "run",
            f"--config={path}",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "replay.batchsize" in lines[0] and "batch_size" in lines[0], (
        result.stderr
    )
    assert not workdir.exists()


def test_a_missing_config_file_lists_only_config_files_closest_first(tmp_path):
    # A folder of scripts that are not configs (a user's scratch folder): the error points
    # to the shipped configs instead of listing every .py file there.
    for i in range(30):
        (tmp_path / f"scratch_{i}.py").write_text("x = 1\n")
    with pytest.raises(errors.ConfigError) as error:
        loading.load_config(str(tmp_path / "walker.py"))
    message = str(error.value)
    assert "scratch_" not in message
    assert "walker_walk.py" in message and "base.py" not in message
    # A folder with many configs: the closest name first, at most MAX_LISTED, the rest counted.
    for i in range(15):
        (tmp_path / f"task_{i:02d}.py").write_text("def get_config(variant=''):\n    pass\n")
    (tmp_path / "walker_walk.py").write_text("def get_config(variant=''):\n    pass\n")
    with pytest.raises(errors.ConfigError) as error:
        loading.load_config(str(tmp_path / "walker_wlak.py") + ":tiny")
    listed = str(error.value).split("configs in ", 1)[1].split(": ", 1)[1]
    names = listed.split(" and ")[0].split(", ")
    assert names[0] == "walker_walk.py"
    assert len(names) == loading.MAX_LISTED
    assert listed.endswith(f"and {16 - loading.MAX_LISTED} more")
    assert "scratch_" not in listed
