"""Every MPI rank of a GPAW job runs one BLAS thread, whatever Snakemake exports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dftscreen import properties, references, relax

from conftest import mpi_env

# What each rank reports: its BLAS libraries' thread counts before and after the limit.
PROBE = """
from threadpoolctl import threadpool_info
from ase.parallel import world
from dftscreen.dft import one_blas_thread_per_rank
before = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
one_blas_thread_per_rank()
after = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
print("rank", world.rank, "before", before, "after", after)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="OpenBLAS caps its threads at the core count")
def test_each_rank_of_a_two_rank_job_runs_one_blas_thread():
    # As Snakemake sets it for a job with threads: 2 (two ranks).
    env = dict(mpi_env(), OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    command = ["mpiexec", "--bind-to", "none", "-n", "2", sys.executable, "-m", "gpaw", "python", "-c", PROBE]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank"))
    # GPAW's own OpenBLAS and numpy's are both loaded and both start with two threads.
    assert lines == ["rank 0 before [2] after [1]", "rank 1 before [2] after [1]"], proc.stdout


@pytest.mark.parametrize("entry_point", [relax, properties, references])
def test_every_gpaw_entry_point_limits_blas_threads(entry_point, monkeypatch):
    calls = []
    monkeypatch.setattr(entry_point, "one_blas_thread_per_rank", lambda: calls.append(entry_point.__name__))
    with pytest.raises(SystemExit):
        entry_point.main(["--help"])
    assert calls == [entry_point.__name__]
