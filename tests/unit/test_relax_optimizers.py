"""The relaxation driver with FIRE and PreconLBFGS (issue 32, item 3), EMT in place of GPAW.

Each relaxes distorted Cu to the minimum BFGS finds, and a relaxation killed partway
resumes from its checkpoint with the optimizer's state (kept in the checkpoint for these
two, see ``dftscreen.relax.CHECKPOINTED_OPTIMIZER_STATE``) and reaches the minimum of an
uninterrupted run. As in test_relax_driver.py, the kill lands while the forces of a new
geometry are computed, after ASE has taken the step that led there. Last, the geometry check
of the single point's restart from the relaxation's GPAW state (item 2), which needs no GPAW.
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
    assert resumed["n_ionic_steps"] == reference["n_ionic_steps"]
    assert resumed["energy_per_atom_eV"] == pytest.approx(reference["energy_per_atom_eV"], abs=1e-9)
    after_resume = read(killed / "relax_attempt2.traj", index=":")
    for resumed_frame, straight_frame in zip(after_resume, uninterrupted[steps_done:], strict=True):
        np.testing.assert_allclose(resumed_frame.cell[:], straight_frame.cell[:], atol=1e-6)
        np.testing.assert_allclose(resumed_frame.positions, straight_frame.positions, atol=1e-6)


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
