"""The one assembler of the results table: ``results.*`` and ``results_partial.*`` alike.

:func:`assemble_table` builds the table from :class:`TableSources` (the records a run
has written) in one order: one row per input with its DFT values and stability
(:func:`dftscreen.aggregate.build_table`), then the known-materials columns
(:func:`add_known_columns`), the ML columns (:func:`add_ml_columns`), the target
columns (:func:`add_targets`), the verdicts (:func:`add_verdicts`), which read
all of them, the cohort columns (:func:`add_cohort_columns`) before the DFT budget's
(:func:`add_budget_columns`), which read them. The aggregate
job fills the sources from its inputs (:meth:`TableSources.from_inputs`); after a
failed run the partial table reads the same sources from the results folder
(:meth:`TableSources.from_results_folder`), so both tables have the same columns for
the rows they cover.

The column names are :mod:`dftscreen.columns`'; this module adds the columns of the
stages that run after the DFT rows are built.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dftscreen import status_codes
from dftscreen.aggregate import build_table, dft_status_note
from dftscreen.cohorts import UNASSIGNED_COHORT, CohortSpec, assign_table_rows, cohort_label
from dftscreen.columns import (
    COHORT_COLUMN,
    DFT_INCLUSION_PROBABILITY_COLUMN,
    DFT_SAMPLED_COLUMN,
    ML_AUDITED_COLUMN,
    ML_CHANGE_COLUMNS,
    ML_COLUMNS,
    ML_PHONON_COLUMNS,
    ML_SCREENED_OUT_COLUMN,
    NOVELTY_COLUMNS,
    PHONON_COLUMNS,
    PHONON_STATUS_COLUMN,
    RELAXED_NOVELTY_COLUMNS,
    SMACT_COLUMN,
    cohort_factor_column,
)
from dftscreen.dft_budget import budget_sample
from dftscreen.io import atomic_write_with, read_json, read_json_if_exists
from dftscreen.layout import ReferenceLibrary, ResultsLayout
from dftscreen.phonon_results import NOT_SELECTED as PHONON_NOT_SELECTED
from dftscreen.phonon_results import TOO_LARGE as PHONON_TOO_LARGE
from dftscreen.phonon_results import qpoint_text, supercell_text
from dftscreen.targets import add_target_columns, read_target_file
from dftscreen.verdict import verdicts

# --- the sources and the assembler ----------------------------------------------------------


@dataclass
class TableSources:
    """The records a results table is assembled from (all already read from their JSON files).

    Attributes:
        out_dir: the run's results folder (DFT and ML records are read below it).
        checks: the check table, one record per input.
        element_records: relaxation records of the elemental references; ``None``: no
            formation energies and no hull.
        phase_records: relaxation records of competing phases (user-supplied and chosen known ones).
        phase_names: a phase's name in ``hull_reference``, by its key.
        novelty: ``known/novelty.json`` (``None`` before the compare_known job wrote it).
        relaxed_novelty: ``known/novelty_relaxed.json``, when the run has a known database.
    """

    out_dir: str
    checks: list[dict[str, Any]]
    element_records: list[dict[str, Any]] | None = None
    phase_records: list[dict[str, Any]] = field(default_factory=list)
    phase_names: dict[str, str] = field(default_factory=dict)
    novelty: dict[str, Any] | None = None
    relaxed_novelty: dict[str, Any] | None = None

    @classmethod
    def from_results_folder(
        cls,
        out_dir: str | os.PathLike[str],
        *,
        with_formation_energies: bool,
        reference_library: str | os.PathLike[str] | None = None,
        element_keys: Callable[[str], list[str]] | None = None,
    ) -> TableSources:
        """The sources as far as a run in ``out_dir`` got: every record that exists, none that does not.

        Elemental references and chosen known phases are read from ``reference_library``
        (the run's ``<library>/<settings key>`` folder), when given. ``element_keys``
        (element -> this run's candidate keys) keeps out what a shared library holds for
        other runs: another run's CIF reference, or a candidate whose key changed since
        (e.g. Ba before its band count was fixed); ``None`` reads every record.
        """
        layout = ResultsLayout.of(out_dir)
        elements = [read_json(p) for p in layout.element_records()]
        phases = [read_json(p) for p in layout.phase_records()]
        names: dict[str, str] = {}
        if reference_library is not None:
            library = ReferenceLibrary.of_folder(reference_library)
            elements += [
                read_json(path)
                for element, key, path in library.element_records_on_disk()
                if element_keys is None or key in element_keys(element)
            ]
            names = chosen_phase_names(read_json_if_exists(layout.competing_phases) or {})
            phases += [
                read_json(library.phase_record(key))
                for key in sorted(names)
                if Path(library.phase_record(key)).is_file()
            ]
        return cls(
            out_dir=str(out_dir),
            checks=read_json(layout.checks_table),
            element_records=elements if with_formation_energies else None,
            phase_records=phases,
            phase_names=names,
            novelty=read_json_if_exists(layout.novelty_table),
            relaxed_novelty=read_json_if_exists(layout.relaxed_novelty_table),
        )


    @classmethod
    def from_inputs(
        cls, out_dir: str | os.PathLike[str], inputs: Any, *, with_formation_energies: bool
    ) -> TableSources:
        """The sources from a job's named inputs (``rules/aggregate.smk``'s ``table_inputs``: checks,
        elements, phases, known_phases, chosen_phases, novelty, relaxed_novelty)."""
        return cls(
            out_dir=str(out_dir),
            checks=read_json(inputs.checks),
            element_records=[read_json(p) for p in inputs.elements] if with_formation_energies else None,
            # User-supplied phases, then those chosen from the known set (relaxed in the reference library).
            phase_records=[read_json(p) for p in [*inputs.phases, *inputs.known_phases]],
            phase_names=chosen_phase_names(read_json(inputs.chosen_phases)),
            novelty=read_json(inputs.novelty),
            relaxed_novelty=read_json(inputs.relaxed_novelty[0]) if inputs.relaxed_novelty else None,
        )


def table_for_job(inputs: Any, params: Any) -> pd.DataFrame:
    """The results table of a Snakemake job with ``table_inputs`` and ``TABLE_PARAMS``
    (``rules/aggregate.smk``): the aggregate's, and the phonon checkpoint's."""
    sources = TableSources.from_inputs(params.out_dir, inputs, with_formation_energies=params.with_formation_energies)
    return assemble_table(
        sources,
        targets_config=params.targets,
        stable_threshold_eV_per_atom=params.stable_threshold_eV_per_atom,
        run_settings=json.loads(params.settings),
        ml_prerelax=params.ml_prerelax if inputs.ml else None,
        cohorts=params.cohorts,
        dft_budget=params.dft_budget,
        too_large_phases=getattr(params, "too_large_phases", None),
    )


def assemble_table(
    sources: TableSources,
    *,
    targets_config: dict[str, Any] | None,
    stable_threshold_eV_per_atom: float,
    run_settings: dict[str, Any] | None,
    ml_prerelax: bool | None,
    cohorts: Mapping[str, Any] | None = None,
    dft_budget: Mapping[str, Any] | None = None,
    too_large_phases: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """The results table, one row per input, from ``sources``.

    Args:
        targets_config: the config section ``targets`` (``None``: no target columns).
        stable_threshold_eV_per_atom: ``stability.stable_threshold_eV_per_atom`` (eV/atom), for the verdicts.
        run_settings: the run's resolved DFT settings, for the provenance of rows without DFT.
        ml_prerelax: whether DFT started from ML-relaxed geometries; ``None`` when the ML stage is off.
        cohorts: the config section ``cohorts`` (``None``: no cohorts, every row in cohort ``all``).
        dft_budget: the config section ``dft`` (its ``max_structures_per_cohort`` and
            ``budget_seed``; ``None``: no budget).
        too_large_phases: reference and known phases the size gate refused (label -> ``reason``,
            ``elements``; :attr:`dftscreen.plan.RunPlan.too_large_phases`): noted in the rows whose hull
            they would bound (:func:`add_left_out_phase_notes`).
    """
    layout = ResultsLayout.of(sources.out_dir)
    table = build_table(
        sources.checks,
        layout.dft_dir,
        element_records=sources.element_records,
        phase_records=sources.phase_records,
        run_settings=run_settings,
        phase_names=sources.phase_names,
    )
    if sources.novelty is not None:
        table = add_known_columns(table, sources.novelty, sources.relaxed_novelty)
    if ml_prerelax is not None:
        table = add_ml_columns(table, sources.out_dir, ml_prerelax)
    # Verdicts after the known-materials, ML and target columns, which they read.
    table = add_targets(table, targets_config)
    table = add_cohort_columns(table, cohorts)
    table = add_budget_columns(table, sources.out_dir, dft_budget, ml_stage=ml_prerelax is not None)
    table = add_phonon_columns(table, sources.out_dir)
    table = add_left_out_phase_notes(table, too_large_phases or {})
    return add_verdicts(table, stable_threshold_eV_per_atom=stable_threshold_eV_per_atom)


def table_from_results(
    out_dir: str | os.PathLike[str],
    with_formation_energies: bool = True,
    targets_config: dict[str, Any] | None = None,
    run_settings: dict[str, Any] | None = None,
    *,
    stable_threshold_eV_per_atom: float,
    reference_library: str | os.PathLike[str] | None = None,
    element_keys: Callable[[str], list[str]] | None = None,
    ml_prerelax: bool | None = None,
    cohorts: Mapping[str, Any] | None = None,
    dft_budget: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The results table as far as a run in ``out_dir`` got, read from its folders.

    For a partial table after failed jobs, or a report while a run goes on: records
    that do not exist yet make their rows ``not_finished``
    (:meth:`TableSources.from_results_folder`, then :func:`assemble_table`).
    """
    sources = TableSources.from_results_folder(
        out_dir,
        with_formation_energies=with_formation_energies,
        reference_library=reference_library,
        element_keys=element_keys,
    )
    return assemble_table(
        sources,
        targets_config=targets_config,
        stable_threshold_eV_per_atom=stable_threshold_eV_per_atom,
        run_settings=run_settings,
        ml_prerelax=ml_prerelax,
        cohorts=cohorts,
        dft_budget=dft_budget,
    )


# --- columns of the later stages --------------------------------------------------------------


def chosen_phase_names(chosen: dict[str, Any]) -> dict[str, str]:
    """Name of each chosen known phase in the table, by its key: ``<key> [<known entry id>]``."""
    return {p["phase_key"]: f"{p['phase_key']} [{p['entry_id']}]" for p in chosen.get("phases", [])}


def _dft_ids(table: pd.DataFrame) -> list[str]:
    """Per row, the id whose DFT (and known-materials results) the row shows: its representative's for a duplicate."""
    return [
        (dup if isinstance(dup, str) and dup else sid)
        for sid, dup in zip(table["structure_id"], table.get("duplicate_of", [None] * len(table)))
    ]


def add_known_columns(
    table: pd.DataFrame, novelty: dict[str, Any], relaxed: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Add ``smact_valid`` and the novelty columns of :data:`dftscreen.columns.NOVELTY_COLUMNS`.

    ``novelty`` is the compare_known job's table (:func:`dftscreen.compare_known.compare_with_known`).
    A duplicate shows its representative's novelty (the same crystal); every other row that
    parsed has its own (DFT-bound or not), a row that did not parse has none. Novelty columns
    appear only for a known set the run had.
    ``relaxed`` (:func:`dftscreen.compare_known.relaxed_novelty`) adds
    :data:`dftscreen.columns.RELAXED_NOVELTY_COLUMNS`.
    """
    records = novelty.get("structures", {})
    table = table.copy()
    table[SMACT_COLUMN] = [records.get(sid, {}).get(SMACT_COLUMN) for sid in table["structure_id"]]
    dft_ids = _dft_ids(table)
    for name, columns in NOVELTY_COLUMNS.items():
        if not novelty.get("known_set" if name == "database" else "training_set"):
            continue
        for column in columns:
            table[column] = [records.get(dft_id, {}).get(column) for dft_id in dft_ids]
    if relaxed and relaxed.get("known_set"):
        relaxed_records = relaxed.get("structures", {})
        for column in RELAXED_NOVELTY_COLUMNS:
            table[column] = [relaxed_records.get(dft_id, {}).get(column) for dft_id in dft_ids]
    return table


def ml_row(
    record: dict[str, Any] | None,
    verdict: dict[str, Any] | None,
    layout: ResultsLayout,
    structure_id: str,
    prerelax: bool,
) -> dict[str, Any]:
    """The ``ml_*`` columns of one structure from its ML record and screening verdict (:mod:`dftscreen.ml_hull`)."""
    if record is None:
        return {}
    row: dict[str, Any] = {
        "ml_status": record.get("status"),
        "ml_reason": " ".join(((record.get("reason") or "") + " " + (record.get("geometry_note") or "")).split()),
        "ml_model": record.get("ml_model"),
        "ml_package_version": record.get("ml_package_version"),
        "ml_checkpoint_sha256": record.get("ml_checkpoint_sha256"),
        "ml_energy_per_atom_eV": record.get("energy_per_atom_eV"),
        "ml_n_steps": record.get("n_steps"),
        "ml_max_force_eV_per_A": record.get("max_force_eV_per_A"),
        "ml_volume_relaxed_A3": record.get("final_volume_A3"),
        "ml_wall_time_s": record.get("wall_time_s"),
    }
    v0, v1 = record.get("initial_volume_A3"), record.get("final_volume_A3")
    if v0 and v1:
        row["ml_volume_change_pct"] = 100.0 * (v1 - v0) / v0
    change = record.get("change") or {}
    for key in ML_CHANGE_COLUMNS:
        if key in change:
            row[f"ml_{key}"] = change[key]
    if record.get("relaxed_cif"):
        row["ml_relaxed_cif"] = str(Path(layout.ml_structure_dir(structure_id)) / record["relaxed_cif"])
    row["dft_start_geometry"] = "ml_relaxed" if prerelax and record.get("usable_as_dft_start") else "generated"
    if verdict:
        row.update({k: v for k, v in verdict.items() if k.startswith("ml_")})
        row[ML_SCREENED_OUT_COLUMN] = bool(verdict.get("screened_out"))
        row[ML_AUDITED_COLUMN] = bool(verdict.get("audited"))
        if verdict.get("note") and not verdict.get("screened_out"):
            row["ml_reason"] = " ".join(f"{row['ml_reason']} {verdict['note']}".split())
    return row


def _screened_values(row: pd.Series, ml_id: str, verdict: dict[str, Any]) -> dict[str, Any]:
    """``status``/``reason`` of a row whose structure (or representative) the ML screen kept from DFT."""
    if not verdict.get("screened_out") or verdict.get("audited"):
        return {}
    if row["status"] == status_codes.NOT_FINISHED:
        return {"status": status_codes.SCREENED_OUT, "reason": verdict["note"]}
    if row["status"] == status_codes.DUPLICATE:
        # Its representative's DFT never ran (it was screened out), which is no "not_finished".
        unfinished = dft_status_note(ml_id, status_codes.NOT_FINISHED)
        if str(row["reason"]).endswith(unfinished):
            check_reason = str(row["reason"])[: -len(unfinished)]
            return {"reason": f"{check_reason} ({ml_id} was screened out by ML: {verdict['note']})"}
    return {}


def add_ml_columns(table: pd.DataFrame, out_dir: str | os.PathLike[str], prerelax: bool = True) -> pd.DataFrame:
    """Add the ``ml_*`` columns and the ``screened_out`` status to the results table.

    Reads ``ml/screen.json`` and the ML records under ``out_dir``; without a
    screen (ML stage off or not run yet) the table is returned unchanged.
    Duplicates show their representative's ML values, as they do its DFT values.
    """
    layout = ResultsLayout.of(out_dir)
    if not Path(layout.ml_screen).is_file():
        return table
    screen_result = read_json(layout.ml_screen)
    verdicts_by_id = screen_result["structures"]
    table = table.copy()
    rows = []
    for (_, row), ml_id in zip(table.iterrows(), _dft_ids(table)):
        record_path = Path(layout.ml_record(ml_id))
        record = read_json(record_path) if ml_id in verdicts_by_id and record_path.is_file() else None
        verdict = verdicts_by_id.get(ml_id) or {}
        values = ml_row(record, verdicts_by_id.get(ml_id), layout, ml_id, prerelax)
        values.update(_screened_values(row, ml_id, verdict))
        if verdict:
            # The chance that this structure's DFT ran: 1 past the screen, the audit fraction below it.
            audit_fraction = float(screen_result.get("audit_fraction", 0.0))
            values[DFT_INCLUSION_PROBABILITY_COLUMN] = audit_fraction if verdict.get("screened_out") else 1.0
        rows.append(values)
    ml_frame = pd.DataFrame(rows, index=table.index)
    for column in ml_frame.columns:
        if column in ("status", "reason"):
            mask = ml_frame[column].notna()
            table.loc[mask, column] = ml_frame.loc[mask, column]
        else:
            table[column] = ml_frame[column]
    for column in (*ML_COLUMNS, screen_result["hull_column"]):
        if column not in table.columns:
            table[column] = None
    return table


def add_phonon_columns(table: pd.DataFrame, out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The ML and DFT phonon columns (:data:`dftscreen.columns.ML_PHONON_COLUMNS`, ``PHONON_COLUMNS``).

    Read from the phonon records under ``out_dir`` and the DFT phonon plan, when they exist: a
    structure the plan left out gets the reason (``not_selected``, ``too_large``), one it chose whose
    record is missing ``not_finished``. Duplicates show their representative's values. A table of a
    run without phonons gets no columns.
    """
    layout = ResultsLayout.of(out_dir)
    plan = read_json_if_exists(layout.phonon_candidates)
    rows = []
    for ml_id in _dft_ids(table):
        values = ml_phonon_row(read_json_if_exists(layout.ml_phonon_record(ml_id)))
        values.update(phonon_row(read_json_if_exists(layout.phonon_record(ml_id))) or _unrun_phonon_values(plan, ml_id))
        rows.append(values)
    if not any(rows):
        return table
    phonon_frame = pd.DataFrame(rows, index=table.index)
    table = table.copy()
    for column in (*ML_PHONON_COLUMNS, *PHONON_COLUMNS):
        table[column] = phonon_frame[column] if column in phonon_frame.columns else None
    return table


def add_left_out_phase_notes(table: pd.DataFrame, too_large_phases: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Say in ``stability_note`` which competing phases the hull lacks because the size gate refused their DFT.

    A phase bounds the hull of every structure whose elements include all of its own; those rows get
    "hull without <phase> (...)", so an energy above the hull that is too low for lack of it is not
    taken at face value.
    """
    if not too_large_phases or "reduced_formula" not in table.columns:
        return table
    from pymatgen.core import Composition

    table = table.copy()
    if "stability_note" not in table.columns:
        table["stability_note"] = None
    for index, formula in table["reduced_formula"].items():
        try:
            system = {el.symbol for el in Composition(str(formula)).elements} if isinstance(formula, str) else set()
        except (ValueError, KeyError):
            continue
        missing = [label for label, phase in too_large_phases.items() if system and set(phase["elements"]) <= system]
        if not missing:
            continue
        words = "; ".join(f"hull without {label}: too large for DFT here (dftscreen.size_gate)" for label in missing)
        note = table.at[index, "stability_note"]
        table.at[index, "stability_note"] = f"{note}; {words}" if isinstance(note, str) and note else words
    return table


def ml_phonon_row(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``ml_*`` phonon columns of one structure from its ML phonon record (:mod:`dftscreen.phonons`)."""
    if record is None:
        return {}
    return {
        "ml_phonon_status": record.get("status"),
        "ml_phonon_reason": record.get("reason"),
        "ml_min_phonon_frequency_THz": record.get("min_frequency_THz"),
        "ml_min_phonon_qpoint": qpoint_text(record.get("min_frequency_qpoint")),
        "ml_min_phonon_qpoint_label": record.get("min_frequency_qpoint_label"),
        "ml_n_imaginary_phonon_modes": record.get("n_imaginary_modes"),
        "ml_dynamically_stable": record.get("dynamically_stable"),
        "ml_phonon_wall_time_s": record.get("phonon_wall_time_s"),
    }


def phonon_row(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The DFT phonon columns of one structure from its record (:func:`dftscreen.phonons.run_dft_phonons`)."""
    if record is None:
        return {}
    return {
        "phonon_status": record.get("status"),
        "phonon_reason": record.get("reason"),
        "min_phonon_frequency_THz": record.get("min_frequency_THz"),
        "min_phonon_qpoint": qpoint_text(record.get("min_frequency_qpoint")),
        "min_phonon_qpoint_label": record.get("min_frequency_qpoint_label"),
        "n_imaginary_phonon_modes": record.get("n_imaginary_modes"),
        "dynamically_stable": record.get("dynamically_stable"),
        "phonon_supercell": supercell_text(record.get("supercell_matrix")),
        "phonon_n_displacements": record.get("n_displacements"),
        "phonon_core_hours": record.get("core_hours"),
    }


def _unrun_phonon_values(plan: Mapping[str, Any] | None, structure_id: str) -> dict[str, Any]:
    """Phonon status and reason of a structure without a DFT phonon record, from the plan."""
    if plan is None:
        return {}
    job = plan["jobs"].get(structure_id)
    if job is not None and job.get("too_large"):
        return {PHONON_STATUS_COLUMN: PHONON_TOO_LARGE, "phonon_reason": job["too_large"]}
    if job is not None:
        return {PHONON_STATUS_COLUMN: status_codes.NOT_FINISHED, "phonon_reason": "DFT phonons not finished: rerun"}
    reason = plan["not_selected"].get(structure_id)
    return {PHONON_STATUS_COLUMN: PHONON_NOT_SELECTED, "phonon_reason": reason} if reason else {}


def add_targets(table: pd.DataFrame, targets_config: dict[str, Any] | None) -> pd.DataFrame:
    """Target, error and hit columns as configured under ``targets`` (see :mod:`dftscreen.targets`)."""
    if not targets_config or not targets_config.get("properties"):
        return table
    try:
        values = None
        if targets_config.get("file"):
            values = read_target_file(targets_config["file"], targets_config.get("id_column", "structure_id"))
        return add_target_columns(
            table, targets_config["properties"], values, targets_config.get("id_column", "structure_id")
        )
    except (OSError, ValueError) as exc:
        # The run's other results are worth more than its targets: the table is written without
        # them (the start-up check, targets.check_targets_file, catches most such problems first).
        print(f"dftscreen: WARNING: no target columns in the results table: {exc}", file=sys.stderr)
        return table


def add_verdicts(table: pd.DataFrame, *, stable_threshold_eV_per_atom: float) -> pd.DataFrame:
    """Fill the ``verdict`` column: what became of each structure, in words (see :mod:`dftscreen.verdict`)."""
    table = table.copy()
    table["verdict"] = verdicts(table, stable_threshold_eV_per_atom=stable_threshold_eV_per_atom)
    return table


def add_cohort_columns(table: pd.DataFrame, cohorts: Mapping[str, Any] | CohortSpec | None) -> pd.DataFrame:
    """Add ``cohort`` and a ``cohort_<factor>`` column per factor, after ``source_file`` (:mod:`dftscreen.cohorts`).

    ``cohorts``: the config section ``cohorts`` (or its spec; ``None``: every row in cohort ``all``).
    A row no source assigns is in cohort ``unassigned`` with empty factor columns (the start-up
    check, :func:`dftscreen.cohorts.check_cohorts`, stops a run that would have such rows unless
    ``cohorts.unassigned`` is ``keep``); an ordered factor's column holds floats. A manifest
    gone since start-up leaves every row ``unassigned`` with a warning: the table is still written.
    """
    try:
        spec = cohorts if isinstance(cohorts, CohortSpec) else CohortSpec.from_config(cohorts)
        assigned = assign_table_rows(spec, table)
    except ValueError as exc:
        print(f"dftscreen: WARNING: every row in cohort '{UNASSIGNED_COHORT}': {exc}", file=sys.stderr)
        spec, assigned = None, [None] * len(table)
    factors = spec.factors if spec else ()
    names = [COHORT_COLUMN, *(cohort_factor_column(f) for f in factors)]
    table = table.drop(columns=[c for c in names if c in table.columns])
    at = table.columns.get_loc("source_file") + 1 if "source_file" in table.columns else len(table.columns)
    labels = [cohort_label(spec, values) if spec else UNASSIGNED_COHORT for values in assigned]
    table.insert(at, COHORT_COLUMN, pd.Series(labels, index=table.index, dtype=object))
    for n, factor in enumerate(factors, start=1):
        ordered = factor in spec.ordered
        empty = math.nan if ordered else None
        values = pd.Series([row[factor] if row else empty for row in assigned], index=table.index)
        table.insert(at + n, cohort_factor_column(factor), values.astype(float if ordered else object))
    return table


def add_budget_columns(
    table: pd.DataFrame, out_dir: str | os.PathLike[str], dft_config: Mapping[str, Any] | None, *, ml_stage: bool
) -> pd.DataFrame:
    """Mark what the DFT budget left out (``dft.max_structures_per_cohort``, :mod:`dftscreen.dft_budget`).

    The candidates are the ids the workflow planned DFT for without a budget (``ml/dft_ids.txt``
    with the ML stage, else the check's valid ids), each in its ``cohort``: the same sample
    the workflow drew. ``dft_sampled`` is True or False for each candidate (and a duplicate
    shows its representative's), empty for the other rows; ``dft_inclusion_probability``
    becomes the screen's (1 without the ML stage) times the cohort's sampled fraction; a left-out
    candidate without DFT results gets status ``not_sampled`` and a reason naming the sample
    (one whose DFT finished before keeps its results). Unchanged without a budget.
    """
    if not dft_config or dft_config.get("max_structures_per_cohort") is None:
        return table
    layout = ResultsLayout.of(out_dir)
    path = Path(layout.ml_dft_ids if ml_stage else layout.valid_ids)
    if not path.is_file():
        return table
    candidates = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    cohorts = table[COHORT_COLUMN].astype(str) if COHORT_COLUMN in table.columns else pd.Series("all", table.index)
    cohort_of = dict(zip(table["structure_id"], cohorts))
    maximum = int(dft_config["max_structures_per_cohort"])
    sample = budget_sample(candidates, cohort_of, max_per_cohort=maximum, seed=int(dft_config["budget_seed"]))
    sampled = {sid: True for sid in sample.selected} | {sid: False for sid in sample.left_out}
    shown = pd.Series(_dft_ids(table), index=table.index)
    table = table.copy()
    flag = shown.map(sampled)
    table[DFT_SAMPLED_COLUMN] = flag.astype(object).where(flag.notna(), None)
    fraction = shown.map(lambda sid: sample.fraction.get(cohort_of.get(sid, "all"))).where(flag.notna())
    screen = (
        pd.to_numeric(table[DFT_INCLUSION_PROBABILITY_COLUMN], errors="coerce").fillna(1.0)
        if DFT_INCLUSION_PROBABILITY_COLUMN in table.columns
        else pd.Series(1.0, index=table.index)
    )
    probability = (screen * fraction).where(flag.notna())
    if DFT_INCLUSION_PROBABILITY_COLUMN in table.columns:
        probability = probability.fillna(pd.to_numeric(table[DFT_INCLUSION_PROBABILITY_COLUMN], errors="coerce"))
    table[DFT_INCLUSION_PROBABILITY_COLUMN] = probability
    left_out = (flag == False) & (table["status"] == status_codes.NOT_FINISHED)  # noqa: E712
    notes = [sample.note(cohort_of.get(sid, "all"), maximum) for sid in shown[left_out]]
    table.loc[left_out, "status"] = status_codes.NOT_SAMPLED
    table.loc[left_out, "reason"] = notes
    # A duplicate of a left-out crystal: its representative's DFT never ran, which is no "not_finished".
    for index in table.index[(flag == False) & (table["status"] == status_codes.DUPLICATE)]:  # noqa: E712
        unfinished = dft_status_note(shown[index], status_codes.NOT_FINISHED)
        reason = str(table.at[index, "reason"])
        if reason.endswith(unfinished):
            table.at[index, "reason"] = reason[: -len(unfinished)] + f" ({shown[index]} is not in the DFT sample)"
    return table


# --- writing ------------------------------------------------------------------------------------


def write_table(table: pd.DataFrame, csv_path: str | os.PathLike[str], parquet_path: str | os.PathLike[str]) -> None:
    """Write the results table as CSV and Parquet, each atomically."""
    # Nullable dtypes: an integer column with missing rows stays integer
    # (5, not 5.0) and Parquet gets one type per column.
    typed = table.convert_dtypes()
    atomic_write_with(csv_path, lambda tmp: typed.to_csv(tmp, index=False))
    atomic_write_with(parquet_path, lambda tmp: typed.to_parquet(tmp, index=False, engine="pyarrow"))


def status_counts(table: pd.DataFrame) -> dict[str, int]:
    """Number of rows per status."""
    return {str(k): int(v) for k, v in table["status"].value_counts().items()}
