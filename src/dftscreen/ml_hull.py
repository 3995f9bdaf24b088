"""The ML hull, the pre-screen, and where each DFT relaxation starts.

The ML stage (:mod:`dftscreen.ml`) relaxes every candidate and the references with the
ML potential; this module judges the results: formation energies and energies above a
hull of ML energies only (never mixed with DFT), the screen that keeps structures far
above that hull from DFT (``ml.screen_e_above_hull_eV_per_atom``), and the CIF each DFT
relaxation starts from (``ml.prerelax``). It loads no model and imports no pandas: the
workflow's input functions import it on every Snakemake start.

Units: energies eV, energies per atom eV/atom.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dftscreen import status_codes
from dftscreen.columns import ML_E_HULL_COLUMN, ML_E_HULL_COLUMN_NO_PHASES, ML_FORMATION_COLUMN
from dftscreen.io import atomic_write_json, atomic_write_text, read_json
from dftscreen.layout import ResultsLayout
from dftscreen.stability import EnergyRecord, chemical_potentials, formation_energy_per_atom, hull_analysis


def screen_threshold(ml_config: dict[str, Any], dft_preset: str) -> float | None:
    """The pre-screen threshold (eV/atom) in force, or ``None`` when screening is off.

    ``ml.screen_e_above_hull_eV_per_atom`` is a number, ``null`` (off), or
    ``by_preset``: then ``ml.screen_by_preset[<dft preset>]`` (off for a preset not listed).
    """
    if not ml_config["enabled"]:
        return None
    value = ml_config["screen_e_above_hull_eV_per_atom"]
    if value == "by_preset":
        value = (ml_config["screen_by_preset"] or {}).get(dft_preset)
    return None if value is None else float(value)


# --- hull and screen ------------------------------------------------------------------------


def _energy(name: str, record: dict[str, Any] | None) -> EnergyRecord | None:
    """Energy of a converged ML relaxation, else ``None`` (as for DFT: only minima join the hull)."""
    from pymatgen.core import Composition

    if not record or record.get("status") != status_codes.RELAXED or record.get("energy_eV") is None:
        return None
    return EnergyRecord(name, Composition(record["formula"]), float(record["energy_eV"]))


def screen(
    structure_ids: Iterable[str],
    records: dict[str, dict[str, Any]],
    references: dict[str, list[dict[str, Any]]],
    threshold_eV_per_atom: float | None,
    checkpoint_sha256: str | None = None,
) -> dict[str, Any]:
    """ML formation energies, energies above the ML hull, and the screening verdict of every structure.

    The hull holds ML energies only: the ML-relaxed elemental references,
    reference phases and the known phases compare_known chose, the same phases
    as the DFT hull (with compound phases, each structure is judged against
    those alone, so its verdict does not depend on the rest of the batch;
    without, the ML-relaxed generated structures join the hull, as in
    :func:`dftscreen.stability.hull_analysis`). A structure is
    screened out when its ML energy above the hull exceeds the threshold; one
    without an ML verdict (ML failure, an element without reference) is never
    screened out.

    Args:
        structure_ids: every id that may go to DFT (the check's valid ids).
        records: ML record per structure id (an id without one is not screened out).
        references: ``{"elements": [...], "phases": [...], "known_phases": [...]}`` ML reference records
            (:func:`dftscreen.ml.relax_references`; an elemental known phase is one more candidate of its
            element, the lowest per element standing for it).
        threshold_eV_per_atom: screening threshold, ``None`` for no screening.
        checkpoint_sha256: the model of this run; records of any other model stay out of the hull.
    """
    if checkpoint_sha256 is not None:
        def same_model(record: dict[str, Any]) -> bool:
            return record.get("ml_checkpoint_sha256") == checkpoint_sha256

        records = {sid: r for sid, r in records.items() if same_model(r)}
        references = {kind: [r for r in rs if same_model(r)] for kind, rs in references.items()}
    elements = [r for r in (_energy(rec.get("element", ""), rec) for rec in references.get("elements", [])) if r]
    # The user's reference phases and the known phases compare_known chose (the DFT hull's phases).
    phase_records = [*references.get("phases", []), *references.get("known_phases", [])]
    phases = [r for r in (_energy(rec.get("structure_id", ""), rec) for rec in phase_records) if r]
    names = {rec.get("structure_id", ""): phase_name(rec) for rec in phase_records}
    energies = {sid: e for sid, e in ((sid, _energy(sid, rec)) for sid, rec in sorted(records.items())) if e}
    hull = hull_analysis(list(energies.values()), elements, phases)
    # An elemental phase stands for its element (as in hull_analysis: the lowest per element);
    # the compounds name the hull.
    mu = chemical_potentials([*elements, *phases])
    compounds = [p for p in phases if len(p.composition.elements) > 1]
    column = ML_E_HULL_COLUMN if compounds else ML_E_HULL_COLUMN_NO_PHASES
    verdicts: dict[str, dict[str, Any]] = {}
    for sid in sorted(set(structure_ids)):
        record = records.get(sid)
        verdict: dict[str, Any] = {"screened_out": False, "note": ""}
        energy = energies.get(sid)
        if record is None:
            verdict["note"] = "no ML record"
        elif energy is None:
            verdict["note"] = f"no ML energy ({record.get('status')}: {record.get('reason') or 'not converged'})"
        else:
            try:
                verdict[ML_FORMATION_COLUMN] = formation_energy_per_atom(energy, mu)
                verdict[column] = hull[sid]["e_above_hull_eV_per_atom"]
                verdict["ml_decomposition_products"] = hull[sid].get("decomposition")
                verdict["ml_hull_reference"] = _hull_label(energy, compounds, names)
            except KeyError as exc:
                verdict["note"] = f"no ML formation energy: {exc.args[0]}"
        e_hull = verdict.get(column)
        if threshold_eV_per_atom is not None and e_hull is not None and e_hull > threshold_eV_per_atom:
            verdict["screened_out"] = True
            verdict["note"] = (f"ML energy above hull {e_hull:.3f} eV/atom exceeds the screening threshold "
                               f"{threshold_eV_per_atom:g} eV/atom (ml.screen_e_above_hull_eV_per_atom); no DFT")
        verdicts[sid] = verdict
    return {
        "threshold_eV_per_atom": threshold_eV_per_atom,
        "hull_column": column,
        # Every phase with an ML energy, as the DFT hull names its phases (elemental ones included).
        "hull_phases": sorted(names[p.name] for p in phases),
        "structures": verdicts,
        "dft_ids": [sid for sid, v in verdicts.items() if not v["screened_out"]],
        "screened_out_ids": [sid for sid, v in verdicts.items() if v["screened_out"]],
    }


def phase_name(record: dict[str, Any]) -> str:
    """A hull phase's name: its id, and for a known phase ``<key> [<known entry id>]`` (as the DFT table names it)."""
    name = record.get("structure_id", "")
    return f"{name} [{record['entry_id']}]" if record.get("entry_id") else name


def _hull_label(energy: EnergyRecord, compounds: list[EnergyRecord], names: dict[str, str]) -> str:
    """What the ML hull of a structure's chemical system was built from (as the DFT ``hull_reference``)."""
    if not compounds:
        return "ML: elements + generated structures only (no reference phases given)"
    system = {el.symbol for el in energy.composition.elements}
    in_system = [p for p in compounds if {el.symbol for el in p.composition.elements} <= system]
    listed = sorted(names.get(p.name, p.name) for p in in_system)
    return f"ML: elements + {len(listed)} reference phases" + (f" ({', '.join(listed)})" if listed else "")


def audit_draw(structure_id: str, seed: int) -> float:
    """A uniform number in [0, 1) for a structure: a hash of the seed and its id (stable as structures are added)."""
    digest = hashlib.sha256(f"{seed}:{structure_id}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15


def audit(screen_result: dict[str, Any], *, fraction: float, seed: int) -> dict[str, Any]:
    """Send a seeded random sample of the screened-out structures to DFT anyway (``ml.audit_fraction``).

    Every rate computed after the screen is biased by it; the audited structures' DFT results
    let :mod:`dftscreen.cohort_stats` weight the rates back (each screened-out structure reached
    DFT with probability ``fraction``: Horvitz-Thompson) and measure the screen's false-negative
    rate. An audited structure stays ``screened_out`` in the screen (the ML verdict) and is
    ``audited``: its id joins ``dft_ids``. Returns a new result with ``audit_fraction`` and ``audited_ids``.
    """
    result = {**screen_result, "structures": {sid: dict(v) for sid, v in screen_result["structures"].items()}}
    audited = [sid for sid in screen_result["screened_out_ids"] if audit_draw(sid, seed) < fraction]
    for sid in audited:
        verdict = result["structures"][sid]
        verdict["audited"] = True
        verdict["note"] = verdict["note"].replace("; no DFT", "; audited: goes to DFT anyway (ml.audit_fraction)")
    result.update(
        audit_fraction=fraction,
        audit_seed=seed,
        audited_ids=audited,
        dft_ids=sorted({*screen_result["dft_ids"], *audited}),
    )
    return result


def write_screen(screen_result: dict[str, Any], out_json: str | os.PathLike[str],
                 dft_ids_txt: str | os.PathLike[str]) -> None:
    """Write the screen (JSON) and the ids going to DFT (one per line), each atomically."""
    atomic_write_json(out_json, screen_result)
    atomic_write_text(dft_ids_txt, "".join(f"{sid}\n" for sid in screen_result["dft_ids"]))


def read_records(layout: ResultsLayout, structure_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The ML record of every id that has one."""
    records = {}
    for sid in structure_ids:
        path = Path(layout.ml_record(sid))
        if path.is_file():
            records[sid] = read_json(path)
    return records


# --- the DFT start ------------------------------------------------------------------------


def dft_start_cif(layout: ResultsLayout, structure_id: str, generated_cif: str, prerelax: bool) -> str:
    """The CIF the DFT relaxation of ``structure_id`` starts from.

    With ``prerelax`` the ML-relaxed geometry, unless its record says it is not
    usable (ML failure, collapse): then the generated structure. Before the ML
    record exists the ML path is returned, so a DFT job asked for too early
    fails with a missing input instead of silently starting from the generated CIF.
    """
    if not prerelax:
        return generated_cif
    record_path = Path(layout.ml_record(structure_id))
    if record_path.is_file() and not read_json(record_path).get("usable_as_dft_start"):
        return generated_cif
    return layout.ml_relaxed_cif(structure_id)
