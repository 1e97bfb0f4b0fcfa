"""What a task is: a name, a factory and the information sets of its observation keys.

Task modules (environments/control_suite.py and one module per talk task, e.g.
environments/sequential_navigation.py) export a `TASKS` list of these;
environments/registry.py is the one place that registers them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence

import dm_env


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
