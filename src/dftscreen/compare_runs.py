"""``dftscreen compare RUN_DIR... --out DIR``: several finished runs side by side, if they are comparable.

Two runs' rates can be compared only when the same numbers would have come out for the
same structure: the same resolved DFT settings (their hash), GPAW and PAW-dataset
versions, ML model checkpoint, known set (its file's hash and entry count) and
thresholds (stability, ML screen). :func:`mismatches` names every difference in one
sentence each; the command refuses such runs unless ``--allow-mismatch`` is given, and
then says so at the top of the page.

A RUN_DIR is the folder Snakemake ran in (its ``config/config.yaml`` names
``output_dir``) or the results folder itself (it holds ``summary.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dftscreen.columns import COHORT_COLUMN
from dftscreen.config import ConfigError, read_run_config
from dftscreen.io import read_json
from dftscreen.known_index import file_sha256
from dftscreen.layout import ResultsLayout


class RunNotComparable(ValueError):
    """A run folder cannot be read as a finished run; the message says which and why."""


@dataclass(frozen=True)
class RunFingerprint:
    """What must agree between runs whose rates are compared (``None``: not recorded by that run)."""

    settings_sha256: str | None
    gpaw_version: str | None
    gpaw_data_version: str | None
    ml_checkpoint_sha256: tuple[str, ...]
    known_set: str | None
    known_set_sha256: str | None
    stable_threshold_eV_per_atom: float | None
    ml_screen_threshold_eV_per_atom: float | None


#: How each field is named in a refusal.
FIELD_NAMES = {
    "settings_sha256": "resolved DFT settings (hash)",
    "gpaw_version": "GPAW version",
    "gpaw_data_version": "PAW datasets (gpaw-data version)",
    "ml_checkpoint_sha256": "ML model checkpoint",
    "known_set": "known set (label and entry count)",
    "known_set_sha256": "known set file (SHA-256)",
    "stable_threshold_eV_per_atom": "stability threshold (eV/atom)",
    "ml_screen_threshold_eV_per_atom": "ML screen threshold (eV/atom)",
}


def results_folder(run_dir: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """The results folder of a run and its config (``None`` when given the results folder itself)."""
    run_dir = Path(run_dir)
    if (run_dir / Path(ResultsLayout("").summary).name).is_file():
        return run_dir, None
    try:
        config = read_run_config(run_dir / "config" / "config.yaml")
    except ConfigError as exc:
        raise RunNotComparable(
            f"{run_dir}: neither a results folder (no summary.json) nor a run folder: {exc}"
        ) from exc
    folder = run_dir / config["output_dir"]
    if not Path(ResultsLayout(str(folder)).summary).is_file():
        raise RunNotComparable(f"{run_dir}: the run has not finished (no {ResultsLayout(str(folder)).summary})")
    return folder, config


def _known_set_sha256(run_dir: Path, config: dict[str, Any] | None) -> str | None:
    path = (config or {}).get("known_materials", {}).get("database", {}).get("path")
    if not path:
        return None
    path = Path(path) if Path(path).is_absolute() else run_dir / path
    return file_sha256(path) if path.is_file() else None


def read_fingerprint(run_dir: str | Path) -> RunFingerprint:
    """The fingerprint of a finished run, from its summary.json, results table, ML screen and config."""
    folder, config = results_folder(run_dir)
    layout = ResultsLayout(str(folder))
    summary = read_json(layout.summary)
    provenance = summary.get("provenance") or {}
    table = pd.read_parquet(layout.results_parquet) if Path(layout.results_parquet).is_file() else pd.DataFrame()
    checkpoints = table.get("ml_checkpoint_sha256", pd.Series(dtype=object)).dropna().astype(str)
    screen = read_json(layout.ml_screen) if Path(layout.ml_screen).is_file() else {}
    return RunFingerprint(
        settings_sha256=provenance.get("settings_sha256"),
        gpaw_version=provenance.get("gpaw_version"),
        gpaw_data_version=provenance.get("gpaw_data_version"),
        ml_checkpoint_sha256=tuple(sorted(set(checkpoints))),
        known_set=(summary.get("novel") or {}).get("known_set"),
        known_set_sha256=_known_set_sha256(Path(run_dir), config),
        stable_threshold_eV_per_atom=summary.get("stable_threshold_eV_per_atom"),
        ml_screen_threshold_eV_per_atom=screen.get("threshold_eV_per_atom"),
    )


def mismatches(fingerprints: dict[str, RunFingerprint]) -> list[str]:
    """One sentence per field on which the runs differ, naming each run's value; empty when comparable."""
    sentences = []
    for field, name in FIELD_NAMES.items():
        values = {run: asdict(fp)[field] for run, fp in fingerprints.items()}
        if len({repr(v) for v in values.values()}) > 1:
            listed = "; ".join(f"{run}: {value if value not in (None, ()) else 'not recorded'}"
                               for run, value in values.items())
            sentences.append(f"the runs differ in {name} ({listed})")
    return sentences


def combined_table(run_dirs: dict[str, str | Path]) -> pd.DataFrame:
    """The results tables of the runs, one after the other, with a ``run`` column; each row's ``cohort``
    is its run's name, or ``<run>: <cohort>`` when the run has cohorts of its own."""
    tables = []
    for name, run_dir in run_dirs.items():
        folder, _ = results_folder(run_dir)
        table = pd.read_parquet(ResultsLayout(str(folder)).results_parquet)
        own = table[COHORT_COLUMN].astype(str) if COHORT_COLUMN in table.columns else None
        table = table.assign(run=name)
        table[COHORT_COLUMN] = name if own is None or set(own) <= {"all"} else name + ": " + own
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
