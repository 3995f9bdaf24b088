"""Real GPAW phonons (test preset) of ``python -m dftscreen.phonons`` under mpiexec -n 2.

Γ-point frequencies from finite displacements are exact for any supercell (displacing an
atom displaces all its periodic images), so these use the unit cell itself as the
supercell (``min_supercell_length_A`` = 1 Å) and look at Γ only: seconds per displacement.
The control flow (reuse, failures, statuses) is tested with EMT in tests/unit/test_phonons.py.
"""

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
from ase import Atoms
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from conftest import mpi_env, run_gpaw_module, settings_json

pytestmark = pytest.mark.dft

#: The unit cell is the supercell: Γ exact, everything else an interpolation not looked at.
UNIT_CELL_ONLY = {"min_supercell_length_A": 1.0}


def phonon_arguments(tmp_path: Path, atoms: Atoms, relax_max_force: float = 0.0,
                     phonon_settings: dict | None = None) -> list[str]:
    """The DFT phonon job's arguments, as if the relaxation had converged with ``relax_max_force`` (eV/Å)."""
    cif = tmp_path / "relaxed.cif"
    CifWriter(AseAtomsAdaptor.get_structure(atoms)).write_file(cif)
    relax_json = tmp_path / "relax.json"
    relax_json.write_text(json.dumps({"status": "relaxed", "max_force_eV_per_A": relax_max_force,
                                      "relaxed_cif": cif.name}))
    return ["--structure-id", "x", "--relaxed-cif", str(cif), "--relax-json", str(relax_json),
            "--settings", settings_json("test"), "--phonon-settings", json.dumps(phonon_settings or UNIT_CELL_ONLY),
            "--workdir", str(tmp_path), "--out-json", str(tmp_path / "phonons.json")]


def phonons(tmp_path: Path, atoms: Atoms, relax_max_force: float = 0.0, phonon_settings: dict | None = None) -> dict:
    """Run the DFT phonon job on ``atoms`` as if the relaxation had converged with ``relax_max_force`` (eV/Å)."""
    out = tmp_path / "phonons.json"
    proc = run_gpaw_module("dftscreen.phonons", phonon_arguments(tmp_path, atoms, relax_max_force, phonon_settings))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["status"] == "computed", record["reason"]
    print({k: v for k, v in record.items() if k not in ("band_structure", "dos")})
    return record


def test_silicon_is_stable_with_its_optical_mode_at_the_pbe_frequency_and_a_rerun_reuses(tmp_path: Path):
    # Diamond Si at the PBE lattice constant (5.47 Å). Reference for the optical (LO = TO) mode at Γ:
    # PBE gives about 15.1-15.3 THz (Materials Project mp-149's PBE phonons, Petretto et al.,
    # Sci. Data 5, 180065 (2018)), a few % below experiment's Raman line, 520 cm⁻¹ = 15.6 THz.
    # Measured here: 15.08 THz at the test preset (400 eV, k-density 2.0 Å: a 4x4x4 Γ-centred mesh),
    # 2 ranks, 15 s; the preset needs no tighter settings for this.
    record = phonons(tmp_path, bulk("Si", "diamond", a=5.47))
    assert record["mpi_ranks"] == 2 and record["n_displacements"] == 1
    assert record["dynamically_stable"] and record["n_imaginary_modes"] == 0
    gamma = sorted(record["gamma_frequencies_THz"])
    assert gamma[:3] == pytest.approx([0, 0, 0], abs=0.01)
    assert gamma[3:] == pytest.approx([gamma[5]] * 3, abs=0.01)  # triply degenerate
    assert 14.7 < gamma[5] < 15.7
    assert record["core_hours"] > 0

    # A killed job's rerun: only the missing displaced supercell is computed again.
    (tmp_path / "phonons" / "displacement-001.json").unlink()
    again = phonons(tmp_path, bulk("Si", "diamond", a=5.47))
    assert again["n_computed"] == 1 and again["n_reused"] == 1
    assert again["gamma_frequencies_THz"] == pytest.approx(record["gamma_frequencies_THz"], abs=0.01)


def test_cubic_barium_titanate_has_the_ferroelectric_instability_at_gamma(tmp_path: Path):
    # Cubic BaTiO3 (5 atoms, a = 4.00 Å; PBE's own is about 4.03 Å) is a saddle point: its
    # triply degenerate polar T1u mode (Ti against the O cage) is imaginary at Γ, the
    # ferroelectric instability (Ghosez et al., Phys. Rev. B 60, 836 (1999): of the order of 200i cm⁻¹,
    # 6i THz, in the LDA). Measured here: -8.15 THz at the test preset, 50 s on 2 ranks.
    a = 4.00
    atoms = Atoms(["Ba", "Ti", "O", "O", "O"], cell=[a, a, a], pbc=True,
                  scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    record = phonons(tmp_path, atoms)
    assert not record["dynamically_stable"]
    assert record["n_imaginary_modes"] == 3
    assert record["min_frequency_qpoint_label"] == "Γ" and record["min_frequency_qpoint"] == [0.0, 0.0, 0.0]
    assert -12.0 < record["min_frequency_THz"] < -3.0
    gamma = sorted(record["gamma_frequencies_THz"])
    assert gamma[:3] == pytest.approx([record["min_frequency_THz"]] * 3, abs=0.05)


def test_residual_forces_above_the_threshold_are_relaxed_away_first(tmp_path: Path):
    # Si with one atom 0.03 Å off its site along [111] (symmetry R3m kept by FixSymmetry):
    # the relaxation "converged" at 0.3 eV/Å, more than phonons.dft_max_force_eV_per_A.
    atoms = bulk("Si", "diamond", a=5.47)
    atoms.positions[1] += 0.03 / np.sqrt(3)
    record = phonons(tmp_path, atoms, relax_max_force=0.3)
    assert record["prerelaxed"] and record["prerelax_converged"]
    assert record["prerelax_max_force_eV_per_A"] <= 0.01
    assert record["residual_max_force_eV_per_A"] <= 0.01
    assert record["dynamically_stable"]
    assert 14.7 < max(record["gamma_frequencies_THz"]) < 15.7
    # A rerun reuses the relaxed positions and every displacement.
    again = phonons(tmp_path, atoms, relax_max_force=0.3)
    assert again["n_computed"] == 0 and again["n_reused"] == again["n_force_calculations"]
    assert again["prerelax_n_steps"] == record["prerelax_n_steps"]


def test_a_job_killed_with_sigkill_reruns_only_the_displacements_it_had_not_finished(tmp_path: Path):
    # A real kill (SIGKILL to mpiexec's whole process group, as SLURM does at a time limit) while
    # cubic BaTiO3's 3 displaced supercells are computed: no record that looks finished, every
    # displacement file left is whole, and the rerun computes exactly the ones missing.
    a = 4.00
    atoms = Atoms(["Ba", "Ti", "O", "O", "O"], cell=[a, a, a], pbc=True,
                  scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    command = ["mpiexec", "-n", "2", sys.executable, "-m", "gpaw", "python", "-m", "dftscreen.phonons",
               *phonon_arguments(tmp_path, atoms)]
    job = subprocess.Popen(command, env=mpi_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    folder = tmp_path / "phonons"
    deadline = time.monotonic() + 400
    try:
        while not (folder / "displacement-001.json").exists() and time.monotonic() < deadline:
            assert job.poll() is None, "the phonon job ended before it could be killed"
            time.sleep(0.2)
        assert (folder / "displacement-001.json").exists(), "no displacement finished in 400 s"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    time.sleep(1)  # the ranks, children of mpiexec's group, die with it
    finished = sorted(path.name for path in folder.glob("displacement-*.json"))
    assert not (tmp_path / "phonons.json").exists()
    assert 2 <= len(finished) < 4, finished  # the undisplaced supercell + at least one displaced, not all 3
    for name in finished:
        assert "forces_eV_per_A" in json.loads((folder / name).read_text())  # whole files only

    record = phonons(tmp_path, atoms)
    assert record["n_force_calculations"] == 4
    assert record["n_reused"] == len(finished) and record["n_computed"] == 4 - len(finished)
    assert not record["dynamically_stable"] and record["min_frequency_qpoint_label"] == "Γ"
