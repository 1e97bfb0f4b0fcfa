"""The installed package: one name, `bprl`, whatever folders the repository keeps.

pyproject.toml maps the top-level folders into the `bprl` namespace and lists every
package by its installed name; a new folder with an __init__.py left out of that list
would be missing from a wheel (and from the Vertex AI image) while an editable install
still finds it, so the list is checked against the tree here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import tomli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setuptools() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomli.load(f)["tool"]["setuptools"]


def test_every_package_folder_is_listed_under_its_installed_name():
    setup = _setuptools()
    found = set()
    for installed, folder in setup["package-dir"].items():
        for here, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                relative = os.path.relpath(here, os.path.join(ROOT, folder))
                parts = [] if relative == "." else relative.split(os.sep)
                found.add(".".join([installed, *parts]))
    assert found == set(setup["packages"])


def test_a_build_holds_only_the_bprl_name(tmp_path):
    # What a wheel (and the Vertex AI image's install) holds: setuptools' build of the
    # packages as pyproject.toml lists them.
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build"]
        + ["--build-base", str(tmp_path)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    lib = tmp_path / "lib"
    assert sorted(os.listdir(lib)) == ["bprl"]
    assert sorted(os.listdir(lib / "bprl")) == [
        "agents",
        "environments",
        "experiments",
        "launch",
        "networks",
    ]
    # The shipped configs are in it (runnable by path from an installed package too).
    assert (lib / "bprl" / "experiments" / "configs" / "walker_walk.py").is_file()
    assert (lib / "bprl" / "launch" / "config" / "shape.py").is_file()


def test_the_console_script_is_the_packaged_cli():
    from importlib import metadata

    (script,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "bprl"]
    assert script.value == "bprl.launch.cli:main"


def test_the_old_top_level_names_are_not_importable_outside_the_checkout(tmp_path):
    probe = (
        "import importlib.util as u, sys;"
        "print([n for n in ('agents', 'launch', 'networks', 'environments', 'experiments')"
        " if u.find_spec(n)]); import bprl.launch.cli"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
