"""How a GPAW job's MPI ranks are started: ``mpiexec`` on a workstation, ``srun`` inside SLURM.

The ``mpi`` resource of every GPAW rule is :func:`mpi_launcher`'s answer, evaluated where
the job runs: on the machine that plans the run (no SLURM job) it is ``mpiexec``; inside
a SLURM job Snakemake evaluates it again and gets ``srun``, which takes the job's size and
time limit. A pack of structures (:mod:`dftscreen.dft_pack`) starts its own steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: How a GPAW job's ranks are started outside SLURM. OpenMPI's mpiexec binds each rank to a
#: core counted from core 0 in every job, so two 1-rank jobs running side by side on one
#: machine both got core 0 and ran at half speed; without binding the kernel places them.
MPIEXEC = "mpiexec --bind-to none"


def step_name(stage: str, structure_id: str) -> str:
    """Name of a structure's srun step inside a pack: ``<stage>:<structure id>`` (what sacct shows)."""
    return f"{stage}:{structure_id}"


def mpi_launcher(default: str = MPIEXEC, environ: Mapping[str, str] | None = None) -> str:
    """The MPI launcher of one GPAW job: ``default`` outside a SLURM job, ``srun`` inside one.

    Args:
        default: the launcher outside SLURM (e.g. ``mpiexec --bind-to none``).
        environ: the process environment (``os.environ`` when None).
    """
    environ = os.environ if environ is None else environ
    return "srun" if "SLURM_JOB_ID" in environ else default
