"""The task registry: names, factories and information sets.

A task is registered once with `register`; everything else (configs, `bprl tasks`, the
launcher's validation) looks it up with `get_task`. Factories return raw dm_env
environments with dict observations; `make_environment` adds the canonical wrapper.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence

import dm_env

from environments.wrappers import CanonicalObservationWrapper


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    Attributes:
      name: unique name used in configs (e.g. "walker_walk").
      factory: `factory(seed, **kwargs)` returns a dm_env with dict observations.
      information_sets: named groups of observation keys, e.g.
        {"proprioception": ("orientations", "height"), "velocity": ("velocity",)}.
        Every observation key belongs to at least one set.
      description: one line shown by `bprl tasks`.
    """

    name: str
    factory: Callable[..., dm_env.Environment]
    information_sets: Mapping[str, tuple[str, ...]]
    description: str = ""

    def keys_for(self, set_names: Sequence[str]) -> tuple[str, ...]:
        """Observation keys of the union of `set_names`, in first-seen order."""
        keys: list[str] = []
        for set_name in set_names:
            if set_name not in self.information_sets:
                raise ValueError(
                    f"task {self.name!r} has no information set {set_name!r}; "
                    f"known sets: {sorted(self.information_sets)}"
                )
            for key in self.information_sets[set_name]:
                if key not in keys:
                    keys.append(key)
        return tuple(keys)

    def keyword_arguments(self) -> tuple[str, ...] | None:
        """Names `factory` accepts after the seed (config.task_kwargs); None: any name."""
        parameters = list(inspect.signature(self.factory).parameters.values())[1:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return tuple(
            p.name
            for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        )


_TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def _load_builtin_tasks() -> None:
    # Imported for their side effect of registering tasks.
    from environments import control_suite, talk_tasks  # noqa: F401


def all_tasks() -> dict[str, TaskSpec]:
    if not _TASKS:
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
