"""Kill a real GPAW relaxation with SIGKILL and resume it (test preset, mpiexec -n 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from conftest import mpi_env, run_gpaw_module, settings_json

pytestmark = pytest.mark.dft

OVERRIDES = {"relax": {"fmax_eV_per_A": 0.03, "max_steps": 40}}


def distorted_silicon(path: Path) -> Path:
    """Diamond Si (a = 5.47 Å, near its PBE lattice constant) strained 3 % and with one atom moved ~0.1 Å."""
    a = 5.47
    lattice = Lattice(np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]) * [[1.03], [0.99], [1.0]])
    structure = Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    structure.translate_sites([1], [0.012, -0.008, 0.005])
    CifWriter(structure).write_file(path)
    return path


def relax_args(cif: Path, workdir: Path, overrides: dict = OVERRIDES) -> list[str]:
    return ["--structure-id", "si", "--cif", str(cif), "--settings", settings_json("test", overrides),
            "--out-json", str(workdir / "relax.json"), "--out-cif", str(workdir / "relaxed.cif"),
            "--workdir", str(workdir)]


def test_killed_relaxation_resumes_from_last_step(tmp_path: Path):
    cif = distorted_silicon(tmp_path / "si.cif")

    straight = tmp_path / "straight"
    proc = run_gpaw_module("dftscreen.relax", relax_args(cif, straight))
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = json.loads((straight / "relax.json").read_text())
    assert reference["status"] == "relaxed" and reference["n_ionic_steps"] >= 4, reference

    killed = tmp_path / "killed"
    command = ["mpiexec", "-n", "2", sys.executable, "-m", "gpaw", "python", "-m", "dftscreen.relax",
               *relax_args(cif, killed)]
    job = subprocess.Popen(command, env=mpi_env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.json"
    deadline = time.monotonic() + 300
    steps_at_kill, wall_before_kill = 0, 0.0
    while time.monotonic() < deadline and job.poll() is None:
        if checkpoint.is_file():
            state = json.loads(checkpoint.read_text())
            steps_at_kill, wall_before_kill = state["n_ionic_steps"], state["wall_time_all_starts_s"]
            if steps_at_kill >= 2:
                break
        time.sleep(0.1)
    assert job.poll() is None, "relaxation finished before it could be killed"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert steps_at_kill >= 2
    assert not (killed / "relax.json").exists(), "a killed job must not leave a finished-looking result"

    proc = run_gpaw_module("dftscreen.relax", relax_args(cif, killed))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((killed / "relax.json").read_text())
    assert resumed["status"] == "relaxed"
    assert resumed["n_starts"] == 2
    # The cost counts both starts: the killed one (at least up to the checkpoint read above) and this one.
    assert wall_before_kill > 0
    assert resumed["wall_time_all_starts_s"] >= resumed["wall_time_s"] + wall_before_kill
    assert resumed["core_seconds_all_starts"] == pytest.approx(2 * resumed["wall_time_all_starts_s"])
    assert resumed["resumed_from_step"] >= steps_at_kill
    assert resumed["n_ionic_steps"] > resumed["resumed_from_step"] or resumed["resumed_from_step"] > 0
    # The BFGS Hessian came back with the geometry, so the first step after the resume is the
    # one the uninterrupted run took (a fresh Hessian moves the cell differently, by ~5e-3 Å here).
    assert resumed["resumed_with_optimizer_state"] is True
    from ase.io import read

    uninterrupted = read(straight / "relax_attempt1.traj", index=":")
    after_resume = read(killed / "relax_attempt2.traj", index=":")
    k = resumed["resumed_from_step"]
    np.testing.assert_allclose(after_resume[0].cell[:], uninterrupted[k].cell[:], atol=1e-6)
    np.testing.assert_allclose(after_resume[1].cell[:], uninterrupted[k + 1].cell[:], atol=1e-4)
    # Same minimum as the uninterrupted run, within 1 meV/atom.
    assert abs(resumed["energy_per_atom_eV"] - reference["energy_per_atom_eV"]) < 1e-3


def test_unreadable_optimizer_state_is_dropped_not_fatal(tmp_path: Path):
    """A kill while ASE rewrote its state file leaves it half-written: the resume starts a fresh Hessian."""
    cif = distorted_silicon(tmp_path / "si.cif")
    one_step = {"relax": {**OVERRIDES["relax"], "max_steps": 1}}
    proc = run_gpaw_module("dftscreen.relax", relax_args(cif, tmp_path, one_step))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "relax.json").read_text())["status"] == "not_converged"
    (tmp_path / "relax.json").unlink()
    state = tmp_path / "optimizer_state.json"
    state.write_text(state.read_text()[:40])

    proc = run_gpaw_module("dftscreen.relax", relax_args(cif, tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((tmp_path / "relax.json").read_text())
    assert resumed["status"] == "relaxed" and resumed["resumed_from_step"] >= 1
    assert resumed["resumed_with_optimizer_state"] is False


def test_checkpoint_of_another_starting_structure_is_not_resumed(tmp_path: Path):
    """A CIF replaced under the same name (same species, same settings) starts over."""
    first = distorted_silicon(tmp_path / "si.cif")
    one_step = {"relax": {**OVERRIDES["relax"], "max_steps": 1}}
    proc = run_gpaw_module("dftscreen.relax", relax_args(first, tmp_path, one_step))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "relax.json").unlink()

    replaced = tmp_path / "si_replaced.cif"
    a = 5.40
    lattice = Lattice(np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]))
    CifWriter(Structure(lattice, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])).write_file(replaced)
    proc = run_gpaw_module("dftscreen.relax", relax_args(replaced, tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "relax.json").read_text())
    assert record["status"] == "relaxed"
    assert record["n_starts"] == 1 and record["resumed_from_step"] == 0
    assert record["initial_volume_A3"] == pytest.approx(a**3 / 4, rel=1e-6)
