"""Δ-test volumes at the candidate ``standard`` preset, to first order, without re-relaxing (issue 32; not run in CI).

What: for every elemental reference relaxed at today's ``standard`` (800 eV, GPAW's Pulay
``estimate``, k 5.0 per Å⁻¹, smearing 0.05 eV; ``bench/records/reference_volumes/standard/<El>.json``,
:mod:`reference_volumes`), the volume per atom a relaxation at the candidate ``standard`` (700 eV,
the cell's own *computed* cutoff derivative from two SCFs 20 eV apart on a k 2.0 mesh, k 5.0,
smearing 0.05 eV) would end at, and its deviation from the all-electron (WIEN2k) V0 of the
Δ-test. Issue 32 asks for the elemental volumes within 1.6 % of V0 at the new settings; the
re-relaxations would take about 4 h on this machine, these SCFs a fraction of it.

How: the candidate structure the workflow used for the element (the record's ``used`` key:
:func:`dftscreen.references.elemental_reference` for ``auto``,
:func:`dftscreen.references.delta_test_candidate` for ``delta``; magnetic moments as the
workflow sets them, so Fe, Co, Ni are spin-polarised) is scaled isotropically to the relaxed
volume per atom V_old of the record, and at that fixed geometry four SCFs run through
:func:`converge_settings.single_point` (the workflow's settings translation, legacy GPAW):

- old: 800 eV, k 5.0, smearing 0.05 eV, stress with GPAW's Pulay estimate;
- new: 700 eV, k 5.0, the raw stress (GPAW's estimate taken off again) plus the computed Pulay
  stress (2/3) E_cut (dE/dE_cut) / V on the diagonal, dE/dE_cut the forward difference of the
  total energy between 700 and 720 eV on the coarse mesh (:data:`dftscreen.dft.CUTOFF_DERIVATIVE_STEP_EV`,
  :data:`dftscreen.dft.CUTOFF_DERIVATIVE_KPT_DENSITY`: what :func:`dftscreen.dft.cutoff_derivative`
  does in a relaxation; here both SCFs are single_point records, so the energies come from the
  legacy code, whose energy the Pulay keyword does not touch).

With p = -trace(σ)/3 (GPa) and Δp = p_new - p_old at V_old::

    V_new = V_old (1 + Δp / B)

Why first order is enough: the old relaxation ended with p_old ≈ 0 (within the preset's 0.5 GPa
threshold) at V_old; the new settings move the pressure there by Δp, a few tenths of a GPa, and a
relaxation at the new settings moves the volume until the pressure is zero again: ΔV/V = Δp/B from
B = -V dp/dV. With B of tens to hundreds of GPa, ΔV/V is well below 1 %, where the curvature
(B' ≈ 4-6) changes it by a few % of itself. Taking the difference Δp (rather than p_new alone)
cancels, to first order, the residual pressure of the isotropically scaled start shape.

Sources: the Δ-test, K. Lejaeghere et al., Science 351, aad3000 (2016), through ASE's
``ase.collections.dcdft``: ``wien2k_volume`` (V0, Å³/atom) and ``wien2k_B`` (B0, GPa) of the
WIEN2k PBE Birch-Murnaghan fits.

Records: one atomic JSON per element per SCF setting (rank 0 writes; a rerun skips stored
records, so a killed run resumes): ``bench/records/delta_volume_shift/<El>/e<ecut>_k<k>_s<smearing>.json``.

Usage (from the project root; ``--drive`` runs one mpiexec per element, cheapest SCF first, each
under the shared CPU lock so other DFT work interleaves, and starts none after ``--stop-at``)::

    PYTHONPATH=src:bench nohup .venv/bin/python bench/delta_volume_shift.py --drive --stop-at 00:15 \\
        >> /work/delta_shift.log 2>&1 &
    # one element, as the driver runs it:
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONPATH=src:bench OMP_NUM_THREADS=1 \\
        flock /tmp/dftscreen-cpu.lock nice -n 5 mpiexec --bind-to none -n 2 \\
        .venv/bin/python -m gpaw python -m delta_volume_shift --only Al
    PYTHONPATH=src:bench .venv/bin/python bench/delta_volume_shift.py --report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from converge_settings import GPA_PER_EV_PER_A3, Subject, point_name, single_point, stress_GPa

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "bench" / "records" / "delta_volume_shift"
REFERENCES = REPO / "bench" / "records" / "reference_volumes" / "standard"
#: Issue 32's tolerance on |V/V0 - 1| (%).
FLAG_PERCENT = 1.6
#: Today's ``standard`` (ecut eV, k per Å⁻¹, smearing eV), GPAW's Pulay estimate.
OLD = (800.0, 5.0, 0.05)
#: The candidate ``standard``'s SCF (ecut eV, k per Å⁻¹, smearing eV), computed Pulay stress.
NEW = (700.0, 5.0, 0.05)
LOCK = "/tmp/dftscreen-cpu.lock"


def coarse_points() -> list[tuple[float, float, float]]:
    """The two SCFs (ecut eV, k per Å⁻¹, smearing eV) of the new setting's dE/dE_cut, as the workflow takes them."""
    from dftscreen.dft import CUTOFF_DERIVATIVE_KPT_DENSITY, CUTOFF_DERIVATIVE_STEP_EV

    return [(NEW[0] + step, CUTOFF_DERIVATIVE_KPT_DENSITY, NEW[2]) for step in (0.0, CUTOFF_DERIVATIVE_STEP_EV)]


def all_points() -> list[tuple[float, float, float]]:
    """Every SCF setting of an element, the old one first."""
    return [OLD, NEW, *coarse_points()]


def pressure_GPa(stress_voigt_GPa: list[float]) -> float:
    """p = -trace(σ)/3 (GPa) of a Voigt stress in ASE's sign convention (GPa; tension positive)."""
    return -sum(stress_voigt_GPa[:3]) / 3


def volume_shift(v_old_A3: float, delta_p_GPa: float, bulk_GPa: float) -> float:
    """First-order relaxed volume (Å³/atom) after the pressure at ``v_old_A3`` changed by ``delta_p_GPa`` (GPa),
    for bulk modulus ``bulk_GPa`` (GPa): V_old (1 + Δp/B)."""
    return v_old_A3 * (1 + delta_p_GPa / bulk_GPa)


def percent_off(volume_A3: float, reference_A3: float) -> float:
    """100 (V/V0 - 1), %."""
    return 100 * (volume_A3 / reference_A3 - 1)


def wien2k_bulk_GPa(element: str) -> float | None:
    """WIEN2k B0 (GPa) of ``element`` in ASE's dcdft collection (field ``wien2k_B``), None if absent."""
    from ase.collections import dcdft
    from ase.db import connect

    rows = list(connect(dcdft.filename).select(name=element))
    return float(rows[0].wien2k_B) if rows else None


def reference_record(element: str, root: Path = REFERENCES) -> dict[str, Any] | None:
    path = root / f"{element}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def used_candidate(reference: dict[str, Any]) -> dict[str, Any] | None:
    """The candidate entry of a reference_volumes record the workflow used (None when none relaxed)."""
    return next((c for c in reference.get("candidates", []) if c["key"] == reference.get("used")), None)


def applicable(reference: dict[str, Any]) -> bool:
    """A crystal with a relaxed volume per atom and a WIEN2k V0."""
    return (reference.get("used_kind") == "crystal" and reference.get("volume_per_atom_A3") is not None
            and reference.get("wien2k_V0_A3_per_atom") is not None)


def elements_cheapest_first(root: Path = REFERENCES) -> list[str]:
    """Elements with an applicable record, cheapest SCF first: the used candidate's relaxation wall time (s) per
    ionic step (an SCF's cost; a long relaxation of many steps, In's 7, is not an expensive SCF)."""
    found = []
    for path in sorted(root.glob("*.json")):
        reference = json.loads(path.read_text())
        if applicable(reference):
            used = used_candidate(reference)
            per_scf = float(used.get("wall_time_s") or 1e9) / max(1, int(used.get("n_ionic_steps") or 1))
            found.append((per_scf, reference["element"]))
    return [element for _, element in sorted(found)]


def subject_for(element: str, reference: dict[str, Any]) -> tuple[Subject, str]:
    """The workflow's candidate structure of ``element`` scaled isotropically to the record's volume per atom,
    and the candidate's library key as the workflow computes it today (to compare with the record's)."""
    from dftscreen.references import automatic_candidate_keys, delta_test_candidate, elemental_reference

    used = used_candidate(reference)
    candidate = delta_test_candidate(element) if used["candidate"] == "delta" else elemental_reference(element)
    keys = automatic_candidate_keys(element)
    key_now = keys[1] if used["candidate"] == "delta" and len(keys) > 1 else keys[0]
    target = float(reference["volume_per_atom_A3"])

    def build() -> Any:
        atoms = candidate.atoms.copy()
        factor = target * len(atoms) / atoms.get_volume()
        atoms.set_cell(atoms.cell * factor ** (1 / 3), scale_atoms=True)
        return atoms

    return Subject(element, build, candidate.description, candidate.kind), key_now


def record_path(element: str, point: tuple[float, float, float], root: Path = RECORDS) -> Path:
    return root / element / f"{point_name(*point)}.json"


def run_element(element: str, workdir: Path) -> None:
    """The SCFs of ``element`` not stored yet (every rank; rank 0 writes)."""
    from ase.parallel import parprint, world

    from dftscreen.io import atomic_write_json

    reference = reference_record(element)
    if reference is None or not applicable(reference):
        parprint(f"{element}: no applicable reference_volumes record", flush=True)
        return
    subject, key_now = subject_for(element, reference)
    for point in all_points():
        path = record_path(element, point)
        world.barrier()
        if path.is_file():
            continue
        txt = workdir / element / f"{point_name(*point)}.txt"
        if world.rank == 0:
            txt.parent.mkdir(parents=True, exist_ok=True)
        world.barrier()
        try:
            record = single_point(subject, *point, 1.0, txt)
        except Exception as exc:  # noqa: BLE001 - one failed SCF is a line, not the end of the run
            parprint(f"{element} {point_name(*point)}: failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            continue
        record.update({
            "element": element, "candidate": used_candidate(reference)["candidate"], "candidate_key": reference["used"],
            "candidate_key_now": key_now, "target_volume_per_atom_A3": reference["volume_per_atom_A3"],
            "wien2k_V0_A3_per_atom": reference["wien2k_V0_A3_per_atom"], "wien2k_B_GPa": wien2k_bulk_GPa(element),
        })
        if world.rank == 0:
            atomic_write_json(path, record)
        parprint(f"{element:3s} {point_name(*point):18s} E/atom {record['energy_per_atom_eV']:.6f} eV "
                 f"{record['scf_wall_s']:7.1f} s", flush=True)
    world.barrier()


# ---- from the stored records alone ---------------------------------------------------------


def element_estimate(records: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """p_old, p_new, Δp (GPa), dE/dE_cut (eV/eV) from one element's records by point name; None while one is missing."""
    names = [point_name(*p) for p in all_points()]
    if any(name not in records for name in names):
        return None
    old, new, low, high = (records[name] for name in names)
    derivative = (high["energy_eV"] - low["energy_eV"]) / (high["ecut_eV"] - low["ecut_eV"])
    raw = stress_GPa({"x": {"p": new}}, "x", "p", "raw")
    pulay = 2 / 3 * new["ecut_eV"] * derivative / new["volume_A3"] * GPA_PER_EV_PER_A3
    p_old = pressure_GPa(stress_GPa({"x": {"p": old}}, "x", "p", "estimate"))
    p_new = pressure_GPa([s + pulay if i < 3 else s for i, s in enumerate(raw)])
    return {"p_old_GPa": p_old, "p_new_GPa": p_new, "delta_p_GPa": p_new - p_old, "dedecut_eV_per_eV": derivative}


def load_element(element: str, root: Path = RECORDS) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((root / element).glob("*.json"))}


def short_description(description: str) -> str:
    """A candidate's description without its source: "bcc Fe (ASE reference state)" -> "bcc Fe (ASE)"."""
    short = description.replace(" (ASE reference state)", " (ASE)").replace(" (ASE dcdft collection)", "")
    return short.replace(" (3-atom primitive cell, ASE dcdft collection)", " (3 atoms)").replace(
        " (2-atom primitive cell, ASE dcdft collection)", " (2 atoms)").replace(" PBE structure", "")[:34]


def table_row(reference: dict[str, Any], records: dict[str, dict[str, Any]]) -> tuple[str, float | None, float | None]:
    """One line of the table, the old |diff| (%) and the new estimate's |diff| (%) (None when not finished)."""
    element, used = reference["element"], used_candidate(reference)
    v_old, v0 = reference["volume_per_atom_A3"], reference["wien2k_V0_A3_per_atom"]
    diff_old = percent_off(v_old, v0)
    estimate = element_estimate(records)
    bulk = next((r.get("wien2k_B_GPa") for r in records.values() if r.get("wien2k_B_GPa")), None)
    head = f"{element:<3} {short_description(used['description']):<34} {v_old:8.3f} {v0:8.3f} {diff_old:+7.2f}"
    if estimate is None or not bulk:
        return f"{head} {'-':>6} {'-':>7} {'-':>6} {'-':>8} {'-':>7}  {'pending' if not records else 'incomplete'}", \
            abs(diff_old), None
    v_new = volume_shift(v_old, estimate["delta_p_GPa"], bulk)
    diff_new = percent_off(v_new, v0)
    flag = f"FLAG > {FLAG_PERCENT} %" if abs(diff_new) > FLAG_PERCENT else ""
    return (f"{head} {estimate['p_old_GPa']:+6.2f} {estimate['delta_p_GPa']:+7.3f} {bulk:6.1f} {v_new:8.3f} "
            f"{diff_new:+7.2f}  {flag}",
            abs(diff_old), abs(diff_new))


def report(records_root: Path = RECORDS, references_root: Path = REFERENCES) -> str:
    """The table of every reference_volumes record (molecules and unrelaxed ones listed as not applicable).

    ``p old`` (GPa) is the old settings' pressure at the isotropically scaled start shape: near zero where the
    shape is fixed by symmetry (cubic), the residual of the unrelaxed c/a elsewhere (which Δp cancels to first order).
    """
    lines = [f"{'El':<3} {'structure':<34} {'V old':>8} {'V0 W2k':>8} {'diff %':>7} {'p old':>6} {'Δp GPa':>7} "
             f"{'B GPa':>6} "
             f"{'V new':>8} {'diff %':>7}  flag"]
    not_applicable, old_done, old_all, new_all, pending = [], [], [], [], []
    for path in sorted(references_root.glob("*.json")):
        reference = json.loads(path.read_text())
        if not applicable(reference):
            kind = reference.get("used_kind")
            why = "molecule" if kind == "molecule" else "no relaxed crystal" if kind is None or \
                reference.get("volume_per_atom_A3") is None else "no WIEN2k V0"
            not_applicable.append(f"{reference['element']} ({why})")
            continue
        line, diff_old, diff_new = table_row(reference, load_element(reference["element"], records_root))
        lines.append(line)
        old_all.append((diff_old, reference["element"]))
        if diff_new is None:
            pending.append(reference["element"])
        else:
            new_all.append((diff_new, reference["element"]))
            old_done.append((diff_old, reference["element"]))
    fmt = lambda pairs: "-" if not pairs else f"{max(pairs)[0]:.2f} % ({max(pairs)[1]})"  # noqa: E731
    flagged = sorted(el for diff, el in new_all if diff > FLAG_PERCENT)
    lines += [f"not applicable (no crystal volume): {', '.join(not_applicable) or '-'}",
              f"{len(new_all)} of {len(old_all)} elements estimated; pending: {' '.join(pending) or '-'}",
              f"max |diff| old standard: {fmt(old_all)} over all, {fmt(old_done)} over the estimated ones; "
              f"new estimate: {fmt(new_all)}",
              f"beyond {FLAG_PERCENT} % at the new settings: {', '.join(flagged) or 'none'}"]
    return "\n".join(lines)


def element_done(element: str) -> bool:
    return all(record_path(element, point).is_file() for point in all_points())


def deadline_after(start: dt.datetime, hhmm: str) -> dt.datetime:
    """The first ``hhmm`` (UTC) at or after ``start`` (a stop time past midnight lands on the next day)."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    deadline = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return deadline if deadline >= start else deadline + dt.timedelta(days=1)


def drive(stop_at: str | None, ranks: int) -> None:
    """One ``flock LOCK nice mpiexec`` per element, cheapest first; none started after ``stop_at`` (HH:MM UTC)."""
    start = dt.datetime.now(dt.timezone.utc)
    deadline = deadline_after(start, stop_at) if stop_at else None
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "bench")]))
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for element in elements_cheapest_first():
        if element_done(element):
            continue
        now = dt.datetime.now(dt.timezone.utc)
        if deadline and now >= deadline:
            print(f"stop: {now:%H:%M} UTC is past --stop-at {stop_at}", flush=True)
            break
        command = ["flock", LOCK, "nice", "-n", "5", "mpiexec", "--bind-to", "none", "-n", str(ranks),
                   sys.executable, "-m", "gpaw", "python", "-m", "delta_volume_shift", "--only", element]
        started = time.time()
        print(f"{now:%H:%M:%S} {element}: start", flush=True)
        subprocess.run(command, env=env, cwd=REPO, check=False)
        print(f"{element}: {time.time() - started:.0f} s (with waiting for the lock), done {element_done(element)}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="elements to compute in this (MPI) process")
    parser.add_argument("--drive", action="store_true", help="one mpiexec per element under the CPU lock")
    parser.add_argument("--stop-at", default=None, help="HH:MM (UTC): --drive starts no element after this")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/delta_volume_shift"), help="GPAW text output")
    parser.add_argument("--report", action="store_true", help="the table from the stored records only")
    args = parser.parse_args(argv)
    if args.report:
        print(report())
    elif args.drive:
        drive(args.stop_at, args.ranks)
        print(report(), flush=True)
    else:
        from dftscreen.dft import one_blas_thread_per_rank

        one_blas_thread_per_rank()
        for element in args.only or elements_cheapest_first():
            run_element(element, args.workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
