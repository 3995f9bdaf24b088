"""``dftscreen compare RUN_DIR... --out DIR``: several finished runs side by side, if they are comparable.

Two runs' rates can be compared only when the same numbers would have come out for the
same structure: the same resolved DFT settings (their hash), GPAW and PAW-dataset
versions, ML model checkpoint, known set (its file's hash and entry count) and
thresholds (stability, ML screen). :func:`mismatches` names every difference in one
sentence each; the command refuses such runs unless ``--allow-mismatch`` is given, and
then says so at the top of the page.

A RUN_DIR is the folder Snakemake ran in (its ``config/config.yaml`` names
``output_dir``) or the results folder itself (it holds ``summary.json``).

The same crystal found by several runs is one crystal of the overlap (issue 30, item 5:
``sun_only_here``, the union's unique S.U.N. per core-hour). Each run deduplicated only its
own structures, so :func:`cross_run_groups` matches the runs' duplicate groups with each
other, as the check stage matched structures within a run (:mod:`dftscreen.dedupe`).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dftscreen.cif_reader import DEFAULT_MAX_FILE_BYTES, read_structure
from dftscreen.columns import COHORT_COLUMN
from dftscreen.config import ConfigError, read_run_config, with_defaults
from dftscreen.dedupe import Candidate, MatchSettings, find_duplicates, reduced_for_matching
from dftscreen.inputs import table_row_cif_path
from dftscreen.io import read_json
from dftscreen.known_index import file_sha256
from dftscreen.layout import ResultsLayout

log = logging.getLogger(__name__)


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
    dedupe: str | None = None


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
    "dedupe": "duplicate matching (check.dedupe)",
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


def _dedupe_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The config section ``check.dedupe`` of a run (schema defaults for a results folder given without config)."""
    return (config or with_defaults({}))["check"]["dedupe"]


def describe_dedupe(config: dict[str, Any] | None) -> str | None:
    """A run's ``check.dedupe`` in words ("off", or its tolerances); ``None`` when given a results folder."""
    if config is None:
        return None
    section = _dedupe_config(config)
    if not section["enabled"]:
        return "off"
    tolerances = MatchSettings.from_config(section)
    return f"ltol {tolerances.ltol:g}, stol {tolerances.stol:g}, angle_tol {tolerances.angle_tol:g}°"


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
        dedupe=describe_dedupe(config),
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
    is its run's name, or ``<run>: <cohort>`` when the run has cohorts of its own.

    ``structure_id`` and ``duplicate_of`` become ``<run>/<id>`` (:func:`run_structure_id` gives the
    run's own id back): ids are unique within a run only (two generators' ``rank01``), and the
    cohort table finds a duplicate's representative, and a crystal, by its id."""
    tables = []
    for name, run_dir in run_dirs.items():
        folder, _ = results_folder(run_dir)
        table = pd.read_parquet(ResultsLayout(str(folder)).results_parquet)
        own = table[COHORT_COLUMN].astype(str) if COHORT_COLUMN in table.columns else None
        table = table.assign(run=name)
        table[COHORT_COLUMN] = name if own is None or set(own) <= {"all"} else name + ": " + own
        table["structure_id"] = name + "/" + table["structure_id"].astype(str)
        if "duplicate_of" in table.columns:
            has_one = table["duplicate_of"].notna() & (table["duplicate_of"].astype(str) != "")
            table["duplicate_of"] = (name + "/" + table["duplicate_of"].astype(str)).where(has_one, None)
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def run_structure_id(structure_id: str, run: str) -> str:
    """A structure's id in its own run, from its id in :func:`combined_table` (``<run>/<id>``)."""
    return structure_id.removeprefix(run + "/")


def run_match_settings(run_dir: str | Path) -> MatchSettings:
    """The StructureMatcher tolerances of a run's ``check.dedupe`` (schema defaults for a results folder)."""
    return MatchSettings.from_config(_dedupe_config(results_folder(run_dir)[1]))


@dataclass(frozen=True)
class RunInputs:
    """Where one run's generated CIFs are: its results folder, its ``input.cif_dir`` (``None``: given the
    results folder, or no folder input) and the largest CIF its check reads (bytes, ``check.max_file_bytes``)."""

    layout: ResultsLayout
    cif_dir: Path | None
    max_file_bytes: int

    @classmethod
    def of(cls, run_dir: str | Path) -> RunInputs:
        """The inputs of a RUN_DIR (a relative ``cif_dir`` is the run folder's, as Snakemake ran there)."""
        folder, config = results_folder(run_dir)
        cif_dir = config["input"].get("cif_dir") if config else None
        return cls(
            layout=ResultsLayout.of(folder),
            cif_dir=Path(run_dir) / cif_dir if cif_dir else None,
            max_file_bytes=config["check"]["max_file_bytes"] if config else DEFAULT_MAX_FILE_BYTES,
        )

    def generated_cif(self, structure_id: str, source_file: str | None) -> Path | None:
        """The generated CIF the run's check read for one structure (what its dedupe matched); ``None`` if not found.

        The first that exists of: the CIF text of a table row, written by the check for DFT
        (:func:`dftscreen.inputs.table_row_cif_path` in :attr:`ResultsLayout.inputs_dir`); the ML
        stage's copy of the generated CIF (:meth:`ResultsLayout.ml_generated_cif`); ``source_file``
        (the results table's path relative to ``input.cif_dir``) under :attr:`cif_dir`.

        Args:
            structure_id: the id in the run (:func:`run_structure_id`).
            source_file: its ``source_file`` column.
        """
        layout = self.layout
        paths = [table_row_cif_path(layout.inputs_dir, structure_id), Path(layout.ml_generated_cif(structure_id))]
        if self.cif_dir is not None and source_file:
            paths.append(self.cif_dir / source_file)
        return next((path for path in paths if path.is_file()), None)


def _match_candidate(
    structure_id: str, cif: Path, settings: MatchSettings, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> Candidate:
    """A generated CIF read as the check reads it and reduced once for StructureMatcher (volume in Å³ per f.u.)."""
    structure, _ = read_structure(cif, max_file_bytes)
    composition = structure.composition
    return Candidate(
        structure_id=structure_id,
        reduced_formula=composition.reduced_formula,
        volume_per_formula_unit_A3=float(structure.volume / composition.get_reduced_composition_and_factor()[1]),
        structure=reduced_for_matching(structure, settings),
        reduced=True,
    )


def cross_run_groups(
    table: pd.DataFrame, runs: Mapping[str, str | Path], settings: MatchSettings, matched: pd.Series
) -> tuple[pd.Series, list[str]]:
    """Each row's crystal across the runs, and one warning per crystal that could not be matched.

    A row's crystal within its run is its duplicate group (``duplicate_of``, else its own id).
    The groups of the rows in ``matched`` (compare passes those counted S.U.N. or MSUN, the only
    crystals the overlap looks at; every other row keeps its run's group, and its CIF is never
    read) are matched across runs as the check matched structures within a run: each group's
    representative's generated CIF (:meth:`RunInputs.generated_cif`, the structure the run's dedupe
    compared, not the relaxed one) is read and reduced once, and compared with StructureMatcher
    at ``settings`` within its reduced formula, lowest volume per formula unit first
    (:func:`dftscreen.dedupe.find_duplicates`). A group never joins another group of its own run,
    so a run's groups stay its own. A group that joins an earlier one takes that group's id, and
    so does every row of it (a representative's duplicates included). A representative whose CIF
    cannot be found or read keeps its group, with a warning naming it.

    Args:
        table: :func:`combined_table` of ``runs`` (ids ``<run>/<id>``).
        runs: run name -> RUN_DIR.
        settings: the StructureMatcher tolerances (compare uses the first run's ``check.dedupe``).
        matched: True for the rows whose crystal is matched (aligned with ``table``).

    Returns:
        (the crystal's id per row, aligned with ``table``; the warnings).
    """
    from dftscreen.cohort_table import _group_ids

    run_groups = pd.Series(_group_ids(table.reset_index(drop=True)).to_numpy(), index=table.index)
    ids = table["structure_id"].astype(str)
    wanted = set(run_groups[matched.to_numpy(dtype=bool)])
    representatives = table[ids.isin(wanted) & (run_groups == ids)].drop_duplicates("structure_id")
    sources = representatives.get("source_file", pd.Series(None, index=representatives.index))
    inputs = {name: RunInputs.of(run_dir) for name, run_dir in runs.items()}
    candidates: list[Candidate] = []
    problems: list[str] = []
    for sid, run, source in zip(representatives["structure_id"], representatives["run"], sources):
        own_id = run_structure_id(str(sid), str(run))
        cif = inputs[run].generated_cif(own_id, None if pd.isna(source) else str(source))
        if cif is None:
            problems.append(f"{run}: {own_id}: its generated CIF was not found; it counts as a crystal of its own")
            continue
        try:
            candidates.append(_match_candidate(str(sid), cif, settings, inputs[run].max_file_bytes))
        except Exception as exc:  # an unreadable file must not stop the comparison
            problems.append(f"{run}: {own_id}: cannot read {cif} ({exc}); it counts as a crystal of its own")
    source_of = dict(zip(representatives["structure_id"].astype(str), representatives["run"].astype(str)))
    duplicate_of = find_duplicates(candidates, settings, source_of)
    return run_groups.map(lambda group: duplicate_of.get(group, group)), problems


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
    try:
        return results_folder(run_dir)[1]["cohorts"]
    except (TypeError, KeyError):
        return with_defaults({})["cohorts"]


def mismatch_banner(found: list[str]) -> str:
    """The sentence at the top of a page made with ``--allow-mismatch``."""
    return "Compared although the runs are not comparable (--allow-mismatch): " + "; ".join(found) + "."


def useful_rows(table: pd.DataFrame, *, stable_threshold_eV_per_atom: float,
                metastable_threshold_eV_per_atom: float) -> pd.Series:
    """Rows the overlap counts: S.U.N. or MSUN in their cohort (all False without a known set or hull)."""
    from dftscreen.cohort_table import row_metrics

    flags, _ = row_metrics(
        table,
        stable_threshold_eV_per_atom=stable_threshold_eV_per_atom,
        metastable_threshold_eV_per_atom=metastable_threshold_eV_per_atom,
    )
    useful = flags.reindex(columns=["sun", "msun"], fill_value=False).any(axis=1)
    return pd.Series(useful.to_numpy(dtype=bool), index=table.index)


def compare(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    baseline: str | None = None,
    allow_mismatch: bool = False,
) -> Path:
    """The per-cohort table, comparisons, figures and an HTML page of several finished runs; returns the page.

    The overlap (``sun_only_here``, the union's unique S.U.N. per core-hour) counts a crystal
    found by several runs once: :func:`cross_run_groups` at the first run's ``check.dedupe``
    tolerances (the runs' agree unless ``allow_mismatch``: :func:`mismatches`); the page says so.

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
    first = next(iter(runs))
    cohorts = _cohorts_config(runs[first])
    table = combined_table(runs)
    alpha = cohorts["alpha"]
    thresholds = {
        "stable_threshold_eV_per_atom": cohorts["stable_threshold_eV_per_atom"],
        "metastable_threshold_eV_per_atom": cohorts["metastable_threshold_eV_per_atom"],
    }
    rates = cohort_table.cohort_rates(table, **thresholds, alpha=alpha)
    baseline = baseline or str(rates[COHORT_COLUMN].iloc[0])
    comparisons = cohort_table.compare_with_baseline(rates, baseline, alpha=alpha)
    match = run_match_settings(runs[first])
    groups, problems = cross_run_groups(table, runs, match, useful_rows(table, **thresholds))
    for problem in problems:
        log.warning("dftscreen compare: %s", problem)
    per_cohort, union = cohort_table.cohort_overlap(table, **thresholds, groups=groups)
    if not per_cohort.columns.empty:
        rates = rates.join(per_cohort, on=COHORT_COLUMN)
    matching = {"ltol": match.ltol, "stol": match.stol, "angle_tol": match.angle_tol, "check_dedupe_of": first}
    settings = {**thresholds, "alpha": alpha, "baseline": baseline, "cross_run_matching": matching}
    out = Path(out_dir)
    # The same file names as a run's (dftscreen.layout), in the comparison's folder.
    files = ResultsLayout.of(out)
    cohort_table.write_cohort_outputs(
        rates, comparisons, None, files.cohorts_csv, files.cohorts_json, settings=settings
    )
    overlap = overlap_html(per_cohort, union, match, first, problems)
    banner = mismatch_banner(found) if found else None
    return write_compare_page(out, table, rates, comparisons, runs, banner=banner, overlap=overlap)


def overlap_html(
    per_cohort: pd.DataFrame, union: Mapping[str, Any], match: MatchSettings, first_run: str, problems: list[str]
) -> str:
    """The page's paragraph on crystals found by several runs: how they are matched, S.U.N. only-here, the union."""
    how = (
        "Crystals found by several runs count once: each run's duplicate groups are matched across runs with "
        f"pymatgen's StructureMatcher on the generated structures (ltol {match.ltol:g}, stol {match.stol:g}, "
        f"angle_tol {match.angle_tol:g}°, the first run's check.dedupe: {html.escape(first_run)}), "
        "within the same reduced formula."
    )
    parts = ["<h3>Overlap between runs</h3>", f'<p class="note">{how}</p>']
    if "sun_only_here" in per_cohort.columns:
        only = ", ".join(f"{html.escape(str(c))}: {int(n)}" for c, n in per_cohort["sun_only_here"].items())
        hours = union.get("dft_core_hours")
        per_hour = union.get("unique_sun_per_core_hour")
        cost = f" in {hours:g} DFT core-hours ({per_hour:.3g} per core-hour)" if hours and per_hour is not None else ""
        parts.append(
            f"<p>S.U.N. crystals no other cohort found (sun_only_here): {only}. The union: "
            f"{union['unique_sun']} unique S.U.N. crystals{cost}.</p>"
        )
    else:
        parts.append('<p class="note">No S.U.N. counts (no known set or no hull): no overlap to show.</p>')
    if problems:
        listed = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f'<p class="warning">Not matched across runs:</p><ul>{listed}</ul>')
    return "".join(parts)


def write_compare_page(
    out: Path,
    table: pd.DataFrame,
    rates: pd.DataFrame,
    comparisons: pd.DataFrame,
    runs: dict[str, Path],
    banner: str | None,
    overlap: str = "",
) -> Path:
    """``index.html`` in ``out``: the mismatch banner (if any), the runs compared, the overlap between them
    (``overlap``, :func:`overlap_html`) and the report's cohorts section."""
    from dftscreen import cohort_table, report
    from dftscreen.io import atomic_write_text

    section = report.cohorts_section(rates, comparisons, None, cohort_table.DEFINITIONS, out, table=table)
    listed = "".join(f"<li>{html.escape(name)}: {html.escape(str(path))}</li>" for name, path in runs.items())
    warning = f'<p class="warning"><strong>{html.escape(banner)}</strong></p>' if banner else ""
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>dftscreen compare</title></head><body>"
        f"<h1>dftscreen compare: {len(runs)} runs</h1>{warning}<ul>{listed}</ul>{overlap}{section}</body></html>"
    )
    index = out / "index.html"
    atomic_write_text(index, page)
    return index
