"""dftscreen.mpi_launch: which launcher a GPAW job gets, and the step names packs give sacct."""

from __future__ import annotations

from dftscreen import mpi_launch


def test_launcher_is_mpiexec_outside_slurm_and_srun_inside_a_job():
    assert mpi_launch.mpi_launcher(environ={}) == "mpiexec --bind-to none"
    assert mpi_launch.mpi_launcher("mpirun", environ={}) == "mpirun"
    assert mpi_launch.mpi_launcher(environ={"SLURM_JOB_ID": "7"}) == "srun"


def test_step_name_is_stage_and_structure_id():
    assert mpi_launch.step_name("relax", "NaCl_1") == "relax:NaCl_1"
