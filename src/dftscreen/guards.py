"""Start-up checks of a run's configuration: fail in a few clear lines before any job starts.

Each function raises :class:`ConfigError` (a ``ValueError``) with one sentence
saying what is wrong and what to do, instead of a traceback, a schema dump or
a run that silently ignores a setting.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration a run cannot start with; the message says why and how to fix it."""


def short_schema_error(error: Exception) -> str:
    """A few lines for a JSON-schema validation error (instead of the ~730 lines of schema it prints).

    ``error`` is Snakemake's WorkflowError raised while handling jsonschema's
    ValidationError (found as its context), or that ValidationError itself;
    anything else is returned as text.
    """
    candidates = [error, error.__cause__, error.__context__, *getattr(error, "args", ())]
    validation = next((c for c in candidates if hasattr(c, "absolute_path") and hasattr(c, "message")), None)
    if validation is None:
        return str(error)
    where = ".".join(str(p) for p in validation.absolute_path) or "(top level)"
    lines = [f"config error at {where}: {validation.message}"]
    description = validation.schema.get("description") if isinstance(validation.schema, dict) else None
    if description:
        lines.append(f"  {where}: {description}")
    lines.append("  every key and its default: workflow/schemas/config.schema.yaml and config/config.yaml")
    return "\n".join(lines)


def check_output_dir(output_dir: str) -> None:
    """Refuse an empty output folder (it would write at the file-system root or the run folder's top).

    Raises:
        ConfigError: ``output_dir`` is empty or only spaces.
    """
    if not str(output_dir).strip():
        raise ConfigError(
            "output_dir is empty: give the folder all results go under, e.g. output_dir: results"
        )


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_structure_overrides(overrides: dict[str, Any], known_ids: Iterable[str]) -> None:
    """Every ``dft.structure_overrides`` key must be the id of an input structure.

    Raises:
        ConfigError: naming the unknown ids, with the closest existing id.
    """
    known = set(known_ids)
    unknown = [sid for sid in overrides if sid not in known]
    if unknown:
        named = ", ".join(f"'{sid}'{_suggest(sid, known)}" for sid in unknown[:5])
        raise ConfigError(
            f"dft.structure_overrides names {len(unknown)} structure id(s) no input has: {named}; "
            "ids are the results table's structure_id column (a dry run, snakemake -n, lists them)"
        )


def check_target_names(properties: dict[str, Any], known_names: Iterable[str]) -> None:
    """Every ``targets.properties`` key must be a target the workflow knows.

    Raises:
        ConfigError: naming the unknown target and the known ones.
    """
    known = sorted(known_names)
    unknown = [name for name in properties if name not in known]
    if unknown:
        named = ", ".join(f"'{name}'{_suggest(name, known)}" for name in unknown)
        raise ConfigError(f"targets.properties: unknown target {named}; known targets: {', '.join(known)}")


def input_manifest(paths: Iterable[str | Path]) -> str:
    """One line per input file: size in bytes, modification time (ns) and path (tab-separated).

    The check job depends on this text written to a file instead of on every
    input file: a changed, added or removed input changes it (and reruns the
    check), while Snakemake no longer lists thousands of inputs in its output.
    """
    lines = []
    for path in sorted({str(p) for p in paths}):
        try:
            stat = os.stat(path)
            lines.append(f"{stat.st_size}\t{stat.st_mtime_ns}\t{path}")
        except OSError:
            lines.append(f"-\t-\t{path}")
    return "".join(f"{line}\n" for line in lines)
