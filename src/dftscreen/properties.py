"""Single-point GPAW calculation on the relaxed structure: energy, band gap, moment.

The band gap is the Kohn-Sham gap (ASE's ``bandgap`` helper on GPAW's
eigenvalues, both spins when spin-polarized; 0 for metals) from the SCF on a
k-mesh that may be denser than the relaxation's, joined with a non-self-
consistent band-structure path through the Brillouin zone's special points
where the preset affords it, so that a gap whose edges fall between mesh
points is not overestimated. The k-points of the edges and whether they came
from the mesh or the path are reported.

Run under MPI as ``mpiexec -n N gpaw python -m dftscreen.properties ...``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.dft.bandgap import bandgap
from ase.parallel import world

from dftscreen import __version__, status_codes
from dftscreen.cif_reader import read_structure
from dftscreen.dft import (
    attach_gpaw,
    common_arguments,
    failure_reason,
    one_blas_thread_per_rank,
    parse_settings,
    report_traceback,
    structure_to_atoms,
    write_on_master,
)
from dftscreen.io import read_json

#: A total moment below this (µB per cell) counts as non-magnetic.
NONMAGNETIC_THRESHOLD_MUB = 0.05
#: A site's moment (µB, integrated in its PAW sphere) below this counts as none when the
#: magnetic ordering is classified: PAW spheres of non-magnetic atoms pick up a few 0.01 µB.
SITE_MOMENT_THRESHOLD_MUB = 0.1


def start_from_relaxed_moments(atoms: Atoms, site_moments_muB: list[float] | None) -> bool:
    """Start the single point from the relaxed state's site moments (µB), signs included.

    The relaxation may end in another magnetic state than the default start (every
    magnetic atom up): the Cr reference relaxes as an antiferromagnet, from which a
    ferromagnetic start collapses to a non-magnet, so its properties were those of
    another state. Only when some site keeps at least :data:`SITE_MOMENT_THRESHOLD_MUB`
    and the moments are one per atom; otherwise the default start stays. Returns
    whether the relaxed moments were used.
    """
    if not site_moments_muB or len(site_moments_muB) != len(atoms):
        return False
    if max(abs(float(m)) for m in site_moments_muB) < SITE_MOMENT_THRESHOLD_MUB:
        return False
    atoms.set_initial_magnetic_moments([float(m) for m in site_moments_muB])
    return True


def magnetic_ordering(atoms: Atoms, site_moments_muB: list[float]) -> str:
    """Collinear magnetic ordering from the site moments (µB): ``NM``, ``FM``, ``FiM`` or ``AFM``.

    pymatgen's :class:`CollinearMagneticStructureAnalyzer` (as the Materials Project
    classifies it), site moments below :data:`SITE_MOMENT_THRESHOLD_MUB` counted as zero, a
    total below :data:`NONMAGNETIC_THRESHOLD_MUB` (per cell) as compensated.
    An antiferromagnet has a total moment near zero, so the total alone calls it non-magnetic.
    """
    from pymatgen.analysis.magnetism import CollinearMagneticStructureAnalyzer
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(atoms)
    structure.add_site_property("magmom", [float(m) for m in site_moments_muB])
    # A total (sum of site moments) below the non-magnetic threshold is compensated: AFM, not FiM
    # (pymatgen's default, 1e-8 µB, calls a converged antiferromagnet's 1e-5 µB imbalance FiM).
    analyzer = CollinearMagneticStructureAnalyzer(
        structure, threshold=SITE_MOMENT_THRESHOLD_MUB, threshold_ordering=NONMAGNETIC_THRESHOLD_MUB
    )
    return str(analyzer.ordering.value)


def eigenvalues_eV(calc: Any) -> np.ndarray:
    """Kohn-Sham eigenvalues (eV) as an array of shape (spins, k-points, bands)."""
    nspins = calc.get_number_of_spins()
    nk = len(calc.get_ibz_k_points())
    return np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(nk)] for s in range(nspins)])


def band_gap_info(
    eigenvalues: np.ndarray, kpoints: np.ndarray, fermi_level_eV: float, sources: list[str]
) -> dict[str, Any]:
    """Gap (eV), direct gap (eV), and where the band edges are.

    ``eigenvalues`` (spins, k, bands) may join several k-point sets (the SCF
    mesh and a band path): edges between mesh points are then found on the
    path. ``kpoints`` are fractional (reciprocal cell), one per k; ``sources``
    says which set each k came from ("mesh" or "path"). A band crossing the
    Fermi level gives gap 0 (metal). Spin-polarized: the gap over both spins.
    """
    gap, vbm, cbm = bandgap(eigenvalues=eigenvalues, efermi=fermi_level_eV)
    direct_gap, _, _ = bandgap(eigenvalues=eigenvalues, efermi=fermi_level_eV, direct=True)
    info: dict[str, Any] = {
        "band_gap_eV": float(gap),
        "direct_band_gap_eV": float(direct_gap),
        "gap_is_direct": bool(gap > 0 and abs(gap - direct_gap) < 1e-6),
        "vbm_kpoint": None,
        "cbm_kpoint": None,
        "band_edges_from": None,
    }
    if gap > 0:
        # ASE returns (spin, k-index, band) of each edge.
        info["vbm_kpoint"] = [float(x) for x in kpoints[vbm[1]]]
        info["cbm_kpoint"] = [float(x) for x in kpoints[cbm[1]]]
        info["band_edges_from"] = f"{sources[vbm[1]]}/{sources[cbm[1]]}"
    return info


def band_path_eigenvalues(calc: Any, atoms: Atoms, npoints: int, txt: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Eigenvalues (eV) along the Bravais lattice's standard band path (ASE), non-self-consistently.

    Returns the eigenvalues (spins, k, bands), the fractional k-points and the path's labels.
    """
    path = atoms.cell.bandpath(npoints=npoints)
    path_calc = calc.fixed_density(kpts=path.kpts, symmetry="off", txt=str(txt))
    return eigenvalues_eV(path_calc), np.asarray(path.kpts), path.path


def gllbsc_gap(atoms: Atoms, gpaw_settings: dict[str, Any], txt: Path) -> dict[str, float]:
    """Band gap (eV) with GLLB-SC, including its derivative discontinuity.

    GLLB-SC gaps are much closer to experiment than PBE's and are what the CMR
    perovskite reference gaps were computed with. Uses GPAW's legacy calculator
    (the discontinuity comes from its response potential), 0.01 eV smearing,
    and the plane-wave cutoff and k-mesh of the PBE single point. Only for
    non-magnetic insulators: the caller checks.
    """
    gllb_atoms = atoms.copy()
    gllb_atoms.set_initial_magnetic_moments(None)
    settings = dict(gpaw_settings, xc="GLLBSC", smearing_eV=0.01, legacy_gpaw=True)
    calc = attach_gpaw(gllb_atoms, settings, txt=txt)
    gllb_atoms.get_potential_energy()
    homo, lumo = calc.get_homo_lumo()
    response = calc.hamiltonian.xc.response
    discontinuity_potential = response.calculate_discontinuity_potential(homo, lumo)
    ks_gap, discontinuity = response.calculate_discontinuity(discontinuity_potential)
    return {
        "band_gap_gllbsc_eV": float(ks_gap + discontinuity),
        "gllbsc_kohn_sham_gap_eV": float(ks_gap),
        "gllbsc_discontinuity_eV": float(discontinuity),
    }


def single_point(atoms: Atoms, settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run a GPAW SCF on ``atoms`` and return energy (eV), gap (eV) and moment (µB).

    The SCF uses ``settings['properties']['kpt_density_per_A']`` when given (a
    denser mesh than the relaxation's), and with ``band_path_npoints`` > 0 the
    gap also looks along the band path.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    options = settings.get("properties", {})
    gpaw_settings = dict(settings["gpaw"])
    if options.get("kpt_density_per_A"):
        gpaw_settings["kpt_density_per_A"] = options["kpt_density_per_A"]
    calc = attach_gpaw(atoms, gpaw_settings, txt=workdir / "properties_gpaw.txt")
    start = time.perf_counter()
    energy = float(atoms.get_potential_energy())
    spin_polarized = calc.get_number_of_spins() == 2
    magmom = float(calc.get_magnetic_moment()) if spin_polarized else 0.0
    site_moments = [float(m) for m in calc.get_magnetic_moments()] if spin_polarized else [0.0] * len(atoms)
    ordering = magnetic_ordering(atoms, site_moments)
    fermi = float(calc.get_fermi_level())
    eigenvalues = eigenvalues_eV(calc)
    kpoints = np.asarray(calc.get_ibz_k_points())
    sources = ["mesh"] * len(kpoints)
    record: dict[str, Any] = {"band_path": None}
    npoints = int(options.get("band_path_npoints", 0))
    if npoints > 0:
        path_eigenvalues, path_kpoints, labels = band_path_eigenvalues(
            calc, atoms, npoints, workdir / "properties_bandpath_gpaw.txt"
        )
        eigenvalues = np.concatenate([eigenvalues, path_eigenvalues], axis=1)
        kpoints = np.concatenate([kpoints, path_kpoints])
        sources += ["path"] * len(path_kpoints)
        record["band_path"] = labels
    record.update(
        energy_eV=energy,
        energy_per_atom_eV=energy / len(atoms),
        fermi_level_eV=fermi,
        magnetic_moment_muB=magmom,
        local_magnetic_moments_muB=site_moments,
        magnetic_ordering=ordering,
        # An antiferromagnet is magnetic although its total moment is zero.
        is_magnetic=abs(magmom) >= NONMAGNETIC_THRESHOLD_MUB or ordering != "NM",
        n_kpoints_irreducible=int(len(calc.get_ibz_k_points())),
        mpi_ranks=int(world.size),
    )
    record.update(band_gap_info(eigenvalues, kpoints, fermi, sources))
    if options.get("gllbsc"):
        if record["band_gap_eV"] == 0.0:
            record["gllbsc_note"] = "metal at the PBE level: no GLLB-SC gap computed"
        elif record["is_magnetic"]:
            record["gllbsc_note"] = "spin-polarized: GLLB-SC discontinuity not computed"
        else:
            record.update(gllbsc_gap(atoms, gpaw_settings, workdir / "properties_gllbsc_gpaw.txt"))
    record["wall_time_s"] = time.perf_counter() - start
    return record


def run(
    relax_json: Path,
    structure_id: str,
    settings: dict[str, Any],
    out_json: Path,
    workdir: Path,
) -> dict[str, Any]:
    """Compute properties of the relaxed structure recorded in ``relax_json``.

    A failed relaxation gives a record with status ``skipped``; a GPAW failure a
    record with status ``failed`` and a reason.
    """
    relaxed = read_json(relax_json)
    record: dict[str, Any] = {
        "structure_id": structure_id,
        "preset": settings.get("preset"),
        "dftscreen_version": __version__,
    }
    if relaxed.get("status") == status_codes.FAILED or not relaxed.get("relaxed_cif"):
        record.update(status=status_codes.SKIPPED, reason="no relaxed structure (relaxation failed)")
        write_on_master(out_json, record)
        return record
    try:
        structure, _ = read_structure(relax_json.parent / relaxed["relaxed_cif"])
        atoms = structure_to_atoms(structure)
        # relaxed.cif is written in P1 in the relaxation's atom order, so the moments line up.
        record["started_from_relaxed_moments"] = start_from_relaxed_moments(
            atoms, relaxed.get("local_magnetic_moments_muB"))
        record.update(single_point(atoms, settings, workdir))
        record.update(status=status_codes.DONE, reason="")
    except Exception as exc:
        report_traceback()
        record.update(status=status_codes.FAILED, reason=failure_reason(exc))
    write_on_master(out_json, record)
    return record


def main(argv: list[str] | None = None) -> int:
    one_blas_thread_per_rank()
    parser = common_arguments("GPAW single point on a relaxed structure")
    parser.add_argument("--relax-json", required=True, type=Path)
    args = parser.parse_args(argv)
    run(
        relax_json=args.relax_json,
        structure_id=args.structure_id,
        settings=parse_settings(args.settings),
        out_json=args.out_json,
        workdir=args.workdir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
