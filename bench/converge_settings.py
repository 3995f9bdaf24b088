"""Which DFT settings are converged where it matters, and no more (issue 32, item 1; not run in CI).

One factor at a time, at fixed geometry, against the tightest value of that factor
(the usual convergence study: cutoff, k-point density and smearing converge nearly
independently of each other):

``ecut``      cutoff 400 ... 1000 eV at the ``standard`` mesh (5.0 per Å⁻¹) and smearing
              (0.05 eV); reference 1000 eV. Every crystal also gets an SCF at cutoff + 20 eV
              for the computed cutoff derivative (below).
``k``         k-point density 2 ... 8 per Å⁻¹ at 600 eV, smearing 0.05 eV; reference 8.
``smearing``  Fermi-Dirac width 0.2 ... 0.02 eV at 600 eV and density 8; reference 0.02.

Each point is one SCF (GPAW, PBE, PW; the ``standard`` preset's SCF criteria; the legacy
calculator, which applies a Pulay correction) through the workflow's own translation of
settings (:func:`dftscreen.dft.attach_gpaw`), on a structure at fixed geometry (below,
source named beside each) or an elemental reference as the workflow builds it
(:func:`dftscreen.references.elemental_reference`, molecules at Γ as
:func:`dftscreen.references.reference_settings` makes them).

What is compared with the reference of each axis (``--report``; from the stored records alone):

- formation energy (meV/atom) of every compound whose elements are all in the set;
- energy difference between polymorphs (meV/atom): TiO2 rutile/anatase, ZnS zinc blende/wurtzite;
- band gap on the SCF mesh (eV; ASE's ``bandgap`` on the mesh eigenvalues);
- the stress error (GPa, largest |Δσ| component) and the equilibrium-volume error it implies,
  ΔV/V = Δp / B, with B from two reference SCFs (at V and 0.97 V, fixed shape:
  B = -V dp/dV); to first order, the volume a relaxation would end at moves by that much;
- on the ``ecut`` axis, three treatments of the Pulay stress: none (``raw``), GPAW's
  ``estimate`` from the setups (what every preset uses), and a ``computed`` one:
  σ_Pulay = (2/3) E_cut (dE/dE_cut) / V, with dE/dE_cut the forward difference of the
  total energy between E_cut and E_cut + 20 eV at the same geometry and mesh. GPAW applies
  this formula to the ``dedecut`` number one gives ``PW`` (gpaw/old/wavefunctions/pw.py,
  gpaw/old/stress.py), so the stored raw stress plus this term is what
  ``gpaw: {dedecut: <number>}`` would give, without a third SCF.

Then, per axis, the cheapest value whose errors stay within the issue's tolerances for
every structure computed: formation energy 5 meV/atom, polymorph difference 3 meV/atom,
volume 0.5 %, gap 0.05 eV, stress within ``--stress-threshold-GPa`` (the ``standard``
preset's 0.5 GPa).

Records (one JSON per SCF, atomic; a rerun skips the SCFs already stored, so a killed
run resumes; ``--only`` and ``--axes`` select; the order below is the priority):
``bench/records/converge_settings/<structure>/e<ecut>_k<density>_s<smearing>[_V<scale>].json``.

Run under MPI from the project root (rank 0 writes; every rank decides from the same
files, behind a barrier)::

    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONPATH=src:bench OMP_NUM_THREADS=1 \\
        flock /tmp/dftscreen-cpu.lock nice -n 19 mpiexec --bind-to none -n 2 \\
        .venv/bin/python -m gpaw python -m converge_settings --axes ecut [--only MgGeO3 MgO]
    .venv/bin/python bench/converge_settings.py --report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RECORDS = REPO / "bench" / "records" / "converge_settings"
#: The issue's tolerances (formation meV/atom, polymorph meV/atom, volume %, gap eV).
TOLERANCES = {"formation_meV": 5.0, "polymorph_meV": 3.0, "volume_percent": 0.5, "gap_eV": 0.05}
#: Cutoff step (eV) of the forward difference dE/dE_cut.
DEDECUT_STEP_EV = 20.0
#: Axis -> (values, fixed (ecut eV, k density per Å⁻¹, smearing eV) with None where the axis varies).
AXES: dict[str, tuple[tuple[float, ...], tuple[float | None, float | None, float | None]]] = {
    "ecut": ((400.0, 500.0, 600.0, 700.0, 800.0, 1000.0), (None, 5.0, 0.05)),
    "k": ((2.0, 3.0, 4.0, 5.0, 6.0, 8.0), (600.0, None, 0.05)),
    "smearing": ((0.2, 0.1, 0.05, 0.02), (600.0, 8.0, None)),
}
#: Coarse k-point density (per Å⁻¹) and the cutoffs (eV) at which the cell's dE/dE_cut is computed again:
#: whether two cheap SCFs on a coarse mesh give the derivative the preset's mesh gives.
COARSE_DERIVATIVE = (2.0, (600.0, 700.0, 800.0))
#: A candidate for a cheaper ``standard``: 700 eV with the computed Pulay correction (its coarse
#: derivative points above), and the k-point density (per Å⁻¹) an insulator would get; metals keep 5.0.
CANDIDATE = (700.0, 3.0, 0.05)
#: Mesh gap (eV) at today's ``standard`` point above which a structure counts as an insulator for CANDIDATE
#: (Si, PBE gap 0.6 eV, is 4.8 meV/atom off at k 3.0: small gaps need the denser mesh).
INSULATOR_GAP_EV = 1.0
#: SCFs of a typical relaxation (ionic steps from the ML geometry, bench/README.md "What ML pre-relaxation
#: saves"), over which the two coarse derivative SCFs are spread in the candidate's cost.
SCFS_PER_RELAXATION = 6
#: Volume scale of the second reference SCF for the bulk modulus (fixed shape).
BULK_MODULUS_SCALE = 0.97
GPA_PER_EV_PER_A3 = 160.21766208


@dataclass(frozen=True)
class Subject:
    """One structure of the study: a compound at fixed geometry or an elemental reference."""

    name: str
    build: Callable[[], Any]  # -> ase.Atoms (initial magnetic moments set)
    source: str
    kind: str = "crystal"  # or "molecule"


def _crystal(symbols: str, basis: list[list[float]], spacegroup: int, cellpar: list[float]) -> Callable[[], Any]:
    def build() -> Any:
        from ase.spacegroup import crystal

        from dftscreen.settings import initial_magmoms

        atoms = crystal(symbols, basis=basis, spacegroup=spacegroup, cellpar=cellpar, primitive_cell=True)
        atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
        return atoms

    return build


def _perov5(number: int) -> Callable[[], Any]:
    def build() -> Any:
        from pymatgen.core import Structure

        from dftscreen.dft import structure_to_atoms

        cif = SHARED / "reference" / "perov5_sample50" / f"perov5_{number}.cif"
        return structure_to_atoms(Structure.from_file(cif))

    return build


def _element(symbol: str) -> Subject:
    from dftscreen.references import elemental_reference

    reference = elemental_reference(symbol)
    return Subject(symbol, lambda: reference.atoms.copy(), reference.description, reference.kind)


def compounds() -> list[Subject]:
    """The compounds, in priority order; experimental room-temperature structures unless said."""
    rocksalt = [[0, 0, 0], [0.5, 0.5, 0.5]]

    def cubic(a: float) -> list[float]:
        return [a, a, a, 90, 90, 90]

    def tetragonal(a: float, c: float) -> list[float]:
        return [a, a, c, 90, 90, 90]

    return [
        Subject("MgGeO3", _perov5(16100), "perov_5 16100 (CMR ABX3, Castelli et al. 2012): 'standard''s stress case"),
        Subject("MgO", _crystal("MgO", rocksalt, 225, cubic(4.212)), "rocksalt, a = 4.212 Å (Wyckoff)"),
        Subject("TiO2-rutile", _crystal("TiO", [[0, 0, 0], [0.3048, 0.3048, 0]], 136, tetragonal(4.594, 2.959)),
                "rutile, Burdett et al., JACS 109, 3639 (1987)"),
        Subject("TiO2-anatase", _crystal("TiO", [[0, 0, 0], [0, 0, 0.2081]], 141, tetragonal(3.785, 9.514)),
                "anatase, Burdett et al. (1987)"),
        Subject("NaCl", _crystal("NaCl", rocksalt, 225, cubic(5.640)), "rocksalt, a = 5.640 Å"),
        Subject("LiF", _crystal("LiF", rocksalt, 225, cubic(4.027)), "rocksalt, a = 4.027 Å"),
        Subject("ZnS-zincblende", _crystal("ZnS", [[0, 0, 0], [0.25, 0.25, 0.25]], 216, cubic(5.409)),
                "zinc blende, a = 5.409 Å"),
        Subject("ZnS-wurtzite", _crystal("ZnS", [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.375]], 186,
                                         [3.811, 3.811, 6.234, 90, 90, 120]),
                "wurtzite, a = 3.811, c = 6.234 Å, u = 0.375"),
        Subject("CaTiO3-cubic", _crystal("CaTiO", [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]], 221, cubic(3.895)),
                "cubic perovskite, a = 3.895 Å (high-temperature phase)"),
    ]


#: Elements the compounds need (their formation energies) and the plain elements of the study
#: (Al: a metal, Fe: a magnetic metal, Si: a semiconductor), in priority order.
ELEMENTS = ("Mg", "Ge", "O", "Ti", "Na", "Cl", "Li", "F", "Al", "Si", "Fe", "Ca", "Zn")
#: Elements left out, and why (ZnS then has its polymorph difference only).
LEFT_OUT = {"S": "alpha-S has 32 atoms: hours at 1000 eV on 2 cores"}
POLYMORPHS = (("TiO2-rutile", "TiO2-anatase"), ("ZnS-zincblende", "ZnS-wurtzite"))


def subjects() -> list[Subject]:
    """Compounds first, each followed by the elements it needs that are not in yet (priority order)."""
    from ase.formula import Formula

    ordered: list[Subject] = []
    seen: set[str] = set()
    for compound in compounds():
        ordered.append(compound)
        for symbol in Formula(compound.name.split("-")[0]).count():
            if symbol not in seen and symbol not in LEFT_OUT:
                seen.add(symbol)
                ordered.append(_element(symbol))
    ordered += [_element(symbol) for symbol in ELEMENTS if symbol not in seen]
    return ordered


def point_name(ecut: float, k: float, smearing: float, scale: float = 1.0) -> str:
    name = f"e{ecut:g}_k{k:g}_s{smearing:g}"
    return name + (f"_V{scale:g}" if scale != 1.0 else "")


def points(
    subject: Subject, axes: list[str], energies_only: bool = False
) -> list[tuple[float, float, float, float]]:
    """(ecut eV, k density, smearing eV, volume scale) of every SCF ``subject`` needs on ``axes``.

    ``energies_only``: the axes' own values only (enough for energies, formation energies and
    polymorph differences), none of the stress points (cutoff + 20 eV, coarse mesh, 0.97 V, candidate).
    """
    wanted: list[tuple[float, float, float, float]] = []
    for axis in axes:
        values, fixed = AXES[axis]
        if axis == "k" and subject.kind == "molecule":
            continue  # Γ only: the k density does not enter
        for value in values:
            ecut, k, smearing = (value if f is None else f for f in fixed)
            wanted.append((ecut, k, smearing, 1.0))
            if energies_only:
                continue
            if axis == "ecut":
                wanted.append((ecut + DEDECUT_STEP_EV, k, smearing, 1.0))
        if subject.kind == "crystal" and axis == "ecut" and not energies_only:
            wanted.append((max(values), fixed[1], fixed[2], BULK_MODULUS_SCALE))
            coarse_k, cutoffs = COARSE_DERIVATIVE
            wanted += [(ecut + step, coarse_k, fixed[2], 1.0) for ecut in cutoffs for step in (0.0, DEDECUT_STEP_EV)]
            wanted.append((*CANDIDATE, 1.0))
    return list(dict.fromkeys(wanted))


def single_point(subject: Subject, ecut: float, k: float, smearing: float, scale: float, txt: Path) -> dict[str, Any]:
    """One SCF (every rank); returns the record rank 0 writes."""
    import numpy as np
    from ase.units import Ha
    from gpaw import __version__ as gpaw_version

    from dftscreen import properties
    from dftscreen.dft import attach_gpaw
    from dftscreen.provenance import dftscreen_version
    from dftscreen.references import reference_settings
    from dftscreen.settings import resolve_settings

    settings = resolve_settings("standard", {"gpaw": {"ecut_eV": ecut, "kpt_density_per_A": k, "smearing_eV": smearing,
                                                     "dedecut": "estimate"}})
    gpaw_settings = reference_settings(settings, subject.kind)["gpaw"]
    atoms = subject.build()
    if scale != 1.0:
        atoms.set_cell(atoms.cell * scale ** (1 / 3), scale_atoms=True)
    calc = attach_gpaw(atoms, gpaw_settings, txt)
    start = time.perf_counter()
    energy = float(atoms.get_potential_energy())
    stress = atoms.get_stress(voigt=True) if subject.kind == "crystal" else None
    wall = time.perf_counter() - start
    volume = float(atoms.get_volume())
    pulay_estimate = float(calc.wfs.dedepsilon) * Ha / volume  # eV/Å³, added by GPAW to the diagonal
    eigenvalues = properties.eigenvalues_eV(calc)
    gap = properties.band_gap_info(eigenvalues, np.asarray(calc.get_ibz_k_points()), float(calc.get_fermi_level()),
                                   ["mesh"] * eigenvalues.shape[1])["band_gap_eV"]
    moment = float(calc.get_magnetic_moment()) if atoms.get_initial_magnetic_moments().any() else 0.0
    return {
        "structure": subject.name, "source": subject.source, "kind": subject.kind,
        "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
        "ecut_eV": ecut, "kpt_density_per_A": k, "smearing_eV": smearing, "volume_scale": scale,
        "kpts": [int(n) for n in calc.wfs.kd.N_c], "n_ibz_kpoints": int(len(calc.get_ibz_k_points())),
        "energy_eV": energy, "energy_per_atom_eV": energy / len(atoms), "volume_A3": volume,
        "stress_with_estimate_GPa": None if stress is None else [float(s) * GPA_PER_EV_PER_A3 for s in stress],
        "pulay_estimate_GPa": pulay_estimate * GPA_PER_EV_PER_A3,
        "band_gap_on_mesh_eV": float(gap), "magnetic_moment_muB": moment,
        "scf_wall_s": wall, "mpi_ranks": int(calc.world.size), "load_average_1min": os.getloadavg()[0],
        "gpaw_version": gpaw_version, "dftscreen_version": dftscreen_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run(axes: list[str], only: list[str] | None, workdir: Path, energies_only: bool = False) -> None:
    from ase.parallel import parprint, world

    from dftscreen.dft import one_blas_thread_per_rank
    from dftscreen.io import atomic_write_json

    one_blas_thread_per_rank()
    for subject in subjects():
        if only and subject.name not in only:
            continue
        for ecut, k, smearing, scale in points(subject, axes, energies_only):
            name = point_name(ecut, k, smearing, scale)
            path = RECORDS / subject.name / f"{name}.json"
            world.barrier()  # every rank sees the same files: rank 0 wrote the last one before this
            if path.is_file():
                continue
            txt = workdir / subject.name / f"{name}.txt"
            if world.rank == 0:
                txt.parent.mkdir(parents=True, exist_ok=True)
            world.barrier()
            try:
                record = single_point(subject, ecut, k, smearing, scale, txt)
            except Exception as exc:  # noqa: BLE001 - one failed SCF is a line, not the end of the study
                parprint(f"{subject.name} {name}: failed: {type(exc).__name__}: {str(exc).strip()[:300]}", flush=True)
                continue
            if world.rank == 0:
                atomic_write_json(path, record)
            parprint(f"{subject.name:15s} {name:22s} E/atom {record['energy_per_atom_eV']:.6f} eV"
                     f"  {record['scf_wall_s']:6.1f} s", flush=True)
        world.barrier()


# ---- report: from the stored records alone ---------------------------------------------------

Records = dict[str, dict[str, dict[str, Any]]]  # structure -> point name -> record


def load_records(root: Path) -> Records:
    records: Records = {}
    for path in sorted(root.glob("*/*.json")):
        records.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
    return records


def axis_point(axis: str, value: float) -> str:
    fixed = AXES[axis][1]
    ecut, k, smearing = (value if f is None else f for f in fixed)
    return point_name(ecut, k, smearing)


def reference_value(axis: str) -> float:
    """The tightest value of ``axis``: the largest cutoff or density, the smallest smearing."""
    values = AXES[axis][0]
    return min(values) if axis == "smearing" else max(values)


def cheapest_first(axis: str) -> list[float]:
    values = AXES[axis][0]
    return sorted(values, reverse=axis == "smearing")


def dedecut_own(points: dict[str, dict[str, Any]], record: dict[str, Any]) -> float | None:
    """dE/dE_cut (eV/eV, the whole cell) of ``record``'s structure: forward difference over DEDECUT_STEP_EV."""
    shifted = points.get(point_name(record["ecut_eV"] + DEDECUT_STEP_EV, record["kpt_density_per_A"],
                                    record["smearing_eV"]))
    return None if shifted is None else (shifted["energy_eV"] - record["energy_eV"]) / DEDECUT_STEP_EV


def dedecut_from_elements(records: Records, record: dict[str, Any]) -> float | None:
    """dE/dE_cut (eV/eV) of ``record``'s cell as the sum of its atoms' elemental derivatives (per atom).

    The cutoff derivative comes from the hard core region of each atom's PAW setup, so it should
    carry over from the element's reference to the compound; the report shows how well it does.
    """
    from ase.formula import Formula

    total = 0.0
    name = point_name(record["ecut_eV"], record["kpt_density_per_A"], record["smearing_eV"])
    for symbol, count in Formula(record["formula"]).count().items():
        element = records.get(symbol, {}).get(name)
        derivative = None if element is None else dedecut_own(records[symbol], element)
        if derivative is None:
            return None
        total += count * derivative / element["n_atoms"]
    return total


def dedecut_estimate(record: dict[str, Any]) -> float:
    """GPAW's estimate of dE/dE_cut (eV/eV) for ``record``, back from the Pulay stress it added."""
    return record["pulay_estimate_GPa"] / GPA_PER_EV_PER_A3 * record["volume_A3"] * 1.5 / record["ecut_eV"]


#: Treatments of the Pulay stress: none, GPAW's estimate, the cell's own computed derivative,
#: and the derivative summed over the atoms from the elemental references' own.
TREATMENTS = ("raw", "estimate", "computed", "elements")


def stress_GPa(records: Records, structure: str, name: str, treatment: str) -> list[float] | None:
    """Voigt stress (GPa) of one point with the Pulay treatment of :data:`TREATMENTS`."""
    points = records.get(structure, {})
    record = points.get(name)
    if record is None or record["stress_with_estimate_GPa"] is None:
        return None
    stress = list(record["stress_with_estimate_GPa"])
    if treatment == "estimate":
        return stress
    raw = [s - record["pulay_estimate_GPa"] if i < 3 else s for i, s in enumerate(stress)]
    if treatment == "raw":
        return raw
    dedecut = dedecut_own(points, record) if treatment == "computed" else dedecut_from_elements(records, record)
    if dedecut is None:
        return None
    pulay = 2 / 3 * record["ecut_eV"] * dedecut / record["volume_A3"] * GPA_PER_EV_PER_A3
    return [s + pulay if i < 3 else s for i, s in enumerate(raw)]


def bulk_modulus_GPa(records: Records, structure: str) -> float | None:
    """B = -V dp/dV (GPa) from the reference cutoff at V and BULK_MODULUS_SCALE x V (estimate treatment)."""
    ecut, k, smearing = max(AXES["ecut"][0]), AXES["ecut"][1][1], AXES["ecut"][1][2]
    at_v = stress_GPa(records, structure, point_name(ecut, k, smearing), "estimate")
    at_scaled = stress_GPa(records, structure, point_name(ecut, k, smearing, BULK_MODULUS_SCALE), "estimate")
    if at_v is None or at_scaled is None:
        return None
    pressure = [-sum(s[:3]) / 3 for s in (at_v, at_scaled)]
    return (pressure[1] - pressure[0]) / (1 - BULK_MODULUS_SCALE)


def element_point(records: Records, symbol: str, compound: dict[str, Any]) -> dict[str, Any] | None:
    """The element's record at ``compound``'s settings; a molecule (Γ only) at any k density of the same
    cutoff and smearing, since its k density does not enter."""
    points = records.get(symbol, {})
    name = point_name(compound["ecut_eV"], compound["kpt_density_per_A"], compound["smearing_eV"])
    if name in points:
        return points[name]
    for record in points.values():
        if (record["kind"] == "molecule" and record["volume_scale"] == 1.0 and record["ecut_eV"] == compound["ecut_eV"]
                and record["smearing_eV"] == compound["smearing_eV"]):
            return record
    return None


def formation_from(compound: dict[str, Any], element_record: Callable[[str], dict[str, Any] | None]) -> float | None:
    """Formation energy (meV/atom) of ``compound``'s record against ``element_record(symbol)``'s energies
    per atom; None for an element or when an element's record is missing."""
    from ase.formula import Formula

    counts = Formula(compound["formula"]).count()
    if len(counts) < 2:
        return None
    total = compound["energy_eV"]
    for symbol, count in counts.items():
        element = element_record(symbol)
        if element is None:
            return None
        total -= count * element["energy_per_atom_eV"]
    return 1000 * total / compound["n_atoms"]


def formation_meV(records: Records, compound: str, name: str) -> float | None:
    """Formation energy (meV/atom) of ``compound`` at point ``name``, or None when a part is missing."""
    record = records.get(compound, {}).get(name)
    return None if record is None else formation_from(record, lambda symbol: element_point(records, symbol, record))


def axis_errors(records: Records, axis: str, value: float, treatment: str) -> dict[str, dict[str, float]]:
    """Per metric, structure -> |error| at ``value`` against the axis's reference (units in the metric's name)."""
    here, ref = axis_point(axis, value), axis_point(axis, reference_value(axis))
    errors: dict[str, dict[str, float]] = {metric: {} for metric in METRICS}
    for structure, points in records.items():
        if here not in points or ref not in points:
            continue
        errors["energy_meV"][structure] = 1000 * abs(points[here]["energy_per_atom_eV"]
                                                     - points[ref]["energy_per_atom_eV"])
        formation = (formation_meV(records, structure, here), formation_meV(records, structure, ref))
        if None not in formation:
            errors["formation_meV"][structure] = abs(formation[0] - formation[1])
        gaps = (points[here]["band_gap_on_mesh_eV"], points[ref]["band_gap_on_mesh_eV"])
        if axis != "k":  # on the k axis the mesh gap says which k-points the mesh holds, not convergence
            errors["gap_eV"][structure] = 0.0 if max(gaps) < METAL_GAP_EV else abs(gaps[0] - gaps[1])
        reference_treatment = "computed" if axis == "ecut" else "estimate"
        stresses = (stress_GPa(records, structure, here, treatment if axis == "ecut" else "estimate"),
                    stress_GPa(records, structure, ref, reference_treatment))
        if None in stresses:
            continue
        delta = [a - b for a, b in zip(*stresses)]
        errors["stress_GPa"][structure] = max(abs(d) for d in delta)
        bulk = bulk_modulus_GPa(records, structure)
        if bulk:
            errors["volume_percent"][structure] = abs(-sum(delta[:3]) / 3 / bulk * 100)
    for first, second in POLYMORPHS:
        pair = [records.get(s, {}) for s in (first, second)]
        if all(here in p and ref in p for p in pair):
            difference = [pair[0][n]["energy_per_atom_eV"] - pair[1][n]["energy_per_atom_eV"] for n in (here, ref)]
            errors["polymorph_meV"][f"{first}/{second}"] = 1000 * abs(difference[0] - difference[1])
    return errors


#: The metrics of :func:`axis_errors`, in the order of the tables; ``energy_meV`` (the structure's own
#: energy per atom) has no tolerance: it shows which part of a formation-energy error is the compound's.
METRICS = ("energy_meV", "formation_meV", "polymorph_meV", "gap_eV", "stress_GPa", "volume_percent")
#: Mesh gaps below this (eV) at both settings count as equal: a metal, or PBE's near-zero gap of Ge,
#: whose sign on the mesh flips with the smearing.
METAL_GAP_EV = 0.1


def within(errors: dict[str, dict[str, float]], stress_threshold: float) -> bool:
    limits = {**TOLERANCES, "stress_GPa": stress_threshold}
    return all(error <= limits[metric] for metric, by_structure in errors.items() if metric in limits
               for error in by_structure.values())


def worst(by_structure: dict[str, float]) -> str:
    if not by_structure:
        return "-"
    structure = max(by_structure, key=by_structure.__getitem__)
    return f"{by_structure[structure]:.3g} ({structure})"


def summary_lines(records: Records, axis: str, treatments: tuple[str, ...], stress_threshold: float) -> list[str]:
    """Per value and Pulay treatment: the largest |error| of each metric (worst structure), within all or not."""
    lines = ["value  pulay     n  energy meV/atom | formation meV/atom | polymorph meV/atom | gap eV | stress GPa"
             " | volume % | ok"]
    cheapest: dict[str, float | None] = {t: None for t in treatments}
    for value in cheapest_first(axis):
        for treatment in treatments:
            errors = axis_errors(records, axis, value, treatment)
            n = len(errors["energy_meV"])
            if not n:
                continue
            # A treatment that could not give a stress where the plain stress exists is not "within".
            complete = len(errors["stress_GPa"]) == len(axis_errors(records, axis, value, "raw")["stress_GPa"])
            ok = complete and within(errors, stress_threshold)
            if ok and cheapest[treatment] is None:
                cheapest[treatment] = value
            cells = " | ".join(worst(errors[m]) for m in METRICS)
            lines.append(f"{value:<6g} {treatment:8s} {n:2d}  {cells} | {'yes' if ok else 'no'}")
    for treatment, value in cheapest.items():
        found = "none" if value is None else f"{value:g}"
        lines.append(f"cheapest {axis} within every tolerance ({treatment}): {found} (structures computed there)")
    return lines


def detail_lines(records: Records, axis: str, metric: str, treatment: str) -> list[str]:
    """One row per structure: the |error| of ``metric`` at each value of ``axis`` (cheapest first)."""
    values = cheapest_first(axis)
    by_value = {value: axis_errors(records, axis, value, treatment)[metric] for value in values}
    structures = sorted({s for errors in by_value.values() for s in errors})
    if not structures:
        return []
    lines = [f"{metric} ({treatment})".ljust(30) + "".join(f"{value:>9g}" for value in values)]
    for structure in structures:
        cells = "".join(f"{by_value[v][structure]:9.3f}" if structure in by_value[v] else f"{'-':>9s}" for v in values)
        lines.append(structure.ljust(30) + cells)
    return lines


def report(records: Records, stress_threshold: float) -> str:
    lines = [f"# {sum(len(p) for p in records.values())} SCFs of {len(records)} structures; tolerances {TOLERANCES},"
             f" stress {stress_threshold} GPa; |error| against each axis's tightest value"]
    for axis in AXES:
        treatments = TREATMENTS if axis == "ecut" else ("estimate",)
        lines.append(f"\n## axis {axis} (reference {reference_value(axis):g}; fixed {AXES[axis][1]})")
        lines += summary_lines(records, axis, treatments, stress_threshold)
        for metric in METRICS:
            for treatment in treatments if metric in ("stress_GPa", "volume_percent") else treatments[:1]:
                lines += [""] + detail_lines(records, axis, metric, treatment)
    return "\n".join(lines + [""] + dedecut_lines(records) + [""] + coarse_derivative_lines(records) + [""]
                     + candidate_lines(records))


def coarse_derivative_lines(records: Records) -> list[str]:
    """Per crystal and cutoff of COARSE_DERIVATIVE: dE/dE_cut on the coarse mesh over the ecut axis mesh's."""
    coarse_k, cutoffs = COARSE_DERIVATIVE
    mesh_k, smearing = AXES["ecut"][1][1], AXES["ecut"][1][2]
    lines = [f"## dE/dE_cut on the k {coarse_k:g} mesh over that on the k {mesh_k:g} mesh",
             "structure".ljust(16) + "".join(f"{ecut:>8g}" for ecut in cutoffs)]
    for structure, points in sorted(records.items()):
        cells = []
        for ecut in cutoffs:
            pair = [[points.get(point_name(ecut + step, k, smearing)) for step in (0.0, DEDECUT_STEP_EV)]
                    for k in (coarse_k, mesh_k)]
            if any(None in p for p in pair):
                cells.append(f"{'-':>8s}")
                continue
            coarse, mesh = ((b["energy_eV"] - a["energy_eV"]) for a, b in pair)
            cells.append(f"{coarse / mesh:8.2f}")
        if any(c.strip() != "-" for c in cells):
            lines.append(structure.ljust(16) + "".join(cells))
    return lines


def candidate_formation_meV(records: Records, compound: dict[str, Any], ecut: float) -> float | None:
    """Formation energy (meV/atom) of ``compound``'s record with every element at ``ecut`` and the ecut axis's mesh."""
    name = point_name(ecut, AXES["ecut"][1][1], AXES["ecut"][1][2])
    return formation_from(compound, lambda symbol: records.get(symbol, {}).get(name))


def candidate_row(records: Records, structure: str) -> str | None:
    """Today's ``standard`` point against :data:`CANDIDATE` for one crystal (see :func:`candidate_lines`)."""
    points = records[structure]
    ecut_today, k_today, smearing = 800.0, AXES["ecut"][1][1], AXES["ecut"][1][2]
    today, converged = points.get(point_name(ecut_today, k_today, smearing)), points.get(axis_point("ecut", 1000.0))
    if today is None or converged is None or today["kind"] != "crystal":
        return None
    insulator = today["band_gap_on_mesh_eV"] > INSULATOR_GAP_EV
    ecut, k = CANDIDATE[0], CANDIDATE[1] if insulator else k_today
    candidate = points.get(point_name(ecut, k, smearing))
    coarse = [points.get(point_name(ecut + step, COARSE_DERIVATIVE[0], smearing)) for step in (0.0, DEDECUT_STEP_EV)]
    if candidate is None or None in coarse:
        return None
    derivative = (coarse[1]["energy_eV"] - coarse[0]["energy_eV"]) / DEDECUT_STEP_EV
    raw = stress_GPa({structure: {"x": candidate}}, structure, "x", "raw")
    pulay = 2 / 3 * ecut * derivative / candidate["volume_A3"] * GPA_PER_EV_PER_A3
    stresses = {"today": stress_GPa(records, structure, point_name(ecut_today, k_today, smearing), "estimate"),
                "candidate": [x + pulay if i < 3 else x for i, x in enumerate(raw)],
                "converged": stress_GPa(records, structure, axis_point("ecut", 1000.0), "computed")}
    if stresses["converged"] is None:
        return None
    errors = {key: max(abs(a - b) for a, b in zip(stresses[key], stresses["converged"]))
              for key in ("today", "candidate")}
    formation = [candidate_formation_meV(records, record, e) for record, e in
                 ((today, ecut_today), (candidate, ecut), (converged, 1000.0))]
    formation_text = "-" if None in formation else (f"{formation[1] - formation[0]:+7.2f} "
                                                    f"{abs(formation[0] - formation[2]):5.2f}/"
                                                    f"{abs(formation[1] - formation[2]):5.2f}")
    cost = (candidate["n_ibz_kpoints"] * ecut ** 1.5) / (today["n_ibz_kpoints"] * ecut_today ** 1.5)
    coarse_s = sum(c["scf_wall_s"] for c in coarse)
    wall = (SCFS_PER_RELAXATION * candidate["scf_wall_s"] + coarse_s) / (SCFS_PER_RELAXATION * today["scf_wall_s"])
    return (f"{structure:16s} {'gap>=1eV' if insulator else 'gap<1eV':9s} k {k:g}  "
            f"{1000 * (candidate['energy_per_atom_eV'] - today['energy_per_atom_eV']):+8.2f}  {formation_text:>20s}  "
            f"{errors['today']:5.2f}/{errors['candidate']:5.2f}  "
            f"{today['n_ibz_kpoints']:4d}/{candidate['n_ibz_kpoints']:4d}"
            f"  {cost:5.2f}  {candidate['scf_wall_s'] / today['scf_wall_s']:5.2f}  {wall:5.2f}")


def candidate_lines(records: Records) -> list[str]:
    """Per crystal: today's ``standard`` point (800 eV, GPAW's estimate, density 5.0) against CANDIDATE."""
    lines = [f"## today's standard (800 eV, estimate, k 5.0) against a candidate ({CANDIDATE[0]:g} eV, computed"
             f" dE/dE_cut on a k {COARSE_DERIVATIVE[0]:g} mesh, k {CANDIDATE[1]:g} for a mesh gap above"
             f" {INSULATOR_GAP_EV} eV at today's point, else 5.0)",
             "structure        kind      mesh  ΔE meV/atom  ΔEf meV/atom |err| today/cand  stress err GPa today/cand"
             "  IBZ k today/cand  k x Ecut^1.5 ratio  SCF wall ratio  relaxation ratio (6 SCFs + 2 coarse)"]
    lines += [row for row in (candidate_row(records, s) for s in sorted(records)) if row]
    return lines


def dedecut_lines(records: Records) -> list[str]:
    """Per crystal and cutoff: dE/dE_cut (eV/eV) of the cell, and the elements' sum and GPAW's estimate over it."""
    ecut_values = [v for v in cheapest_first("ecut") if v != reference_value("ecut")]
    lines = ["## dE/dE_cut of the cell (eV/eV): own forward difference; elements' sum / own; GPAW estimate / own",
             "structure".ljust(16) + "".join(f"{v:>24g}" for v in ecut_values)]
    for structure in sorted(records):
        cells = []
        for value in ecut_values:
            record = records[structure].get(axis_point("ecut", value))
            own = None if record is None else dedecut_own(records[structure], record)
            if own is None or record["stress_with_estimate_GPa"] is None:
                cells.append(f"{'-':>24s}")
                continue
            elements = dedecut_from_elements(records, record)
            ratio = "-" if elements is None else f"{elements / own:.2f}"
            cells.append(f"{own:>10.2e} {ratio:>6s} {dedecut_estimate(record) / own:6.2f}")
        lines.append(structure.ljust(16) + "".join(cells))
    return lines

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axes", nargs="+", choices=sorted(AXES), default=list(AXES))
    parser.add_argument("--only", nargs="+", help="structures (names as in the records) to compute")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/converge_settings"), help="GPAW text output")
    parser.add_argument("--report", action="store_true", help="tables from the stored records only")
    parser.add_argument("--energies-only", action="store_true", help="no stress points (see points())")
    parser.add_argument("--stress-threshold-GPa", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.report:
        print(report(load_records(RECORDS), args.stress_threshold_GPa))
        return 0
    run(args.axes, args.only, args.workdir, args.energies_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
