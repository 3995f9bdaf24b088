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
    """SIGKILL of both MPI ranks of a GPAW relaxation, then a rerun: it resumes with the optimizer's state.

    That the resumed steps are the uninterrupted run's and end at its minimum is
    shown with EMT in test_relax_driver.py (deterministic, so to 1e-9 Å).
    """
    cif = distorted_silicon(tmp_path / "si.cif")
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
    at_kill = json.loads(checkpoint.read_text())

    proc = run_gpaw_module("dftscreen.relax", relax_args(cif, killed))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((killed / "relax.json").read_text())
    assert resumed["status"] == "relaxed"
    assert resumed["n_starts"] == 2
    # The cost counts both starts: the killed one (at least up to the checkpoint read above) and this one.
    assert wall_before_kill > 0
    assert resumed["wall_time_all_starts_s"] >= resumed["wall_time_s"] + wall_before_kill
    assert resumed["core_seconds_all_starts"] == pytest.approx(2 * resumed["wall_time_all_starts_s"])
    assert resumed["resumed_from_step"] == at_kill["n_ionic_steps"] >= steps_at_kill
    assert resumed["n_ionic_steps"] > resumed["resumed_from_step"] or resumed["resumed_from_step"] > 0
    # Both ranks read the BFGS Hessian back with the geometry, and went on from the checkpoint.
    assert resumed["resumed_with_optimizer_state"] is True
    from ase.io import read

    after_resume = read(killed / "relax_attempt2.traj", index=":")
    np.testing.assert_allclose(after_resume[0].cell[:], at_kill["cell_A"], atol=1e-6)
    np.testing.assert_allclose(after_resume[0].positions, at_kill["positions_A"], atol=1e-6)
    # The distorted cell relaxes towards diamond Si's PBE volume (~20.4 Å³/atom; test preset, loose).
    assert resumed["final_volume_A3"] / 2 == pytest.approx(20.4, rel=0.05)
