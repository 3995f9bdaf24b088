"""Names of the results table's own columns, gathered from the modules that write them.

A table input (:mod:`dftscreen.inputs`) carries its other columns into the results
table; a column named like one of these gets the prefix ``input_`` (see
:meth:`dftscreen.check.CheckResult.to_dict`), so it is never taken for, nor
overwritten by, a computed value, and a target's ``source_column`` naming it
finds the prefixed column (:mod:`dftscreen.targets`).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

#: Prefix of a table-input column whose name is a results-table column.
INPUT_PREFIX = "input_"


@lru_cache(maxsize=1)
def results_columns() -> frozenset[str]:
    """Every column name the workflow itself can write into the results table (table-input columns aside).

    The check fields, the table's fixed columns and stability columns, the ML,
    known-materials (novelty, SMACT) and target columns. The defining modules are
    imported here, not at module level: they import pandas, and
    :mod:`dftscreen.aggregate` imports :mod:`dftscreen.check`, which uses this.
    """
    from dftscreen.aggregate import COLUMNS, STABILITY_COLUMNS
    from dftscreen.check import CheckResult
    from dftscreen.compare_known import NOVELTY_COLUMNS, RELAXED_NOVELTY_COLUMNS
    from dftscreen.ml import ML_COLUMNS, ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES
    from dftscreen.targets import TARGET_KINDS, target_columns

    check = {f.name for f in dataclasses.fields(CheckResult) if f.name != "input_columns"}
    ml = {*ML_COLUMNS, ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES}
    known = {"smact_valid", *RELAXED_NOVELTY_COLUMNS, *(c for columns in NOVELTY_COLUMNS.values() for c in columns)}
    target = {c for name in TARGET_KINDS for c in target_columns(name)}
    return frozenset({*COLUMNS, *STABILITY_COLUMNS, *check, *ml, *known, *target})

