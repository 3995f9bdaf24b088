"""The run's config as the workflow sees it: the user's file with the schema's defaults filled in.

``workflow/schemas/config.schema.yaml`` is the one source of defaults. The workflow
applies it at start-up (Snakemake's ``validate``, workflow/rules/common.smk); the
commands that read a run's config without starting Snakemake (``dftscreen status``,
``dftscreen known-phases fetch``) read it through :func:`read_run_config`, so every
value they use is the value the workflow used, never a fallback spelled again in code.
Library dataclasses whose fields mirror a config section (e.g. :class:`dftscreen.ml.MLSettings`)
keep defaults equal to the schema's; tests/unit/test_config_schema.py holds them equal.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

#: The config schema, beside the rule files of the workflow this package belongs to.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A run's config cannot be read; the message says which file and why."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The config schema (YAML, JSON-schema draft)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _defaults_of(node: dict[str, Any]) -> dict[str, Any]:
    """The defaults of an object schema's properties, recursing into objects with properties."""
    defaults: dict[str, Any] = {}
    for name, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            defaults[name] = _defaults_of(sub)
        elif "default" in sub:
            defaults[name] = copy.deepcopy(sub["default"])
    return defaults


def schema_defaults() -> dict[str, Any]:
    """Every default of the schema, nested as the config is (a fresh copy on each call)."""
    return _defaults_of(schema())


def _fill(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    filled = dict(given)
    for key, default in defaults.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(default, dict) and isinstance(filled[key], dict):
            filled[key] = _fill(default, filled[key])
    return filled


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every schema default filled in where the user gave no value (as the workflow does).

    Only objects the schema describes property by property are filled key by key; a value
    the user gave (a preset table, a dict of overrides) is kept as given.
    """
    return _fill(schema_defaults(), copy.deepcopy(config))


def read_run_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's config file with the schema defaults filled in.

    Raises:
        ConfigError: the file cannot be read or is not a YAML mapping.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the run config {path}: {exc.strerror or exc}") from exc
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the run config {path} is not valid YAML: {exc}") from exc
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"the run config {path} is not a mapping of settings (found {type(config).__name__})")
    return with_defaults(config)
