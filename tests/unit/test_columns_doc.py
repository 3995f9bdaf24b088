"""docs/columns.md and the columns the code writes agree (both ways); each row names the function computing it."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pandas as pd

import dftscreen.columns as columns_module
from dftscreen.aggregate import check_columns
from dftscreen.columns import (
    CHANGE_COLUMNS,
    CHECK_COLUMNS,
    COHORT_COLUMN,
    COLUMNS,
    DFT_SAMPLED_COLUMN,
    ML_CHANGE_COLUMNS,
    ML_COLUMNS,
    ML_E_HULL_COLUMN,
    ML_E_HULL_COLUMN_NO_PHASES,
    ML_PHONON_COLUMNS,
    NOVELTY_COLUMNS,
    PHONON_COLUMNS,
    RELAXED_NOVELTY_COLUMNS,
    SMACT_COLUMN,
    STABILITY_COLUMNS,
    cohort_factor_column,
    target_columns,
)
from dftscreen.io import atomic_write_json
from dftscreen.settings import resolve_settings
from dftscreen.table import add_targets, table_from_results
from dftscreen.targets import TARGET_KINDS

from conftest import COLUMNS_DOC, INPUT_COLUMN_PLACEHOLDER, documented_columns, documented_rows, undocumented


def static_columns() -> set[str]:
    """Every column name the code can write, except target, cohort-factor and table-input columns."""
    ml = {*ML_COLUMNS, ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES}
    known = {"smact_valid", *RELAXED_NOVELTY_COLUMNS, *(c for columns in NOVELTY_COLUMNS.values() for c in columns)}
    cohorts = {COHORT_COLUMN, DFT_SAMPLED_COLUMN}
    phonons = {*ML_PHONON_COLUMNS, *PHONON_COLUMNS}
    return set(COLUMNS) | set(check_columns()) | set(STABILITY_COLUMNS) | ml | known | cohorts | phonons


#: Pattern rows (``<placeholder>`` in the name): the function of dftscreen.columns that names their
#: columns, which the computing function calls, and a column it names.
PATTERN_NAMERS = {
    "target_columns": target_columns("band_gap"),
    "cohort_factor_column": (cohort_factor_column("model"),),
}


def test_every_column_the_code_writes_is_documented():
    target = [c for name in TARGET_KINDS for c in target_columns(name)]
    assert undocumented(sorted(static_columns()) + target) == []


def test_every_documented_column_is_still_written():
    literal = {name for name in documented_columns() if "<" not in name}
    assert literal - static_columns() == set(), f"{COLUMNS_DOC} describes columns the code no longer writes"
    # Each pattern (target and cohort-factor columns) stands for columns the code writes.
    named = [c for name in TARGET_KINDS for c in target_columns(name)] + [cohort_factor_column("model")]
    for pattern in (n for n in documented_columns() if "<" in n and INPUT_COLUMN_PLACEHOLDER not in n):
        regex = re.compile("^" + re.sub(r"<[^>]+>", "[A-Za-z0-9_]+", pattern) + "$")
        assert any(regex.match(c) for c in named), pattern


def test_each_column_documented_once_with_a_unit_and_description():
    names = documented_columns()
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    for line in COLUMNS_DOC.read_text().splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            assert len(cells) >= 3 and cells[1] and len(cells[2]) > 10, line


def test_a_real_table_has_only_documented_columns(tmp_path: Path):
    """A table built by the code (stability on, every target, a table-input column) against the page."""
    out = tmp_path / "out"
    check = {
        "structure_id": "a",
        "source_file": "t.csv row 0",
        "valid": False,
        "status": "invalid",
        "reason": "no atoms",
        "Prompt": "<prompt>",
        "reason_input": 1,
    }
    atomic_write_json(out / "check" / "checks.json", [check])
    atomic_write_json(
        out / "references" / "elements" / "Na" / "relax.json",
        {"status": "relaxed", "element": "Na", "formula": "Na", "energy_eV": -1.3},
    )
    targets = {
        "file": None,
        "id_column": "structure_id",
        "properties": {name: {"source_column": "t"} for name in TARGET_KINDS},
    }
    cohorts = {"source": "folders", "folder_levels": ["model"], "unassigned": "keep"}
    table = table_from_results(
        out, True, None, run_settings=resolve_settings("test"), stable_threshold_eV_per_atom=0.1, cohorts=cohorts
    )
    assert {"cohort", "cohort_model"} <= set(table.columns)
    table = table.assign(t=1.0)
    table = add_targets(table, targets).drop(columns=["t"])
    assert undocumented(list(table.columns), input_columns=["Prompt", "reason_input"]) == []
    assert isinstance(table, pd.DataFrame) and len(table) == 1


def test_table_input_columns_are_prefixed_against_every_column_the_code_writes():
    """dftscreen.columns (the names a table-input column must not take) knows every column above."""
    from dftscreen.columns import results_columns

    target = {c for name in TARGET_KINDS for c in target_columns(name)}
    assert static_columns() | target <= results_columns()


# --------------------------------------------------------------------------- "computed by"

#: The table's assemblers: they write some columns themselves and copy the others from records
#: (check, relax.json, properties.json, ML records, known/novelty.json). A copy is written
#: ``row.update(column=record.get("key"))`` or ``{"column": record.get("key")}`` (``table_row``,
#: ``ml_row``): the record key says under which name the record's writer, named on the page, set
#: it. A ``row["column"] = ...`` counts as written (``add_stability`` takes its hull values from
#: ``dftscreen.stability.hull_analysis``'s in-memory result, no record).
ASSEMBLER_MODULES = ("dftscreen.aggregate", "dftscreen.table")

#: A constant of dftscreen.columns that groups more names than this (COLUMNS, CHECK_COLUMNS,
#: ML_COLUMNS: nearly every column) proves nothing about one column when a function names it.
MAX_GROUP_SIZE = 10

COMPUTED_BY_HEADER = "| column | unit | how computed | computed by |"


def _record_key(node: ast.AST) -> str | None:
    """``"key"`` of ``<record>.get("key", ...)``, also inside a one-argument wrapper (``_kpoint_text(...)``)."""
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Attribute) and len(node.args) == 1:
        node = node.args[0]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def assembler_columns() -> tuple[dict[str, str], set[str]]:
    """What the assemblers do with each column: copy it from a record key (column -> key), or write it.

    Copies are the keyword and dict forms of :data:`ASSEMBLER_MODULES`' comment; every other
    keyword, dict key or ``row["column"]`` assignment is written.

    Copied also: the comparison columns (``CHANGE_COLUMNS``, ``ml_`` + ``ML_CHANGE_COLUMNS``), the
    known-materials columns (from ``known/novelty*.json``) and every check column the assemblers do
    not write themselves (``status``, ``reason`` they do).
    """
    copied: dict[str, str] = {}
    written: set[str] = set()
    for module_name in ASSEMBLER_MODULES:
        for node in ast.walk(ast.parse(inspect.getsource(importlib.import_module(module_name)))):
            pairs: list[tuple[str, ast.AST]] = []
            if isinstance(node, ast.Call):
                pairs += [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
            elif isinstance(node, ast.Dict):
                pairs += [
                    (k.value, v)
                    for k, v in zip(node.keys, node.values)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                ]
            for column, value in pairs:
                key = _record_key(value)
                if key is None:
                    written.add(column)
                else:
                    copied[column] = key
            if isinstance(node, ast.Assign):
                written.update(
                    target.slice.value
                    for target in node.targets
                    if isinstance(target, ast.Subscript)
                    and isinstance(target.slice, ast.Constant)
                    and isinstance(target.slice.value, str)
                )
    copied.update({c: c for c in CHANGE_COLUMNS})
    copied.update({f"ml_{c}": c for c in ML_CHANGE_COLUMNS})
    known = [SMACT_COLUMN, *RELAXED_NOVELTY_COLUMNS, *(c for columns in NOVELTY_COLUMNS.values() for c in columns)]
    copied.update({c: c for c in known})
    copied.update({c: c for c in CHECK_COLUMNS if c not in written and c not in copied})
    return copied, written


def constants_naming(column: str) -> list[str]:
    """Constants of dftscreen.columns whose value is ``column``, or a small group (list, dict) holding it."""
    names = []
    for name, value in vars(columns_module).items():
        if not name.isupper():
            continue
        if value == column:
            names.append(name)
        elif isinstance(value, (list, tuple, set, frozenset, dict)):
            members = set(value) | (set(value.values()) if isinstance(value, dict) else set())
            members = {m for member in members for m in (member if isinstance(member, tuple) else (member,))}
            if column in members and len(members) <= MAX_GROUP_SIZE:
                names.append(name)
    return names


def resolve(dotted: str):
    """The object a dotted name names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


def _names(source: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", source) is not None


def _names_key(source: str, key: str) -> bool:
    """``key`` as a string literal or a keyword argument: how a record's writer sets it."""
    return re.search(rf"[\"']{re.escape(key)}[\"']|(?<!\w){re.escape(key)}\s*=(?!=)", source) is not None


def computed_by_problem(column: str, dotted: str, copied: dict[str, str]) -> str | None:
    """Why ``dotted`` is not the function that computes ``column`` (``None``: it may well be).

    ``copied``: column -> record key, for the columns the assemblers copy from a record
    (:func:`assembler_columns`); their function is the record's writer, not the copier.
    """
    if not re.fullmatch(r"dftscreen(\.\w+)+", dotted):
        return f"{dotted!r} is not one dotted name in dftscreen"
    try:
        obj = resolve(dotted)
    except (ImportError, AttributeError) as exc:
        return f"{dotted} does not resolve: {exc}"
    if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
        return f"{dotted} is a {type(obj).__name__}, not a function or method"
    source = inspect.getsource(obj)
    if INPUT_COLUMN_PLACEHOLDER in column:
        return None  # a table input's own columns: the documented function, as long as it resolves
    if "<" in column:
        # Pattern rows (target, cohort-factor columns): the function that writes them names them through
        # the dftscreen.columns function of PATTERN_NAMERS whose columns the pattern matches.
        regex = re.compile("^" + re.sub(r"<[^>]+>", "[A-Za-z0-9_]+", column) + "$")
        namers = [name for name, named in PATTERN_NAMERS.items() if any(regex.match(c) for c in named)]
        return None if any(_names(source, n) for n in namers) else f"{dotted} does not call {' or '.join(namers)}"
    if column in copied and obj.__module__ in ASSEMBLER_MODULES:
        return f"{dotted} copies it from a record's {copied[column]!r}: name the function that writes it there"
    if _names(source, column) or any(_names(source, c) for c in constants_naming(column)):
        return None
    if column in copied and _names_key(source, copied[column]):
        return None
    written_as = sorted({column, *constants_naming(column), *([copied[column]] if column in copied else [])})
    return f"the source of {dotted} names none of {written_as}"


def test_every_row_names_the_function_that_computes_the_column():
    """Each row's fourth cell names one function whose source writes the column (or its constant, or record key)."""
    headers = [line for line in COLUMNS_DOC.read_text().splitlines() if line.startswith("| column ")]
    assert headers and all(line == COMPUTED_BY_HEADER for line in headers), headers
    copied, _ = assembler_columns()
    problems = []
    for cells in documented_rows():
        assert len(cells) == 4, cells
        match = re.fullmatch(r"`([^`]+)`", cells[3])
        if match is None:
            problems.append(f"{cells[0]}: computed-by cell {cells[3]!r} is not one `dotted.name`")
            continue
        problem = computed_by_problem(cells[0].strip("`"), match.group(1), copied)
        if problem:
            problems.append(f"{cells[0]}: {problem}")
    assert problems == [], "\n".join(problems)


def test_a_wrong_computed_by_name_is_caught():
    """The check fails for a caller or a copier one hop away, a name that does not resolve, and a non-function."""
    copied, _ = assembler_columns()
    assert computed_by_problem("band_gap_eV", "dftscreen.properties.band_gap_info", copied) is None
    assert computed_by_problem("band_gap_eV", "dftscreen.table.assemble_table", copied)  # the caller
    assert computed_by_problem("band_gap_eV", "dftscreen.aggregate.table_row", copied)  # the copier
    assert computed_by_problem("relax_converged", "dftscreen.aggregate.table_row", copied)
    assert computed_by_problem("relaxed_matches_generated", "dftscreen.aggregate.table_row", copied)
    assert computed_by_problem("smact_valid", "dftscreen.table.add_known_columns", copied)
    assert computed_by_problem("n_sites", "dftscreen.aggregate.table_row", copied)
    assert computed_by_problem("band_gap_eV", "dftscreen.properties.no_such_function", copied)
    assert computed_by_problem("n_sites", "dftscreen.columns.CHECK_COLUMNS", copied)
    assert computed_by_problem("target_<name>_<unit>", "dftscreen.table.assemble_table", copied)
    assert computed_by_problem("cohort_<factor>", "dftscreen.targets.add_target_columns", copied)
    # Written by the assemblers themselves: their writer is the right name.
    assert computed_by_problem("volume_change_pct", "dftscreen.aggregate.table_row", copied) is None
    assert computed_by_problem("dft_start_geometry", "dftscreen.table.ml_row", copied) is None
