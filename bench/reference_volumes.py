"""Elemental reference volumes per atom against the Δ-test's all-electron volumes (not run in CI).

For each element, relaxes every automatic candidate the workflow has for it
(:func:`dftscreen.references.automatic_candidate_keys`: ASE's reference state and,
where it is another crystal, the Δ-test structure) through the workflow's own entry
point, the command of ``rule element_reference`` (``workflow/rules/references.smk``)::

    OMP_NUM_THREADS=1 mpiexec --bind-to none -n RANKS python -m gpaw python -m dftscreen.references \
        --element El --structure-id element_El [--candidate delta] --settings JSON ...

with the preset's settings resolved as a run with the default config resolves them.
The candidate with the lowest energy per atom (status ``relaxed``) is the one the
workflow uses (:func:`dftscreen.stability.lowest_elemental_records`); its volume per
atom is printed beside the WIEN2k all-electron equilibrium volume V0 of the Δ-test.

Reference: ``wien2k_volume`` (Å³/atom) of ASE's ``ase.collections.dcdft`` (the file
``ase/collections/dcdft.json``), which ASE built from ``WIEN2k.txt`` of the Δ-test's
supplementary material (https://github.com/molmod/DeltaCodesDFT; K. Lejaeghere et al.,
Crit. Rev. Solid State Mater. Sci. 39, 1 (2014); Science 351, aad3000 (2016)): PBE,
no spin-orbit coupling, Birch-Murnaghan fit of E(V) at fixed cell shape. The
structures of that collection are the Δ-test's primitive CIFs, whose own volume is
close to, but not exactly, V0 (bcc Ba: 63.55 Å³/atom in the CIF, V0 63.14); both are
printed. Molecules (H, N, O, F, Cl, Br, I: the workflow's reference is the diatomic
molecule in a box) have no crystal volume to compare; their bond length is printed.

Each element's result is written (atomically) to
``bench/records/reference_volumes/<preset>/<El>.json`` and never computed again; the
GPAW work folders (checkpoints: an interrupted relaxation resumes) are in ``--scratch``.
Each element runs as its own ``nice -n 19 flock LOCK`` process, so other work on the
machine can take the CPU lock between elements. Elements run cheapest first.

Usage::

    PYTHONPATH=src .venv/bin/python bench/reference_volumes.py [--preset standard]
        [--elements default|all|Na,Ba] [--stop-at 07:40] [--report-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ase.collections import dcdft
from ase.db import connect
from pymatgen.core import Composition

from dftscreen.io import atomic_write_json, read_json
from dftscreen.references import (
    NoElementalReference,
    automatic_candidate_keys,
    delta_test_candidate,
    elemental_reference,
)
from dftscreen.reflib import settings_key
from dftscreen.settings import resolve_settings
from dftscreen.stability import EnergyRecord, lowest_elemental_records
from dftscreen.status_codes import RELAXED

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "records" / "reference_volumes"
#: Elements of the CrystaLLM outputs in ../shared/data/generated (Li-Fe-P-O, Na-Cl, Ti-O).
CRYSTALLM_ELEMENTS = ("Li", "Fe", "P", "O", "Na", "Cl", "Ti")
#: |our V/atom / WIEN2k V0 - 1| above this (%) is flagged.
FLAG_PERCENT = 3.0


def wien2k_reference() -> dict[str, dict[str, float]]:
    """Per element: WIEN2k V0 (Å³/atom) and the volume per atom of the Δ-test's CIF in ASE's dcdft."""
    rows = {}
    for row in connect(dcdft.filename).select():
        atoms = row.toatoms()
        rows[row.name] = {"wien2k_V0_A3_per_atom": float(row.wien2k_volume),
                          "delta_cif_volume_A3_per_atom": atoms.get_volume() / len(atoms)}
    return rows


def default_elements() -> list[str]:
    """Elements of the known-materials fixture, the shared CrystaLLM and perov_5 structures, plus Ba and Sn."""
    from monty.serialization import loadfn

    elements = set(CRYSTALLM_ELEMENTS) | {"Ba", "Sn"}
    for path in sorted((REPO / "tests" / "data" / "known").glob("*.json.gz")):
        for entry in loadfn(path):
            elements |= {el.symbol for el in entry.composition.elements}
    from dftscreen.cif_reader import read_structure

    for cif in sorted(glob.glob(str(SHARED_DATA / "reference" / "perov5_sample50" / "*.cif"))):
        structure, _ = read_structure(Path(cif))
        elements |= {el.symbol for el in structure.composition.elements}
    return sorted(elements)


def candidates(element: str) -> list[dict[str, Any]]:
    """The workflow's automatic candidates of ``element``: library key, ``--candidate`` option, structure."""
    keys = automatic_candidate_keys(element)
    if keys == ["auto"]:
        return []
    found = [{"key": keys[0], "option": "auto", "reference": elemental_reference(element)}]
    if len(keys) > 1:
        found.append({"key": keys[1], "option": "delta", "reference": delta_test_candidate(element)})
    return found


def cost_estimate(element: str) -> float:
    """Rough relative cost: atoms of all candidates, doubled when spin-polarised (molecules are cheap)."""
    total = 0.0
    for candidate in candidates(element):
        atoms = candidate["reference"].atoms
        factor = 2.0 if any(abs(m) > 0 for m in atoms.get_initial_magnetic_moments()) else 1.0
        total += (0.3 if candidate["reference"].kind == "molecule" else len(atoms)) * factor
    return total


def bond_length_A(atoms) -> float:
    return float(atoms.get_distance(0, 1, mic=True))


def run_element(element: str, preset: str, ranks: int, scratch: Path) -> dict[str, Any]:
    """Relax every candidate of ``element`` with the workflow's command; the per-element result."""
    from ase.io import read
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    settings = resolve_settings(preset, {}, {}, None)
    settings_text = json.dumps(settings, sort_keys=True)
    reference = wien2k_reference().get(element, {})
    result: dict[str, Any] = {
        "element": element, "preset": preset, "settings_key": settings_key(settings),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg()[0], "mpi_ranks": ranks, **reference, "candidates": [],
    }
    found = candidates(element)
    if not found:
        try:
            elemental_reference(element)
        except NoElementalReference as exc:
            result["reason"] = str(exc)
        return result
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    records = []
    for candidate in found:
        workdir = scratch / preset / element / candidate["key"]
        workdir.mkdir(parents=True, exist_ok=True)
        out_json, out_cif = workdir / "relax.json", workdir / "relaxed.cif"
        command = ["mpiexec", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m", "gpaw", "python",
                   "-m", "dftscreen.references", "--element", element, "--structure-id", f"element_{element}",
                   *(["--candidate", "delta"] if candidate["option"] == "delta" else []),
                   "--settings", settings_text, "--out-json", str(out_json), "--out-cif", str(out_cif),
                   "--workdir", str(workdir)]
        started = time.time()
        if not out_json.is_file():
            with open(workdir / "job.log", "a") as log:
                subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        record = read_json(out_json) if out_json.is_file() else {"status": "failed", "reason": "no record written"}
        kind = candidate["reference"].kind
        entry = {
            "key": candidate["key"], "candidate": candidate["option"], "kind": kind,
            "description": candidate["reference"].description, "status": record.get("status"),
            "reason": record.get("reason"), "n_atoms": record.get("n_atoms"),
            "energy_per_atom_eV": record.get("energy_per_atom_eV"), "n_ionic_steps": record.get("n_ionic_steps"),
            "max_stress_GPa": record.get("max_stress_GPa"), "wall_time_s": record.get("wall_time_all_starts_s"),
            "bench_wall_time_s": round(time.time() - started, 1), "mpi_ranks": record.get("mpi_ranks"),
            "gpaw_version": record.get("gpaw_version"),
        }
        if out_cif.is_file():
            atoms = read(out_cif)
            if kind == "molecule":
                entry["bond_length_A"] = bond_length_A(atoms)
            else:
                entry["volume_per_atom_A3"] = atoms.get_volume() / len(atoms)
                entry["same_structure_as_delta_test"] = bool(element in dcdft.names and StructureMatcher().fit(
                    AseAtomsAdaptor.get_structure(candidate["reference"].atoms),
                    AseAtomsAdaptor.get_structure(dcdft[element])))
            magmoms = record.get("magnetic_moment_muB")
            if magmoms is not None:
                entry["magnetic_moment_muB"] = magmoms
        result["candidates"].append(entry)
        if record.get("status") == RELAXED and record.get("energy_eV") is not None:
            records.append((EnergyRecord(candidate["key"], Composition(record["formula"]),
                                         float(record["energy_eV"])), entry))
    lowest = lowest_elemental_records([rec for rec, _ in records]).get(element)
    if lowest is not None:
        used = next(entry for rec, entry in records if rec is lowest)
        result["used"] = used["key"]
        result["used_kind"] = used["kind"]
        if "volume_per_atom_A3" in used and reference:
            result["volume_per_atom_A3"] = used["volume_per_atom_A3"]
            result["diff_percent"] = 100 * (used["volume_per_atom_A3"] / reference["wien2k_V0_A3_per_atom"] - 1)
            result["flagged"] = abs(result["diff_percent"]) > FLAG_PERCENT
    return result


def result_path(preset: str, element: str) -> Path:
    return RESULTS / preset / f"{element}.json"


def report(preset: str, elements: list[str]) -> str:
    """The table of every finished element among ``elements``, and what is pending."""
    lines = [f"{'El':<3} {'candidate used':<44} {'V ours':>7} {'V0 W2k':>7} {'V CIF':>7} {'diff %':>7}  "
             f"{'same':<5} note"]
    pending = []
    for element in elements:
        path = result_path(preset, element)
        if not path.is_file():
            pending.append(element)
            continue
        result = read_json(path)
        used = next((c for c in result["candidates"] if c["key"] == result.get("used")), None)
        v0 = result.get("wien2k_V0_A3_per_atom")
        vcif = result.get("delta_cif_volume_A3_per_atom")
        fmt = lambda x: f"{x:7.2f}" if x is not None else f"{'-':>7}"  # noqa: E731
        if used is None:
            reasons = "; ".join(f"{c['candidate']}: {c['status']}" for c in result["candidates"])
            note = result.get("reason") or reasons or "no candidate"
            lines.append(f"{element:<3} {'-':<44} {fmt(None)} {fmt(v0)} {fmt(vcif)} {fmt(None)}  {'':<5} "
                         f"{note[:90]}")
            continue
        others = [c for c in result["candidates"] if c is not used]
        note = []
        if used["kind"] == "molecule":
            note.append(f"molecule, bond {used['bond_length_A']:.3f} Å")
        for other in others:
            if other.get("energy_per_atom_eV") is not None and used.get("energy_per_atom_eV") is not None:
                delta = 1000 * (other["energy_per_atom_eV"] - used["energy_per_atom_eV"])
                note.append(f"{other['candidate']} +{delta:.1f} meV/atom, V {other.get('volume_per_atom_A3', 0):.2f}")
            else:
                note.append(f"{other['candidate']}: {other['status']}")
        if result.get("flagged"):
            note.insert(0, "FLAG |diff| > 3 %")
        if v0 is None and used["kind"] != "molecule":
            note.insert(0, "not in the Δ-test (no all-electron V0)")
        same = used.get("same_structure_as_delta_test")
        lines.append(
            f"{element:<3} {used['description'][:44]:<44} {fmt(used.get('volume_per_atom_A3'))} {fmt(v0)} "
            f"{fmt(vcif)} {fmt(result.get('diff_percent'))}  {('' if same is None else 'yes' if same else 'no'):<5} "
            + "; ".join(note)
        )
    done = len(elements) - len(pending)
    lines.append(f"{done} of {len(elements)} elements done; preset {preset}"
                 + (f"; pending: {' '.join(pending)}" if pending else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--elements", default="default",
                        help="default (fixture, shared data, Ba, Sn), all (every Δ-test element with a "
                             "workflow candidate), or a comma-separated list")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/dftscreen_reference_volumes"))
    parser.add_argument("--lock", default="/tmp/dftscreen-cpu.lock", help="CPU lock taken per element ('' none)")
    parser.add_argument("--stop-at", default=None, help="HH:MM (UTC): start no element after this")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # one element, inside the lock
    args = parser.parse_args()

    if args.one:
        atomic_write_json(result_path(args.preset, args.one), run_element(args.one, args.preset, args.ranks,
                                                                          args.scratch))
        return 0
    if args.elements == "default":
        elements = default_elements()
    elif args.elements == "all":
        elements = [el for el in dcdft.names if automatic_candidate_keys(el) != ["auto"]]
    else:
        elements = args.elements.split(",")
    elements = sorted(elements, key=lambda el: (cost_estimate(el), el))
    if not args.report_only:
        for element in elements:
            if result_path(args.preset, element).is_file():
                continue
            now = dt.datetime.now(dt.timezone.utc)
            if args.stop_at and now.strftime("%H:%M") >= args.stop_at:
                print(f"stop: {now:%H:%M} UTC is past --stop-at {args.stop_at}", flush=True)
                break
            if not candidates(element):  # no automatic reference (S, Mn): the reason only, no DFT
                atomic_write_json(result_path(args.preset, element),
                                  run_element(element, args.preset, args.ranks, args.scratch))
                continue
            command = [sys.executable, __file__, "--one", element, "--preset", args.preset,
                       "--ranks", str(args.ranks), "--scratch", str(args.scratch)]
            if args.lock:
                command = ["nice", "-n", "19", "flock", args.lock, *command]
            started = time.time()
            subprocess.run(command, check=False)
            print(f"{element}: {time.time() - started:.0f} s (with waiting for the lock), "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
    print(report(args.preset, elements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
