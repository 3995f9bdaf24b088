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
    # The config has the schema's defaults filled in (results_folder); None: given a results folder.
    path = config["known_materials"]["database"]["path"] if config else None
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


def run_names(run_dirs: list[str | Path]) -> dict[str, Path]:
    """A short, unique name per run: its folder's name, or ``<parent>/<name>`` where two share a name."""
    paths = [Path(d) for d in run_dirs]
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    if len(set(names)) < len(names):
        raise RunNotComparable("two RUN_DIRs are the same folder: " + ", ".join(str(p) for p in paths))
    return dict(zip(names, paths))


def _cohorts_config(run_dir: Path) -> dict[str, Any]:
    """The ``cohorts`` section of the first run's config (thresholds, alpha), schema defaults without one."""
    from dftscreen.config import with_defaults

    try:
        return results_folder(run_dir)[1]["cohorts"]
    except (TypeError, KeyError):
        return with_defaults({})["cohorts"]


def mismatch_banner(found: list[str]) -> str:
    """The sentence at the top of a page made with ``--allow-mismatch``."""
    return "Compared although the runs are not comparable (--allow-mismatch): " + "; ".join(found) + "."


def compare(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    baseline: str | None = None,
    allow_mismatch: bool = False,
) -> Path:
    """The per-cohort table, comparisons, figures and an HTML page of several finished runs; returns the page.

    Raises:
        RunNotComparable: a run is not a finished run, or the runs differ in what makes their
            numbers comparable (:func:`mismatches`) and ``allow_mismatch`` is false.
    """
    from dftscreen import cohort_table

    runs = run_names(run_dirs)
    found = mismatches({name: read_fingerprint(path) for name, path in runs.items()})
    if found and not allow_mismatch:
        raise RunNotComparable(
            "the runs are not comparable: " + "; ".join(found) + " (--allow-mismatch compares them anyway, and says so)"
        )
    cohorts = _cohorts_config(next(iter(runs.values())))
    table = combined_table(runs)
    alpha = cohorts["alpha"]
    rates = cohort_table.cohort_rates(
        table,
        stable_threshold_eV_per_atom=cohorts["stable_threshold_eV_per_atom"],
        metastable_threshold_eV_per_atom=cohorts["metastable_threshold_eV_per_atom"],
        alpha=alpha,
    )
    baseline = baseline or str(rates[COHORT_COLUMN].iloc[0])
    comparisons = cohort_table.compare_with_baseline(rates, baseline, alpha=alpha)
    out = Path(out_dir)
    # The same file names as a run's (dftscreen.layout), in the comparison's folder.
    files = ResultsLayout.of(out)
    cohort_table.write_cohort_outputs(rates, comparisons, None, files.cohorts_csv, files.cohorts_json)
    return write_compare_page(out, table, rates, comparisons, runs, banner=mismatch_banner(found) if found else None)


def write_compare_page(
    out: Path,
    table: pd.DataFrame,
    rates: pd.DataFrame,
    comparisons: pd.DataFrame,
    runs: dict[str, Path],
    banner: str | None,
) -> Path:
    """``index.html`` in ``out``: the mismatch banner (if any), the runs compared, and the report's cohorts section."""
    import html

    from dftscreen import cohort_table, report
    from dftscreen.io import atomic_write_text

    section = report.cohorts_section(rates, comparisons, None, cohort_table.DEFINITIONS, out, table=table)
    listed = "".join(f"<li>{html.escape(name)}: {html.escape(str(path))}</li>" for name, path in runs.items())
    warning = f'<p class="warning"><strong>{html.escape(banner)}</strong></p>' if banner else ""
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>dftscreen compare</title></head><body>"
        f"<h1>dftscreen compare: {len(runs)} runs</h1>{warning}<ul>{listed}</ul>{section}</body></html>"
    )
    index = out / "index.html"
    atomic_write_text(index, page)
    return index
