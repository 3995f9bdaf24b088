"""Shared pieces of the GPAW stages: structure conversion, calculators, MPI output.

Runs inside every MPI rank. Only rank 0 writes result files; the others wait
at a barrier so no rank exits before the result exists.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.parallel import world
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from dftscreen.io import atomic_write_json
from dftscreen.settings import initial_magmoms

#: 1 eV/Å³ in GPa.
EV_PER_A3_TO_GPA = 160.21766208


def structure_to_atoms(structure: Structure) -> Atoms:
    """Convert a pymatgen structure to ASE atoms with initial magnetic moments set."""
    atoms = AseAtomsAdaptor.get_atoms(structure)
    # Site properties such as 'magmom' from a CIF must not leak into the calculation.
    atoms.set_initial_magnetic_moments(initial_magmoms(atoms.get_chemical_symbols()))
    return atoms


def apply_magmom_overrides(atoms: Atoms, moments_muB: dict[str, float] | None) -> None:
    """Set the initial moment (µB) of every atom of the elements named in ``moments_muB``."""
    if not moments_muB:
        return
    magmoms = atoms.get_initial_magnetic_moments()
    for i, symbol in enumerate(atoms.get_chemical_symbols()):
        if symbol in moments_muB:
            magmoms[i] = moments_muB[symbol]
    atoms.set_initial_magnetic_moments(magmoms)


def atoms_to_structure(atoms: Atoms) -> Structure:
    """Convert ASE atoms to a plain pymatgen structure (no calculator, no constraints)."""
    clean = Atoms(atoms.get_chemical_symbols(), cell=atoms.cell, positions=atoms.positions, pbc=True)
    return AseAtomsAdaptor.get_structure(clean)


#: Our own keys of a preset's ``gpaw`` dictionary (eV, Å) and the GPAW keywords
#: each is translated into. Every other key is a raw GPAW keyword, passed on
#: unchanged; a raw keyword that is also a translation target wins over the
#: translation (e.g. a raw ``kpts``, as the molecule references use, replaces
#: the mesh from ``kpt_density_per_A``; a raw ``mode`` replaces ``ecut_eV``).
OWN_GPAW_KEYS: dict[str, tuple[str, ...]] = {
    "ecut_eV": ("mode",),
    "dedecut": ("mode", "legacy_gpaw"),
    "kpt_density_per_A": ("kpts",),
    # Read by dftscreen.relax, which picks the relaxation's kpt_density_per_A from them (choose_kpt_density).
    "kpt_density_insulator_per_A": ("kpts",),
    "insulator_min_gap_eV": ("kpts",),
    "smearing_eV": ("occupations",),
}


#: ``gpaw.dedecut`` value asking for the cell's own cutoff derivative (:func:`cutoff_derivative`), which
#: :mod:`dftscreen.relax` computes once at the start of a relaxation and gives GPAW as a number.
COMPUTED_DEDECUT = "computed"
#: Cutoff step (eV) of :func:`cutoff_derivative`'s forward difference, and the densest k-mesh (per Å⁻¹) of its
#: two SCFs: the derivative comes from the atoms' core regions, not from the Brillouin zone
#: (bench/README.md, "Converged settings": within a few % of the preset mesh's).
CUTOFF_DERIVATIVE_STEP_EV = 20.0
CUTOFF_DERIVATIVE_KPT_DENSITY = 2.0


def gpaw_calculator_kwargs(
    gpaw_settings: dict[str, Any], txt: str | Path | None = None
) -> dict[str, Any]:
    """Translate a preset's ``gpaw`` dictionary into GPAW calculator keyword arguments.

    Our keys (:data:`OWN_GPAW_KEYS`: ``ecut_eV`` plane-wave cutoff in eV,
    ``dedecut`` Pulay-stress correction, ``kpt_density_per_A`` k-points per Å⁻¹,
    ``smearing_eV`` Fermi-Dirac width in eV) become GPAW objects; ``ecut_eV``,
    ``kpt_density_per_A`` and ``smearing_eV`` are required. Every other key is
    a GPAW keyword passed on unchanged, so any GPAW parameter can be set from
    config, and it takes precedence over what our keys translate to (including
    ``txt`` over the argument).
    """
    from gpaw import PW, FermiDirac  # imported here: GPAW is heavy

    own = {key: gpaw_settings[key] for key in OWN_GPAW_KEYS if key in gpaw_settings}
    raw = {key: value for key, value in gpaw_settings.items() if key not in OWN_GPAW_KEYS}
    ecut = own["ecut_eV"]
    dedecut = own.get("dedecut")
    # "computed" is a number by the time a relaxation builds its calculator (dftscreen.relax); a
    # calculation without stress (single point, phonon forces) gets the same legacy code, uncorrected.
    pw_dedecut = None if dedecut == COMPUTED_DEDECUT else dedecut
    translated: dict[str, Any] = {
        "mode": PW(ecut, dedecut=pw_dedecut) if pw_dedecut else PW(ecut),
        "kpts": {"density": own["kpt_density_per_A"], "gamma": True},
        "occupations": FermiDirac(own["smearing_eV"]),
        "txt": str(txt) if txt is not None else None,
    }
    if dedecut is not None:
        # GPAW 26.7's new PW code accepts dedecut but ignores it (gpaw/new/pw/
        # builder.py: "mode.dedecut ???"): MgGeO3 at 400 eV showed 63.6 GPa
        # stress with and without it. The legacy calculator applies the
        # correction (12.5 GPa), so use it whenever a Pulay correction is asked for.
        translated["legacy_gpaw"] = True
    # Raw GPAW keywords last: they win over the translation.
    kwargs = {**translated, **raw}
    if "legacy_gpaw" in kwargs and not gpaw_has_legacy_switch():
        # GPAW before 26 (the older end of dftscreen.gpaw_support's range) runs the legacy
        # calculator unless GPAW_NEW is set, and knows no legacy_gpaw keyword.
        kwargs.pop("legacy_gpaw")
    return kwargs


def gpaw_has_legacy_switch() -> bool:
    """Whether the installed GPAW takes the ``legacy_gpaw`` keyword (GPAW 26 on, where the new code is the default)."""
    from gpaw import __version__

    from dftscreen.gpaw_support import version_tuple

    return version_tuple(__version__) >= (26,)


@functools.lru_cache(maxsize=None)
def _setup_band_counts(symbol: str, xc: str) -> tuple[float, int]:
    """Valence electrons of ``symbol``'s default GPAW setup for ``xc`` and its bound partial waves (bands).

    Read from the setup file alone (GPAW's ``Setup.get_default_nbands`` counts the same
    partial waves, n > 0, after building the whole setup, four times slower).
    """
    from gpaw.setup_data import SetupData

    data = SetupData.find_and_read_path(symbol, xc)
    bound = sum(2 * ell + 1 for ell, n in zip(data.l_orb_J, data.n_j) if n > 0)
    return float(data.Nv), int(bound)


def bands_beyond_gpaw_default(atoms: Atoms, xc: str = "PBE") -> int | None:
    """A band count for ``atoms`` when GPAW's default leaves almost no empty band, else ``None``.

    GPAW's default is 1.2 x the occupied bands + 4, capped at the setups' bound partial
    waves (gpaw.new.builder.calculate_number_of_bands). Ca, Sr and Ba have 5 of those
    and 10 valence electrons per atom: every band is full, the metal has no Fermi
    surface, and bcc Ba relaxed to a volume 5 % too large (bench/README.md, "Elemental
    reference volumes"); K, Rb, Cs and the noble gases keep half a band or none. When
    fewer than max(1, 10 % of the occupied) bands are empty, the uncapped default is
    returned; every other system keeps GPAW's own choice (``None``).
    """
    try:
        counts = [_setup_band_counts(symbol, xc) for symbol in atoms.get_chemical_symbols()]
    except Exception:  # noqa: BLE001 - no such setup: GPAW itself fails, with its own message
        return None
    occupied = (sum(n for n, _ in counts) + abs(float(atoms.get_initial_magnetic_moments().sum()))) / 2
    uncapped = math.ceil(1.2 * occupied) + 4
    empty = min(uncapped, sum(bands for _, bands in counts)) - occupied
    return uncapped if empty < max(1.0, 0.1 * occupied) else None


def attach_gpaw(atoms: Atoms, gpaw_settings: dict[str, Any], txt: Path) -> Any:
    """Attach a GPAW calculator configured from a preset's ``gpaw`` settings.

    Without ``nbands`` (or ``setups``) in the settings, a system GPAW's default would
    leave almost no empty band gets more (:func:`bands_beyond_gpaw_default`); every other
    system keeps GPAW's default. The default calculator factory of
    :func:`dftscreen.relax.relax_atoms`.
    """
    from gpaw import GPAW

    atoms.calc = GPAW(**gpaw_kwargs_for(atoms, gpaw_settings, txt))
    return atoms.calc


def gpaw_kwargs_for(atoms: Atoms, gpaw_settings: dict[str, Any], txt: Path | None) -> dict[str, Any]:
    """The GPAW keyword arguments :func:`attach_gpaw` gives ``atoms``' calculator (spin and band count included)."""
    kwargs = gpaw_calculator_kwargs(gpaw_settings, txt=txt)
    if atoms.get_initial_magnetic_moments().any():
        kwargs.setdefault("spinpol", True)
    if "nbands" not in kwargs and "setups" not in kwargs:  # else the user's choice, or setups we do not count
        nbands = bands_beyond_gpaw_default(atoms, str(kwargs.get("xc", "PBE")))
        if nbands is not None:
            kwargs["nbands"] = nbands
    return kwargs


#: Gap on the relaxation mesh (eV) of the atoms' converged calculator; :func:`mesh_band_gap_eV` by default.
MeshGap = Callable[[Atoms], float]


def mesh_band_gap_eV(atoms: Atoms) -> float:
    """Kohn-Sham gap (eV) on the k-points of ``atoms``' converged calculator (ASE's ``bandgap``; 0 for a metal)."""
    from ase.dft.bandgap import bandgap

    gap, _, _ = bandgap(atoms.calc, output=None)
    return float(gap)


def insulator_mesh_asked(gpaw_settings: dict[str, Any]) -> bool:
    """Whether ``gpaw_settings`` give a relaxation a coarser mesh when it has a gap (and no raw ``kpts`` fixes it)."""
    return bool(gpaw_settings.get("kpt_density_insulator_per_A")) and gpaw_settings.get(
        "insulator_min_gap_eV") is not None and "kpts" not in gpaw_settings


def choose_kpt_density(gpaw_settings: dict[str, Any], gap_eV: float) -> float:
    """The relaxation's k-points per Å⁻¹: ``kpt_density_insulator_per_A`` when ``gap_eV`` (a gap on a mesh)
    reaches ``insulator_min_gap_eV``, else ``kpt_density_per_A``.

    A metal's energy needs a dense mesh to sample its Fermi surface (Al: 32 meV/atom off at 3.0 per Å⁻¹);
    a compound with a gap converges on a coarse one (MgGeO3, 0.78 eV: 0.15 meV/atom at 3.0; bench/README.md,
    "Converged settings"), which is also how the Materials Project picks its k-point spacing from a
    prerelaxation's gap (Wisesa, McGill and Mueller, PRB 93, 155109 (2016)).
    """
    if insulator_mesh_asked(gpaw_settings) and gap_eV >= float(gpaw_settings["insulator_min_gap_eV"]):
        return float(gpaw_settings["kpt_density_insulator_per_A"])
    return float(gpaw_settings["kpt_density_per_A"])


def coarse_probe(
    atoms: Atoms, gpaw_settings: dict[str, Any], workdir: Path, attach: Callable[..., Any] | None = None,
    ecut_shift_eV: float = 0.0,
) -> Atoms:
    """A copy of ``atoms`` after one SCF at the settings' cutoff plus ``ecut_shift_eV``, without a Pulay
    correction, on a k-mesh of at most :data:`CUTOFF_DERIVATIVE_KPT_DENSITY` per Å⁻¹ (GPAW text output in
    ``workdir``); its calculator holds the energy and the eigenvalues."""
    attach = attach or attach_gpaw
    probe = atoms.copy()
    probe.set_constraint()
    settings = {**gpaw_settings, "ecut_eV": float(gpaw_settings["ecut_eV"]) + ecut_shift_eV, "dedecut": None,
                "kpt_density_per_A": min(float(gpaw_settings["kpt_density_per_A"]), CUTOFF_DERIVATIVE_KPT_DENSITY)}
    attach(probe, settings, Path(workdir) / f"cutoff_derivative_{ecut_shift_eV:g}.txt")
    probe.get_potential_energy()
    return probe


def cutoff_derivative(
    atoms: Atoms, gpaw_settings: dict[str, Any], workdir: Path, attach: Callable[..., Any] | None = None,
    first_probe: Atoms | None = None,
) -> float:
    """dE/dE_cut of ``atoms`` (eV of total energy per eV of cutoff, the whole cell; negative) at the settings' cutoff.

    The forward difference of the total energy between ``ecut_eV`` and ``ecut_eV`` +
    :data:`CUTOFF_DERIVATIVE_STEP_EV` at ``atoms``' geometry, two SCFs on a k-mesh of at most
    :data:`CUTOFF_DERIVATIVE_KPT_DENSITY` per Å⁻¹ (GPAW text output in ``workdir``). Given to GPAW as
    ``PW(ecut, dedecut=...)``, it makes the Pulay stress (2/3) E_cut (dE/dE_cut) / V (gpaw/old/stress.py),
    the correction for a basis of fixed cutoff rather than of fixed size. GPAW's own ``estimate``
    (from the free atoms' setups) was 0.1 times the computed derivative at 700 eV and 7.5 times it
    at 800 eV in MgGeO3 (bench/README.md, "Converged settings"). ``attach`` attaches the calculator (default
    :func:`attach_gpaw`; tests pass EMT-like ones). ``first_probe``: the SCF at the settings' own cutoff
    (:func:`coarse_probe`) when the caller already ran it.
    """
    first = first_probe if first_probe is not None else coarse_probe(atoms, gpaw_settings, workdir, attach)
    second = coarse_probe(atoms, gpaw_settings, workdir, attach, CUTOFF_DERIVATIVE_STEP_EV)
    return (float(second.get_potential_energy()) - float(first.get_potential_energy())) / CUTOFF_DERIVATIVE_STEP_EV


def is_legacy_gpaw(calc: Any) -> bool:
    """Whether ``calc`` is GPAW's legacy calculator (``gpaw.old``; what ``dedecut`` selects), not the new code."""
    return type(calc).__module__.startswith(("gpaw.old", "gpaw.calculator"))


def write_gpaw_restart(calc: Any, path: Path) -> None:
    """Write ``calc``'s state with its wave functions to ``path`` atomically (every rank calls it).

    GPAW writes collectively (rank 0 writes the file, the others send it their parts) to a
    temporary name beside ``path``, which rank 0 then renames: a kill leaves no half-written
    ``path``.
    """
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    calc.write(str(tmp), mode="all")
    world.barrier()
    if world.rank == 0:
        tmp.replace(path)
    world.barrier()


def one_blas_thread_per_rank() -> None:
    """Let every BLAS library in this MPI rank use one thread.

    A GPAW job's cores are its MPI ranks. Snakemake exports
    ``OPENBLAS_NUM_THREADS`` (and MKL's, ...) equal to the job's ``threads``,
    i.e. its rank count, and OpenBLAS without that variable starts one thread
    per core: either way each rank would run several BLAS threads on its one
    core (a 2-rank job on 2 cores: four busy threads, slower than one rank;
    see bench/blas_threads.py). The libraries are already loaded when our
    entry point starts (``gpaw python`` imports them), so the limit is set at
    run time, for GPAW's own BLAS and numpy's alike.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def common_arguments(description: str) -> argparse.ArgumentParser:
    """Argument parser shared by the relax and properties entry points."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--structure-id", required=True)
    parser.add_argument("--settings", required=True, help="resolved DFT settings as JSON text")
    parser.add_argument("--out-json", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path, help="folder for GPAW text output")
    return parser


def write_on_master(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON atomically from MPI rank 0, then synchronise ranks."""
    if world.rank == 0:
        atomic_write_json(path, record)
    world.barrier()


def failure_reason(exc: BaseException) -> str:
    """One sentence describing a DFT failure, for the results table."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if name == "KohnShamConvergenceError":
        return f"SCF did not converge ({text or 'GPAW gave up'})"
    return f"GPAW/ASE error {name}: {text}" if text else f"GPAW/ASE error {name}"


def parse_settings(text: str) -> dict[str, Any]:
    """Settings JSON passed on the command line."""
    return json.loads(text)


def report_traceback() -> None:
    """Print the current traceback to stderr (it lands in the rule's log)."""
    traceback.print_exc(file=sys.stderr)
