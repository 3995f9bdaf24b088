"""What a plane-wave DFT job on a structure will cost, and whether to send it.

The estimate counts what a GPAW plane-wave calculation stores and does, from
the cell alone (no GPAW import, so the check can run it for every structure):

* plane waves per band and k-point, from the cell volume V and the cutoff E:
  ``N_pw = V k_c³ / (6 π²)`` with ``k_c = sqrt(2 E / Ha)`` (atomic units);
* k-points of the Monkhorst-Pack mesh the preset's density gives
  (``n_i = ceil(2 π density / d_i)``, d_i the spacing of lattice planes i, as
  ASE's ``kptdensity``), a quarter of them irreducible;
* bands: :data:`BANDS_PER_ATOM` per atom (GPAW's default is about 1.2 times
  the occupied bands; oxides have about 4 occupied bands per atom);
* fine real-space grids: about 15 ``N_pw`` points (GPAW's coarse grid holds the
  sphere of radius 2 k_c, the fine grid has twice the points per axis).

Memory = :data:`BASE_MEM_MB` + 3 wave-function copies (16 B per coefficient)
+ :data:`GRID_ARRAYS` grid arrays (8 B per point), split over the MPI ranks.
Time of one single point = :data:`SECONDS_PER_UNIT` x k-points x bands x
N_pw x ln N_pw; a relaxation is :data:`RELAX_SINGLE_POINTS` single points, the
property step two more.

Calibration, on this machine kind (2-core AMD EPYC Zen 3), from
``../shared/notes/gpaw-on-this-machine.md`` (Si 2 atoms 350 eV 16 k: 5 s,
130-160 MiB per rank; Si 16 atoms 400 eV 6 k: 38 s and 260 MiB on one rank)
and ``bench/README.md`` (5-atom perovskites at the standard preset, 800 eV,
125 irreducible k-points: 2.5-5 min per SCF on one core, 23-45 BFGS steps).
The time constant is the larger of Si16 (1.5e-6 s) and the perovskites
(1.9e-6 to 2.9e-6 s); base memory is Si2's 130-160 MiB; 3 copies of the wave
functions match Si16's 140 MiB above base. The grid term is counted, not
measured (it dominates only in cells with much vacuum). Expect a factor of two
either way; the point is to tell a 2-atom cell in a 200 Å box (hundreds of GB)
from a 5-atom perovskite (a few hundred MB) before a job is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dftscreen.resources import ResourcePolicy

HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903
#: Bands per atom assumed for the estimate.
BANDS_PER_ATOM = 5
#: Memory per rank of an idle GPAW process with its PAW setups (MB).
BASE_MEM_MB = 150.0
#: Copies of the wave functions GPAW's eigensolver keeps.
WAVEFUNCTION_COPIES = 3
#: Fine-grid points per plane wave and arrays kept on that grid.
GRID_POINTS_PER_PW = 15.0
GRID_ARRAYS = 10
#: Seconds per (k-point x band x plane wave x ln plane waves) of one SCF single point, one core.
SECONDS_PER_UNIT = 3.0e-6
#: Single points a relaxation costs (bench/README.md: 23-45 BFGS steps).
RELAX_SINGLE_POINTS = 30
#: Single points of the property step (denser k-mesh, band path).
PROPERTY_SINGLE_POINTS = 2
#: Resources asked for are the estimate times this margin.
MARGIN = 1.5


@dataclass(frozen=True)
class CostEstimate:
    """Estimated cost of the DFT of one structure (relaxation and properties) on ``tasks`` MPI ranks."""

    n_atoms: int
    plane_waves: int
    kpoints_irreducible: int
    bands: int
    tasks: int
    mem_mb_per_task: float
    runtime_min: float


def plane_waves(volume_A3: float, ecut_eV: float) -> float:
    """Plane waves per band and k-point in a cell of ``volume_A3`` (Å³) at cutoff ``ecut_eV`` (eV)."""
    k_cut = math.sqrt(2.0 * ecut_eV / HARTREE_EV)  # 1/bohr
    return volume_A3 / BOHR_A**3 * k_cut**3 / (6.0 * math.pi**2)


def kpoint_mesh(lattice_A: np.ndarray, kpt_density_per_A: float) -> tuple[int, int, int]:
    """Monkhorst-Pack mesh of a k-point density (points per Å⁻¹), as ASE's ``kptdensity``."""
    reciprocal = np.linalg.inv(np.asarray(lattice_A, dtype=float)).T  # rows: b_i / 2π, |b_i/2π| = 1/d_i
    return tuple(max(1, math.ceil(2 * math.pi * kpt_density_per_A * float(np.linalg.norm(b)))) for b in reciprocal)  # type: ignore[return-value]


def estimate_cost(
    n_atoms: int, lattice_A: np.ndarray, ecut_eV: float, kpt_density_per_A: float, tasks: int
) -> CostEstimate:
    """Memory per rank (MB) and wall time (min) of relaxation plus properties (see the module docstring)."""
    lattice = np.asarray(lattice_A, dtype=float)
    volume = abs(float(np.linalg.det(lattice)))
    n_pw = plane_waves(volume, ecut_eV)
    mesh = kpoint_mesh(lattice, kpt_density_per_A)
    n_k = max(1, math.ceil(mesh[0] * mesh[1] * mesh[2] / 4))
    bands = BANDS_PER_ATOM * n_atoms
    wavefunctions_mb = WAVEFUNCTION_COPIES * 16.0 * n_k * bands * n_pw / 1e6
    grids_mb = GRID_ARRAYS * 8.0 * GRID_POINTS_PER_PW * n_pw / 1e6
    mem = BASE_MEM_MB + (wavefunctions_mb + grids_mb) / tasks
    single_point_s = SECONDS_PER_UNIT * n_k * bands * n_pw * math.log(max(n_pw, 2.0))
    runtime = (RELAX_SINGLE_POINTS + PROPERTY_SINGLE_POINTS) * single_point_s / tasks / 60.0
    return CostEstimate(n_atoms, round(n_pw), n_k, bands, tasks, mem, runtime)


@dataclass(frozen=True)
class GateSettings:
    """What the gate needs: the run's plane-wave cutoff (eV), k-point density (per Å⁻¹) and resource policy."""

    ecut_eV: float
    kpt_density_per_A: float
    policy: ResourcePolicy

    @classmethod
    def from_dft_settings(cls, settings: dict, resources: dict) -> GateSettings:
        """From resolved DFT settings (``gpaw.ecut_eV``, ``gpaw.kpt_density_per_A``) and ``dft.resources``."""
        gpaw = settings["gpaw"]
        return cls(float(gpaw["ecut_eV"]), float(gpaw["kpt_density_per_A"]), ResourcePolicy.from_config(resources))


@dataclass(frozen=True)
class Route:
    """Where a structure goes: ``resources`` is ``policy``, ``enlarged`` or ``refused`` (then ``reason`` says why)."""

    resources: str
    estimate: CostEstimate
    reason: str = ""


def route(estimate: CostEstimate, policy: ResourcePolicy) -> Route:
    """Send to DFT with the policy's resources, with larger ones, or not at all.

    A job is refused when the estimate with its margin exceeds the largest
    memory per rank or wall time a job may get (``dft.resources.max_mem_mb_per_task``,
    ``max_runtime_min``); enlarged when it exceeds what the policy gives that
    number of atoms.
    """
    mem, runtime = MARGIN * estimate.mem_mb_per_task, MARGIN * estimate.runtime_min
    too_big = []
    if mem > policy.max_mem_mb_per_task:
        too_big.append(
            f"{mem / 1000:.1f} GB per rank (dft.resources.max_mem_mb_per_task {policy.max_mem_mb_per_task / 1000:g} GB)"
        )
    if runtime > policy.max_runtime_min:
        too_big.append(f"{runtime / 60:.1f} h (dft.resources.max_runtime_min {policy.max_runtime_min / 60:g} h)")
    if too_big:
        reason = (
            f"too large for DFT here: estimated {' and '.join(too_big)} on {estimate.tasks} rank(s) "
            f"for {estimate.n_atoms} atoms, {estimate.plane_waves} plane waves per band, "
            f"{estimate.kpoints_irreducible} k-points (dftscreen.size_gate); raise the limits for a larger machine"
        )
        return Route("refused", estimate, reason)
    fits = mem <= policy.mem_mb_per_task(estimate.n_atoms) and runtime <= policy.runtime_min(estimate.n_atoms)
    return Route("policy" if fits else "enlarged", estimate)
