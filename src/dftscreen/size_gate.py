"""What a plane-wave DFT job on a structure will cost, and whether to send it.

The estimate counts what a GPAW plane-wave calculation stores and does, from
the cell alone (no GPAW import, so the check can run it for every structure):

* plane waves per band and k-point, from the cell volume V and the cutoff E:
  ``N_pw = V k_c³ / (6 π²)`` with ``k_c = sqrt(2 E / Ha)`` (atomic units);
* k-points of the Monkhorst-Pack mesh the preset's density gives
  (``n_i = ceil(2 π density / d_i)``, d_i the spacing of lattice planes i, as
  ASE's ``kptdensity``), a quarter of them irreducible;
* bands: GPAW's default for the structure's valence electrons (1.2 times the
  occupied bands + 4, capped at the setups' bound partial waves, as
  :func:`dftscreen.dft.bands_beyond_gpaw_default`), the valence electrons and
  partial waves read from the header of each element's PAW setup file (no GPAW
  import); :data:`BANDS_PER_ATOM` per atom when a setup file is not found or for
  a bare atom count (:func:`estimate_cost` without ``bands``);
* spin: twice the wave functions and the work when the DFT starts spin-polarised
  (a magnetic element of :data:`dftscreen.settings.INITIAL_MAGMOMS_MUB` or of
  ``initial_magmoms_muB``, unless the settings give ``gpaw.spinpol``), as
  :func:`dftscreen.dft.attach_gpaw` decides;
* fine real-space grids: about 15 ``N_pw`` points (GPAW's coarse grid holds the
  sphere of radius 2 k_c, the fine grid has twice the points per axis).

The k-points are those of the merged settings (``dft.overrides`` included, and a
structure's own ``dft.structure_overrides``, :func:`structure_gate_params`): a raw
``gpaw.kpts`` mesh wins over ``kpt_density_per_A`` as in the DFT, and the
property step uses ``properties.kpt_density_per_A``.

Generated structures are gated by the check with this estimate, except in a results
folder whose DFT packs started before it did (:func:`keeps_cell_only_estimates`): a
pack job's command carries its members' estimates, so new numbers there would rerun
every finished pack. Such a folder keeps :func:`cell_only_estimate`, the check's
estimate of before (the cell, the run's cutoff and k-point density, :data:`BANDS_PER_ATOM`
bands per atom, no spin), in the column and the reason alike.

Memory = :data:`BASE_MEM_MB` + 3 wave-function copies (16 B per coefficient)
+ :data:`GRID_ARRAYS` grid arrays (8 B per point), split over the MPI ranks.
Time of one single point = :data:`SECONDS_PER_UNIT` x k-points x bands x
N_pw x ln N_pw (x 2 spins); a relaxation is :data:`RELAX_SINGLE_POINTS` single
points, the property step two more (at its own k-points). The memory column of the
results table and the ``too_large`` reason quote the same estimate, without the
:data:`MARGIN` that the resources asked for (and the limits) are compared with.

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

import dataclasses
import functools
import gzip
import importlib.util
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dftscreen.layout import ResultsLayout
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import INITIAL_MAGMOMS_MUB, deep_merge

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
    """Estimated cost of the DFT of one structure (relaxation and properties) on ``tasks`` MPI ranks.

    ``kpoints_irreducible`` are the relaxation's, ``kpoints_properties`` the property step's
    (0: the same); ``spins`` is 2 for a spin-polarised calculation.
    """

    n_atoms: int
    plane_waves: int
    kpoints_irreducible: int
    bands: int
    tasks: int
    mem_mb_per_task: float
    runtime_min: float
    spins: int = 1
    kpoints_properties: int = 0


def plane_waves(volume_A3: float, ecut_eV: float) -> float:
    """Plane waves per band and k-point in a cell of ``volume_A3`` (Å³) at cutoff ``ecut_eV`` (eV)."""
    k_cut = math.sqrt(2.0 * ecut_eV / HARTREE_EV)  # 1/bohr
    return volume_A3 / BOHR_A**3 * k_cut**3 / (6.0 * math.pi**2)


def kpoint_mesh(lattice_A: np.ndarray, kpt_density_per_A: float) -> tuple[int, int, int]:
    """Monkhorst-Pack mesh of a k-point density (points per Å⁻¹), as ASE's ``kptdensity``."""
    reciprocal = np.linalg.inv(np.asarray(lattice_A, dtype=float)).T  # rows: b_i / 2π, |b_i/2π| = 1/d_i
    return tuple(max(1, math.ceil(2 * math.pi * kpt_density_per_A * float(np.linalg.norm(b)))) for b in reciprocal)  # type: ignore[return-value]


def irreducible_kpoints(lattice_A: np.ndarray, kpt_density_per_A: float, kpts: Any = None) -> int:
    """Irreducible k-points assumed (a quarter of the mesh): of a raw GPAW ``kpts`` when given (a mesh of
    three numbers, ``{"size": mesh}`` or ``{"density": d}``; it wins in the DFT too), else of the density."""
    if isinstance(kpts, Mapping) and kpts.get("size") is not None:
        kpts = kpts["size"]
    if isinstance(kpts, Mapping) and kpts.get("density") is not None:
        mesh: Sequence[int] = kpoint_mesh(lattice_A, float(kpts["density"]))
    elif isinstance(kpts, (list, tuple)) and len(kpts) == 3 and all(isinstance(n, (int, float)) for n in kpts):
        mesh = [max(1, int(n)) for n in kpts]
    else:
        mesh = kpoint_mesh(lattice_A, kpt_density_per_A)
    return max(1, math.ceil(mesh[0] * mesh[1] * mesh[2] / 4))


def _single_point_s(n_k: int, bands: int, n_pw: float) -> float:
    """Seconds of one SCF single point on one core (``n_k`` counts each spin's k-points)."""
    return SECONDS_PER_UNIT * n_k * bands * n_pw * math.log(max(n_pw, 2.0))


def estimate_cost(
    n_atoms: int, lattice_A: np.ndarray, ecut_eV: float, kpt_density_per_A: float, tasks: int,
    *, bands: int | None = None, spins: int = 1, kpts: Any = None, property_kpt_density_per_A: float | None = None,
) -> CostEstimate:
    """Memory per rank (MB) and wall time (min) of relaxation plus properties (see the module docstring).

    ``bands`` default: :data:`BANDS_PER_ATOM` per atom; ``kpts``: a raw GPAW ``kpts`` setting
    (:func:`irreducible_kpoints`); ``property_kpt_density_per_A``: the property step's density
    (default: the relaxation's). Memory is that of the larger of the two k-point sets.
    """
    lattice = np.asarray(lattice_A, dtype=float)
    n_pw = plane_waves(abs(float(np.linalg.det(lattice))), ecut_eV)
    n_k = irreducible_kpoints(lattice, kpt_density_per_A, kpts)
    n_k_prop = irreducible_kpoints(lattice, property_kpt_density_per_A or kpt_density_per_A, kpts)
    bands = bands or BANDS_PER_ATOM * n_atoms
    wavefunctions_mb = WAVEFUNCTION_COPIES * 16.0 * spins * max(n_k, n_k_prop) * bands * n_pw / 1e6
    grids_mb = GRID_ARRAYS * 8.0 * GRID_POINTS_PER_PW * n_pw / 1e6
    mem = BASE_MEM_MB + (wavefunctions_mb + grids_mb) / tasks
    seconds = RELAX_SINGLE_POINTS * _single_point_s(spins * n_k, bands, n_pw) + PROPERTY_SINGLE_POINTS * (
        _single_point_s(spins * n_k_prop, bands, n_pw)
    )
    runtime = seconds / tasks / 60.0
    prop = n_k_prop if n_k_prop != n_k else 0
    return CostEstimate(n_atoms, round(n_pw), n_k, bands, tasks, mem, runtime, spins, prop)


# --- what the DFT itself will use: bands from the PAW setups, spin, k-points -----------
def setup_folders() -> list[Path]:
    """Folders holding GPAW's PAW setups: ``$GPAW_SETUP_PATH``, then the ``gpaw_data`` package (not imported)."""
    folders = [Path(p) for p in os.environ.get("GPAW_SETUP_PATH", "").split(os.pathsep) if p]
    spec = importlib.util.find_spec("gpaw_data")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folders.append(Path(location) / "setups")
    return folders


_ATOM_RE = re.compile(rb'<atom\s[^>]*valence="([0-9.]+)"')
_BOUND_RE = re.compile(rb'<state\s+n="(\d+)"\s+l="(\d+)"')


@functools.lru_cache(maxsize=None)
def setup_band_counts(symbol: str, xc: str = "PBE") -> tuple[float, int] | None:
    """Valence electrons and bound partial waves (bands, n > 0) of ``symbol``'s default PAW setup for ``xc``.

    Read from the head of the setup file (``<El>.<xc>[.gz]``; what
    :func:`dftscreen.dft._setup_band_counts` gets from GPAW's ``SetupData``), in about a
    millisecond and without importing GPAW; None when no such file is found.
    """
    for folder in setup_folders():
        for name in (f"{symbol}.{xc}.gz", f"{symbol}.{xc}"):
            path = folder / name
            if not path.is_file():
                continue
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as handle:
                head = handle.read(4096)
            valence = _ATOM_RE.search(head)
            if valence is None:
                return None
            bound = sum(2 * int(ell) + 1 for n, ell in _BOUND_RE.findall(head) if int(n) > 0)
            return float(valence.group(1)), bound
    return None


def initial_moments(symbols: Sequence[str], overrides: Mapping[str, float] | None = None) -> list[float]:
    """The initial moments (µB) the DFT starts from: :data:`INITIAL_MAGMOMS_MUB` with ``initial_magmoms_muB``."""
    moments = {**INITIAL_MAGMOMS_MUB, **(overrides or {})}
    return [float(moments.get(symbol, 0.0)) for symbol in symbols]


def default_bands(symbols: Sequence[str], total_moment: float = 0.0, xc: str = "PBE") -> int:
    """The bands GPAW will use (``nbands`` unset): its default, capped at the bound partial waves, unless that
    leaves almost no empty band (:func:`dftscreen.dft.bands_beyond_gpaw_default`); :data:`BANDS_PER_ATOM` per
    atom when an element's setup file is not found."""
    counts = [setup_band_counts(symbol, xc) for symbol in symbols]
    if not counts or any(count is None for count in counts):
        return BANDS_PER_ATOM * max(1, len(symbols))
    occupied = (sum(c[0] for c in counts if c) + abs(total_moment)) / 2
    uncapped = math.ceil(1.2 * occupied) + 4
    capped = min(uncapped, sum(c[1] for c in counts if c))
    return uncapped if capped - occupied < max(1.0, 0.1 * occupied) else capped


@dataclass(frozen=True)
class GateSettings:
    """What the gate needs: the merged DFT settings' cutoff (eV), k-points and spin, and the resource policy.

    ``kpts``, ``nbands``, ``spinpol`` and ``xc``: the raw GPAW keywords when the settings give them
    (they win in the DFT); ``property_kpt_density_per_A``: ``properties.kpt_density_per_A``;
    ``magmoms_muB``: ``initial_magmoms_muB`` as (element, µB) pairs.
    """

    ecut_eV: float
    kpt_density_per_A: float
    policy: ResourcePolicy
    property_kpt_density_per_A: float | None = None
    kpts: Any = None
    nbands: int | None = None
    spinpol: bool | None = None
    xc: str = "PBE"
    magmoms_muB: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_dft_settings(cls, settings: Mapping[str, Any], resources: Mapping[str, Any]) -> GateSettings:
        """From resolved DFT settings (``gpaw``, ``properties``, ``initial_magmoms_muB``) and ``dft.resources``."""
        gpaw = settings["gpaw"]
        nbands = gpaw.get("nbands")
        return cls(
            float(gpaw["ecut_eV"]),
            float(gpaw["kpt_density_per_A"]),
            ResourcePolicy.from_config(dict(resources)),
            property_kpt_density_per_A=(settings.get("properties") or {}).get("kpt_density_per_A") or None,
            kpts=_frozen(gpaw.get("kpts")),
            nbands=nbands if isinstance(nbands, int) and nbands > 0 else None,
            spinpol=gpaw.get("spinpol"),
            xc=str(gpaw.get("xc") or "PBE"),
            magmoms_muB=tuple(sorted((settings.get("initial_magmoms_muB") or {}).items())),
        )


def _frozen(kpts: Any) -> Any:
    """A raw ``kpts`` setting as a hashable value (lists to tuples, a dict to a mapping of those)."""
    if isinstance(kpts, list):
        return tuple(kpts)
    if isinstance(kpts, Mapping):
        return {key: _frozen(value) for key, value in kpts.items()}
    return kpts


def gate_params(settings: Mapping[str, Any], resources: Mapping[str, Any]) -> dict[str, Any]:
    """What of the merged DFT settings the gate reads (:meth:`GateSettings.from_dft_settings`), as plain data."""
    gpaw = settings["gpaw"]
    keys = ("ecut_eV", "kpt_density_per_A", "kpts", "nbands", "spinpol", "xc")
    kept: dict[str, Any] = {"gpaw": {key: gpaw[key] for key in keys if key in gpaw}}
    if (settings.get("properties") or {}).get("kpt_density_per_A"):
        kept["properties"] = {"kpt_density_per_A": settings["properties"]["kpt_density_per_A"]}
    if settings.get("initial_magmoms_muB"):
        kept["initial_magmoms_muB"] = dict(settings["initial_magmoms_muB"])
    return {"settings": kept, "resources": dict(resources)}


def estimate_structure(symbols: Sequence[str], lattice_A: np.ndarray, gate: GateSettings) -> CostEstimate:
    """The estimate for a structure with the settings its DFT uses: bands from its valence electrons,
    spin as :func:`dftscreen.dft.attach_gpaw` decides, the merged settings' k-points, the policy's ranks."""
    moments = initial_moments(symbols, dict(gate.magmoms_muB))
    spin = gate.spinpol if gate.spinpol is not None else any(moments)
    bands = gate.nbands or default_bands(symbols, sum(moments) if spin else 0.0, gate.xc)
    return estimate_cost(
        len(symbols), lattice_A, gate.ecut_eV, gate.kpt_density_per_A, gate.policy.tasks(len(symbols)),
        bands=bands, spins=2 if spin else 1, kpts=gate.kpts, property_kpt_density_per_A=gate.property_kpt_density_per_A,
    )


def cell_only_estimate(n_atoms: int, lattice_A: np.ndarray, gate: GateSettings) -> CostEstimate:
    """The check's estimate before the real inputs (:data:`BANDS_PER_ATOM` bands per atom, no spin, the run's
    cutoff and k-point density): kept by results folders whose packs started with it
    (:func:`keeps_cell_only_estimates`)."""
    return estimate_cost(n_atoms, lattice_A, gate.ecut_eV, gate.kpt_density_per_A, gate.policy.tasks(n_atoms))


#: What the check writes in :attr:`dftscreen.layout.ResultsLayout.size_estimate_note` once it gated with
#: :func:`estimate_structure`; packs that start from then on carry those numbers.
REAL_INPUT_NOTE = (
    "The check of this results folder estimates DFT costs from the real inputs "
    "(dftscreen.size_gate.estimate_structure); packs started here carry those numbers.\n"
)


def keeps_cell_only_estimates(layout: ResultsLayout) -> bool:
    """Whether the check of the results folder ``layout`` keeps :func:`cell_only_estimate`: DFT packs started
    there (``dft.structures_per_pack``) before its check wrote :attr:`~ResultsLayout.size_estimate_note`.

    A pack job's shell command holds each member's estimate (rules/pack.smk): a check rerun with new
    numbers would rerun every finished pack of the folder.
    """
    return bool(layout.pack_member_files()) and not Path(layout.size_estimate_note).is_file()


def structure_gate_params(
    settings: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]], resources: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Structure id -> :func:`gate_params` of its merged settings, for each ``dft.structure_overrides`` entry that
    changes what the gate reads (none: an empty mapping)."""
    run = gate_params(settings, resources)
    found = {
        sid: gate_params(deep_merge(dict(settings), dict(override)), resources) for sid, override in overrides.items()
    }
    return {sid: params for sid, params in sorted(found.items()) if params != run}


@dataclass(frozen=True)
class Route:
    """Where a structure goes: ``resources`` is ``policy``, ``enlarged`` or ``refused`` (then ``reason`` says why)."""

    resources: str
    estimate: CostEstimate
    reason: str = ""


def too_large_reason(estimate: CostEstimate, policy: ResourcePolicy) -> str:
    """Why a job is refused, or "" when it fits: the estimate (the very numbers of the table's
    ``dft_estimate_*`` columns, without the margin) and the limit that it, times :data:`MARGIN`, exceeds."""
    too_big = []
    if MARGIN * estimate.mem_mb_per_task > policy.max_mem_mb_per_task:
        too_big.append(
            f"{estimate.mem_mb_per_task / 1000:.1f} GB per rank "
            f"(x {MARGIN:g} margin > dft.resources.max_mem_mb_per_task {policy.max_mem_mb_per_task / 1000:g} GB)"
        )
    if MARGIN * estimate.runtime_min > policy.max_runtime_min:
        too_big.append(
            f"{estimate.runtime_min / 60:.1f} h "
            f"(x {MARGIN:g} margin > dft.resources.max_runtime_min {policy.max_runtime_min / 60:g} h)"
        )
    if not too_big:
        return ""
    kpoints = f"{estimate.kpoints_irreducible} k-points"
    if estimate.kpoints_properties:
        kpoints += f" ({estimate.kpoints_properties} for the properties)"
    spin = ", spin-polarised" if estimate.spins == 2 else ""
    return (
        f"too large for DFT here: estimated {' and '.join(too_big)} on {estimate.tasks} rank(s) "
        f"for {estimate.n_atoms} atoms, {estimate.plane_waves} plane waves per band, {estimate.bands} bands, "
        f"{kpoints}{spin} (dftscreen.size_gate); raise the limits for a larger machine"
    )


def route(estimate: CostEstimate, policy: ResourcePolicy) -> Route:
    """Send to DFT with the policy's resources, with larger ones, or not at all.

    A job is refused when the estimate with its margin exceeds the largest
    memory per rank or wall time a job may get (``dft.resources.max_mem_mb_per_task``,
    ``max_runtime_min``); enlarged when it exceeds what the policy gives that
    number of atoms.
    """
    reason = too_large_reason(estimate, policy)
    if reason:
        return Route("refused", estimate, reason)
    mem, runtime = MARGIN * estimate.mem_mb_per_task, MARGIN * estimate.runtime_min
    fits = mem <= policy.mem_mb_per_task(estimate.n_atoms) and runtime <= policy.runtime_min(estimate.n_atoms)
    return Route("policy" if fits else "enlarged", estimate)


def estimate_phonons(
    supercell_symbols: Sequence[str], supercell_lattice_A: np.ndarray, n_displacements: int, gate: GateSettings
) -> CostEstimate:
    """The estimate for the finite-displacement phonons of a structure (:mod:`dftscreen.phonons`):
    one SCF single point of the supercell per displacement, plus one for the residual forces
    (memory and ranks as a relaxation of the supercell: the same plane waves, bands and k-points)."""
    supercell = estimate_structure(supercell_symbols, supercell_lattice_A, gate)
    per_single_point_min = supercell.runtime_min / (RELAX_SINGLE_POINTS + PROPERTY_SINGLE_POINTS)
    return dataclasses.replace(supercell, runtime_min=per_single_point_min * (n_displacements + 1))
