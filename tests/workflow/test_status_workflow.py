"""``dftscreen status`` on a real local run (issue 28, item 6): running while the GPAW job runs,
interrupted once Snakemake and the job are killed (the log named, and the ``--unlock`` the killed
Snakemake's lock needs), and done after the rerun.

One 2-atom structure, ``test`` preset, two ionic steps: the job runs for seconds, long enough to
be seen running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from dftscreen.status import format_status, live_processes, run_status

from conftest import REPO, mpi_env, run_snakemake, write_run_config

pytestmark = pytest.mark.e2e

CONFIG = {
    "input": {"cif_dir": "cifs"},
    "output_dir": "out",
    "dft": {"preset": "test", "overrides": {"relax": {"max_steps": 2}, "properties": {"band_path_npoints": 0}}},
    "stability": {"elemental_references": False},
    "ml": {"enabled": False},
}


def processes_naming(text: str) -> list[int]:
    """Process ids whose command line contains ``text``."""
    return [process.pid for process in live_processes() or [] if text in " ".join(process.args)]


def processes_of_run(folder: Path) -> list[int]:
    """Process ids working in ``folder`` (their working folder inside it) or naming it on their
    command line: the run's Snakemake and its jobs, whose GPAW command lines name their files
    relative to the run folder."""
    inside = str(folder.resolve())
    return [
        process.pid for process in live_processes() or []
        if process.pid != os.getpid()
        and (process.cwd == inside or process.cwd.startswith(inside + os.sep) or inside in " ".join(process.args))
    ]


def kill_until_gone(folder: Path, timeout_s: float = 30.0) -> None:
    """SIGKILL every process of the run in ``folder`` (:func:`processes_of_run`) until none is left.

    Repeated because a dying mpiexec may fork a GPAW rank after a sweep. Matching the run folder,
    not the record's absolute path, is what the CI failures of stops 37 and 38 needed: the GPAW
    command names the record relative to the run folder, so a search for its absolute path found
    nothing, killed nothing, and the ranks still running made status say (rightly) "running"."""
    deadline = time.monotonic() + timeout_s
    while pids := processes_of_run(folder):
        assert time.monotonic() < deadline, f"processes {pids} of {folder} outlived SIGKILL for {timeout_s} s"
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def test_status_tells_a_running_job_from_a_killed_one_and_the_rerun_finishes(tmp_path: Path):
    (tmp_path / "cifs").mkdir()
    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    silicon.to(filename=str(tmp_path / "cifs" / "Si.cif"))
    write_run_config(tmp_path, CONFIG)
    out = tmp_path / "out"
    record = str(out / "dft" / "Si" / "relax.json")

    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(tmp_path), "--profile", str(REPO / "profiles" / "local")]
    run = subprocess.Popen(command, env=mpi_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not processes_naming("dftscreen.relax") or not (out / "logs" / "relax" / "Si.log").is_file():
            assert run.poll() is None, "the run ended before its relaxation was seen running"
            assert time.monotonic() < deadline, "no relaxation started within 300 s"
            time.sleep(0.2)
        relax = run_status(out, query_scheduler=False).stages["relax"]
        assert (relax.running, relax.failed, relax.done) == (1, 0, 0)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # Snakemake and what it started in its session
        run.wait(timeout=60)
        kill_until_gone(tmp_path)  # GPAW ranks started in a session of their own, and anything else left

    status = run_status(out, query_scheduler=False)
    relax = status.stages["relax"]
    assert not Path(record).exists()
    assert (relax.running, relax.failed) == (0, 1), (processes_of_run(tmp_path), status.stale_snakemake_lock)
    text = format_status(status)
    assert "interrupted" in text and str(out / "logs" / "relax" / "Si.log") in text
    assert status.stale_snakemake_lock and "--unlock" in text

    # What the status says: once with --unlock, then the same command.
    assert run_snakemake(tmp_path, "--unlock", profile="local").returncode == 0
    assert not run_status(out, query_scheduler=False).stale_snakemake_lock
    proc = run_snakemake(tmp_path, profile="local", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    relax = run_status(out, query_scheduler=False).stages["relax"]
    assert (relax.done, relax.failed, relax.running) == (1, 0, 0)
