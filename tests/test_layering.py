"""Imports point one way: experiments/ -> launch/ -> agents/ -> networks/, environments/.

Read from the source (every import statement, including those inside functions), so a
lazy import against the direction is caught too.
"""

from __future__ import annotations

import ast
import os

import pytest
from tests_support import REPO

# A package may import itself and the packages listed for it, nothing else of ours.
ALLOWED = {
    "environments": set(),
    "networks": set(),
    "agents": {"networks", "environments"},
    "launch": {"agents", "networks", "environments"},
    "experiments": {"launch", "agents", "networks", "environments"},
}


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    wrong = []
    for dirpath, _, filenames in os.walk(os.path.join(REPO, package)):
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                for imported in _imports(path) - ALLOWED[package] - {package}:
                    wrong.append(f"{os.path.relpath(path, REPO)} imports {imported}")
    assert not wrong, "\n".join(wrong)
