"""The task registry: names, factories and information sets.

Built-in tasks are the `TASKS` of `BUILTIN_TASK_MODULES`, registered here on first use;
another task is registered once with `register`. Everything else (configs, `bprl tasks`, the
launcher's validation) looks it up with `get_task`. Factories return raw dm_env
environments with dict observations; `make_environment` adds the canonical wrapper.
"""

from __future__ import annotations

import importlib

import dm_env

from bprl.environments.task_spec import TaskSpec
from bprl.environments.wrappers import CanonicalObservationWrapper

# Modules whose `TASKS` are registered on first use (they never import this module).
BUILTIN_TASK_MODULES = (
    "bprl.environments.control_suite",
    "bprl.environments.sequential_navigation",
    "bprl.environments.box_manipulation",
    "bprl.environments.multitask",
)


_TASKS: dict[str, TaskSpec] = {}
_builtin_loaded = False


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def _load_builtin_tasks() -> None:
    """Registers every built-in task once, whichever task module was imported first."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    for module_name in BUILTIN_TASK_MODULES:
        for spec in importlib.import_module(module_name).TASKS:
            register(spec)


def all_tasks() -> dict[str, TaskSpec]:
    _load_builtin_tasks()
    return dict(_TASKS)


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(tasks)}")
    return tasks[name]


def make_environment(name: str, seed: int, **kwargs) -> dm_env.Environment:
    """Builds task `name` with flat float32 observations and actions in [-1, 1]."""
    return CanonicalObservationWrapper(get_task(name).factory(seed, **kwargs))
