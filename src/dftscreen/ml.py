"""The machine-learned stage: pre-relax every candidate, estimate its stability, screen before DFT.

A universal machine-learned interatomic potential (MLIP) trained on PBE data
relaxes cell and positions of every unique ``dft_ready`` structure in about a
second, where GPAW spends the first half of its ionic steps on the same large
moves. The stage does three things with it:

1. **pre-relaxation** (``ml.prerelax``): the DFT relaxation starts from the
   ML-relaxed geometry (:func:`dft_start_cif`);
2. **ML energies**: formation energy and energy above the hull from the ML
   model alone, against elemental references and reference phases relaxed
   with the same model (one model per hull: never mixed with DFT energies),
   in ``ml_*`` columns (:func:`screen`, :func:`add_ml_columns`);
3. **pre-screen** (``ml.screen_e_above_hull_eV_per_atom``): a structure
   further above the ML hull than the threshold gets status ``screened_out``
   with its ML values and no DFT.

The default model is SevenNet-0 (``7net-0``, package ``sevenn``), whose
weights ship inside its PyPI wheel, so nothing is downloaded at run time; a
path to a local SevenNet checkpoint file may be named instead. Every record
carries the model name, the package version and the checkpoint file's SHA-256.

Batches: the structures are split into ``ceil(n / ml.batch_size)`` batches by
hashing their ids (:func:`batch_index`), so one job loads the model once and
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from dftscreen import __version__, status_codes
from dftscreen.io import atomic_write_json, atomic_write_text, atomic_write_with, read_json
from dftscreen.layout import ResultsLayout
from dftscreen.stability import (
    E_HULL_COLUMN,
    E_HULL_COLUMN_NO_PHASES,
    EnergyRecord,
    chemical_potentials,
    formation_energy_per_atom,
    hull_analysis,
)

#: The model package; its pretrained models ship inside its wheel.
ML_PACKAGE = "sevenn"
#: Default model: SevenNet-0 (11 July 2024), Matbench Discovery F1 0.724 on unique prototypes.
DEFAULT_MODEL = "7net-0"

#: Column names of the ML energies (the DFT names with an ``ml_`` prefix).
ML_FORMATION_COLUMN = "ml_formation_energy_eV_per_atom"
ML_E_HULL_COLUMN = f"ml_{E_HULL_COLUMN}"
ML_E_HULL_COLUMN_NO_PHASES = f"ml_{E_HULL_COLUMN_NO_PHASES}"

#: Columns copied from the ML record's comparison of generated and ML-relaxed structure.
ML_CHANGE_COLUMNS = (
    "relaxed_matches_generated",
    "structure_matcher_rms_norm",
    "rms_displacement_A",
    "spacegroup_number_relaxed",
    "spacegroup_changed",
)

#: ML table columns, in order (the ML hull column is one of the two names above).
ML_COLUMNS = (
    "ml_status",
    "ml_reason",
    "ml_model",
    "ml_package_version",
    "ml_checkpoint_sha256",
    "ml_energy_per_atom_eV",
    ML_FORMATION_COLUMN,
    "ml_hull_reference",
    "ml_decomposition_products",
    "ml_n_steps",
    "ml_max_force_eV_per_A",
    "ml_volume_relaxed_A3",
    "ml_volume_change_pct",
    *(f"ml_{c}" for c in ML_CHANGE_COLUMNS),
    "ml_wall_time_s",
    "ml_relaxed_cif",
    "dft_start_geometry",
)


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLSettings:
    """How the ML relaxation runs (config section ``ml``; defaults live in the config schema)."""

    model: str = DEFAULT_MODEL
    optimizer: str = "FIRE"
    fmax_eV_per_A: float = 0.05
    max_steps: int = 500
    fix_symmetry: bool = True
    symprec: float = 1e-3
    #: An ML relaxation that changed the volume by more than this (%) is not used as DFT start.
    max_volume_change_pct: float = 50.0
    #: ... nor one with two atoms closer than this (Å).
    min_distance_A: float = 0.5

    @classmethod
    def from_config(cls, ml_config: dict[str, Any]) -> MLSettings:
        relax = ml_config.get("relax", {})
        return cls(
            model=str(ml_config.get("model", DEFAULT_MODEL)),
            **{k: relax[k] for k in ("optimizer", "fmax_eV_per_A", "max_steps", "fix_symmetry", "symprec",
                                     "max_volume_change_pct", "min_distance_A") if k in relax},
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def screen_threshold(ml_config: dict[str, Any], dft_preset: str) -> float | None:
    """The pre-screen threshold (eV/atom) in force, or ``None`` when screening is off.

    ``ml.screen_e_above_hull_eV_per_atom`` is a number, ``null`` (off), or
    ``by_preset``: then ``ml.screen_by_preset[<dft preset>]`` (off for a preset not listed).
    """
    if not ml_config.get("enabled", True):
        return None
    value = ml_config.get("screen_e_above_hull_eV_per_atom", "by_preset")
    if value == "by_preset":
        value = (ml_config.get("screen_by_preset") or {}).get(dft_preset)
    return None if value is None else float(value)


# --- the model ----------------------------------------------------------------------------


def checkpoint_path(model: str) -> Path:
    """The checkpoint file of ``model``: a SevenNet pretrained name (from the installed wheel) or a path.

    Raises:
        FileNotFoundError: neither an existing file nor a pretrained model whose file is installed.
    """
    candidate = Path(model).expanduser()
    if candidate.is_file():
        return candidate
    from sevenn.util import pretrained_name_to_path

    try:
        path = Path(pretrained_name_to_path(model))
    except Exception as exc:
        raise FileNotFoundError(
            f"ML model {model!r} is neither a checkpoint file nor a SevenNet pretrained model shipped "
            f"in the installed {ML_PACKAGE} wheel (e.g. 7net-0, 7net-l3i5, 7net-mf-0): {exc}"
        ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint of ML model {model!r} is not installed at {path}")
    return path


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_provenance(model: str) -> dict[str, Any]:
    """Model name, package and version, checkpoint file name and SHA-256: what every ML row records."""
    from importlib.metadata import version

    path = checkpoint_path(model)
    return {
        "ml_model": model,
        "ml_package": ML_PACKAGE,
        "ml_package_version": version(ML_PACKAGE),
        "ml_checkpoint_file": path.name,
        "ml_checkpoint_sha256": sha256_of_file(path),
    }


def load_calculator(model: str, threads: int = 1, device: str = "cpu") -> Any:
    """The ASE calculator of ``model`` (loaded once per job), with ``threads`` torch threads.

    Warnings that SevenNet prints about GPU-only accelerators are silenced: on a
    CPU they do not apply.
    """
    import warnings

    import torch

    torch.set_num_threads(max(1, int(threads)))
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*accelerator.*")
        return SevenNetCalculator(str(checkpoint_path(model)), device=device)


# --- relaxation ---------------------------------------------------------------------------


def relax_atoms(
    atoms: Atoms,
    calculator: Any,
    settings: MLSettings,
    relax_cell: bool = True,
    fix_symmetry: bool | None = None,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax cell (unless ``relax_cell`` is false) and positions of ``atoms`` with the ML calculator.

    Like the DFT relaxation, ``FixSymmetry`` keeps the starting space group, so
    the DFT job that starts from the result sees the same symmetry.

    Returns:
        The relaxed atoms (a copy, calculator attached) and a record: energies
        in eV, forces eV/Å, stress GPa, volumes Å³, wall time s.
    """
    from ase import optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter

    from dftscreen.dft import EV_PER_A3_TO_GPA

    start = time.perf_counter()
    atoms = Atoms(atoms.get_chemical_symbols(), cell=atoms.cell, positions=atoms.positions, pbc=atoms.pbc)
    atoms.calc = calculator
    initial_energy = float(atoms.get_potential_energy())
    initial_volume = float(atoms.get_volume())
    if settings.fix_symmetry if fix_symmetry is None else fix_symmetry:
        atoms.set_constraint(FixSymmetry(atoms, symprec=settings.symprec))
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = getattr(optimize, settings.optimizer)(target, logfile=None)
    converged = bool(optimizer.run(fmax=settings.fmax_eV_per_A, steps=settings.max_steps))
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True) * EV_PER_A3_TO_GPA if relax_cell else np.zeros(6)
    atoms.set_constraint()
    record = {
        "converged": converged,
        "n_steps": int(optimizer.nsteps),
        "initial_energy_eV": initial_energy,
        "initial_energy_per_atom_eV": initial_energy / len(atoms),
        "energy_eV": energy,
        "energy_per_atom_eV": energy / len(atoms),
        "max_force_eV_per_A": float(np.linalg.norm(forces, axis=1).max()) if len(atoms) else 0.0,
        "max_stress_GPa": float(np.abs(stress).max()),
        "initial_volume_A3": initial_volume,
        "final_volume_A3": float(atoms.get_volume()),
        "formula": atoms.get_chemical_formula(mode="hill"),
        "n_atoms": len(atoms),
        "wall_time_s": time.perf_counter() - start,
    }
    return atoms, record


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

    from dftscreen.changes import relaxation_change
    # Issue 14 moves read_structure to dftscreen.cif_reader; import it from there once it exists.
    from dftscreen.check import min_interatomic_distance
    from dftscreen.cif_reader import read_structure
    from dftscreen.dft import atoms_to_structure, structure_to_atoms

    folder = Path(layout.ml_structure_dir(structure_id))
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
        name = "relaxed.cif" if problem is None else "rejected.cif"
        atomic_write_with(folder / name, lambda tmp: CifWriter(relaxed).write_file(tmp))
        record["relaxed_cif"] = name
    except Exception as exc:
        record.update(status=status_codes.FAILED, reason=f"ML relaxation: {type(exc).__name__}: {exc}",
                      usable_as_dft_start=False)
    if not record.get("usable_as_dft_start"):
        # A geometry from an earlier run with other settings must not start DFT now.
        (folder / "relaxed.cif").unlink(missing_ok=True)
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


def n_batches(n_structures: int, batch_size: int) -> int:
    """How many ML jobs share ``n_structures`` (at least one)."""
    return max(1, math.ceil(n_structures / max(1, batch_size)))


def batch_index(structure_id: str, batches: int) -> int:
    """The batch of ``structure_id``: a stable hash of the id, so others keep theirs when one is added."""
    return int(hashlib.sha256(structure_id.encode()).hexdigest()[:12], 16) % batches


def split_into_batches(structure_ids: Iterable[str], batch_size: int) -> dict[int, list[str]]:
    """Batch index -> sorted ids in it, for every batch (an empty batch is possible and harmless)."""
    ids = sorted(set(structure_ids))
    count = n_batches(len(ids), batch_size)
    batches: dict[int, list[str]] = {n: [] for n in range(count)}
    for sid in ids:
        batches[batch_index(sid, count)].append(sid)
    return batches


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


def relax_references(
    elements: Iterable[str],
    element_cifs: dict[str, str],
    phases: dict[str, str],
    layout: ResultsLayout,
    settings: MLSettings,
    calculator_factory: Callable[[], Any],
    out_json: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """ML-relax the elemental references (the same structures as :mod:`dftscreen.references`) and phases.

    Records are reused like a batch's; the returned (and written) dict has
    ``elements`` and ``phases`` lists of records.
    """
    from dftscreen.cif_reader import read_structure
    from dftscreen.dft import structure_to_atoms
    from dftscreen.references import elemental_reference

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
        cif = element_cifs.get(element)
        source = Path(cif).read_bytes() if cif and Path(cif).is_file() else b""
        return _key(f"element:{element}".encode() + source, settings, provenance)

    def build_element(element: str) -> Callable[[], tuple[Atoms, str, str]]:
        def build() -> tuple[Atoms, str, str]:
            cif = element_cifs.get(element)
            # NoElementalReference (S, Mn without a CIF) becomes the record's reason.
            reference = elemental_reference(element, cif=Path(cif) if cif else None)
            return reference.atoms, reference.kind, reference.description
        return build

    def build_phase(cif: str) -> Callable[[], tuple[Atoms, str, str]]:
        def build() -> tuple[Atoms, str, str]:
            structure, _ = read_structure(cif)
            return structure_to_atoms(structure), "crystal", f"reference phase {Path(cif).name}"
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
    }
    if out_json is not None:
        atomic_write_json(out_json, records)
    return records


def _key(source: bytes, settings: MLSettings, provenance: dict[str, Any]) -> str:
    digest = hashlib.sha256(source)
    digest.update(json.dumps(settings.to_dict(), sort_keys=True).encode())
    digest.update(provenance["ml_checkpoint_sha256"].encode())
    return digest.hexdigest()


# --- hull and screen -------------------------------------------------------------------------


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

    The hull holds ML energies only: the ML-relaxed elemental references and
    reference phases (with compound phases, each structure is judged against
    those alone, so its verdict does not depend on the rest of the batch;
    without, the ML-relaxed generated structures join the hull, as in
    :func:`dftscreen.stability.hull_analysis`). A structure is
    screened out when its ML energy above the hull exceeds the threshold; one
    without an ML verdict (ML failure, an element without reference) is never
    screened out.

    Args:
        structure_ids: every id that may go to DFT (the check's valid ids).
        records: ML record per structure id (an id without one is not screened out).
        references: ``{"elements": [...], "phases": [...]}`` ML reference records.
        threshold_eV_per_atom: screening threshold, ``None`` for no screening.
        checkpoint_sha256: the model of this run; records of any other model stay out of the hull.
    """
    if checkpoint_sha256 is not None:
        def same_model(record: dict[str, Any]) -> bool:
            return record.get("ml_checkpoint_sha256") == checkpoint_sha256

        records = {sid: r for sid, r in records.items() if same_model(r)}
        references = {kind: [r for r in rs if same_model(r)] for kind, rs in references.items()}
    elements = [r for r in (_energy(rec.get("element", ""), rec) for rec in references.get("elements", [])) if r]
    phases = [r for r in (_energy(rec.get("structure_id", ""), rec) for rec in references.get("phases", [])) if r]
    energies = {sid: e for sid, e in ((sid, _energy(sid, rec)) for sid, rec in sorted(records.items())) if e}
    hull = hull_analysis(list(energies.values()), elements, phases)
    # An elemental phase stands for its element (as in hull_analysis); the compounds name the hull.
    mu = chemical_potentials([*elements, *phases])
    compounds = [p for p in phases if len(p.composition.elements) > 1]
    column = ML_E_HULL_COLUMN if compounds else ML_E_HULL_COLUMN_NO_PHASES
    label = (f"ML: elements + {len(compounds)} reference phases" if compounds
             else "ML: elements + generated structures only (no reference phases given)")
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
                verdict["ml_hull_reference"] = label
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
        "structures": verdicts,
        "dft_ids": [sid for sid, v in verdicts.items() if not v["screened_out"]],
        "screened_out_ids": [sid for sid, v in verdicts.items() if v["screened_out"]],
    }


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


def generated_cif_beside(start_cif: str | os.PathLike[str]) -> Path | None:
    """The generated CIF a DFT relaxation compares with, when it started from an ML-relaxed CIF.

    The ML stage writes ``relaxed.cif`` and a copy of the generated CIF,
    ``generated.cif``, in one folder (:class:`dftscreen.layout.ResultsLayout`);
    for any other start, ``None`` (compare with the start itself).
    """
    start = Path(start_cif)
    beside = start.parent / "generated.cif"
    if start.name == "relaxed.cif" and start.parent.parent.name == "structures" and beside.is_file():
        return beside
    return None


# --- the results table -----------------------------------------------------------------------


def ml_row(record: dict[str, Any] | None, verdict: dict[str, Any] | None, layout: ResultsLayout,
           structure_id: str, prerelax: bool) -> dict[str, Any]:
    """The ``ml_*`` columns of one structure from its ML record and screening verdict."""
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
        if verdict.get("note") and not verdict.get("screened_out"):
            row["ml_reason"] = " ".join(f"{row['ml_reason']} {verdict['note']}".split())
    return row


def add_ml_columns(table: pd.DataFrame, out_dir: str | os.PathLike[str], prerelax: bool = True) -> pd.DataFrame:
    """Add the ``ml_*`` columns and the ``screened_out`` status to the results table.

    Reads ``ml/screen.json`` and the ML records under ``out_dir``; without a
    screen (ML stage off or not run yet) the table is returned unchanged.
    Duplicates show their representative's ML values, as they do its DFT values.
    """
    from dftscreen.aggregate import dft_status_note

    layout = ResultsLayout.of(out_dir)
    if not Path(layout.ml_screen).is_file():
        return table
    screen_result = read_json(layout.ml_screen)
    verdicts = screen_result["structures"]
    table = table.copy()
    rows = []
    for _, row in table.iterrows():
        sid = row["structure_id"]
        representative = row.get("duplicate_of") if "duplicate_of" in table.columns else None
        ml_id = representative if isinstance(representative, str) and representative else sid
        record_path = Path(layout.ml_record(ml_id))
        record = read_json(record_path) if ml_id in verdicts and record_path.is_file() else None
        values = ml_row(record, verdicts.get(ml_id), layout, ml_id, prerelax)
        verdict = verdicts.get(ml_id) or {}
        if verdict.get("screened_out") and row["status"] == status_codes.NOT_FINISHED:
            values.update(status=status_codes.SCREENED_OUT, reason=verdict["note"])
        elif verdict.get("screened_out") and row["status"] == status_codes.DUPLICATE:
            # Its representative's DFT never ran (it was screened out), which is no "not_finished".
            unfinished = dft_status_note(ml_id, status_codes.NOT_FINISHED)
            if str(row["reason"]).endswith(unfinished):
                check_reason = str(row["reason"])[: -len(unfinished)]
                values["reason"] = f"{check_reason} ({ml_id} was screened out by ML: {verdict['note']})"
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
