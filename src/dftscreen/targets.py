"""Compare computed properties with the targets a conditioned model was asked for.

CrystaLLM-pi is prompted with a composition *and* a property (e.g. band gap
1.8 eV, energy above hull 0). For each target property the table gets the
target, the computed value's error (computed − target, in the property's unit)
and a hit flag (|error| ≤ tolerance).

Targets come from a CSV file (``targets.file``: one row per structure, matched
on ``structure_id`` or on ``source_file``) or from columns already in the
table (e.g. carried over from a CrystaLLM-pi Parquet input). A source column
``<column>[<i>]`` is element ``i`` of a list column, e.g. ``condition_vector[0]``,
the property CrystaLLM-pi conditioned on. Values that are not numbers are an
error, not a silently missing target.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dftscreen.columns import (
    E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES,
    INPUT_PREFIX,
    TARGET_UNITS,
    is_results_column,
    target_columns,
)


@dataclass(frozen=True)
class TargetKind:
    """A property that can be targeted: the computed column(s), its unit and a default tolerance."""

    computed_columns: tuple[str, ...]
    unit: str
    default_tolerance: float


#: Target names understood in config, with the table columns they are checked against.
TARGET_KINDS: dict[str, TargetKind] = {
    "band_gap": TargetKind(("band_gap_eV",), TARGET_UNITS["band_gap"], 0.3),
    "e_above_hull": TargetKind((E_HULL_COLUMN, E_HULL_COLUMN_NO_PHASES), TARGET_UNITS["e_above_hull"], 0.05),
    "formation_energy": TargetKind(("formation_energy_eV_per_atom",), TARGET_UNITS["formation_energy"], 0.1),
    "density": TargetKind(("density_relaxed_g_cm3",), TARGET_UNITS["density"], 0.2),
    "magnetic_moment": TargetKind(("magnetic_moment_muB",), TARGET_UNITS["magnetic_moment"], 0.5),
}


def read_target_file(path: str | Path, id_column: str) -> pd.DataFrame:
    """Targets from a CSV file, indexed by ``id_column``.

    Ids are read as text, as written: ``001`` stays ``001`` (a structure id made
    from ``001.cif``), not the number 1; only an empty cell is missing.

    Raises:
        ValueError: the id column is missing (the message lists the columns found).
    """
    table = pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])
    if id_column not in table.columns:
        raise ValueError(f"targets file {path} has no column '{id_column}'; columns: {', '.join(table.columns)}")
    return table.drop_duplicates(subset=id_column, keep="first").set_index(id_column)


#: ``source_column: <column>[<i>]``: element ``i`` (from 0) of a list column, e.g. CrystaLLM-pi's
#: ``condition_vector[0]``. The same pattern is in workflow/schemas/config.schema.yaml.
SOURCE_ELEMENT = re.compile(r"^(?P<column>.+)\[(?P<index>[0-9]+)\]$")

#: Text cells that mean "no value" (compared stripped and lower-case).
_MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none", "<na>"})


def _is_missing(value: Any) -> bool:
    """True for an empty cell: None, NaN, pandas' NA or text such as '' or 'NaN'."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TEXT


def _as_list(value: Any) -> list[Any]:
    """A list cell: a list, tuple or array, or its JSON text as a table input stores it ('[1.8]')."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"not a list: {value!r}")
    return list(value)


def _as_number(value: Any) -> float:
    """A number cell (a number or its text) as a float; anything else raises."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a boolean is not a target value")
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        raise TypeError("a list is not a number")
    return float(value)


def target_numbers(values: pd.Series, name: str, column: str, index: int | None = None) -> pd.Series:
    """Target values as floats (NaN where the cell is empty), from ``column`` or its lists' element ``index``.

    Raises:
        ValueError: a non-empty value is not a number (or, with ``index``, not a list
            with that element): names the target, the column, how many values and an
            example, and for list values the ``<column>[0]`` form.
    """
    numbers, bad = [], []
    for value in values:
        number = math.nan
        if not _is_missing(value):
            try:
                item = _as_list(value)[index] if index is not None else value
                number = math.nan if _is_missing(item) else _as_number(item)
            except (TypeError, ValueError, IndexError):
                bad.append(value)
        numbers.append(number)
    if bad:
        example = bad[0].tolist() if isinstance(bad[0], np.ndarray) else bad[0]
        label = f"{column}[{index}]" if index is not None else column
        what = f"lists with an element [{index}] that is a number" if index is not None else "numbers"
        hint = ""
        if index is None and (isinstance(example, (list, tuple)) or str(example).lstrip().startswith("[")):
            hint = (
                f"; the column holds lists (as CrystaLLM-pi's condition_vector does): name the element that is "
                f"the target, e.g. source_column: '{column}[0]'"
            )
        raise ValueError(
            f"targets.properties.{name}.source_column '{label}': {len(bad)} of {len(numbers)} values are not "
            f"{what}, e.g. {example!r}{hint}"
        )
    return pd.Series(numbers, index=values.index, dtype=float)


def _examples(values: Any, n: int = 3) -> str:
    """Up to ``n`` values as quoted text, for messages."""
    return ", ".join(repr(str(v)) for v in list(values)[:n])


def check_target_rows(table: pd.DataFrame, targets: pd.DataFrame, id_column: str) -> None:
    """Fail when no structure has a row in the targets file; warn when only some have one.

    Raises:
        ValueError: not one ``id_column`` value of ``table`` is in the targets file's
            ids (the message shows ids of both).
    """
    if table.empty:
        return
    ids = table[id_column].astype(str)
    missing = ~ids.isin(targets.index.astype(str))
    if missing.all():
        raise ValueError(
            f"targets.file: none of the {len(table)} structures has a row in the targets file, matched on "
            f"targets.id_column '{id_column}' (the table's values: {_examples(ids)}; the file's: "
            f"{_examples(targets.index)}); check targets.id_column and the ids in the file"
        )
    if missing.any():
        warnings.warn(
            f"targets.file: {int(missing.sum())} of {len(table)} structures have no row in the targets file "
            f"(matched on {id_column}, e.g. {_examples(ids[missing])}); their target columns are empty",
            stacklevel=3,  # the caller of add_target_columns
        )


def table_source_column(table: pd.DataFrame, name: str, source: str) -> str | None:
    """The results-table column holding target ``name``'s values, named ``source`` in config (``None``: absent).

    A table-input column named like a results column is in the table as
    ``input_<name>`` (see :mod:`dftscreen.columns`); naming it by its original
    name finds it there.

    Raises:
        ValueError: ``source`` is the computed column the target is checked against
            and no table-input column of that name exists (every error would be 0).
    """
    if is_results_column(source):
        if f"{INPUT_PREFIX}{source}" in table.columns:
            return f"{INPUT_PREFIX}{source}"
        if source in TARGET_KINDS[name].computed_columns:
            raise ValueError(
                f"targets.properties.{name}.source_column '{source}' is the computed column the target is "
                "compared with, not a target value (no input column of that name): name the column of "
                "the input table or targets file that holds what the structure was generated for"
            )
    return source if source in table.columns else None


def _source_values(
    table: pd.DataFrame, targets: pd.DataFrame | None, id_column: str, name: str, column: str
) -> tuple[pd.Series | None, bool]:
    """Column ``column``'s values per row of ``table`` (``None``: no such column), and whether from ``targets``."""
    if targets is not None and column in targets.columns:
        return table[id_column].astype(str).map(targets[column]), True
    found = table_source_column(table, name, column)
    return (table[found] if found is not None else None), False


def add_target_columns(
    table: pd.DataFrame,
    properties: dict[str, dict[str, Any]],
    targets: pd.DataFrame | None = None,
    id_column: str = "structure_id",
) -> pd.DataFrame:
    """Add target, error and hit columns for each configured target property.

    Args:
        table: the results table.
        properties: ``{name: {"tolerance": float, "source_column": str}}``; the
            source column (default: the name) holds the target values, in
            ``targets`` or else in ``table`` (a table-input column renamed
            ``input_<source>`` is found by its original name); ``column[i]``
            names element ``i`` of a list column (see :func:`target_numbers`).
        targets: target values indexed by ``id_column`` values, or ``None``.
        id_column: ``structure_id`` or ``source_file``.

    Raises:
        KeyError: an unknown target name (the message lists the known ones).
        ValueError: a source column is the computed column itself (see :func:`table_source_column`),
            or no structure has a row in ``targets`` (see :func:`check_target_rows`),
            or a source column's values are not numbers (see :func:`target_numbers`).

    Warns:
        UserWarning: a source column is in neither ``targets`` nor ``table``.
    """
    table = table.copy()
    checked_rows = False
    for name, spec in properties.items():
        if name not in TARGET_KINDS:
            raise KeyError(f"unknown target '{name}'; known targets: {', '.join(sorted(TARGET_KINDS))}")
        kind = TARGET_KINDS[name]
        source = (spec or {}).get("source_column", name)
        tolerance = float((spec or {}).get("tolerance", kind.default_tolerance))

        column, index = source, None
        values, from_file = _source_values(table, targets, id_column, name, source)
        if values is None and (element := SOURCE_ELEMENT.match(source)):
            column, index = element["column"], int(element["index"])
            values, from_file = _source_values(table, targets, id_column, name, column)
        if from_file and not checked_rows:
            check_target_rows(table, targets, id_column)
            checked_rows = True
        if values is None:
            where = "the targets file or the results table" if targets is not None else "the results table"
            warnings.warn(
                f"targets.properties.{name}: no column '{column}' in {where}; no {name} target columns",
                stacklevel=2,
            )
            continue
        computed_column = next((c for c in kind.computed_columns if c in table.columns), None)
        target_col, error_col, hit_col = target_columns(name)
        table[target_col] = target_numbers(values, name, column, index)
        computed = pd.to_numeric(table[computed_column], errors="coerce") if computed_column else float("nan")
        table[error_col] = computed - table[target_col]
        hit = table[error_col].abs() <= tolerance
        # No computed value or no target: not a miss, unknown.
        table[hit_col] = hit.where(table[error_col].notna(), None)
    return table


def check_targets_file(targets_config: dict[str, Any], ids: Iterable[str]) -> None:
    """Before any job runs: the targets file gives some input a target, and its target columns are numbers.

    ``ids`` are the inputs' values of ``targets.id_column`` (structure ids or source
    files). Problems found only in the finished table (a table-input column) are reported
    there; a run is never stopped at its end for a target.

    Raises:
        ValueError: the file has no id column, no input has a row in it, or a configured
            target column of the file holds values that are not numbers.
    """
    path = targets_config.get("file")
    if not path:
        return
    id_column = targets_config.get("id_column", "structure_id")
    targets = read_target_file(path, id_column)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some inputs without a row: said again, per row, in the table
        check_target_rows(pd.DataFrame({id_column: [str(i) for i in ids]}), targets, id_column)
    for name, spec in (targets_config.get("properties") or {}).items():
        source = (spec or {}).get("source_column", name)
        column, index = source, None
        if source not in targets.columns and (element := SOURCE_ELEMENT.match(source)):
            column, index = element["column"], int(element["index"])
        if column in targets.columns:
            target_numbers(targets[column], name, column, index)
