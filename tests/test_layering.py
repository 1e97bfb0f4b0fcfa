"""Imports point one way: experiments/ -> launch/ -> agents/ -> networks/, environments/.

Inside launch/, the sub-packages have floors too: the run directory and its readers at the
bottom, then the config (schema, checks, machine fit), then the program and its nodes, then
what reuses a trained run (rollout, export-prior), then the two launchers (local, Vertex AI)
which never import each other, and on top the command line, a run's life and sweeps.

Read from the source (every import statement, including those inside functions), so a
lazy import against the direction is caught too. Everything is imported as `bprl.<part>`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from tests_support import REPO

_BASE = {"agents", "networks", "environments"}
_RUNDIR = {"launch.rundir"}
_CONFIG = _RUNDIR | {"launch.config"}
_PROGRAM = _CONFIG | {"launch.program"}
_REUSE = _PROGRAM | {"launch.reuse"}
_LAUNCH = _REUSE | {"launch.local", "launch.vertex", "launch"}

# A part may import itself and the parts listed for it, nothing else of ours.
ALLOWED = {
    "environments": set(),
    "networks": set(),
    "agents": {"networks", "environments"},
    "launch.rundir": set(),
    "launch.config": _RUNDIR | _BASE,
    "launch.program": _CONFIG | _BASE,
    "launch.reuse": _PROGRAM | _BASE,
    "launch.local": _REUSE | _BASE,
    "launch.vertex": _REUSE | _BASE,
    "launch": _LAUNCH | _BASE,  # cli.py, run.py, sweep.py
    "experiments": _LAUNCH | _BASE,
}


def _part(module: str) -> str | None:
    """`bprl.launch.config.validate` -> "launch.config"; None for a module not ours."""
    names = module.split(".")
    if names[0] != "bprl" or len(names) < 2:
        return None
    if names[1] == "launch" and len(names) > 2:
        if os.path.isdir(os.path.join(REPO, "launch", names[2])):
            return f"launch.{names[2]}"
    return names[1]


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _files(part: str):
    folder = os.path.join(REPO, *part.split("."))
    for dirpath, _, filenames in os.walk(folder):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            # launch/'s own files are part "launch"; its folders are parts of their own.
            if part == "launch" and dirpath != folder:
                continue
            if name.endswith(".py"):
                yield path


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_point_one_way(part):
    wrong = []
    for path in _files(part):
        for module in _imports(path):
            target = _part(module)
            if target is not None and target not in ALLOWED[part] | {part}:
                wrong.append(f"{os.path.relpath(path, REPO)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_old_top_level_names():
    """`agents`, `launch` ... are not installed: every import goes through `bprl.`."""
    old = {"agents", "networks", "environments", "launch", "experiments"}
    wrong = []
    for top in ("agents", "networks", "environments", "launch", "experiments", "tests"):
        for path in _files(top) if top != "launch" else _all(top):
            for module in _imports(path):
                if module.split(".")[0] in old:
                    wrong.append(f"{os.path.relpath(path, REPO)} imports {module}")
    assert not wrong, "\n".join(wrong)


def _all(top: str):
    for dirpath, _, filenames in os.walk(os.path.join(REPO, top)):
        yield from (os.path.join(dirpath, n) for n in filenames if n.endswith(".py"))


def test_run_directory_readers_import_no_tensorflow():
    """`bprl report`, progress lines and summaries read event files without TensorFlow."""
    code = (
        "import sys\n"
        "import bprl.launch.rundir.events, bprl.launch.rundir.layout\n"
        "import bprl.launch.rundir.progress, bprl.launch.rundir.report\n"
        "import bprl.launch.rundir.summary, bprl.launch.rundir.storage\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
