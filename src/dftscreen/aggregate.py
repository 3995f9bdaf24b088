"""Combine check, relaxation and property records into one results table.

Exactly one row per input file, whatever happened to it. The ``status`` column
says how far the structure got:

``ok``             relaxed (forces and stress below threshold) and properties computed
``not_converged``  relaxation hit its step limit; values are for the last geometry
``invalid``        rejected by the checks; never reached DFT
``too_large``      sound, but its estimated DFT cost exceeds what a job may have
                   (``dft.resources.max_mem_mb_per_task`` / ``max_runtime_min``)
``failed``         a DFT step failed; ``reason`` says which and why
``not_finished``   a DFT job has not produced its result (still to run, killed, or
                   crashed; or its properties.json is left from an earlier relaxation,
                   see :func:`stale_properties`): rerun the same command
``duplicate``      the same crystal as ``duplicate_of``; DFT ran once, on that one, and
                   its DFT values (per-cell ones of its cell) are shown in this row too,
                   beside the duplicate's own check columns (see :func:`duplicate_row`)

Every column with a unit carries it in its name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Composition

from dftscreen import status_codes
from dftscreen.columns import (
    CHANGE_COLUMNS,
    CHECK_COLUMNS,
    CHECK_FIELDS_NOT_IN_TABLE,
    COLUMNS,
    COST_COLUMNS,
    E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES,
)
from dftscreen.cost import MEMORY, TIME_LIMIT, failure_kind, job_core_hours, relax_core_hours
from dftscreen.dft_pack import finished_pack_records, lost_records_reason
from dftscreen.io import read_json_if_exists
from dftscreen.layout import ResultsLayout
from dftscreen.provenance import row_provenance, run_provenance
from dftscreen.recovery import energy_settings
from dftscreen.stability import (
    EnergyRecord,
    chemical_potentials,
    formation_energy_per_atom,
    hull_analysis,
    lowest_elemental_records,
)


def check_columns() -> list[str]:
    """Columns every check record contributes (its fields but the bookkeeping ones), table-input columns aside."""
    return list(CHECK_COLUMNS)


def one_line(text: str | None) -> str:
    """Collapse a possibly multi-line message into one line for the table."""
    return " ".join((text or "").split())


def _kpoint_text(kpoint: list[float] | None) -> str | None:
    return None if kpoint is None else " ".join(f"{x:.4f}" for x in kpoint)


def table_row(
    check: dict[str, Any],
    relax: dict[str, Any] | None,
    properties: dict[str, Any] | None,
    relax_cif_path: str | None = None,
) -> dict[str, Any]:
    """One row of the results table from the records of one structure.

    Args:
        check: record of :func:`dftscreen.check.check_structure_file` (as dict).
        relax: relaxation record, or ``None`` when it does not exist (yet).
        properties: properties record, or ``None`` when it does not exist (yet).
        relax_cif_path: path of the relaxed CIF to show in the table.
    """
    # Every field of the check record is a column, except bookkeeping ones.
    row: dict[str, Any] = {k: v for k, v in check.items() if k not in CHECK_FIELDS_NOT_IN_TABLE}
    if not check["valid"]:
        # The check may name a more specific status (e.g. a duplicate).
        row.update(status=check.get("status") or status_codes.INVALID, reason=one_line(check["reason"]))
        return row
    if relax is None:
        row.update(status=status_codes.NOT_FINISHED, reason="relaxation has not finished: rerun the workflow")
        return row

    row.update(
        dft_preset=relax.get("preset"),
        relax_converged=relax.get("converged"),
        n_ionic_steps=relax.get("n_ionic_steps"),
        max_force_eV_per_A=relax.get("max_force_eV_per_A"),
        max_stress_GPa=relax.get("max_stress_GPa"),
        volume_relaxed_A3=relax.get("final_volume_A3"),
        relax_wall_time_s=relax.get("wall_time_s"),
        mpi_ranks=relax.get("mpi_ranks"),
        scf_strategy=relax.get("scf_strategy"),
        # The mesh the energy was relaxed on: chosen by the start gap (dft.choose_kpt_density) or the preset's.
        relax_kpt_density_per_A=relax.get("relax_kpt_density_per_A")
        or ((relax.get("settings") or {}).get("gpaw") or {}).get("kpt_density_per_A"),
        relax_n_starts=relax.get("n_starts"),
        relax_resumed_from_step=relax.get("resumed_from_step"),
        relax_wall_time_all_starts_s=relax.get("wall_time_all_starts_s"),
    )
    _add_cost(row, relax, properties)
    v0, v1 = generated_volume_A3(check, relax), relax.get("final_volume_A3")
    if v0 and v1:
        row["volume_change_pct"] = 100.0 * (v1 - v0) / v0
        if check.get("density_generated_g_cm3"):
            # Same atoms, new volume.
            row["density_relaxed_g_cm3"] = check["density_generated_g_cm3"] * v0 / v1
    change = relax.get("change") or {}
    for key in CHANGE_COLUMNS:
        if key in change:
            row[key] = change[key]
    if relax.get("status") == status_codes.FAILED:
        reason = one_line(f"relaxation: {relax.get('reason')}")
        row.update(status=status_codes.FAILED, reason=reason, failure_category=failure_kind(reason))
        return row
    row["relaxed_cif"] = relax_cif_path
    if properties is None:
        row.update(status=status_codes.NOT_FINISHED, reason="property calculation has not finished: rerun the workflow")
        return row
    if properties.get("status") != "done":
        reason = one_line(f"properties: {properties.get('reason')}")
        row.update(status=status_codes.FAILED, reason=reason, failure_category=failure_kind(reason))
        return row
    row.update(
        energy_eV=properties.get("energy_eV"),
        energy_per_atom_eV=properties.get("energy_per_atom_eV"),
        band_gap_eV=properties.get("band_gap_eV"),
        direct_band_gap_eV=properties.get("direct_band_gap_eV"),
        gap_is_direct=properties.get("gap_is_direct"),
        vbm_kpoint_frac=_kpoint_text(properties.get("vbm_kpoint")),
        cbm_kpoint_frac=_kpoint_text(properties.get("cbm_kpoint")),
        magnetic_moment_muB=properties.get("magnetic_moment_muB"),
        is_magnetic=properties.get("is_magnetic"),
        magnetic_ordering=properties.get("magnetic_ordering"),
        properties_wall_time_s=properties.get("wall_time_s"),
        band_gap_gllbsc_eV=properties.get("band_gap_gllbsc_eV"),
        gllbsc_note=properties.get("gllbsc_note"),
    )
    if relax.get("status") == status_codes.NOT_CONVERGED:
        row.update(status=status_codes.NOT_CONVERGED, reason=f"relaxation: {relax.get('reason')}")
    else:
        row.update(status=status_codes.OK, reason="")
    return row


def duplicate_row(
    check: dict[str, Any],
    representative_check: dict[str, Any] | None,
    relax: dict[str, Any] | None,
    properties: dict[str, Any] | None,
    relax_cif_path: str | None = None,
) -> dict[str, Any]:
    """The row of a duplicate: its own check columns, its representative's DFT columns.

    DFT ran once, on the representative (``check['duplicate_of']``), whose cell may
    differ from the duplicate's (a primitive and a conventional cell, or another
    volume). Every column the DFT records give (per-cell ones such as ``energy_eV`` and
    ``magnetic_moment_muB`` included) and the columns derived from the
    representative's generated cell (``volume_change_pct``, ``density_relaxed_g_cm3``)
    are the representative's row's, so they describe one crystal; the check columns
    (``n_sites``, ``volume_generated_A3``, ...) are the duplicate's own. ``relax`` and
    ``properties`` are the representative's records.
    """
    representative = check["duplicate_of"]
    if representative_check is None:
        # Without its check record, the relaxation's start stands in for its generated cell.
        representative_check = {
            k: v for k, v in check.items() if k not in ("volume_generated_A3", "density_generated_g_cm3")
        }
    dft = table_row({**representative_check, "valid": True}, relax, properties, relax_cif_path)
    row: dict[str, Any] = {k: v for k, v in check.items() if k not in CHECK_FIELDS_NOT_IN_TABLE}
    row.update({k: v for k, v in dft.items() if k not in representative_check and k not in ("status", "reason")})
    reason = one_line(check["reason"]) + dft_status_note(representative, dft["status"])
    row.update(status=status_codes.DUPLICATE, reason=reason)
    return row


def dft_status_note(representative: str, status: str) -> str:
    """What a duplicate's reason adds to its check's: its representative's DFT status."""
    return f" (DFT status of {representative}: {status})"


def generated_volume_A3(check: dict[str, Any], relax: dict[str, Any]) -> float | None:
    """Volume (Å³) of the generated cell the relaxation's volume change is measured from.

    The check record's ``volume_generated_A3``. The relaxation record's
    ``initial_volume_A3`` is the volume the DFT relaxation started from: with ML
    pre-relaxation (the record names a ``start_cif``) that is the ML-relaxed cell,
    not the generated one, so it stands in only for a check record without a volume
    whose relaxation started from the generated structure itself.
    """
    volume = check.get("volume_generated_A3")
    if volume:
        n_generated, n_relaxed = check.get("n_sites"), relax.get("n_atoms")
        if n_generated and n_relaxed and n_generated != n_relaxed:  # another cell of the crystal: per atom
            return float(volume) * n_relaxed / n_generated
        return float(volume)
    if relax.get("start_cif"):
        return None
    return relax.get("initial_volume_A3")


def _add_cost(row: dict[str, Any], relax: dict[str, Any], properties: dict[str, Any] | None) -> None:
    """Core-hours (wall time × MPI ranks / 3600) of the relaxation (all starts), the properties job and both."""
    relax_cost = relax_core_hours(relax)
    properties_cost = job_core_hours(properties)
    known = [c for c in (relax_cost, properties_cost) if c is not None]
    row.update(
        relax_core_hours=relax_cost,
        properties_core_hours=properties_cost,
        total_core_hours=sum(known) if known else None,
    )


def killed_job_kind(log_path: Path, tail_bytes: int = 8192) -> str | None:
    """``time limit`` or ``memory`` when a job log's tail shows the job was killed for it, else ``None``.

    SLURM's step daemon writes its "CANCELLED ... DUE TO TIME LIMIT" and
    "oom-kill" messages to the step's stderr, which the rule sends to its log.
    """
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - tail_bytes, 0))
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    kind = failure_kind(text)
    return kind if kind in (TIME_LIMIT, MEMORY) else None


#: How much older (s) than relax.json a properties.json may be and still belong to it: the new
#: relaxation job alone lasts longer; files copied without their times may be this far apart.
STALE_PROPERTIES_TOLERANCE_S = 1.0


def stale_properties(
    relax: dict[str, Any], properties: dict[str, Any], relax_path: Path, properties_path: Path
) -> str | None:
    """Why ``properties`` (read from ``properties_path``) is not of the relaxation in ``relax``, else ``None``.

    The properties job runs on the relaxation record and writes its record after it, with
    the preset it ran with. A record of another preset, or one written more than
    :data:`STALE_PROPERTIES_TOLERANCE_S` before relax.json (Snakemake's own test of an
    out-of-date output), is left from an earlier relaxation: a rerun with new settings
    stopped before the properties job. The message asks for a rerun.
    """
    relax_preset, properties_preset = relax.get("preset"), properties.get("preset")
    if relax_preset and properties_preset and relax_preset != properties_preset:
        return (
            f"properties.json is from an earlier relaxation (preset {properties_preset}, relaxation preset "
            f"{relax_preset}): its property calculation has not finished: rerun the workflow"
        )
    try:
        age_s = relax_path.stat().st_mtime - properties_path.stat().st_mtime
    except OSError:
        return None
    if age_s > STALE_PROPERTIES_TOLERANCE_S:
        return (
            f"properties.json is from an earlier relaxation (written {age_s:.0f} s before relax.json): "
            "its property calculation has not finished: rerun the workflow"
        )
    return None


def explain_lost_pack_records(rows: list[dict[str, Any]], layout: ResultsLayout) -> None:
    """Give ``not_finished`` rows whose pack already finished them the way to recompute them.

    Without this their reason says "rerun the workflow", and a rerun does nothing.
    """
    waiting = [row for row in rows if row.get("status") == status_codes.NOT_FINISHED]
    finished = finished_pack_records(layout) if waiting else {}
    for row in waiting:
        dft_id = row.get("duplicate_of") or row["structure_id"]
        if dft_id in finished:
            row["reason"] = lost_records_reason(layout, dft_id, finished[dft_id])


def build_table(
    checks: Iterable[dict[str, Any]],
    dft_dir: str | os.PathLike[str],
    element_records: list[dict[str, Any]] | None = None,
    phase_records: list[dict[str, Any]] | None = None,
    run_settings: dict[str, Any] | None = None,
    phase_names: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Results table for all checked structures, reading DFT records under ``dft_dir``.

    Records are looked up as ``<dft_dir>/<structure_id>/{relax,properties}.json``;
    missing ones make the row ``not_finished``. With ``element_records``
    (relaxation records of the elemental references) formation energies and
    energies above the hull are added; ``phase_records`` are relaxation
    records of competing phases for the hull (user-supplied or chosen from a known set;
    ``phase_names`` gives a phase's name in ``hull_reference`` by its structure id).
    ``run_settings`` (the run's resolved DFT settings) give the provenance of rows
    without DFT; a row with DFT takes its GPAW version and settings hash from its own
    record. A job that left no record but whose log (``<dft_dir>/../logs/<stage>/<id>.log``)
    shows a time-limit or memory kill gets that ``failure_category``.
    """
    layout = ResultsLayout.of(Path(dft_dir).parent)
    provenance = run_provenance(run_settings)
    checks = list(checks)
    checks_by_id = {check["structure_id"]: check for check in checks}
    rows = []
    for check in checks:
        representative = check.get("duplicate_of")
        # A duplicate shows its representative's DFT results (DFT ran once per group).
        dft_id = representative or check["structure_id"]
        has_dft = bool(check["valid"] or representative)
        relax = read_json_if_exists(Path(layout.relax_record(dft_id))) if has_dft else None
        properties = read_json_if_exists(Path(layout.properties_record(dft_id))) if relax else None
        stale = None
        if relax and properties:
            stale = stale_properties(
                relax, properties, Path(layout.relax_record(dft_id)), Path(layout.properties_record(dft_id))
            )
            properties = None if stale else properties
        cif = None
        if relax and relax.get("relaxed_cif"):
            cif = str(Path(layout.structure_dir(dft_id)) / relax["relaxed_cif"])
        if representative:
            row = duplicate_row(check, checks_by_id.get(representative), relax, properties, cif)
        else:
            row = table_row(check, relax, properties, cif)
            if stale and row["status"] == status_codes.NOT_FINISHED:
                row["reason"] = stale
        if representative:
            row.update({column: None for column in COST_COLUMNS})
        elif row["status"] == status_codes.NOT_FINISHED:
            stage = "relax" if relax is None else "properties"
            row["failure_category"] = killed_job_kind(Path(layout.log(stage, dft_id)))
        row.update(row_provenance(provenance, relax))
        row["_relax"] = relax
        rows.append(row)
    explain_lost_pack_records(rows, layout)
    if element_records is not None:
        add_stability(rows, element_records, phase_records or [], phase_names)
    for row in rows:
        del row["_relax"]
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = None
    # Known columns first, in their order; any further check columns after them.
    extra = [c for c in table.columns if c not in COLUMNS]
    return table[COLUMNS + extra]


def _energy_record(name: str, relax: dict[str, Any] | None) -> EnergyRecord | None:
    """Energy of a finished relaxation (status relaxed), else ``None``."""
    if not relax or relax.get("status") != status_codes.RELAXED or relax.get("energy_eV") is None:
        return None
    return EnergyRecord(name, Composition(relax["formula"]), float(relax["energy_eV"]))


def add_stability(
    rows: list[dict[str, Any]],
    element_records: list[dict[str, Any]],
    phase_records: list[dict[str, Any]],
    phase_names: dict[str, str] | None = None,
) -> None:
    """Add formation energy, energy above hull and decomposition columns to ``rows`` in place.

    Only fully relaxed structures take part (an unconverged relaxation's energy
    is not a minimum). Duplicates share their representative's values. Each
    element's chemical potential is the lowest energy per atom among its elemental
    reference and the elemental phases among ``phase_records``; ``elemental_references``
    names the one used, ``hull_reference`` the phases in the row's chemical system.
    """
    phase_names = phase_names or {}
    # An element may have several candidate structures (dftscreen.references): each its own record.
    element_pairs = [(_energy_record(rec.get("element", ""), rec), rec) for rec in element_records]
    element_pairs = [(record, rec) for record, rec in element_pairs if record is not None]
    elements = [record for record, _ in element_pairs]
    phases = [r for r in (_energy_record(rec.get("structure_id", ""), rec) for rec in phase_records) if r]
    by_dft_id: dict[str, EnergyRecord] = {}
    for row in rows:
        dft_id = row.get("duplicate_of") or row["structure_id"]
        record = _energy_record(dft_id, row["_relax"])
        if record is not None:
            by_dft_id[dft_id] = record
    elemental_phases = [p for p in phases if len(p.composition.elements) == 1]
    compound_phases = [p for p in phases if len(p.composition.elements) > 1]
    # Named for the compound phases: an elemental phase alone (the known set's α-S) stands for
    # its element, and the hull is still one of the elements and generated structures.
    column = E_HULL_COLUMN if compound_phases else E_HULL_COLUMN_NO_PHASES
    hull = hull_analysis(list(by_dft_id.values()), elements, phases)
    lowest = lowest_elemental_records([*elements, *elemental_phases])
    element_names = {
        id(record): f"{record.name}: {rec.get('reference_description') or 'elemental reference'}"
        for record, rec in element_pairs
    }
    # A stand-in for a ground state the size gate refused (dftscreen.references) says so in every row it serves.
    element_notes = {id(record): rec["reference_note"] for record, rec in element_pairs if rec.get("reference_note")}
    mu = chemical_potentials([*elements, *elemental_phases])
    missing_elements = {
        rec.get("element"): rec.get("reason") for rec in element_records if rec.get("status") != status_codes.RELAXED
    }
    # What each hull member's energy was computed with (an SCF-ladder rung or an override can differ).
    member_settings = {id(record): energy_settings(rec) for record, rec in element_pairs}
    phase_settings = {rec.get("structure_id", ""): energy_settings(rec) for rec in phase_records}
    for row in rows:
        row[column] = None
        dft_id = row.get("duplicate_of") or row["structure_id"]
        record = by_dft_id.get(dft_id)
        if record is None:
            continue
        system = {el.symbol for el in record.composition.elements}
        in_system = [p for p in compound_phases if {el.symbol for el in p.composition.elements} <= system]
        row["hull_reference"] = _hull_label(in_system, phase_names, bool(compound_phases))
        row["elemental_references"] = "; ".join(
            element_names.get(id(lowest[el]), f"{el}: phase {phase_names.get(lowest[el].name, lowest[el].name)}")
            for el in sorted(system) if el in lowest
        )
        try:
            row["formation_energy_eV_per_atom"] = formation_energy_per_atom(record, mu)
        except KeyError as exc:
            missing = [el.symbol for el in record.composition.elements if el.symbol not in mu]
            why = "; ".join(f"{el}: {missing_elements[el]}" for el in missing if missing_elements.get(el))
            row["stability_note"] = one_line(f"{exc.args[0]}" + (f" ({why})" if why else ""))
            continue
        result = hull[dft_id]
        row[column] = result.get("e_above_hull_eV_per_atom")
        row["decomposition_products"] = result.get("decomposition")
        members = [(f"{el} reference", member_settings.get(id(lowest[el]), phase_settings.get(lowest[el].name, {})))
                   for el in sorted(system) if el in lowest]
        members += [(phase_names.get(p.name, p.name), phase_settings.get(p.name, {})) for p in in_system]
        notes = [result.get("reason"), mixed_settings_note(energy_settings(row["_relax"] or {}), members)]
        notes += [element_notes.get(id(lowest[el])) for el in sorted(system) if el in lowest]
        if any(notes):
            row["stability_note"] = one_line("; ".join(n for n in notes if n))


def mixed_settings_note(own: dict[str, Any], members: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Why a formation energy or hull distance mixes energies of different DFT settings, or ``None``.

    ``own``: the structure's energy settings (:func:`dftscreen.recovery.energy_settings`);
    ``members``: (name, settings) of the references and phases its hull used. Records
    without settings (unknown) are not compared.
    """
    if not own:
        return None
    differing = [(name, settings) for name, settings in members if settings and settings != own]
    if not differing:
        return None

    def differences(settings: dict[str, Any], other: dict[str, Any]) -> str:
        keys = sorted(k for k in {*settings, *other} if settings.get(k) != other.get(k))
        return ", ".join(f"{k} {settings.get(k)}" for k in keys)

    theirs = "; ".join(f"{name}: {differences(settings, own)}" for name, settings in differing[:3])
    more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
    return (f"energies of different DFT settings in one hull (this structure: {differences(own, differing[0][1])}; "
            f"{theirs}{more}), e.g. the SCF ladder's wide_smearing rung or dft.structure_overrides: "
            "formation energy and hull distance are not strictly comparable")


def _hull_label(phases: list[EnergyRecord], names: dict[str, str], any_phases: bool) -> str:
    """What the hull of one chemical system was built from, naming its compound phases."""
    if not any_phases:
        return "elements + generated structures only (no reference phases given)"
    listed = ", ".join(sorted(names.get(p.name, p.name) for p in phases))
    # The generated structures are judged against this hull, not part of it (stability.hull_analysis).
    return f"elements + {len(phases)} reference phases" + (f" ({listed})" if listed else "")
