"""Single-point GPAW calculation on the relaxed structure: energy, band gap, moment.

The band gap is the Kohn-Sham gap (ASE's ``bandgap`` helper on GPAW's
eigenvalues, both spins when spin-polarized; 0 for metals) from the SCF on a
k-mesh that may be denser than the relaxation's, joined with a non-self-
consistent band-structure path through the Brillouin zone's special points
where the preset affords it, so that a gap whose edges fall between mesh
points is not overestimated. The k-points of the edges and whether they came
from the mesh or the path are reported.

The SCF starts from the relaxation's final state, density and wave functions
(``relaxed.gpw``, written by :func:`dftscreen.relax.write_restart`), when the
single point's k-mesh is the relaxation's (the ``test`` preset's). The
parameters are the fresh start's (only those that differ from the file's are
changed, e.g. the mixer of an SCF-ladder rung), so the result is the fresh
start's within the SCF criteria, in a third of the SCF iterations. On another
k-mesh (the ``fast`` and ``standard`` presets' denser one) GPAW's legacy
calculator, which the presets' Pulay-stress estimate selects, would keep the
density and start new wave functions: that took as many SCF iterations as a
fresh start or more (bench/README.md, "Issue 32"), so it starts afresh. A file
that is missing, unreadable, written by another GPAW version or for other
settings (cutoff, functional, setups, spin, bands, geometry) gives a fresh start
too, and the record's ``restart_note`` says why. The file is removed once the
record is written, unless ``properties.keep_restart_file`` is set.

Run under MPI as ``mpiexec -n N gpaw python -m dftscreen.properties ...``.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
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
    gpaw_has_legacy_switch,
    gpaw_kwargs_for,
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


class RestartUnusable(Exception):
    """The relaxation's GPAW state cannot start this single point; the message says why (``restart_note``)."""


#: Settings whose change makes the relaxation's density useless as a start (another Hamiltonian or grid).
RESTART_DEFINING_SETTINGS = ("xc", "ecut_eV", "dedecut", "setups", "mode", "h", "gpts", "charge")
#: Legacy GPAW parameters whose change resets its density (gpaw/old/calculator.py, ``GPAW.set``).
DENSITY_RESETTING_PARAMETERS = frozenset(
    {"h", "gpts", "setups", "spinpol", "dtype", "mode", "external", "charge", "background_charge"})
#: Legacy GPAW parameters whose change drops the wave functions but keeps the density.
WAVE_FUNCTION_RESETTING_PARAMETERS = frozenset({"kpts", "nbands", "symmetry", "basis", "experimental"})
#: Start from the relaxation's density alone when the wave functions cannot be reused (another
#: k-mesh or band count). Off: it took as many SCF iterations as a fresh start or more
#: (bench/properties_restart.py, which switches it on to measure that).
REUSE_DENSITY_ALONE = False
#: Largest difference (Å) between the restart file's geometry and relaxed.cif's for a restart.
RESTART_GEOMETRY_TOLERANCE_A = 1e-4


def _canonical(key: str, value: Any) -> Any:
    """A GPAW parameter in one spelling (GPAW's own ``todict``), defaults and empty values dropped, for comparing."""
    from gpaw.dft import Parameters

    def drop_empty(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: drop_empty(x) for k, x in v.items() if x not in (None, False, {}, [])}
        return v

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. legacy-only keys of ``experimental``
            parameters = Parameters(mode=value) if key == "mode" else Parameters(mode="pw", **{key: value})
        return drop_empty(parameters.todict().get(key))
    except Exception:  # noqa: BLE001 - a parameter the new code's Parameters does not know: compare as given
        return drop_empty(value)


def changed_parameters(stored: dict[str, Any], defaults: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The GPAW parameters of ``wanted`` (keyword arguments) that differ from ``stored`` (a restart file's).

    A parameter the file sets but ``wanted`` does not goes back to its default; ``nbands``,
    which GPAW chooses itself when not given, is left to the file's choice.
    """
    ignored = {"txt", "legacy_gpaw", "communicator"}
    keys = {k for k in wanted if k not in ignored}
    keys |= {k for k in stored if k not in ignored and _canonical(k, stored[k]) != _canonical(k, defaults.get(k))}
    changes = {}
    for key in sorted(keys):
        value = wanted.get(key, defaults.get(key))
        if key == "nbands" and key not in wanted:
            continue
        if _canonical(key, value) != _canonical(key, stored.get(key)):
            changes[key] = value
    return changes


def _file_gpaw_version(path: Path) -> str | None:
    """The GPAW version a gpw file says wrote it (its header); raises when the file is unreadable."""
    from ase.io import ulm

    reader = ulm.open(str(path))
    try:
        return getattr(reader, "gpaw_version", None)
    finally:
        reader.close()


def _same_geometry(a: Atoms, b: Atoms) -> bool:
    """Same species, lattice (lengths, angles) and fractional positions, to :data:`RESTART_GEOMETRY_TOLERANCE_A`.

    The CIF's cell may be the file's rotated into the standard orientation: the same crystal.
    """
    if len(a) != len(b) or not np.array_equal(a.numbers, b.numbers):
        return False
    lengths_a, lengths_b = a.cell.cellpar(), b.cell.cellpar()
    if np.abs(lengths_a[:3] - lengths_b[:3]).max() > RESTART_GEOMETRY_TOLERANCE_A:
        return False
    if np.abs(lengths_a[3:] - lengths_b[3:]).max() > 1e-3:  # degrees
        return False
    fractional = a.get_scaled_positions() - b.get_scaled_positions()
    fractional -= np.round(fractional)
    return bool(np.abs(fractional * lengths_a[:3]).max() <= RESTART_GEOMETRY_TOLERANCE_A)


def restart_calculator(
    atoms: Atoms, gpaw_settings: dict[str, Any], restart: dict[str, Any] | None, path: Path | None, txt: Path
) -> tuple[Any, Atoms, str]:
    """GPAW started from the relaxation's final state, with the fresh start's parameters.

    Args:
        atoms: the relaxed structure (from relaxed.cif) the fresh start would use.
        gpaw_settings: the single point's settings (the preset's, with its k-point density).
        restart: the relaxation record's ``restart`` (see :func:`dftscreen.relax.write_restart`).
        path: the restart file.
        txt: GPAW's text log.

    Returns:
        The calculator, the atoms it is attached to (the file's geometry, equal to
        ``atoms``) and what is reused: ``density and wave functions`` or ``density``.

    Raises:
        RestartUnusable: why a fresh start is needed instead.
    """
    import gpaw
    from gpaw import GPAW

    if not restart or not restart.get("file") or path is None:
        error = (restart or {}).get("error")
        raise RestartUnusable("the relaxation wrote no restart file" + (f" ({error})" if error else ""))
    if not path.is_file():
        raise RestartUnusable(f"restart file {path.name} is missing")
    if restart.get("gpaw_version") != gpaw.__version__:
        raise RestartUnusable(f"restart file written by GPAW {restart.get('gpaw_version')}, this is {gpaw.__version__}")
    try:
        file_version = _file_gpaw_version(path)
    except Exception as exc:  # noqa: BLE001 - truncated or overwritten file
        raise RestartUnusable(f"restart file {path.name} is unreadable ({failure_reason(exc)})") from exc
    if file_version != gpaw.__version__:
        raise RestartUnusable(f"restart file {path.name} says GPAW {file_version}, this is {gpaw.__version__}")
    written_with = restart.get("gpaw_settings") or {}
    differing = [key for key in RESTART_DEFINING_SETTINGS if written_with.get(key) != gpaw_settings.get(key)]
    if differing:
        raise RestartUnusable(f"restart file is for other {', '.join(differing)}")
    kwargs = gpaw_kwargs_for(atoms, gpaw_settings, txt)
    switch = gpaw_has_legacy_switch()
    # GPAW before 26 knows no legacy_gpaw keyword: its GPAW is the legacy calculator unless GPAW_NEW is set.
    legacy = "legacy_gpaw" in kwargs if switch else not os.environ.get("GPAW_NEW")
    if bool(restart.get("legacy_gpaw")) != legacy:
        raise RestartUnusable("restart file written by the other GPAW calculator (legacy or new code)")
    try:
        calc = GPAW(str(path), txt=str(txt), **({"legacy_gpaw": legacy} if switch else {}))
        restart_atoms = calc.get_atoms()
        restart_atoms.set_constraint()  # the relaxation's FixSymmetry: nothing moves in a single point
    except Exception as exc:  # noqa: BLE001 - GPAW cannot read it
        raise RestartUnusable(f"restart file {path.name} is unreadable ({failure_reason(exc)})") from exc
    if not _same_geometry(restart_atoms, atoms):
        raise RestartUnusable("restart file's geometry differs from relaxed.cif")
    if (calc.get_number_of_spins() == 2) != bool(kwargs.get("spinpol")):
        raise RestartUnusable("restart file has the other spin polarization")
    if not legacy:
        stored = calc.params.todict()
        if any(_canonical(k, v) != _canonical(k, stored.get(k)) for k, v in kwargs.items() if k != "txt"):
            raise RestartUnusable("GPAW's new code restarts only with unchanged parameters")
        return calc, restart_atoms, "density and wave functions"
    changes = changed_parameters(dict(calc.parameters), dict(calc.default_parameters), kwargs)
    density_resetting = sorted(changes.keys() & DENSITY_RESETTING_PARAMETERS)
    if density_resetting:
        raise RestartUnusable(f"restart file is for other {', '.join(density_resetting)}")
    density_alone = sorted(changes.keys() & WAVE_FUNCTION_RESETTING_PARAMETERS)
    if density_alone and not REUSE_DENSITY_ALONE:
        what = ("k-mesh differs from the relaxation's" if "kpts" in density_alone
                else f"{', '.join(density_alone)} differ")
        raise RestartUnusable(f"the single point's {what}: GPAW would keep only the density, which saves no SCF "
                              "iterations (bench/README.md, issue 32)")
    if changes:
        calc.set(_set_ok=True, **changes)  # e.g. the mixer or smearing of the SCF-ladder rung the relaxation ended on
    return calc, restart_atoms, "density" if density_alone else "density and wave functions"


def scf_iterations(txt: Path) -> int | None:
    """SCF iterations in a GPAW text log (its ``iter:`` lines, ``|iter:`` in the new code); ``None`` without a log."""
    if world.rank != 0 or not txt.is_file():
        return None
    return sum(1 for line in txt.read_text(errors="replace").splitlines() if re.match(r"\|?iter:\s*\d+", line))


def _start_calculator(
    atoms: Atoms, gpaw_settings: dict[str, Any], restart: dict[str, Any] | None, restart_path: Path | None, txt: Path
) -> tuple[Any, Atoms, float, dict[str, Any]]:
    """The single point's converged calculator: from the relaxation's state if possible, else fresh.

    Returns the calculator, its atoms, the energy (eV) and the record's restart fields.
    """
    note = None
    if restart is not None or restart_path is not None:
        try:
            calc, restart_atoms, reused = restart_calculator(atoms, gpaw_settings, restart, restart_path, txt)
            energy = float(restart_atoms.get_potential_energy())
            return calc, restart_atoms, energy, {"restarted_from": reused, "restart_note": None}
        except RestartUnusable as exc:
            note = f"{exc}: fresh start"
        except Exception as exc:  # noqa: BLE001 - e.g. the restarted SCF did not converge: try afresh
            report_traceback()
            note = f"restarted SCF failed ({failure_reason(exc)}): fresh start"
        print(f"restart: {note}", file=sys.stderr, flush=True)
    calc = attach_gpaw(atoms, gpaw_settings, txt=txt)
    energy = float(atoms.get_potential_energy())
    return calc, atoms, energy, {"restarted_from": None, "restart_note": note}


def single_point(
    atoms: Atoms,
    settings: dict[str, Any],
    workdir: Path,
    restart: dict[str, Any] | None = None,
    restart_path: Path | None = None,
) -> dict[str, Any]:
    """Run a GPAW SCF on ``atoms`` and return energy (eV), gap (eV) and moment (µB).

    The SCF uses ``settings['properties']['kpt_density_per_A']`` when given (a
    denser mesh than the relaxation's), and with ``band_path_npoints`` > 0 the
    gap also looks along the band path. With ``restart`` (the relaxation record's)
    and ``restart_path`` it starts from the relaxation's state when GPAW can
    (:func:`restart_calculator`), else afresh with a ``restart_note``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    options = settings.get("properties", {})
    gpaw_settings = dict(settings["gpaw"])
    if options.get("kpt_density_per_A"):
        gpaw_settings["kpt_density_per_A"] = options["kpt_density_per_A"]
    txt = workdir / "properties_gpaw.txt"
    start = time.perf_counter()
    calc, atoms, energy, restart_fields = _start_calculator(atoms, gpaw_settings, restart, restart_path, txt)
    scf_time = time.perf_counter() - start
    spin_polarized = calc.get_number_of_spins() == 2
    magmom = float(calc.get_magnetic_moment()) if spin_polarized else 0.0
    site_moments = [float(m) for m in calc.get_magnetic_moments()] if spin_polarized else [0.0] * len(atoms)
    ordering = magnetic_ordering(atoms, site_moments)
    fermi = float(calc.get_fermi_level())
    eigenvalues = eigenvalues_eV(calc)
    kpoints = np.asarray(calc.get_ibz_k_points())
    sources = ["mesh"] * len(kpoints)
    record: dict[str, Any] = {"band_path": None, **restart_fields,
                              "scf_iterations": scf_iterations(txt), "scf_wall_time_s": scf_time}
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
        restart = relaxed.get("restart")
        restart_path = relax_json.parent / restart["file"] if restart and restart.get("file") else None
        record.update(single_point(atoms, settings, workdir, restart or {}, restart_path))
        record.update(status=status_codes.DONE, reason="")
    except Exception as exc:
        report_traceback()
        record.update(status=status_codes.FAILED, reason=failure_reason(exc))
    write_on_master(out_json, record)
    _remove_restart_file(relax_json, relaxed, settings)
    return record


def _remove_restart_file(relax_json: Path, relaxed: dict[str, Any], settings: dict[str, Any]) -> None:
    """Remove the relaxation's restart file once the record is written, unless ``properties.keep_restart_file``."""
    restart = relaxed.get("restart") or {}
    if not restart.get("file") or (settings.get("properties") or {}).get("keep_restart_file"):
        return
    if world.rank == 0:
        (relax_json.parent / restart["file"]).unlink(missing_ok=True)
    world.barrier()


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
