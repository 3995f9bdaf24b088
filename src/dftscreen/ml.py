"""The machine-learned stage: the model, and the batched ML relaxation of candidates and references.

A universal machine-learned interatomic potential (MLIP) trained on PBE data
relaxes cell and positions of every unique ``dft_ready`` structure in about a
second, where GPAW spends the first half of its ionic steps on the same large
moves. The stage does three things with it:

1. **pre-relaxation** (``ml.prerelax``): the DFT relaxation starts from the
   ML-relaxed geometry (:func:`dftscreen.ml_hull.dft_start_cif`);
2. **ML energies**: formation energy and energy above the hull from the ML
   model alone, against elemental references and reference phases relaxed
   with the same model (one model per hull: never mixed with DFT energies),
   in ``ml_*`` columns (:func:`dftscreen.ml_hull.screen`,
   :func:`dftscreen.table.add_ml_columns`);
3. **pre-screen** (``ml.screen_e_above_hull_eV_per_atom``): a structure
   further above the ML hull than the threshold gets status ``screened_out``
   with its ML values and no DFT (:mod:`dftscreen.ml_hull`).

This module does the relaxations (:func:`run_batch`, :func:`relax_references`).
The default model is SevenNet-0 (``7net-0``, package ``sevenn``), whose
weights ship inside its PyPI wheel, so nothing is downloaded at run time; a
path to a local SevenNet checkpoint file may be named instead. Every record
carries the model name, the package version and the checkpoint file's SHA-256.

Batches: the structures are split into ``ceil(n / ml.batch_size)`` batches by
hashing their ids (:func:`dftscreen.plan.batch_index`), so one job loads the model once and
relaxes many structures, and adding a structure moves no other one unless the
number of batches grows. Each structure's record is written atomically as soon
as it finishes and reused by a rerun when its input, settings and model are
unchanged (:func:`run_batch`): a killed batch keeps what it finished.

Units: energies eV, forces eV/Å, stress GPa, volumes Å³, times s.

Nothing here imports torch or the model package at module level: the
workflow's rules and the table builder import this module cheaply.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ase import Atoms

from dftscreen import __version__, status_codes

# The job's own tools, from the checks and the DFT stage (the same structures, conversions and
# comparisons as DFT). Only the ML jobs import this module: the workflow plans them with
# dftscreen.plan and dftscreen.ml_hull, which do not import it.
from dftscreen.changes import relaxation_change
from dftscreen.check import min_interatomic_distance
from dftscreen.cif_reader import read_structure
from dftscreen.dft import atoms_to_structure, structure_to_atoms
from dftscreen.io import atomic_write_json, atomic_write_with, read_json
from dftscreen.layout import ReferenceLibrary, ResultsLayout

# The potential, its settings and one relaxation (dftscreen.ml_potential), named here too: the
# ML stage's callers use ml.MLSettings, ml.load_calculator, ml.relax_atoms.
from dftscreen.ml_potential import (  # noqa: F401
    DEFAULT_MODEL,
    ML_PACKAGE,
    MLSettings,
    checkpoint_path,
    load_calculator,
    model_provenance,
    relax_atoms,
    sha256_of_file,
)
from dftscreen.references import elemental_reference, reference_fingerprint


def geometry_problem(record: dict[str, Any], relaxed_min_distance_A: float, settings: MLSettings) -> str | None:
    """Why an ML-relaxed geometry must not start a DFT relaxation, or ``None`` when it may.

    Universal potentials have spurious low-energy regions (atoms collapsing
    onto each other, cells imploding) that DFT would first have to climb out of.
    """
    if record["status"] == status_codes.FAILED:
        return record.get("reason") or "ML relaxation failed"
    change = 100.0 * abs(record["final_volume_A3"] - record["initial_volume_A3"]) / record["initial_volume_A3"]
    if change > settings.max_volume_change_pct:
        return (f"ML relaxation changed the volume by {change:.0f} % (limit {settings.max_volume_change_pct:g} %): "
                "DFT starts from the generated structure")
    if relaxed_min_distance_A < settings.min_distance_A:
        return (f"ML relaxation brought two atoms to {relaxed_min_distance_A:.2f} Å "
                f"(limit {settings.min_distance_A:g} Å): DFT starts from the generated structure")
    return None


def structure_fingerprint(cif: str | os.PathLike[str], settings: MLSettings, checkpoint_sha256: str) -> str:
    """What makes an ML record reusable: the input file's bytes, the ML settings and the model file."""
    digest = hashlib.sha256(Path(cif).read_bytes())
    digest.update(json.dumps(settings.to_dict(), sort_keys=True).encode())
    digest.update(checkpoint_sha256.encode())
    return digest.hexdigest()


def relax_structure(
    structure_id: str,
    cif: str | os.PathLike[str],
    calculator: Any,
    settings: MLSettings,
    provenance: dict[str, Any],
    layout: ResultsLayout,
) -> dict[str, Any]:
    """ML-relax one generated structure and write its record, relaxed CIF and a copy of its input.

    An error (unknown element, a blown-up relaxation) is recorded with status
    ``failed`` and a reason; it never stops the batch.
    """
    from pymatgen.io.cif import CifWriter


    record: dict[str, Any] = {
        "structure_id": structure_id,
        **provenance,
        "ml_settings": settings.to_dict(),
        "fingerprint": structure_fingerprint(cif, settings, provenance["ml_checkpoint_sha256"]),
        "dftscreen_version": __version__,
    }
    atomic_write_with(layout.ml_generated_cif(structure_id), lambda tmp: tmp.write_bytes(Path(cif).read_bytes()))
    try:
        generated, _ = read_structure(cif)
        relaxed_atoms, result = relax_atoms(structure_to_atoms(generated), calculator, settings)
        record.update(result)
        if not math.isfinite(result["energy_eV"]):
            raise FloatingPointError("the ML energy is not finite")
        relaxed = atoms_to_structure(relaxed_atoms)
        record["status"] = status_codes.RELAXED if result["converged"] else status_codes.NOT_CONVERGED
        record["reason"] = "" if result["converged"] else (
            f"ML relaxation stopped at {settings.max_steps} steps with max force "
            f"{result['max_force_eV_per_A']:.3f} eV/Å")
        try:
            record["change"] = relaxation_change(generated, relaxed)
        except Exception as exc:  # analysis must never lose a finished relaxation
            record["change"] = {"error": f"could not compare structures: {exc}"}
        problem = geometry_problem(record, min_interatomic_distance(relaxed), settings)
        record["usable_as_dft_start"] = problem is None
        record["geometry_note"] = problem or ""
        # Only a usable geometry is written as relaxed.cif: its existence is what the DFT rule looks for.
        path = Path(layout.ml_relaxed_cif(structure_id) if problem is None else layout.ml_rejected_cif(structure_id))
        atomic_write_with(path, lambda tmp: CifWriter(relaxed).write_file(tmp))
        record["relaxed_cif"] = path.name
    except Exception as exc:
        record.update(status=status_codes.FAILED, reason=f"ML relaxation: {type(exc).__name__}: {exc}",
                      usable_as_dft_start=False)
    if not record.get("usable_as_dft_start"):
        # A geometry from an earlier run with other settings must not start DFT now.
        Path(layout.ml_relaxed_cif(structure_id)).unlink(missing_ok=True)
    atomic_write_json(layout.ml_record(structure_id), record)
    return record


def reusable_record(path: str | os.PathLike[str], fingerprint: str) -> dict[str, Any] | None:
    """The record at ``path`` if it was computed from the same input, settings and model."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None  # written atomically, so only a foreign edit gets here: recompute
    return record if record.get("fingerprint") == fingerprint else None


# --- batches ------------------------------------------------------------------------------


def run_batch(
    items: list[tuple[str, str]],
    layout: ResultsLayout,
    settings: MLSettings,
    calculator_factory: Callable[[], Any],
    out_json: str | os.PathLike[str] | None = None,
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """ML-relax every (structure id, CIF path) of ``items``, reusing finished records.

    The model is loaded (``calculator_factory()``) once, and only if some
    structure still needs it. Each record is written as soon as its structure
    finishes, so a killed batch keeps what it finished and a rerun does the rest.

    Returns (and writes to ``out_json``): the ids, which were reused and which computed.
    """
    provenance = model_provenance(settings.model)
    calculator = None
    computed, reused = [], []
    start = time.perf_counter()
    for structure_id, cif in items:
        fingerprint = structure_fingerprint(cif, settings, provenance["ml_checkpoint_sha256"])
        record = reusable_record(layout.ml_record(structure_id), fingerprint)
        if record is not None:
            reused.append(structure_id)
        else:
            if calculator is None:
                calculator = calculator_factory()
            record = relax_structure(structure_id, cif, calculator, settings, provenance, layout)
            computed.append(structure_id)
        if on_done is not None:
            on_done(structure_id, record)
    summary = {
        "structure_ids": [sid for sid, _ in items],
        "computed": computed,
        "reused": reused,
        "wall_time_s": time.perf_counter() - start,
        **provenance,
    }
    if out_json is not None:
        atomic_write_json(out_json, summary)
    return summary


# --- references ----------------------------------------------------------------------------


def model_key(settings: MLSettings, checkpoint_sha256: str) -> str:
    """The reference library's key of an ML model and its relaxation settings: ``<model name>-<hash>``.

    Known phases relaxed by the model are kept under it (:meth:`dftscreen.layout.ReferenceLibrary.ml_phase_record`),
    so every run with the same model file and ``ml.relax`` settings reuses them.
    """
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(settings.model).name) or "model"
    digest = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode())
    digest.update(checkpoint_sha256.encode())
    return f"{name}-{digest.hexdigest()[:12]}"


def relax_references(
    elements: Iterable[str],
    element_cifs: dict[str, str],
    phases: dict[str, str],
    layout: ResultsLayout,
    settings: MLSettings,
    calculator_factory: Callable[[], Any],
    out_json: str | os.PathLike[str] | None = None,
    known_phases: dict[str, dict[str, str]] | None = None,
    library: ReferenceLibrary | None = None,
) -> dict[str, Any]:
    """ML-relax the elemental references (the same structures as :mod:`dftscreen.references`) and phases.

    ``known_phases`` (phase key -> ``{"start_cif": ..., "entry_id": ...}``) are the known phases
    compare_known chose that DFT relaxes too (:meth:`dftscreen.plan.RunPlan.competing_phase_keys`):
    their records are kept in ``library`` under the model's key (:func:`model_key`), one file per
    phase, so a later run with the same model reuses them whatever its results folder.

    Records are reused like a batch's; the returned (and written) dict has
    ``elements``, ``phases`` and ``known_phases`` lists of records.
    """
    if known_phases and library is None:
        raise ValueError("known phases need the reference library to keep their ML records in")
    provenance = model_provenance(settings.model)
    calculator = None

    def compute(path: str, key: str, build: Callable[[], tuple[Atoms, str, str]], extra: dict[str, Any]) -> dict:
        nonlocal calculator
        record = reusable_record(path, key)
        if record is not None:
            return record
        record = {**extra, **provenance, "ml_settings": settings.to_dict(), "fingerprint": key}
        try:
            atoms, kind, description = build()
            if calculator is None:
                calculator = calculator_factory()
            # A molecule in a box keeps its box and needs no symmetry constraint (as for DFT).
            _, result = relax_atoms(atoms, calculator, settings, relax_cell=kind != "molecule",
                                    fix_symmetry=settings.fix_symmetry and kind != "molecule")
            record.update(result, reference_kind=kind, reference_description=description,
                          status=status_codes.RELAXED if result["converged"] else status_codes.NOT_CONVERGED)
        except Exception as exc:
            record.update(status=status_codes.FAILED, reason=f"{type(exc).__name__}: {exc}")
        atomic_write_json(path, record)
        return record

    def element_key(element: str) -> str:
        # The structure's fingerprint: a record of another reference structure (hcp La before dhcp) is redone.
        cif = element_cifs.get(element)
        source = Path(cif).read_bytes() if cif and Path(cif).is_file() else reference_fingerprint(element).encode()
        return _key(f"element:{element}".encode() + source, settings, provenance)

    def build_element(element: str) -> Callable[[], tuple[Atoms, str, str]]:
        def build() -> tuple[Atoms, str, str]:
            cif = element_cifs.get(element)
            # NoElementalReference (an element without a reference) becomes the record's reason.
            reference = elemental_reference(element, cif=Path(cif) if cif else None)
            return reference.atoms, reference.kind, reference.description
        return build

    def build_phase(cif: str, description: str | None = None) -> Callable[[], tuple[Atoms, str, str]]:
        def build() -> tuple[Atoms, str, str]:
            structure, _ = read_structure(cif)
            return structure_to_atoms(structure), "crystal", description or f"reference phase {Path(cif).name}"
        return build

    records = {
        "elements": [
            compute(layout.ml_element_record(el), element_key(el), build_element(el), {"element": el})
            for el in sorted(set(elements))
        ],
        "phases": [
            compute(layout.ml_phase_record(pid), _key(Path(cif).read_bytes(), settings, provenance),
                    build_phase(cif), {"structure_id": pid})
            for pid, cif in sorted(phases.items())
        ],
        "known_phases": [],
    }
    if known_phases:
        key = model_key(settings, provenance["ml_checkpoint_sha256"])
        for phase_key, item in sorted(known_phases.items()):
            cif, entry_id = item["start_cif"], item.get("entry_id")
            fingerprint = _key(Path(cif).read_bytes(), settings, provenance)
            record = compute(library.ml_phase_record(key, phase_key), fingerprint,
                             build_phase(cif, f"known phase {entry_id or phase_key}"),
                             {"structure_id": phase_key, "entry_id": entry_id, "ml_model_key": key})
            # The same crystal may come from another known set under another id: this run names it by its own.
            records["known_phases"].append({**record, "entry_id": entry_id})
    if out_json is not None:
        atomic_write_json(out_json, records)
    return records


def _key(source: bytes, settings: MLSettings, provenance: dict[str, Any]) -> str:
    digest = hashlib.sha256(source)
    digest.update(json.dumps(settings.to_dict(), sort_keys=True).encode())
    digest.update(provenance["ml_checkpoint_sha256"].encode())
    return digest.hexdigest()
