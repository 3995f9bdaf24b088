"""Cohorts: which generator, prompt, condition or seed each input belongs to (issue 30).

A run's inputs fall into cohorts by *factors* (``model``, ``condition``, ``seed``, ...) whose
values come from one source, the config section ``cohorts`` (:class:`CohortSpec`):

* ``folders``: the sub-folder levels of the input's path relative to ``input.cif_dir``;
  ``folder_levels: [model, condition]`` names levels 1 and 2 (``crystallm/gap1.8/a.cif``:
  model ``crystallm``, condition ``gap1.8``); a file fewer levels deep gets no cohort;
* ``regex``: the named groups of a regular expression searched (``re.search``) in that path;
* ``table``: columns of the input table (``input.table``), or an element of a list column,
  ``condition_vector[0]`` (the factor ``condition_vector_0``, see :func:`factor_name`);
* ``manifest``: a CSV with a key column (``structure_id`` or ``source_file``) and one column
  per factor;
* ``none``: every input is in the one cohort ``all``.

An input is assigned when every factor has a value (a number for an ``ordered`` factor);
its cohort label is ``<factor>=<value>`` joined by ``, `` in the configured order, the
``pool_over`` factors left out (:func:`cohort_label`). Values are text written one way
(:func:`value_text`: ``2.0`` and ``2`` are both ``2``), ordered ones floats.

The workflow calls :func:`check_cohorts` at start-up: a source that leaves inputs without a
cohort, a regex matching no file, a missing column or manifest, a baseline no cohort has, a
non-numeric ordered value or a name that is no factor stops the run with one sentence
(:class:`dftscreen.guards.ConfigError`). The results table gets the columns through
:func:`dftscreen.table.add_cohort_columns` (:func:`assign_table_rows`), which never stops a
run: an input without a cohort there is in the cohort ``unassigned``.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import numbers
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dftscreen.columns import INPUT_PREFIX, is_results_column
from dftscreen.config import with_defaults
from dftscreen.guards import ConfigError
from dftscreen.targets import SOURCE_ELEMENT

#: The label of every input when ``cohorts.source`` is ``none`` (and when every factor is pooled).
ALL_COHORT = "all"
#: The label of an input no source assigns (``cohorts.unassigned: keep``).
UNASSIGNED_COHORT = "unassigned"
#: Columns a manifest is keyed by (never factors).
MANIFEST_KEYS = ("structure_id", "source_file")
#: Inputs named in a start-up error.
EXAMPLES = 5

#: A factor's value: text, or a float for an ordered factor.
Value = str | float


@dataclass(frozen=True)
class CohortSpec:
    """The validated config section ``cohorts``, with the factors its source gives.

    Attributes:
        source: ``none``, ``folders``, ``regex``, ``table`` or ``manifest``.
        factors: the factor names, in the configured order (folder levels, regex groups in
            their order, table columns, manifest columns).
        columns: factor -> the input-table or manifest column it is read from (table, manifest).
        folder_levels: names of sub-folder levels 1..k (folders).
        regex: the compiled regular expression (regex).
        manifest, manifest_key: the manifest CSV and the column its rows are keyed by.
        manifest_rows: key -> {column: text}, read once (manifest).
        baseline: factor -> value (text as :func:`value_text` writes it) of the reference cohort.
        ordered, pool_over: factors with numeric values; factors left out of the label.
        unassigned: ``error`` or ``keep``.
        stable_threshold_eV_per_atom, metastable_threshold_eV_per_atom, alpha: for the statistics.
    """

    source: str
    factors: tuple[str, ...]
    columns: Mapping[str, str]
    folder_levels: tuple[str, ...]
    regex: re.Pattern[str] | None
    manifest: str | None
    manifest_key: str
    manifest_rows: Mapping[str, Mapping[str, str]] = field(repr=False, compare=False)
    baseline: Mapping[str, str]
    ordered: tuple[str, ...]
    pool_over: tuple[str, ...]
    unassigned: str
    stable_threshold_eV_per_atom: float
    metastable_threshold_eV_per_atom: float
    alpha: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> CohortSpec:
        """The spec of the config section ``cohorts`` (schema defaults filled in; ``None``: no cohorts).

        Reads the manifest (source ``manifest``) once.

        Raises:
            ConfigError: the source lacks what it needs (folder_levels, a regex with named
                groups, table_columns, a readable manifest with its key column), or
                pool_over, ordered or baseline names no factor or a pooled one.
        """
        given = _filled(section)
        source = given["source"]
        columns: dict[str, str] = {}
        rows: dict[str, dict[str, str]] = {}
        if source == "table":
            columns = _factor_columns(given["table_columns"], "cohorts.table_columns")
        elif source == "manifest":
            columns, rows = read_manifest(given["manifest"], given["manifest_key"])
        regex = _compile(given["regex"]) if source == "regex" else None
        factors = _source_factors(source, given["folder_levels"], regex, columns)
        names = _NameCheck(source, factors, {column: factor for factor, column in columns.items()})
        ordered = tuple(names.factor(name, "cohorts.ordered") for name in given["ordered"])
        pool_over = tuple(names.factor(name, "cohorts.pool_over") for name in given["pool_over"])
        baseline = names.baseline(given["baseline"], ordered, pool_over)
        return cls(
            source=source,
            factors=factors,
            columns=columns,
            folder_levels=tuple(given["folder_levels"]) if source == "folders" else (),
            regex=regex,
            manifest=given["manifest"] if source == "manifest" else None,
            manifest_key=given["manifest_key"],
            manifest_rows=rows,
            baseline=baseline,
            ordered=ordered,
            pool_over=pool_over,
            unassigned=given["unassigned"],
            stable_threshold_eV_per_atom=float(given["stable_threshold_eV_per_atom"]),
            metastable_threshold_eV_per_atom=float(given["metastable_threshold_eV_per_atom"]),
            alpha=float(given["alpha"]),
        )

    def lookup_columns(self) -> set[str]:
        """Input-table columns the table source reads: each configured name and a list element's column."""
        names = set()
        for column in self.columns.values() if self.source == "table" else ():
            names.add(column)
            if element := SOURCE_ELEMENT.match(column):
                names.add(element["column"])
        return names


def _filled(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The section with the schema's defaults where it gives no value (the schema is their one source)."""
    return with_defaults({"cohorts": dict(section or {})})["cohorts"]


# --- factor names ----------------------------------------------------------------------------


def factor_name(column: str) -> str:
    """The factor a table or manifest column stands for: ``condition_vector[0]`` -> ``condition_vector_0``.

    Every run of characters other than letters, digits and ``_`` becomes one ``_`` (a factor's
    name is part of its column's name, ``cohort_<factor>``).
    """
    if element := SOURCE_ELEMENT.match(column):
        column = f"{element['column']}_{element['index']}"
    return re.sub(r"[^A-Za-z0-9_]+", "_", column).strip("_") or "factor"


def _factor_columns(columns: Sequence[str], key: str) -> dict[str, str]:
    """Factor -> column for the table or manifest columns; two columns may not make one factor name."""
    found: dict[str, str] = {}
    for column in columns:
        name = factor_name(column)
        if name in found:
            raise ConfigError(f"{key}: columns '{found[name]}' and '{column}' both make the factor '{name}'")
        found[name] = column
    return found


def _compile(pattern: str | None) -> re.Pattern[str]:
    """The regex of source ``regex``; it must compile and have named groups."""
    if not pattern:
        raise ConfigError(
            "cohorts.source regex needs cohorts.regex, a regular expression with named groups, "
            "e.g. '(?P<model>[^/]+)/T(?P<temperature>[0-9.]+)/'"
        )
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"cohorts.regex '{pattern}' is not a valid regular expression: {exc}") from None
    if not regex.groupindex:
        raise ConfigError(
            f"cohorts.regex '{pattern}' has no named group: name each factor as (?P<name>...), "
            "e.g. '(?P<model>[^/]+)/'"
        )
    return regex


def _source_factors(
    source: str, folder_levels: Sequence[str], regex: re.Pattern[str] | None, columns: Mapping[str, str]
) -> tuple[str, ...]:
    """The factor names of a source, in the configured order."""
    if source == "folders":
        if not folder_levels:
            raise ConfigError(
                "cohorts.source folders needs cohorts.folder_levels, the names of the sub-folder levels "
                "of input.cif_dir, e.g. folder_levels: [model, condition]"
            )
        return tuple(folder_levels)
    if source == "regex" and regex is not None:
        return tuple(sorted(regex.groupindex, key=regex.groupindex.__getitem__))
    if source == "table" and not columns:
        raise ConfigError(
            "cohorts.source table needs cohorts.table_columns, the input-table columns holding the factors, "
            "e.g. table_columns: ['condition_vector[0]']"
        )
    return tuple(columns)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class _NameCheck:
    """Resolves the factor names of ordered, pool_over and baseline (a table column's spelling too)."""

    source: str
    factors: tuple[str, ...]
    aliases: Mapping[str, str]

    def factor(self, name: str, key: str) -> str:
        """The factor ``name`` stands for; raises ConfigError when it is none."""
        factor = self.aliases.get(name, name)
        if factor not in self.factors:
            known = ", ".join(self.factors) or "none"
            raise ConfigError(
                f"{key} names '{name}', which is no factor of cohorts.source {self.source} "
                f"(factors: {known}){_suggest(name, self.factors)}"
            )
        return factor

    def baseline(
        self, baseline: Mapping[str, Any], ordered: Sequence[str], pool_over: Sequence[str]
    ) -> dict[str, str]:
        """Factor -> value text of the baseline; a pooled factor or a non-numeric ordered value is refused."""
        resolved = {}
        for name, value in baseline.items():
            factor = self.factor(name, "cohorts.baseline")
            if factor in pool_over:
                raise ConfigError(
                    f"cohorts.baseline names '{name}', which cohorts.pool_over pools: a cohort has no one value "
                    "of it; name the baseline by the other factors"
                )
            text = value_text(value)
            if text is None:
                raise ConfigError(f"cohorts.baseline gives the factor '{factor}' no value: name the baseline's value")
            if factor in ordered and _number(text) is None:
                raise ConfigError(f"cohorts.baseline gives the ordered factor '{factor}' {value!r}, which is no number")
            resolved[factor] = _label_text(_number(text)) if factor in ordered else text
        return resolved


# --- the manifest ----------------------------------------------------------------------------


def read_manifest(path: str | None, key: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Factor -> column, and key -> {column: text}, of the manifest CSV (cells read as text, as written).

    Every column but ``structure_id`` and ``source_file`` is a factor.

    Raises:
        ConfigError: no manifest is configured, it cannot be read, it has no key column or no
            factor column, or it gives one key two different rows.
    """
    if not path:
        raise ConfigError(
            "cohorts.source manifest needs cohorts.manifest, a CSV with a key column "
            f"({' or '.join(MANIFEST_KEYS)}) and one column per factor"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cohorts.manifest '{path}' cannot be read ({reason}): give an existing CSV file") from None
    if key not in header:
        raise ConfigError(
            f"cohorts.manifest '{path}' has no column '{key}' (cohorts.manifest_key); its columns: "
            f"{', '.join(header) or 'none'}"
        )
    columns = _factor_columns([c for c in header if c not in MANIFEST_KEYS], "cohorts.manifest")
    if not columns:
        raise ConfigError(f"cohorts.manifest '{path}' has no column besides {key}: give one column per factor")
    return columns, _manifest_rows(path, key, records)


def _manifest_rows(path: str, key: str, records: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for record in records:
        name = (record.get(key) or "").strip()
        if name in rows and rows[name] != record:
            raise ConfigError(f"cohorts.manifest '{path}' has two different rows for {key} '{name}': keep one")
        rows[name] = record
    return rows


# --- values and labels ------------------------------------------------------------------------


def number_text(number: float) -> str:
    """A number written one way: ``2`` for 2.0, else Python's shortest repr (``0.8``)."""
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def value_text(value: Any) -> str | None:
    """A factor value as text written one way (``None``: no value, i.e. None, NaN or empty text)."""
    if value is None or type(value).__name__ == "NAType":
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return None if math.isnan(number) else number_text(number)
    return str(value).strip() or None


def _number(text: str | None) -> float | None:
    """The finite number ``text`` spells, else ``None``."""
    try:
        number = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _label_text(value: Value | None) -> str:
    return number_text(value) if isinstance(value, float) else str(value)


def _list_element(cell: Any, index: int) -> Any:
    """Element ``index`` of a list cell (a list, an array, or its JSON text as a table input stores it)."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except ValueError:
            return None
    if hasattr(cell, "tolist"):
        cell = cell.tolist()
    if isinstance(cell, (list, tuple)) and -len(cell) <= index < len(cell):
        return cell[index]
    return None


def column_value(columns: Mapping[str, Any], column: str) -> str | None:
    """The text of column ``column`` of an input's table columns, or of the list element ``col[i]`` names."""
    if column in columns:
        return value_text(columns[column])
    element = SOURCE_ELEMENT.match(column)
    if element and element["column"] in columns:
        return value_text(_list_element(columns[element["column"]], int(element["index"])))
    return None


def raw_values(
    spec: CohortSpec, structure_id: str, source_file: str, columns: Mapping[str, Any] | None = None
) -> dict[str, str | None]:
    """Each factor's value for one input as text, ``None`` where the source gives none.

    Args:
        structure_id: the input's id (a manifest keyed by structure_id).
        source_file: its path relative to ``input.cif_dir`` (folders, regex; a manifest keyed by
            source_file); a table row's is ``<table> row <n>``.
        columns: its input-table columns by their own names (table).
    """
    if spec.source == "folders":
        levels = source_file.split("/")[:-1]
        return {f: (levels[n] or None) if n < len(levels) else None for n, f in enumerate(spec.factors)}
    if spec.source == "regex" and spec.regex is not None:
        match = spec.regex.search(source_file)
        return {f: (match.group(f) or None) if match else None for f in spec.factors}
    if spec.source == "table":
        return {f: column_value(columns or {}, spec.columns[f]) for f in spec.factors}
    if spec.source == "manifest":
        row = spec.manifest_rows.get(structure_id if spec.manifest_key == "structure_id" else source_file, {})
        return {f: value_text(row.get(spec.columns[f])) for f in spec.factors}
    return {}


def typed_values(spec: CohortSpec, raw: Mapping[str, str | None]) -> dict[str, Value] | None:
    """The factor values of an assigned input (ordered ones as floats); ``None``: it gets no cohort."""
    values: dict[str, Value] = {}
    for factor in spec.factors:
        text = raw.get(factor)
        value = _number(text) if factor in spec.ordered else text
        if value is None:
            return None
        values[factor] = value
    return values


def assign_input(
    spec: CohortSpec, structure_id: str, source_file: str, columns: Mapping[str, Any] | None = None
) -> dict[str, Value] | None:
    """Factor -> value of one input (:func:`raw_values`, :func:`typed_values`); ``None``: no cohort."""
    return typed_values(spec, raw_values(spec, structure_id, source_file, columns))


def cohort_label(spec: CohortSpec, values: Mapping[str, Value] | None) -> str:
    """``<factor>=<value>`` joined by ``, `` in the configured order, pooled factors left out.

    ``all`` without factors (or with every factor pooled), ``unassigned`` for ``values`` None.
    """
    if values is None:
        return UNASSIGNED_COHORT
    parts = [f"{f}={_label_text(values[f])}" for f in spec.factors if f not in spec.pool_over]
    return ", ".join(parts) or ALL_COHORT


def baseline_label(spec: CohortSpec, values: Mapping[str, Value | None]) -> str | None:
    """The label of the cohort a cohort with factor values ``values`` is compared with; ``None``: none.

    ``cohorts.baseline`` names a value of some factors: the baseline of a cohort has those values
    and the cohort's own values of every other (not pooled) factor. A baseline naming every
    factor is one cohort, everyone's; ``baseline: {model: crystallm}`` with the factors model
    and condition compares each model with crystallm at the same condition. ``None`` without a
    baseline, or when ``values`` lack a factor the label needs (the cohort ``unassigned``).
    """
    if not spec.baseline:
        return None
    merged: dict[str, Value] = {}
    for factor in spec.factors:
        if factor in spec.pool_over:
            continue
        value = spec.baseline.get(factor, values.get(factor))
        if value_text(value) is None:
            return None
        # A number from a table (numpy's float64 among them) is labelled as the table's labels are.
        merged[factor] = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value
    return cohort_label(spec, merged)


def input_column(available: Collection[str], name: str) -> str | None:
    """The results-table column holding the input-table column ``name`` (``input_<name>`` when renamed)."""
    if is_results_column(name):
        prefixed = f"{INPUT_PREFIX}{name}"
        return prefixed if prefixed in available else None
    return name if name in available else None


def assign_table_rows(spec: CohortSpec, table: Any) -> list[dict[str, Value] | None]:
    """Factor values of each row of the results table ``table`` (a pandas DataFrame), in row order.

    Folders and regex read ``source_file``, a manifest ``structure_id`` or ``source_file``, the
    table source the input's columns the table carries (under ``input_<name>`` when renamed).
    """
    present = {n: c for n in spec.lookup_columns() if (c := input_column(list(table.columns), n)) is not None}
    names = list(present)
    cells = zip(*(table[present[n]] for n in names)) if names else ((),) * len(table)
    return [
        assign_input(spec, str(sid), str(source), dict(zip(names, row)))
        for sid, source, row in zip(table["structure_id"], table["source_file"], cells)
    ]


# --- the start-up check -----------------------------------------------------------------------


def check_cohorts(section: Mapping[str, Any] | None, inputs: Iterable[Any]) -> CohortSpec:
    """Before any job runs: every input gets its cohort, or the run stops saying why in one sentence.

    ``inputs`` are :class:`dftscreen.inputs.InputFile` items (``structure_id``, ``relative_path``,
    ``extra_columns``, ``content``), e.g. ``RunPlan.inputs.values()``.

    Raises:
        ConfigError: as :meth:`CohortSpec.from_config`; or a table column is missing, the regex
            matches no input, an ordered factor has a value that is no number, inputs get no
            cohort with ``unassigned: error`` (how many, up to five named), or the baseline
            names a value (or combination) no input has.
    """
    spec = CohortSpec.from_config(section)
    items = list(inputs)
    if spec.source == "none" or not items:
        return spec
    if spec.source == "table":
        _check_table_columns(spec, items)
    if spec.regex is not None and not any(spec.regex.search(i.relative_path) for i in items):
        raise ConfigError(
            f"cohorts.regex '{spec.regex.pattern}' matches none of the {len(items)} inputs' paths "
            f"(e.g. {_examples(i.relative_path for i in items)}); it is searched in each path relative to input.cif_dir"
        )
    table = spec.source == "table"
    raw = [raw_values(spec, i.structure_id, i.relative_path, dict(i.extra_columns) if table else None) for i in items]
    _check_ordered(spec, items, raw)
    assigned = [typed_values(spec, r) for r in raw]
    _check_unassigned(spec, items, assigned)
    _check_baseline(spec, [a for a in assigned if a is not None])
    return spec


def _examples(texts: Iterable[str], n: int = EXAMPLES) -> str:
    shown = []
    for text in texts:
        if len(shown) == n:
            break
        shown.append(f"'{text}'")
    return ", ".join(shown)


def _inputs_have(count: int) -> str:
    return "1 input has" if count == 1 else f"{count} inputs have"


def _check_table_columns(spec: CohortSpec, items: Sequence[Any]) -> None:
    """Each table_columns entry is a column (or a list column's element) of the input table."""
    available: dict[str, None] = {}
    for item in items:
        available.update(dict.fromkeys(name for name, _ in item.extra_columns))
    if not any(getattr(item, "content", None) is not None for item in items):
        raise ConfigError("cohorts.source table reads columns of input.table, but the run has no input.table")
    for column in spec.columns.values():
        element = SOURCE_ELEMENT.match(column)
        if column not in available and not (element and element["column"] in available):
            raise ConfigError(
                f"cohorts.table_columns names '{column}', which is no column of input.table "
                f"(its columns besides the CIF text: {', '.join(available) or 'none'})"
            )


def _check_ordered(spec: CohortSpec, items: Sequence[Any], raw: Sequence[Mapping[str, str | None]]) -> None:
    """Every value of an ordered factor is a number."""
    for factor in spec.ordered:
        bad = [(r[factor], i.relative_path) for i, r in zip(items, raw) if r[factor] and _number(r[factor]) is None]
        if bad:
            raise ConfigError(
                f"cohorts.ordered: the factor '{factor}' needs numbers, but {_inputs_have(len(bad))} other values, "
                f"e.g. '{bad[0][0]}' ('{bad[0][1]}'); a regex group can take the number out of a name "
                f"(e.g. 'T(?P<{factor}>[0-9.]+)'), or leave '{factor}' out of cohorts.ordered"
            )


#: Why a source leaves an input without a cohort, for the start-up error.
_WHY_UNASSIGNED = {
    "folders": "they lie fewer than {levels} sub-folder levels below input.cif_dir",
    "regex": "cohorts.regex does not match their path, or leaves a group empty",
    "table": "they have no value in a column of cohorts.table_columns",
    "manifest": "cohorts.manifest has no row for their {key}, or an empty cell",
}


def _check_unassigned(spec: CohortSpec, items: Sequence[Any], assigned: Sequence[Mapping[str, Value] | None]) -> None:
    """With ``unassigned: error``, every input gets a cohort."""
    missing = [i for i, values in zip(items, assigned) if values is None]
    if not missing or spec.unassigned == "keep":
        return
    why = _WHY_UNASSIGNED[spec.source].format(levels=len(spec.factors), key=spec.manifest_key)
    by_id = spec.source == "manifest" and spec.manifest_key == "structure_id"
    raise ConfigError(
        f"cohorts: {len(missing)} of {len(items)} inputs get no cohort from source {spec.source} ({why}), "
        f"e.g. {_examples(i.structure_id if by_id else i.relative_path for i in missing)}; fix the source, "
        "or set cohorts.unassigned: keep "
        f"to put them in a cohort '{UNASSIGNED_COHORT}'"
    )


def _check_baseline(spec: CohortSpec, assigned: Sequence[Mapping[str, Value]]) -> None:
    """Some input has the baseline's value of each factor it names, and all of them together."""
    if not spec.baseline:
        return
    texts = [{f: _label_text(values[f]) for f in spec.baseline} for values in assigned]
    for factor, value in spec.baseline.items():
        seen = sorted({t[factor] for t in texts})
        if value not in seen:
            raise ConfigError(
                f"cohorts.baseline: no input has {factor}={value}, so no cohort is the baseline "
                f"({factor}'s values: {', '.join(seen[:10]) or 'none'})"
            )
    if not any(t == dict(spec.baseline) for t in texts):
        wanted = ", ".join(f"{f}={v}" for f, v in spec.baseline.items())
        raise ConfigError(f"cohorts.baseline: no input has {wanted} together, so no cohort is the baseline")
