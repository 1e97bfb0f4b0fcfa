"""Loading an experiment config the way `--config=FILE[:variant]` does, and checking the
command line's config arguments before absl and ml_collections parse them: a missing
config file, an unknown variant or an unknown `--config.a.b` field each become one
ConfigError instead of a traceback; a field no code reads is refused."""

from __future__ import annotations

import difflib
import importlib.util
import os
import re

import ml_collections

from bprl.launch.config.errors import ConfigError

_CONFIG_ARG = re.compile(r"^--?config(?:=(.*))?$")
_OVERRIDE_ARG = re.compile(r"^--?(?:no)?config\.([^=]+)(?:=.*)?$")


def check_config_args(args: list[str]) -> None:
    """Checks `--config=FILE[:variant]` and each `--config.a.b=value` in `args`.

    Raises ConfigError for a config file that is missing or fails to load, an unknown
    variant, and an override naming a field the config does not have (with the closest
    name). `task_kwargs.<name>` may name a new field: the task's factory decides
    (`validate_config`).
    """
    spec, overrides = None, []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if match := _CONFIG_ARG.match(arg):
            spec = match.group(1) if match.group(1) is not None else None
            if spec is None and i + 1 < len(args):
                spec = args[i + 1]
        elif match := _OVERRIDE_ARG.match(arg):
            overrides.append(match.group(1))
    if spec is None:
        if overrides:
            raise ConfigError(f"--config.{overrides[0]} needs --config=FILE before it")
        return
    config = load_config(spec)
    for name in overrides:
        check_field(config, name)


# The shipped configs' folder: bprl.experiments.configs, wherever the package is installed.
SHIPPED_CONFIGS = importlib.util.find_spec("bprl.experiments.configs").submodule_search_locations[0]
MAX_LISTED = 10  # config names an error lists


def config_files(folder: str) -> list[str]:
    """The config files in `folder`: .py files that define get_config (sorted)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if not name.endswith(".py") or name == "__init__.py" or not os.path.isfile(full):
            continue
        try:
            with open(full, encoding="utf-8", errors="replace") as f:
                if "def get_config" in f.read(200_000):
                    found.append(name)
        except OSError:
            continue
    return found


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`get_config(variant)` of the config file `spec` = 'path[:variant]', as --config does."""
    path, colon, variant = spec.partition(":")
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        known = config_files(folder)
        if not known and folder != SHIPPED_CONFIGS:
            shipped = os.path.relpath(SHIPPED_CONFIGS)
            folder = SHIPPED_CONFIGS if shipped.startswith("..") else shipped
            known = config_files(SHIPPED_CONFIGS)
        close = difflib.get_close_matches(os.path.basename(path), known, n=3, cutoff=0.6)
        listed = close + [name for name in known if name not in close]
        more = f" and {len(listed) - MAX_LISTED} more" if len(listed) > MAX_LISTED else ""
        hint = f"; configs in {folder}: {', '.join(listed[:MAX_LISTED])}{more}" if known else ""
        raise ConfigError(f"config file {path!r} not found{hint}")
    module_spec = importlib.util.spec_from_file_location("bprl_checked_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        get_config = module.get_config
    except Exception as error:  # noqa: BLE001 - any failure of the user's file is reported
        raise ConfigError(f"config file {path!r}: {type(error).__name__}: {error}") from None
    try:
        config = get_config(variant) if colon else get_config()
    except ValueError as error:  # unknown_variant and the configs' own checks
        raise ConfigError(f"{spec}: {error}") from None
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"{spec}: get_config: {type(error).__name__}: {error}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"{spec}: get_config() returned {type(config).__name__}, not a ConfigDict"
        )
    return config


def check_field(config: ml_collections.ConfigDict, name: str) -> None:
    """Raises ConfigError when `config` has no field `name` (dotted), naming the closest."""
    node, walked = config, []
    parts = name.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, ml_collections.ConfigDict) and part in node:
            node, walked = node[part], [*walked, part]
            continue
        if walked == ["task_kwargs"] and i == len(parts) - 1:
            return  # a keyword for the task's factory: checked by validate_config
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"config field {'.'.join(walked)!r} has no field {part!r}")
        choices = sorted(node.keys())
        close = difflib.get_close_matches(part, choices, n=1)
        if close:
            hint = f"did you mean {'.'.join([*walked, close[0]])!r}?"
        else:
            where = f"config field {'.'.join(walked)!r}" if walked else "the config"
            hint = f"{where} has: {', '.join(choices)}"
        raise ConfigError(f"unknown config field {name!r}; {hint}")


def _leaf_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict) and key != "task_kwargs":
            names += _leaf_fields(value, f"{dotted}.")
        else:
            names.append(dotted)
    return names


def check_known_fields(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for a field that is not in the run's schema (launch/config/defaults.py).

    An experiment config that sets a field no code reads (a typo, or a field since
    removed) would otherwise be silently ignored; it is refused, naming the closest field.
    """
    from bprl.launch.config.defaults import base_config

    schema = base_config()
    for name in _leaf_fields(config):
        try:
            check_field(schema, name)
        except ConfigError as error:
            raise ConfigError(f"{error} (set by the experiment config; no code reads it)") from None
