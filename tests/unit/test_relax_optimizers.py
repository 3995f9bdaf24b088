"""The relaxation driver with FIRE and PreconLBFGS (issue 32, item 3), EMT in place of GPAW.

Each relaxes distorted Cu to the minimum BFGS finds, and a relaxation killed partway
resumes from its checkpoint with the optimizer's state (kept in the checkpoint for these
two, see ``dftscreen.relax.CHECKPOINTED_OPTIMIZER_STATE``) and reaches the minimum of an
uninterrupted run. As in test_relax_driver.py, the kill lands while the forces of a new
geometry are computed, after ASE has taken the step that led there. Last, the geometry check
of the single point's restart from the relaxation's GPAW state (item 2), which needs no GPAW.

Then BFGS-MLHessian (BFGS from the ML potential's Hessian at the start geometry, see
dftscreen.ml_hessian) with EMT as the "DFT" and a softened EMT as the "ML" potential: the same
minimum as BFGS, fewer steps with the exact Hessian, the resume without the ML potential and the
fall-back to BFGS's own start when the ML potential fails; last, the default SevenNet-0 when its
package is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from test_relax_driver import RESUME, run_relax, write_cif

from dftscreen.recovery import CHECKPOINT_NAME, OPTIMIZER_STATE_NAME

from emt_factory import EMTFactory, Killed


def optimizer(name: str) -> dict:
    return {"relax": {**RESUME["relax"], "optimizer": name}}


def start(kind: str):
    """Distorted Cu (the driver tests' start), cubic Cu compressed (its atoms held by symmetry,
    only the stress to relax) and a strained one-atom fcc cell."""
    from ase.build import bulk

    if kind == "compressed_cubic":
        # 1.9 % under EMT's lattice constant: a stress of 0.015 eV/Å³, which ASE's own PreconLBFGS
        # test on a cell filter (stress below fmax in eV/Å³) calls converged before any step.
        return bulk("Cu", "fcc", a=3.56, cubic=True)
    if kind == "one_atom":
        atoms = bulk("Cu", "fcc", a=3.50)
        atoms.set_cell(atoms.cell[:] * [[1.03], [1.0], [0.99]], scale_atoms=True)
        return atoms
    return None


@pytest.mark.parametrize("kind", ["distorted", "compressed_cubic", "one_atom"])
@pytest.mark.parametrize("name", ["FIRE", "PreconLBFGS"])
def test_optimizer_reaches_the_bfgs_minimum(tmp_path: Path, name: str, kind: str):
    cif = write_cif(tmp_path / "cu.cif", start(kind))
    bfgs = run_relax(tmp_path / "bfgs", EMTFactory(), RESUME, cif=cif)
    other = run_relax(tmp_path / name, EMTFactory(), optimizer(name), cif=cif)
    assert bfgs["status"] == other["status"] == "relaxed"
    # The criterion for "the same minimum": 1 meV/atom, 0.3 % in volume.
    assert other["energy_per_atom_eV"] == pytest.approx(bfgs["energy_per_atom_eV"], abs=1e-3)
    assert other["final_volume_A3"] == pytest.approx(bfgs["final_volume_A3"], rel=3e-3)
    assert name in (tmp_path / name / "relax_optimizer.log").read_text()
    if kind == "compressed_cubic":
        assert other["n_ionic_steps"] >= 1, "the cell filter's forces, not the raw stress, decide convergence"


# PreconLBFGS needs 5 steps here, FIRE about 20.
@pytest.mark.parametrize(("name", "steps_done"), [("FIRE", 2), ("FIRE", 5), ("PreconLBFGS", 1), ("PreconLBFGS", 3)])
def test_killed_relaxation_resumes_with_the_optimizer_state(tmp_path: Path, name: str, steps_done: int):
    cif = write_cif(tmp_path / "cu.cif")
    reference = run_relax(tmp_path / "straight", EMTFactory(), optimizer(name), cif=cif)
    assert reference["status"] == "relaxed" and reference["n_ionic_steps"] > steps_done + 1, reference
    uninterrupted = read(tmp_path / "straight" / "relax_attempt1.traj", index=":")

    killed = tmp_path / "killed"
    # Killed while computing the first geometry after step steps_done (PreconLBFGS's line search
    # may evaluate more than one per step): the checkpoint holds step steps_done.
    factory_with_kill = _KillAfterSteps(steps_done, killed)
    with pytest.raises(Killed):
        run_relax(killed, factory_with_kill, optimizer(name), cif=cif)
    checkpoint = json.loads((killed / CHECKPOINT_NAME).read_text())
    assert checkpoint["n_ionic_steps"] == steps_done
    assert checkpoint["optimizer_state"]["optimizer"] == name
    assert checkpoint["filter_reference_cell_A"] is not None
    assert not (killed / OPTIMIZER_STATE_NAME).exists(), "the state is in the checkpoint, not ASE's file"
    assert not (killed / "relax.json").exists()

    resumed = run_relax(killed, EMTFactory(), optimizer(name), cif=cif)
    assert resumed["status"] == "relaxed" and resumed["converged"]
    assert resumed["n_starts"] == 2 and resumed["resumed_from_step"] == steps_done
    assert resumed["resumed_with_optimizer_state"] is True
    # The "same minimum" as the uninterrupted run: 1 meV/atom, 0.3 % in volume.
    assert resumed["energy_per_atom_eV"] == pytest.approx(reference["energy_per_atom_eV"], abs=1e-3)
    assert resumed["final_volume_A3"] == pytest.approx(reference["final_volume_A3"], rel=3e-3)
    if name == "PreconLBFGS":
        # Its preconditioner matrix is rebuilt at the resumed geometry: a slightly different path.
        return
    # FIRE's whole state is kept: the steps after the resume are the uninterrupted run's.
    assert_resume_takes_the_uninterrupted_steps(killed, resumed, reference, uninterrupted, steps_done)


class _KillAfterSteps(EMTFactory):
    """EMT that dies at the first evaluation after ``steps_done`` + 1 ionic steps were taken.

    The checkpoint says ``steps_done`` while the geometry of step ``steps_done`` + 1 is being
    computed: that evaluation is the one killed.
    """

    def __init__(self, steps_done: int, workdir: Path):
        super().__init__()
        self.steps_done = steps_done
        self.workdir = workdir

    def __call__(self, atoms, gpaw_settings, txt):
        calc = super().__call__(atoms, gpaw_settings, txt)
        factory = self
        inner = calc.calculate

        def calculate(*args, **kwargs):
            checkpoint = factory.workdir / CHECKPOINT_NAME
            if checkpoint.is_file() and json.loads(checkpoint.read_text())["n_ionic_steps"] == factory.steps_done:
                raise Killed(f"killed computing the geometry after step {factory.steps_done + 1}")
            return inner(*args, **kwargs)

        calc.calculate = calculate
        return calc


def test_restart_geometry_check_accepts_the_cif_rotation_and_refuses_a_moved_atom():
    """relaxed.cif holds the relaxed cell rotated into the standard setting: the same crystal as relaxed.gpw's."""
    from ase.build import bulk

    from dftscreen.properties import _same_geometry

    relaxed = bulk("Si", "diamond", a=5.47)
    relaxed.positions[1] += [0.01, 0.0, -0.02]
    rotated = relaxed.copy()
    rotated.rotate(30, "z", rotate_cell=True)
    assert _same_geometry(relaxed, rotated)
    moved = rotated.copy()
    moved.positions[1] += [0.001, 0.0, 0.0]
    assert not _same_geometry(relaxed, moved)
    strained = relaxed.copy()
    strained.set_cell(relaxed.cell[:] * 1.001, scale_atoms=True)
    assert not _same_geometry(relaxed, strained)


# --- BFGS-MLHessian: BFGS from the ML potential's Hessian (EMT standing in for both) -------------

ML_BFGS = "BFGS-MLHessian"


class _CountingML:
    """An ML calculator factory that counts its calls and the evaluations of its calculators: EMT,
    or a slightly different potential, EMT with ASAP's cutoff and its energy scaled by ``softness``
    (ML potentials tend to be softer than DFT)."""

    def __init__(self, asap_cutoff: bool = False, softness: float = 1.0, fails: str | None = None):
        self.asap_cutoff = asap_cutoff
        self.softness = softness
        self.fails = fails
        self.calls = 0
        self.evaluations = 0

    def __call__(self):
        from ase.calculators.emt import EMT

        self.calls += 1
        if self.fails:
            raise RuntimeError(self.fails)
        calc = EMT(asap_cutoff=self.asap_cutoff)
        inner = calc.calculate

        def calculate(*args, **kwargs):
            self.evaluations += 1
            inner(*args, **kwargs)
            for key in ("energy", "free_energy", "forces", "stress"):
                calc.results[key] = calc.results[key] * self.softness

        calc.calculate = calculate
        return calc


def run_ml_bfgs(workdir: Path, factory: EMTFactory, ml, cif: Path) -> dict:
    """``relax.run`` with BFGS-MLHessian (test preset, the driver tests' fmax) and ``ml``'s Hessian."""
    return run_relax(workdir, factory, optimizer(ML_BFGS), cif=cif, ml_calculator=ml)


def ml_start(kind: str):
    """Distorted Cu (the driver tests'), strained conventional Al with a moved atom, compressed cubic Cu."""
    from ase.build import bulk

    if kind == "strained_al":
        atoms = bulk("Al", "fcc", a=4.10, cubic=True)
        atoms.set_cell(atoms.cell[:] * np.array([[1.02], [0.99], [1.01]]), scale_atoms=True)
        atoms.positions[2] += [0.04, 0.02, -0.03]
        return atoms
    return start(kind)


@pytest.mark.parametrize("kind", ["distorted", "strained_al", "compressed_cubic"])
def test_ml_hessian_bfgs_reaches_the_bfgs_minimum(tmp_path: Path, kind: str):
    cif = write_cif(tmp_path / "start.cif", ml_start(kind))
    bfgs = run_relax(tmp_path / "bfgs", EMTFactory(), RESUME, cif=cif)
    ml = _CountingML(asap_cutoff=True, softness=0.7)
    variant = run_ml_bfgs(tmp_path / "ml", EMTFactory(), ml, cif)
    assert bfgs["status"] == variant["status"] == "relaxed"
    assert variant["initial_hessian"] == "ML (EMT)" and bfgs["initial_hessian"] is None
    assert ml.calls == 1 and ml.evaluations > 0
    # The criterion for "the same minimum": 1 meV/atom, 0.3 % in volume.
    assert variant["energy_per_atom_eV"] == pytest.approx(bfgs["energy_per_atom_eV"], abs=1e-3)
    assert variant["final_volume_A3"] == pytest.approx(bfgs["final_volume_A3"], rel=3e-3)
    assert ML_BFGS in (tmp_path / "ml" / "relax_optimizer.log").read_text()


@pytest.mark.parametrize("kind", ["distorted", "strained_al"])
def test_exact_ml_hessian_takes_fewer_steps_than_bfgs(tmp_path: Path, kind: str):
    """The "ML" potential is the "DFT" one: BFGS starts from the true Hessian (13 steps against 2 on Cu)."""
    cif = write_cif(tmp_path / "start.cif", ml_start(kind))
    bfgs = run_relax(tmp_path / "bfgs", EMTFactory(), RESUME, cif=cif)
    variant = run_ml_bfgs(tmp_path / "ml", EMTFactory(), _CountingML(), cif)
    assert variant["status"] == "relaxed"
    assert variant["n_ionic_steps"] < bfgs["n_ionic_steps"], (variant["n_ionic_steps"], bfgs["n_ionic_steps"])
    assert variant["energy_per_atom_eV"] == pytest.approx(bfgs["energy_per_atom_eV"], abs=1e-3)


def test_ml_factory_failure_falls_back_to_plain_bfgs(tmp_path: Path):
    cif = write_cif(tmp_path / "cu.cif")
    bfgs = run_relax(tmp_path / "bfgs", EMTFactory(), RESUME, cif=cif)
    ml = _CountingML(fails="no SevenNet parameters for Og")
    variant = run_ml_bfgs(tmp_path / "ml", EMTFactory(), ml, cif)
    assert ml.calls == 1
    assert variant["initial_hessian"] == "BFGS default (RuntimeError: no SevenNet parameters for Og)"
    assert variant["status"] == "relaxed"
    # BFGS's own start (70 eV/Å² × identity): the very path of plain BFGS.
    assert variant["n_ionic_steps"] == bfgs["n_ionic_steps"]
    assert variant["energy_per_atom_eV"] == pytest.approx(bfgs["energy_per_atom_eV"], abs=1e-9)


@pytest.mark.parametrize("steps_done", [0, 1])
def test_killed_ml_hessian_relaxation_resumes_without_the_ml_potential(tmp_path: Path, steps_done: int):
    """A softer ML potential (half EMT's curvature) so the variant needs 4 steps; the resumed run
    restores the ML Hessian (or its update) from the checkpoint and never calls the ML factory."""
    cif = write_cif(tmp_path / "al.cif", ml_start("strained_al"))
    reference = run_ml_bfgs(tmp_path / "straight", EMTFactory(), _CountingML(asap_cutoff=True, softness=0.5), cif)
    assert reference["status"] == "relaxed" and reference["n_ionic_steps"] > steps_done + 1, reference
    uninterrupted = read(tmp_path / "straight" / "relax_attempt1.traj", index=":")

    killed = tmp_path / "killed"
    first_ml = _CountingML(asap_cutoff=True, softness=0.5)
    with pytest.raises(Killed):
        run_ml_bfgs(killed, _KillAfterSteps(steps_done, killed), first_ml, cif)
    assert first_ml.calls == 1
    checkpoint = json.loads((killed / CHECKPOINT_NAME).read_text())
    assert checkpoint["n_ionic_steps"] == steps_done
    saved = checkpoint["optimizer_state"]
    assert saved["optimizer"] == ML_BFGS and checkpoint["initial_hessian"] == "ML (EMT)"
    # Before the first step only the ML Hessian is kept; after it, BFGS's update of it.
    assert (saved["hessian"] is None) == (steps_done == 0)
    assert (saved["start_hessian"] is None) == (steps_done > 0)
    assert not (killed / OPTIMIZER_STATE_NAME).exists(), "the state is in the checkpoint, not ASE's file"

    second_ml = _CountingML(fails="the ML potential must not be needed on resume")
    resumed = run_ml_bfgs(killed, EMTFactory(), second_ml, cif)
    assert second_ml.calls == 0
    assert resumed["status"] == "relaxed" and resumed["resumed_with_optimizer_state"] is True
    assert resumed["initial_hessian"] == "ML (EMT)"
    assert resumed["n_starts"] == 2 and resumed["resumed_from_step"] == steps_done
    # BFGS's whole state is kept: the steps after the resume are the uninterrupted run's.
    assert_resume_takes_the_uninterrupted_steps(killed, resumed, reference, uninterrupted, steps_done)


def test_finite_difference_hessian_is_emts_and_the_floor_makes_it_positive_definite():
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter

    from dftscreen.ml_hessian import EIGENVALUE_FLOOR_EV_PER_A2, finite_difference_hessian, ml_twin, positive_definite

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions[1] += [0.05, -0.03, 0.02]
    target = FrechetCellFilter(atoms)
    twin = ml_twin(target, EMT())
    assert twin.atoms is not atoms and atoms.calc is None
    start = twin.get_positions().copy()
    hessian = finite_difference_hessian(twin)
    np.testing.assert_array_equal(twin.get_positions(), start)
    assert hessian.shape == (3 * (len(atoms) + 3),) * 2
    np.testing.assert_allclose(hessian, hessian.T)
    # Against the change of the forces along a random direction (a smaller step, one-sided).
    direction = np.random.default_rng(0).normal(size=start.size) * 1e-4
    twin.set_positions(start + direction.reshape(start.shape))
    moved = twin.get_forces().ravel()
    twin.set_positions(start)
    np.testing.assert_allclose(-(moved - twin.get_forces().ravel()), hessian @ direction, atol=2e-5)
    eigenvalues = np.linalg.eigvalsh(hessian)
    assert eigenvalues.min() < EIGENVALUE_FLOOR_EV_PER_A2 < eigenvalues.max()  # the translations are ~0
    floored = np.linalg.eigvalsh(positive_definite(hessian))
    np.testing.assert_allclose(floored, np.maximum(eigenvalues, EIGENVALUE_FLOOR_EV_PER_A2), atol=1e-9)


def test_default_ml_potential_is_sevennet():
    pytest.importorskip("sevenn")
    from ase.build import bulk
    from ase.filters import FrechetCellFilter

    from dftscreen.ml_hessian import EIGENVALUE_FLOOR_EV_PER_A2, initial_hessian

    atoms = bulk("Cu", "fcc", a=3.70)
    hessian, note = initial_hessian(FrechetCellFilter(atoms))
    assert note == "ML (SevenNet-0)" and atoms.calc is None
    assert hessian.shape == (12, 12)
    assert np.linalg.eigvalsh(hessian).min() >= EIGENVALUE_FLOOR_EV_PER_A2 - 1e-9


def assert_resume_takes_the_uninterrupted_steps(
    killed: Path, resumed: dict, reference: dict, uninterrupted: list, steps_done: int
) -> None:
    """The resumed run took the uninterrupted run's steps after ``steps_done`` and ended at its minimum."""
    assert resumed["n_ionic_steps"] == reference["n_ionic_steps"]
    assert resumed["energy_per_atom_eV"] == pytest.approx(reference["energy_per_atom_eV"], abs=1e-9)
    after_resume = read(killed / "relax_attempt2.traj", index=":")
    for resumed_frame, straight_frame in zip(after_resume, uninterrupted[steps_done:], strict=True):
        np.testing.assert_allclose(resumed_frame.cell[:], straight_frame.cell[:], atol=1e-6)
        np.testing.assert_allclose(resumed_frame.positions, straight_frame.positions, atol=1e-6)
