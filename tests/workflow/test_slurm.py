"""End to end on a real one-node SLURM: `snakemake --profile profiles/slurm` with the plugin.

tools/slurm_cluster.sh brings the cluster up (installing slurmctld, slurmd, munge,
slurmdbd and MariaDB when missing). Two small structures, test preset:

1. First run: the check job and every GPAW job go through sbatch; GPAW runs under
   srun with 2 tasks. NaCl's relaxation is given a 1-minute time limit and more
   ionic steps than fit in it, so SLURM kills it (TIMEOUT); MgGeO3 finishes, the
   run reports the failure and writes the partial table, and `dftscreen status`
   names the time limit.
2. Same command with the normal runtime: exactly NaCl's relax and properties
   jobs are submitted; the relaxation resumes from its checkpoint; the table is
   complete.
3. Same command again: nothing is submitted.

Jobs are counted and inspected with `sacct --parsable2` (explicit fields).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dftscreen.inputs import make_id

from conftest import EXAMPLES, REPO, real_slurm_config, run_snakemake, write_run_config

pytestmark = pytest.mark.e2e

# The id of "broken overlapping atoms.cif": a name with spaces gets a readable prefix and a hash of its path.
BROKEN_ID = make_id("broken overlapping atoms.cif")[0]

CLUSTER_SCRIPT = REPO / "tools" / "slurm_cluster.sh"
FAST = "MgGeO3_perov5_16100"
KILLED = "NaCl_crystallm_P4nmm"
STRUCTURES = [f"{FAST}.cif", f"{KILLED}.cif", "broken overlapping atoms.cif"]
# Only the killed structure gets a time limit too short for it (minutes).
SHORT_RUNTIME = f"relax:runtime=1 if wildcards.sid == '{KILLED}' else 30"


def profile_set_resources(*extra: str) -> list[str]:
    """``--set-resources`` with the profile's own entries plus ``extra``.

    A --set-resources on the command line replaces the profile's whole
    set-resources (srun, one CPU per task), so they are repeated here.
    """
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    entries = [
        f"{rule}:{name}={value}"
        for rule, values in profile["set-resources"].items()
        for name, value in values.items()
    ]
    return ["--set-resources", *entries, *extra]


def can_run_slurm() -> str | None:
    """Why this machine cannot run the test, or None."""
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no SLURM and no apt-get to install it"
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        return "starting SLURM daemons needs root or sudo"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (bash tools/setup.sh --with-slurm)"
    return None


@contextmanager
def one_cluster_user():
    """The one-node cluster for one test module at a time (an exclusive lock; waits for it).

    The test command runs two pytest workers, and both SLURM modules bring the same cluster
    up with their own node size: they must not overlap. tests/conftest.py hands them to one
    worker; this lock holds whatever the hand-out.
    """
    with open(Path(tempfile.gettempdir()) / "dftscreen-slurm-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def slurm_cluster():
    """The one-node cluster, up for this module; taken down afterwards if this test started it."""
    reason = can_run_slurm()
    if reason:
        pytest.skip(reason)
    with one_cluster_user(), real_slurm_config():
        was_up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True).returncode == 0
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield
        if not was_up:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "down"], capture_output=True, timeout=300)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The documented SLURM command, run in ``workdir`` (short status polls to keep the test quick)."""
    return run_snakemake(
        workdir,
        "--slurm-init-seconds-before-status-checks", "5",
        "--seconds-between-status-checks", "5",
        # Deterministic job counts: the time-limit failure must not be retried here.
        "--retries", "0",
        *args,
        profile="slurm", timeout=1500,
    )


def sacct_jobs(workdir: Path, after_job_id: int) -> list[dict[str, str]]:
    """Allocations (not steps) submitted from ``workdir`` with an id above ``after_job_id``."""
    fields = ["JobIDRaw", "State", "Comment", "WorkDir", "Timelimit"]
    out = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--allocations", "--starttime=now-1days",
         f"--format={','.join(fields)}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    return [
        row for row in rows
        if int(row["JobIDRaw"]) > after_job_id and os.path.realpath(row["WorkDir"]) == str(workdir.resolve())
    ]


def sacct_steps(job_id: str) -> list[dict[str, str]]:
    """Steps of one job (batch script, srun steps) with their task counts."""
    fields = ["JobID", "JobName", "NTasks", "State"]
    out = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--jobs", job_id, f"--format={','.join(fields)}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]


def last_job_id() -> int:
    out = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--allocations", "--starttime=now-1days", "--format=JobIDRaw"],
        capture_output=True, text=True, check=True,
    ).stdout
    return max((int(x) for x in out.split()), default=0)


def jobs_settled(workdir: Path, after_job_id: int, timeout: float = 60) -> list[dict[str, str]]:
    """Jobs of a finished run, once accounting has their final state and comment."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = sacct_jobs(workdir, after_job_id)
        if all(job["State"] not in ("PENDING", "RUNNING", "COMPLETING") and job["Comment"] for job in jobs):
            return jobs
        if time.monotonic() > deadline:
            return jobs
        time.sleep(2)


def by_rule(jobs: list[dict[str, str]]) -> list[str]:
    return sorted(job["Comment"] for job in jobs)


def test_slurm_profile_end_to_end_with_time_limit_failure_and_rerun(slurm_cluster, tmp_path: Path):
    started = time.monotonic()
    workdir = tmp_path
    cifs = workdir / "cifs"
    cifs.mkdir()
    for name in STRUCTURES:
        shutil.copy(EXAMPLES / name, cifs / name)
    config = {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "stability": {"elemental_references": False},
        # A scheduling test: the ML stage's own jobs would only add submissions to count.
        "ml": {"enabled": False},
        "dft": {
            "preset": "test",
            "resources": {"atoms_per_task": 1},
            # This test is about scheduling, not physics: few ionic steps and no band path keep it short.
            "overrides": {"relax": {"max_steps": 2}, "properties": {"band_path_npoints": 0}},
            # No force is below zero, so NaCl never converges and runs towards a step
            # limit of 1000 SCFs: however fast the machine, the one-minute time limit
            # kills it mid-relaxation. (A tiny fmax is not enough: with one BLAS thread
            # per rank NaCl reached 1e-7 eV/Å in 21 steps, 44 s.)
            "structure_overrides": {KILLED: {"relax": {"fmax_eV_per_A": 0.0, "max_steps": 1000}}},
        },
    }
    write_run_config(workdir, config)

    # --- 1. first run: NaCl's relaxation is killed at its time limit -------------
    before = last_job_id()
    first = snakemake(workdir, *profile_set_resources(SHORT_RUNTIME))
    log = first.stdout + first.stderr
    assert first.returncode != 0, log[-5000:]
    jobs = jobs_settled(workdir, before)
    assert by_rule(jobs) == [
        "rule_check",
        "rule_compare_known",
        f"rule_properties_wildcards_{FAST}",
        f"rule_relax_wildcards_{FAST}",
        f"rule_relax_wildcards_{KILLED}",
    ], jobs
    states = {job["Comment"]: job["State"] for job in jobs}
    assert states[f"rule_relax_wildcards_{KILLED}"] == "TIMEOUT", jobs
    assert {state for comment, state in states.items() if KILLED not in comment} == {"COMPLETED"}, jobs
    # GPAW ran as one srun step of 2 tasks inside each GPAW job.
    for job in jobs:
        if job["Comment"].startswith(("rule_relax", "rule_properties")):
            steps = sacct_steps(job["JobIDRaw"])
            assert any(step["NTasks"] == "2" for step in steps if "." in step["JobID"]), (job, steps)
    partial = pd.read_csv(workdir / "out" / "results_partial.csv").set_index("structure_id")
    # ok or not_converged: the test caps ionic steps at 2.
    assert partial.loc[FAST, "status"] in ("ok", "not_converged"), partial.loc[FAST, "reason"]
    assert math.isfinite(partial.loc[FAST, "energy_per_atom_eV"])
    assert partial.loc[KILLED, "status"] == "not_finished"
    checkpoint = json.loads((workdir / "out" / "dft" / KILLED / "checkpoint.json").read_text())
    # Unloaded, a few ionic steps fit in the minute; on a busy machine only the first SCF.
    steps_before_kill = int(checkpoint["n_ionic_steps"])
    # What a user checks in the morning.
    status = subprocess.run(
        [sys.executable, "-m", "dftscreen.cli", "status", "--json", str(workdir / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert status.returncode == 0, status.stderr
    relax = json.loads(status.stdout)["stages"]["relax"]
    assert (relax["done"], relax["failed"], relax["failed_ids"]) == (1, 1, [KILLED]), relax
    assert any("TIMEOUT" in reason for reason in relax["failure_reasons"]), relax

    # --- 2. the same command with the normal runtime reruns only NaCl -------------
    # The user also lets NaCl stop one step after where it was killed (a per-structure
    # change: only NaCl's jobs may rerun), which keeps the test short.
    config["dft"]["structure_overrides"][KILLED]["relax"]["max_steps"] = steps_before_kill + 1
    write_run_config(workdir, config)
    before = last_job_id()
    second = snakemake(workdir)
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    jobs = jobs_settled(workdir, before)
    assert by_rule(jobs) == [f"rule_properties_wildcards_{KILLED}", f"rule_relax_wildcards_{KILLED}"], jobs
    assert {job["State"] for job in jobs} == {"COMPLETED"}, jobs
    record = json.loads((workdir / "out" / "dft" / KILLED / "relax.json").read_text())
    assert record["n_starts"] == 2 and record["resumed_from_step"] == steps_before_kill, record
    assert record["mpi_ranks"] == 2
    table = pd.read_csv(workdir / "out" / "results.csv").set_index("structure_id")
    assert len(table) == len(STRUCTURES)
    assert table.loc[BROKEN_ID, "status"] == "invalid"
    for sid in (FAST, KILLED):
        assert table.loc[sid, "status"] in ("ok", "not_converged"), table.loc[sid, "reason"]
        assert math.isfinite(table.loc[sid, "energy_per_atom_eV"])
        assert table.loc[sid, "mpi_ranks"] == 2
    assert table.loc[KILLED, "relax_n_starts"] == 2

    # --- 3. and once more: nothing to submit --------------------------------------
    before = last_job_id()
    third = snakemake(workdir)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "Nothing to be done" in third.stdout + third.stderr
    assert sacct_jobs(workdir, before) == []
    print(f"SLURM end-to-end test: {time.monotonic() - started:.0f} s after the cluster was up")
