"""GPAW plane-wave relaxation of cell and atomic positions.

The cell and positions relax together through ASE's ``FrechetCellFilter``
(forces in eV/Å and stress scaled to the same units) with the optimizer named
in the preset. GPAW refuses to continue when atoms move so that the point-group
symmetry it uses for k-points breaks; with ``fix_symmetry`` (default) ASE's
``FixSymmetry`` constraint keeps the structure in its starting space group so
that cannot happen.

Every ionic step is checkpointed and a rerun resumes from the last one, with
the optimizer's state: the BFGS Hessian as ASE saved it; FIRE's velocities and
step control, PreconLBFGS's memory and BFGS-MLHessian's Hessian in the checkpoint itself
(:data:`CHECKPOINTED_OPTIMIZER_STATE`). PreconLBFGS uses ASE's Exp
preconditioner on the same cell filter; BFGS-MLHessian is BFGS starting from the ML
potential's Hessian at the start geometry (:mod:`dftscreen.ml_hessian`; the record's
``initial_hessian`` says which Hessian it started from). An SCF that does not converge is retried
with the rungs of an error ladder (see :mod:`dftscreen.recovery`).

A structure's relaxation (``dft/<id>/relax.json``) ends by writing its final
GPAW state, density and wave functions, to ``relaxed.gpw`` (:func:`write_restart`),
which the single point starts from (:mod:`dftscreen.properties`).

The calculator is attached by a factory (:data:`CalculatorFactory`, GPAW by
default): tests pass one that attaches ASE's EMT, so the ladder, the resume and
the stress gate run in seconds without GPAW.

Each ionic step prints one line (energy, largest force, largest stress, step
time) to stdout, the job log; the wall time is summed over every start in the
checkpoint, so a resumed relaxation's cost counts all of them (:mod:`dftscreen.cost`).

Run under MPI as ``mpiexec -n N gpaw python -m dftscreen.relax ...``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, optimize
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize.optimize import RestartError
from ase.parallel import world
from pymatgen.io.cif import CifWriter

from dftscreen import __version__, status_codes
from dftscreen.changes import relaxation_change
from dftscreen.cif_reader import read_structure
from dftscreen.dft import (
    COMPUTED_DEDECUT,
    EV_PER_A3_TO_GPA,
    MeshGap,
    apply_magmom_overrides,
    atoms_to_structure,
    attach_gpaw,
    choose_kpt_density,
    coarse_probe,
    common_arguments,
    cutoff_derivative,
    failure_reason,
    insulator_mesh_asked,
    is_legacy_gpaw,
    mesh_band_gap_eV,
    one_blas_thread_per_rank,
    parse_settings,
    report_traceback,
    structure_to_atoms,
    write_gpaw_restart,
    write_on_master,
)
from dftscreen.io import atomic_write_with
from dftscreen.layout import RELAXATION_RESTART_NAME, generated_cif_beside, relaxation_has_single_point
from dftscreen.ml_hessian import MLCalculatorFactory, MLHessianBFGS, initial_hessian
from dftscreen.recovery import (
    OPTIMIZER_STATE_NAME,
    atoms_from_checkpoint,
    load_checkpoint,
    resumable,
    starting_structure_fingerprint,
    strategies,
    write_checkpoint,
)
from dftscreen.settings import deep_merge

#: Attaches a calculator to ``atoms`` (as ``atoms.calc``) and returns it, given
#: the GPAW settings of one attempt (the preset's ``gpaw`` dictionary with the
#: ladder rung merged in; eV, Å) and the path of the calculator's text log.
#: :func:`dftscreen.dft.attach_gpaw` is the default.
CalculatorFactory = Callable[[Atoms, dict[str, Any], Path], Any]


class RelaxationFailed(Exception):
    """The SCF error ladder was exhausted; ``reason`` is the sentence for the table."""

    def __init__(self, reason: str, state: dict[str, Any]):
        super().__init__(reason)
        self.reason = reason
        self.state = state


def _is_scf_failure(exc: BaseException) -> bool:
    from gpaw import ConvergenceError

    return isinstance(exc, ConvergenceError)


def _is_symmetry_failure(exc: BaseException) -> bool:
    # Legacy GPAW raises RuntimeError('Broken symmetry!'), the new code SymmetryBrokenError.
    return type(exc).__name__ == "SymmetryBrokenError" or "broken symmetry" in str(exc).lower()


def _ladder_summary(attempts: list[dict[str, Any]]) -> str:
    tried = "; ".join(f"{a['strategy']} ({a['description']})" for a in attempts)
    return f"SCF did not converge after {len(attempts)} strategies: {tried}"


def _remove_optimizer_state(workdir: Path) -> None:
    world.barrier()  # every rank has read (or failed to read) it
    if world.rank == 0:
        (workdir / OPTIMIZER_STATE_NAME).unlink(missing_ok=True)
    world.barrier()


#: Optimizers whose state goes into the checkpoint (:data:`CHECKPOINTED_OPTIMIZER_STATE`), with the
#: geometry it belongs to, instead of ASE's own restart file: ASE writes that file inside the step,
#: before the forces of the new geometry, so a kill during those forces (where a DFT relaxation
#: spends its time) leaves a state one step ahead of the checkpoint. BFGS copes (its update from
#: an unchanged geometry is skipped); FIRE would apply its velocity update twice and PreconLBFGS
#: divide by a zero step.
CHECKPOINTED_OPTIMIZER_STATE: dict[str, tuple[str, ...]] = {
    # Velocity, time step, mixing parameter and the count of downhill steps.
    "FIRE": ("vel", "dt", "a", "Nsteps"),
    # The L-BFGS memory (steps, force changes, their products), the last point and energies, the
    # line search's state; of the Exp preconditioner its energy scales (mu, estimated at the start)
    # and distances. Its matrix is rebuilt at the resumed geometry (ASE reuses it until atoms move
    # half a neighbour distance), so the steps after a resume differ slightly from an uninterrupted run's.
    "PreconLBFGS": ("iteration", "s", "y", "rho", "r0", "f0", "e0", "e1", "task", "_just_reset_hessian"),
    # BFGS's Hessian as updated (None before the first step) with the last point and its forces,
    # and the ML Hessian the first step uses while no step has updated it: a resumed run does
    # not compute it again.
    "BFGS-MLHessian": ("start_hessian", "hessian", "pos0", "forces0"),
}
#: Fields of :data:`CHECKPOINTED_OPTIMIZER_STATE` that are numpy arrays (or None).
_ARRAY_FIELDS = ("vel", "r0", "f0", "start_hessian", "hessian", "pos0", "forces0")
#: The Exp preconditioner's fields kept with PreconLBFGS's state.
PRECON_STATE = ("mu", "mu_c", "r_NN", "r_cut")


def _make_optimizer(name: str, target: Any, arguments: dict[str, Any]) -> Any:
    """ASE's optimizer ``name`` on ``target``; PreconLBFGS with the Exp preconditioner (A = 3, ASE's default).

    Two corrections to ASE 3.29's PreconLBFGS on a cell filter: it is converged when every
    force of the filter is below fmax, cell rows included, as for the other optimizers (ASE
    compares the raw stress in eV/Å³ with fmax: rocksalt NaCl under 1.5 GPa, its atoms held
    by symmetry, counted as converged before any step, 8 % off in volume,
    bench/optimizer_compare.py); and a one-atom cell, whose preconditioner scale ASE cannot
    estimate (a zero displacement field, division by zero), gets ASE's floor for both
    scales (mu = mu_c = 1).
    """
    if name == "PreconLBFGS":
        from ase.optimize.precon import Exp, PreconLBFGS

        class FilterAwarePreconLBFGS(PreconLBFGS):
            def gradient_converged(self, gradient: Any) -> bool:
                forces = self._actual_atoms.get_forces()
                return bool((forces**2).sum(axis=1).max() < self.fmax**2)

        atoms = getattr(target, "atoms", target)
        scales = {"mu": 1.0, "mu_c": 1.0} if len(atoms) == 1 else {}
        optimizer = FilterAwarePreconLBFGS(target, precon=Exp(A=3, **scales), **arguments)
        optimizer.__class__.__name__ = "PreconLBFGS"  # in the optimizer's log, as configured
        return optimizer
    if name == "BFGS-MLHessian":
        # Its initial Hessian is set by _run_optimizer unless a saved state is restored.
        class NamedMLHessianBFGS(MLHessianBFGS):
            pass

        NamedMLHessianBFGS.__name__ = name  # in the optimizer's log, as configured
        return NamedMLHessianBFGS(target, **arguments)
    return getattr(optimize, name)(target, **arguments)


def _json_ready(value: Any) -> Any:
    """``value`` with numpy arrays and scalars (also inside lists) as plain lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def capture_optimizer_state(optimizer: Any, name: str) -> dict[str, Any]:
    """The state of a :data:`CHECKPOINTED_OPTIMIZER_STATE` optimizer, as JSON-ready values."""
    fields = {field: _json_ready(getattr(optimizer, field)) for field in CHECKPOINTED_OPTIMIZER_STATE[name]}
    if name == "PreconLBFGS":
        fields["precon"] = {field: _json_ready(getattr(optimizer.precon, field)) for field in PRECON_STATE}
    return {"optimizer": name, **fields}


def restore_optimizer_state(optimizer: Any, name: str, saved: dict[str, Any]) -> None:
    """Give ``optimizer`` the state :func:`capture_optimizer_state` took (arrays back as numpy arrays)."""
    for field in CHECKPOINTED_OPTIMIZER_STATE[name]:
        value = saved[field]
        if field in _ARRAY_FIELDS and value is not None:
            value = np.array(value, dtype=float)
        elif field in ("s", "y"):
            value = [np.array(v, dtype=float) for v in value]
        setattr(optimizer, field, value)
    for field, value in (saved.get("precon") or {}).items():
        setattr(optimizer.precon, field, value)


def _run_optimizer(
    atoms: Atoms,
    gpaw_settings: dict[str, Any],
    relax: dict[str, Any],
    workdir: Path,
    steps: int,
    attempt_number: int,
    on_step: Any,
    attach_calculator: CalculatorFactory = attach_gpaw,
    state: dict[str, Any] | None = None,
    ml_calculator: MLCalculatorFactory | None = None,
) -> tuple[bool, int, bool]:
    """One optimizer run of at most ``steps`` ionic steps.

    ``state`` (the checkpoint's) carries the cell filter's reference cell and, for the
    optimizers of :data:`CHECKPOINTED_OPTIMIZER_STATE`, their state, both updated here.
    BFGS-MLHessian without a saved state starts from the Hessian of ``ml_calculator``'s
    potential (default SevenNet-0, see :func:`dftscreen.ml_hessian.initial_hessian`), noted
    in ``state["initial_hessian"]``.
    Returns (converged, steps taken, whether the optimizer started from a saved state).
    """
    state = {} if state is None else state
    name = relax["optimizer"]
    attach_calculator(atoms, gpaw_settings, workdir / f"relax_gpaw_attempt{attempt_number}.txt")
    atoms.set_constraint()
    if relax.get("fix_symmetry", True):
        atoms.set_constraint(FixSymmetry(atoms, symprec=relax.get("symprec", 1e-3)))
    # Molecules in a box (elemental references such as O2) relax positions only.
    target = FrechetCellFilter(atoms) if relax.get("relax_cell", True) else atoms
    if target is not atoms and name != "BFGS":
        # The filter's cell coordinates are strains from its reference cell: a resumed run keeps the
        # first start's, so the saved state means the same (BFGS keeps it in its own state file).
        if state.get("filter_reference_cell_A") is not None:
            target.orig_cell = np.array(state["filter_reference_cell_A"], dtype=float)
        state["filter_reference_cell_A"] = np.asarray(target.orig_cell).tolist()
    arguments = {
        "trajectory": str(workdir / f"relax_attempt{attempt_number}.traj"),
        "logfile": str(workdir / "relax_optimizer.log"),
    }
    if name in CHECKPOINTED_OPTIMIZER_STATE:
        optimizer = _make_optimizer(name, target, arguments)
        # A state of another optimizer (the config changed between starts) is not used.
        restored = (state.get("optimizer_state") or {}).get("optimizer") == name
        if restored:
            restore_optimizer_state(optimizer, name, state["optimizer_state"])
        elif name == "BFGS-MLHessian":
            hessian, state["initial_hessian"] = initial_hessian(target, ml_calculator)
            if hessian is not None:
                optimizer.H0 = hessian
    else:
        arguments["restart"] = str(workdir / OPTIMIZER_STATE_NAME)
        restored = (workdir / OPTIMIZER_STATE_NAME).is_file()
        try:
            optimizer = _make_optimizer(name, target, arguments)
        except RestartError:
            # ASE writes its state file in place: a kill mid-write leaves it unreadable. Start afresh.
            _remove_optimizer_state(workdir)
            optimizer = _make_optimizer(name, target, arguments)
            restored = False

    def observe() -> None:
        if name in CHECKPOINTED_OPTIMIZER_STATE:
            state["optimizer_state"] = capture_optimizer_state(optimizer, name)
        on_step(optimizer.nsteps)

    optimizer.attach(observe, interval=1)
    converged = bool(optimizer.run(fmax=relax["fmax_eV_per_A"], steps=steps))
    return converged, int(optimizer.nsteps), restored


def print_progress(atoms: Atoms, step: int, step_time_s: float) -> None:
    """One line per ionic step on stdout (the job log), so ``tail -f`` shows whether it converges.

    Energy in eV, largest force (after constraints) in eV/Å, largest stress
    component in GPa, the step's wall time in s. Uses the results the
    optimizer just had computed (every rank asks, so no rank waits on another);
    no extra DFT: a stress that was not computed (positions-only relaxation) shows as n/a.
    """
    fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    stress = getattr(atoms.calc, "results", {}).get("stress")
    if world.rank == 0:
        stress_text = "n/a" if stress is None else f"{float(np.abs(stress).max()) * EV_PER_A3_TO_GPA:.3f} GPa"
        print(
            f"ionic step {step:4d}  energy {atoms.get_potential_energy():.6f} eV  "
            f"fmax {fmax:.4f} eV/Å  max stress {stress_text}  step time {step_time_s:.1f} s",
            flush=True,
        )


def _initial_state(atoms: Atoms, settings: dict[str, Any]) -> dict[str, Any]:
    """The state of a relaxation starting afresh from ``atoms`` (what the checkpoint stores)."""
    return {
        "gpaw_settings": settings["gpaw"],
        "start_fingerprint": starting_structure_fingerprint(atoms),
        "n_ionic_steps": 0,
        "strategy_index": 0,
        "attempts": [],
        "n_starts": 1,
        "resumed_from_step": 0,
        "initial_volume_A3": float(atoms.get_volume()),
        "point_group_symmetry": True,
        # FIRE's and PreconLBFGS's state at the checkpointed geometry (see CHECKPOINTED_OPTIMIZER_STATE),
        # and the cell filter's reference cell of every optimizer but BFGS.
        "optimizer_state": None,
        "filter_reference_cell_A": None,
        # BFGS-MLHessian's starting Hessian: "ML (<model>)" or "BFGS default (<why not>)".
        "initial_hessian": None,
        # dE/dE_cut (eV/eV) of the start geometry when gpaw.dedecut is "computed" (dftscreen.dft.cutoff_derivative).
        "cutoff_derivative_eV_per_eV": None,
        # With gpaw.kpt_density_insulator_per_A: the start geometry's gap on the coarse mesh (eV), the mesh
        # chosen from it (k-points per Å⁻¹; dftscreen.dft.choose_kpt_density) and why, and the final gap on it.
        "start_mesh_gap_eV": None,
        "relax_kpt_density_per_A": None,
        "kpt_density_note": None,
        "final_mesh_gap_eV": None,
        "n_mesh_switches": 0,
        # Why the start SCFs on the coarse mesh gave nothing (their SCF failed): then the dense mesh and
        # GPAW's Pulay estimate instead.
        "start_probe_failure": None,
        # Summed over every start of this relaxation (up to its last checkpoint), so a
        # resumed job's cost counts all its starts; see dftscreen.cost.
        "wall_time_all_starts_s": 0.0,
        "core_seconds_all_starts": 0.0,
    }


def _resume(atoms: Atoms, settings: dict[str, Any], workdir: Path, state: dict[str, Any]) -> Atoms:
    """The atoms to start from: the checkpoint's (updating ``state`` from it) when it is resumable.

    Otherwise ``atoms`` as given, and any saved optimizer state is removed (it belongs to another start).
    """
    checkpoint = load_checkpoint(workdir)
    if resumable(checkpoint, settings["gpaw"], state["start_fingerprint"]):
        atoms = atoms_from_checkpoint(checkpoint, atoms)
        state.update({k: checkpoint[k] for k in state if k in checkpoint})
        state["n_starts"] = int(checkpoint.get("n_starts", 1)) + 1
        state["resumed_from_step"] = int(checkpoint["n_ionic_steps"])
    else:
        _remove_optimizer_state(workdir)
    return atoms


class _Clock:
    """Wall time of this start, added to the totals of the earlier starts kept in ``state``."""

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.start = time.perf_counter()
        self.earlier_wall_s = state["wall_time_all_starts_s"]
        self.earlier_core_s = state["core_seconds_all_starts"]
        self.last_step = self.start

    def account(self) -> None:
        """Add this start's wall time so far to the totals of the earlier starts."""
        elapsed = time.perf_counter() - self.start
        self.state["wall_time_all_starts_s"] = self.earlier_wall_s + elapsed
        self.state["core_seconds_all_starts"] = self.earlier_core_s + elapsed * world.size

    def step_time(self) -> float:
        """Seconds since the previous ionic step (or the start)."""
        now = time.perf_counter()
        step_time, self.last_step = now - self.last_step, now
        return step_time


def _with_start_probes(
    atoms: Atoms,
    settings: dict[str, Any],
    workdir: Path,
    state: dict[str, Any],
    attach_calculator: CalculatorFactory,
    mesh_gap: MeshGap,
) -> dict[str, Any]:
    """``settings`` with what the start geometry's coarse SCFs decide: ``gpaw.dedecut: computed`` replaced
    by the cell's dE/dE_cut, and ``kpt_density_per_A`` by the mesh its gap asks for (other settings unchanged).

    Both come from SCFs on a coarse mesh at the start (:func:`dftscreen.dft.coarse_probe`; the derivative's
    first SCF gives the gap too) and are kept in the checkpoint, so a resumed relaxation keeps the same
    Pulay correction and mesh (its checkpoint's settings are the preset's, so resuming is unaffected).
    Positions-only relaxations (a molecule, phonons' tightening) get neither: no stress, and the mesh of
    the calculation that follows them.
    """
    gpaw = settings["gpaw"]
    if not settings["relax"].get("relax_cell", True) or state["start_probe_failure"] is not None:
        return _settings_from_state(settings, state)
    wants_derivative = gpaw.get("dedecut") == COMPUTED_DEDECUT and state["cutoff_derivative_eV_per_eV"] is None
    wants_gap = insulator_mesh_asked(gpaw) and state["relax_kpt_density_per_A"] is None
    try:
        probe = coarse_probe(atoms, gpaw, workdir, attach_calculator) if wants_derivative or wants_gap else None
        if wants_gap:
            gap = mesh_gap(probe)
            state["start_mesh_gap_eV"] = gap
            state["relax_kpt_density_per_A"] = choose_kpt_density(gpaw, gap)
            threshold = float(gpaw["insulator_min_gap_eV"])
            state["kpt_density_note"] = (
                f"gap {gap:.2f} eV on the coarse mesh at the start {'≥' if gap >= threshold else '<'} "
                f"{threshold:g} eV: relaxed on {state['relax_kpt_density_per_A']:g} k-points per Å⁻¹"
            )
        if wants_derivative:
            state["cutoff_derivative_eV_per_eV"] = cutoff_derivative(atoms, gpaw, workdir, attach_calculator, probe)
    except Exception as exc:
        if not _is_scf_failure(exc):
            raise
        # The relaxation's own SCF has the error ladder; the probes are an economy, not worth failing for.
        state["start_probe_failure"] = f"the start SCF on the coarse mesh failed ({failure_reason(exc)})"
        if wants_gap:
            state["relax_kpt_density_per_A"] = float(gpaw["kpt_density_per_A"])
            state["kpt_density_note"] = f"{state['start_probe_failure']}: relaxed on the dense mesh"
    return _settings_from_state(settings, state)


def _settings_from_state(settings: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the checkpointed Pulay correction and relaxation mesh in ``gpaw`` (where there are some)."""
    gpaw = dict(settings["gpaw"])
    if gpaw.get("dedecut") == COMPUTED_DEDECUT and state["cutoff_derivative_eV_per_eV"] is not None:
        gpaw["dedecut"] = state["cutoff_derivative_eV_per_eV"]
    elif gpaw.get("dedecut") == COMPUTED_DEDECUT and state["start_probe_failure"] is not None:
        gpaw["dedecut"] = "estimate"  # no derivative to give: GPAW's own estimate, not no correction at all
    if state["relax_kpt_density_per_A"] is not None:
        gpaw["kpt_density_per_A"] = state["relax_kpt_density_per_A"]
    return {**settings, "gpaw": gpaw}


def _gap_closed(atoms: Atoms, preset_gpaw: dict[str, Any], state: dict[str, Any], mesh_gap: MeshGap) -> bool:
    """Whether a relaxation on the coarse mesh of a gapped start ended with its gap below the threshold;
    then ``state`` moves it to the dense mesh (``kpt_density_per_A``), with a note, to go on from there."""
    dense = float(preset_gpaw["kpt_density_per_A"])
    if state["relax_kpt_density_per_A"] in (None, dense):
        return False
    gap = mesh_gap(atoms)
    state["final_mesh_gap_eV"] = gap
    threshold = float(preset_gpaw["insulator_min_gap_eV"])
    if gap >= threshold:
        return False
    state["relax_kpt_density_per_A"] = dense
    state["n_mesh_switches"] += 1
    state["kpt_density_note"] = (
        f"{state['kpt_density_note']}; the gap closed to {gap:.2f} eV (< {threshold:g} eV) on the way, "
        f"so the relaxation went on from there on {dense:g} k-points per Å⁻¹"
    )
    return True


def _attempt_gpaw_settings(settings: dict[str, Any], rung: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """GPAW settings of the next attempt: the preset's with the ladder rung merged in (and no point-group
    symmetry once it broke)."""
    gpaw_settings = deep_merge(settings["gpaw"], rung["gpaw"])
    if not state["point_group_symmetry"]:
        gpaw_settings["symmetry"] = {"point_group": False}
    return gpaw_settings


def _step_callback(
    state: dict[str, Any], atoms: Atoms, steps_before: int, clock: _Clock, workdir: Path
) -> Callable[[int], None]:
    """What the optimizer calls after each ionic step of one attempt: count, print progress, checkpoint."""

    def on_step(steps_this_run: int) -> None:
        state["n_ionic_steps"] = steps_before + steps_this_run
        state["energy_eV"] = float(atoms.get_potential_energy())
        clock.account()
        print_progress(atoms, state["n_ionic_steps"], clock.step_time())
        if world.rank == 0:
            write_checkpoint(workdir, atoms, state)

    return on_step


def _failure_of_attempt(exc: Exception, state: dict[str, Any]) -> str | None:
    """The sentence for a failed attempt, after moving ``state`` on to the next try (without point-group
    symmetry, or the next rung of the ladder); ``None`` for an error the ladder does not handle."""
    if _is_symmetry_failure(exc) and state["point_group_symmetry"]:
        state["point_group_symmetry"] = False
        return "symmetry broke during relaxation; retrying without point-group symmetry"
    if _is_scf_failure(exc):
        state["strategy_index"] += 1
        return failure_reason(exc)
    return None


def _after_failed_attempt(
    exc: Exception,
    failure: str,
    rung: dict[str, Any],
    ladder: list[dict[str, Any]],
    state: dict[str, Any],
    atoms: Atoms,
    workdir: Path,
    clock: _Clock,
) -> Atoms:
    """Record a failed attempt and return the atoms of the last completed ionic step to retry from.

    Raises:
        RelaxationFailed: the ladder has no rung left.
    """
    state["attempts"].append(
        {
            "strategy": rung["name"],
            "description": rung["description"],
            "error": failure,
            "at_ionic_step": int(state["n_ionic_steps"]),
        }
    )
    print(f"attempt with {rung['name']} failed: {failure}", file=sys.stderr, flush=True)
    # Go on from the last completed ionic step, not from where the SCF blew up.
    checkpoint = load_checkpoint(workdir)
    if checkpoint is not None:
        atoms = atoms_from_checkpoint(checkpoint, atoms)
    if state["strategy_index"] >= len(ladder):
        clock.account()
        scf_attempts = [a for a in state["attempts"] if "SCF" in a["error"]]
        raise RelaxationFailed(_ladder_summary(scf_attempts), state) from exc
    clock.account()
    if world.rank == 0:
        write_checkpoint(workdir, atoms, state)
    world.barrier()
    return atoms


def _magnetic_moments(atoms: Atoms) -> tuple[float, list[float]]:
    """Total magnetic moment and the moment of each atom (µB); zeros when the calculator has none."""
    try:
        magmom = float(atoms.calc.get_magnetic_moment())
        # Per atom, integrated in its PAW sphere: what tells an antiferromagnet from a non-magnet.
        local_magmoms = [float(m) for m in atoms.calc.get_magnetic_moments()]
    except Exception:
        magmom, local_magmoms = 0.0, [0.0] * len(atoms)
    return magmom, local_magmoms


def _relaxation_record(
    atoms: Atoms,
    state: dict[str, Any],
    scf_strategy: str,
    converged: bool,
    resumed_with_optimizer_state: bool,
    wall_time: float,
) -> dict[str, Any]:
    """The record of a finished relaxation: energies in eV, forces in eV/Å, stress in GPa, volumes in Å³."""
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True) * EV_PER_A3_TO_GPA
    energy = atoms.get_potential_energy()
    magmom, local_magmoms = _magnetic_moments(atoms)
    return {
        "converged": converged,
        "n_ionic_steps": int(state["n_ionic_steps"]),
        "resumed_from_step": int(state["resumed_from_step"]),
        "resumed_with_optimizer_state": resumed_with_optimizer_state,
        "n_starts": int(state["n_starts"]),
        "scf_strategy": scf_strategy,
        "scf_attempts": state["attempts"],
        "point_group_symmetry": state["point_group_symmetry"],
        "initial_hessian": state["initial_hessian"],
        "cutoff_derivative_eV_per_eV": state["cutoff_derivative_eV_per_eV"],
        "relax_kpt_density_per_A": state["relax_kpt_density_per_A"],
        "start_mesh_gap_eV": state["start_mesh_gap_eV"],
        "final_mesh_gap_eV": state["final_mesh_gap_eV"],
        "kpt_density_note": state["kpt_density_note"],
        "start_probe_failure": state["start_probe_failure"],
        "energy_eV": float(energy),
        "free_energy_eV": float(atoms.get_potential_energy(force_consistent=True)),
        "energy_per_atom_eV": float(energy) / len(atoms),
        "max_force_eV_per_A": float(np.linalg.norm(forces, axis=1).max()),
        "forces_eV_per_A": forces.tolist(),
        "stress_GPa": stress.tolist(),
        "max_stress_GPa": float(np.abs(stress).max()),
        "magnetic_moment_muB": magmom,
        "local_magnetic_moments_muB": local_magmoms,
        "initial_volume_A3": float(state["initial_volume_A3"]),
        "final_volume_A3": float(atoms.get_volume()),
        "wall_time_s": wall_time,
        "wall_time_all_starts_s": float(state["wall_time_all_starts_s"]),
        "core_seconds_all_starts": float(state["core_seconds_all_starts"]),
        "mpi_ranks": int(world.size),
    }


def relax_atoms(
    atoms: Atoms,
    settings: dict[str, Any],
    workdir: Path,
    attach_calculator: CalculatorFactory = attach_gpaw,
    ml_calculator: MLCalculatorFactory | None = None,
    mesh_gap: MeshGap = mesh_band_gap_eV,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax ``atoms`` with GPAW, resuming from a checkpoint in ``workdir`` if one exists.

    Args:
        atoms: the generated structure (ignored in favour of the checkpointed
            geometry when ``workdir`` holds a checkpoint of the same settings
            that started from this same structure).
        settings: resolved preset (see :func:`dftscreen.settings.resolve_settings`).
        workdir: folder for GPAW's text output, trajectories and the checkpoint.
        attach_calculator: attaches the calculator of each attempt (default GPAW;
            tests use ASE's EMT).
        ml_calculator: makes the ML calculator of BFGS-MLHessian's initial Hessian
            (default SevenNet-0; unused by the other optimizers).
        mesh_gap: the gap (eV) on the k-points of the atoms' calculator, which chooses the mesh when
            the settings have ``kpt_density_insulator_per_A`` (default ASE's ``bandgap``; tests fake it).

    Returns:
        The relaxed atoms (with GPAW attached) and a record: energies in eV,
        forces in eV/Å, stress in GPa, volumes in Å³, wall time in s.

    Raises:
        RelaxationFailed: every rung of the SCF ladder failed.
        Exception: any other GPAW/ASE error.
    """
    relax = settings["relax"]
    workdir.mkdir(parents=True, exist_ok=True)
    ladder = strategies(settings)
    state = _initial_state(atoms, settings)
    atoms = _resume(atoms, settings, workdir, state)
    preset_gpaw = settings["gpaw"]
    settings = _with_start_probes(atoms, settings, workdir, state, attach_calculator, mesh_gap)
    resumed_with_optimizer_state = False
    clock = _Clock(state)
    while True:
        rung = ladder[state["strategy_index"]]
        steps_before = state["n_ionic_steps"]
        attempt_number = len(state["attempts"]) + state["n_starts"] + state["n_mesh_switches"]
        # Bound now: the optimizer calls it within this attempt only.
        on_step = _step_callback(state, atoms, steps_before, clock, workdir)
        remaining = max(relax["max_steps"] - steps_before, 0)
        try:
            converged, taken, restored = _run_optimizer(
                atoms,
                _attempt_gpaw_settings(settings, rung, state),
                relax,
                workdir,
                remaining,
                attempt_number,
                on_step,
                attach_calculator,
                state,
                ml_calculator,
            )
            resumed_with_optimizer_state = restored and state["n_starts"] > 1
            state["n_ionic_steps"] = steps_before + taken
            if converged and _gap_closed(atoms, preset_gpaw, state, mesh_gap):
                settings = _settings_from_state(settings, state)
                if world.rank == 0:
                    write_checkpoint(workdir, atoms, state)
                continue
            break
        except Exception as exc:
            failure = _failure_of_attempt(exc, state)
            if failure is None:
                raise
            atoms = _after_failed_attempt(exc, failure, rung, ladder, state, atoms, workdir, clock)
    wall_time = time.perf_counter() - clock.start
    clock.account()
    scf_strategy = ladder[state["strategy_index"]]["name"]
    record = _relaxation_record(atoms, state, scf_strategy, converged, resumed_with_optimizer_state, wall_time)
    return atoms, record


def _starting_atoms(
    cif: Path | None, load_atoms: Callable[[], Atoms] | None, settings: dict[str, Any]
) -> tuple[Atoms, Any]:
    """The atoms to relax (from ``load_atoms`` or the CIF, with the preset's initial magnetic moments)
    and the structure read from the CIF (``None`` with ``load_atoms``)."""
    if load_atoms is not None:
        atoms = load_atoms()
        generated = None
    else:
        generated, _ = read_structure(cif)
        atoms = structure_to_atoms(generated)
    apply_magmom_overrides(atoms, settings.get("initial_magmoms_muB"))
    return atoms, generated


def _ladder_failure(exc: RelaxationFailed) -> dict[str, Any]:
    """The fields of a relaxation whose SCF error ladder was exhausted."""
    return dict(
        status=status_codes.FAILED,
        reason=exc.reason,
        converged=False,
        scf_attempts=exc.state["attempts"],
        n_ionic_steps=exc.state["n_ionic_steps"],
        wall_time_all_starts_s=exc.state.get("wall_time_all_starts_s"),
        core_seconds_all_starts=exc.state.get("core_seconds_all_starts"),
    )


def _read_compared_structure(cif: Path, generated_cif: Path, record: dict[str, Any]) -> Any:
    """The generated structure a relaxation from ``cif`` (an ML-relaxed start) is compared with.

    Notes both files in ``record``; ``None`` (and the error in ``record["change"]``) when unreadable.
    """
    record["start_cif"] = str(cif)
    record["compared_with_cif"] = str(generated_cif)
    try:
        generated, _ = read_structure(generated_cif)
    except Exception as exc:
        generated = None
        record["change"] = {"error": f"could not read the generated structure {generated_cif}: {exc}"}
    return generated


def _convergence_status(record: dict[str, Any], relax: dict[str, Any]) -> dict[str, Any]:
    """Status and reason of a finished relaxation: relaxed, or not converged (stress gate or step limit)."""
    stress_limit = relax.get("stress_threshold_GPa")
    stress_ok = not relax.get("relax_cell", True) or stress_limit is None or record["max_stress_GPa"] <= stress_limit
    if record["converged"] and not stress_ok:
        # FrechetCellFilter folds the stress into fmax scaled by the volume; large
        # cells can meet fmax with a stress still too high for a trustworthy volume.
        return dict(
            converged=False,
            status=status_codes.NOT_CONVERGED,
            reason=(
                f"forces converged but the largest stress component is {record['max_stress_GPa']:.2f} GPa "
                f"(threshold {stress_limit} GPa): tighten fmax_eV_per_A and rerun"
            ),
        )
    if record["converged"]:
        return dict(status=status_codes.RELAXED, reason="")
    return dict(
        status=status_codes.NOT_CONVERGED,
        reason=(
            f"relaxation stopped at the step limit ({relax['max_steps']} steps) "
            f"with max force {record['max_force_eV_per_A']:.3f} eV/Å "
            f"(threshold {relax['fmax_eV_per_A']} eV/Å)"
        ),
    )


def _structure_change(generated: Any, relaxed: Any) -> dict[str, Any]:
    """How the relaxed structure differs from the generated one (an error note if the comparison fails)."""
    try:
        return relaxation_change(generated, relaxed)
    except Exception as exc:  # analysis must never lose a finished relaxation
        return {"error": f"could not compare structures: {exc}"}


def write_restart(atoms: Atoms, settings: dict[str, Any], record: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Write the relaxation's final GPAW state (density and wave functions) for the single point.

    Returns what the record keeps of it under ``restart``: the file name (in ``workdir``,
    :data:`dftscreen.layout.RELAXATION_RESTART_NAME`), the GPAW version and calculator
    (legacy or new code) that wrote it and the GPAW settings of the attempt it belongs to
    (the preset's with the SCF-ladder rung the relaxation finished on). A failure to write
    is noted (``error``), never fatal: the single point then starts afresh.
    """
    import gpaw

    path = workdir / RELAXATION_RESTART_NAME
    rung = next(r for r in strategies(settings) if r["name"] == record["scf_strategy"])
    gpaw_settings = _attempt_gpaw_settings(settings, rung, {"point_group_symmetry": record["point_group_symmetry"]})
    if record.get("relax_kpt_density_per_A") is not None:
        # The mesh the state was computed on (a compound with a gap: the coarser one), which the single
        # point compares with its own to decide what it can reuse.
        gpaw_settings["kpt_density_per_A"] = record["relax_kpt_density_per_A"]
    start = time.perf_counter()
    try:
        write_gpaw_restart(atoms.calc, path)
    except Exception as exc:  # noqa: BLE001 - the relaxation is done; the single point can start afresh
        report_traceback()
        return {"file": None, "error": failure_reason(exc)}
    return {
        "file": path.name,
        "gpaw_version": gpaw.__version__,
        "legacy_gpaw": is_legacy_gpaw(atoms.calc),
        "gpaw_settings": gpaw_settings,
        "write_time_s": time.perf_counter() - start,
    }


def run(
    cif: Path | None,
    structure_id: str,
    settings: dict[str, Any],
    out_json: Path,
    out_cif: Path,
    workdir: Path,
    load_atoms: Callable[[], Atoms] | None = None,
    extra: dict[str, Any] | None = None,
    generated_cif: Path | None = None,
    attach_calculator: CalculatorFactory = attach_gpaw,
    keep_gpaw_state: bool = False,
    ml_calculator: MLCalculatorFactory | None = None,
    mesh_gap: MeshGap = mesh_band_gap_eV,
) -> dict[str, Any]:
    """Relax the structure in ``cif`` and write ``out_cif`` (on success) and ``out_json``.

    The record's ``change`` compares the relaxed structure with ``generated_cif``
    (when the relaxation starts from an ML-relaxed geometry: the generated
    structure), by default with the structure in ``cif`` it started from.

    Instead of a CIF, ``load_atoms`` may build the structure (elemental
    references do). A DFT failure is not an error of this function: it is
    recorded in ``out_json`` with status ``failed`` and a reason, so that the
    workflow carries on with the other structures. ``attach_calculator``,
    ``ml_calculator`` and ``mesh_gap`` are passed to :func:`relax_atoms` (default GPAW, SevenNet-0,
    ASE's ``bandgap``). With
    ``keep_gpaw_state`` the final GPAW state is written beside the record for the single point
    (:func:`write_restart`).
    """
    record: dict[str, Any] = {
        "structure_id": structure_id,
        "preset": settings.get("preset"),
        "settings": settings,
        "dftscreen_version": __version__,
        "mpi_ranks": int(world.size),
        **(extra or {}),
    }
    try:
        import gpaw

        record["gpaw_version"] = gpaw.__version__
        atoms, generated = _starting_atoms(cif, load_atoms, settings)
        record["n_atoms"] = len(atoms)
        record["formula"] = atoms.get_chemical_formula(mode="hill")
        atoms, result = relax_atoms(atoms, settings, workdir, attach_calculator, ml_calculator, mesh_gap)
        record.update(result)
    except Exception as exc:
        report_traceback()
        if isinstance(exc, RelaxationFailed):
            record.update(_ladder_failure(exc))
        else:
            record.update(status=status_codes.FAILED, reason=failure_reason(exc), converged=False)
        write_on_master(out_json, record)
        return record
    if generated is not None and generated_cif is not None and Path(generated_cif) != Path(cif):
        generated = _read_compared_structure(cif, generated_cif, record)
    record.update(_convergence_status(record, settings["relax"]))
    relaxed = atoms_to_structure(atoms)
    record["relaxed_cif"] = out_cif.name
    if generated is not None:
        record["change"] = _structure_change(generated, relaxed)
    if keep_gpaw_state:
        record["restart"] = write_restart(atoms, settings, record, workdir)
    if world.rank == 0:
        atomic_write_with(out_cif, lambda tmp: CifWriter(relaxed).write_file(tmp))
    write_on_master(out_json, record)
    return record


def main(argv: list[str] | None = None) -> int:
    one_blas_thread_per_rank()
    parser = common_arguments("GPAW relaxation of one structure")
    parser.add_argument("--cif", required=True, type=Path, help="input CIF")
    parser.add_argument("--out-cif", required=True, type=Path, help="relaxed structure (CIF)")
    parser.add_argument(
        "--generated-cif", type=Path, default=None,
        help="structure the relaxed one is compared with (default: the generated CIF beside an "
        "ML-relaxed --cif, see dftscreen.layout.generated_cif_beside, else --cif itself)",
    )
    args = parser.parse_args(argv)
    run(
        cif=args.cif,
        structure_id=args.structure_id,
        settings=parse_settings(args.settings),
        out_json=args.out_json,
        out_cif=args.out_cif,
        workdir=args.workdir,
        generated_cif=args.generated_cif or generated_cif_beside(args.cif),
        # A structure's relaxation keeps its final state for the single point; a reference's has none.
        keep_gpaw_state=relaxation_has_single_point(args.out_json),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
