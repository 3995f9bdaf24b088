"""Packs on a real one-node SLURM: many structures' DFT work in few allocations, side by side.

Six tiny rock-salt structures (2 atoms, one MPI rank each, `test` preset) with
``dft.structures_per_pack: 3`` (dftscreen.dft_pack):

1. First run: the DFT work is exactly 2 sbatch jobs; inside each, every structure's
   relax and properties run as srun steps named ``<stage>:<id>``, and the relax steps
   of one pack overlap in time. One structure never converges and its srun step is
   cancelled mid-relaxation: the other five finish; `dftscreen status` names which
   structures ran in which job and which step failed.
2. The same command: one sbatch job, for that structure alone; its relaxation resumes
   from its checkpoint; the table is complete.

The cluster announces 4 CPUs (``SLURM_CLUSTER_CPUS=4``) on this 2-core machine: a
pack of three 1-rank structures needs 3 slots. The tiny test-preset jobs share the
real cores; this is a scheduling test, not a speed test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from test_slurm import (
    CLUSTER_SCRIPT,
    can_run_slurm,
    jobs_settled,
    last_job_id,
    one_cluster_user,
)

from conftest import REPO, mpi_env, real_slurm_config, run_snakemake, write_run_config

pytestmark = pytest.mark.e2e

# Rock salt, 2 atoms in the primitive cell; lattice constants near experiment (Å).
ROCK_SALTS = {"NaCl": 5.64, "MgO": 4.21, "LiF": 4.03, "KCl": 6.29, "NaF": 4.63, "LiCl": 5.13}
OVERRUN = "pack_NaCl"
CLUSTER_CPUS = "4"


def write_rock_salts(folder: Path) -> list[str]:
    """One CIF per compound; returns the structure ids."""
    from pymatgen.core import Lattice, Structure

    folder.mkdir()
    ids = []
    for formula, a in ROCK_SALTS.items():
        cation, anion = (formula[:2], formula[2:]) if formula[1].islower() else (formula[:1], formula[1:])
        structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion],
                                              [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
        sid = f"pack_{formula}"
        structure.to(filename=str(folder / f"{sid}.cif"))
        ids.append(sid)
    return ids


@pytest.fixture(scope="module")
def slurm_cluster_4cpus():
    reason = can_run_slurm()
    if reason:
        pytest.skip(reason)
    with one_cluster_user(), real_slurm_config():
        was_up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True).returncode == 0
        env = dict(os.environ, SLURM_CLUSTER_CPUS=CLUSTER_CPUS)
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], capture_output=True, text=True, timeout=900,
                              env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield
        if not was_up:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "down"], capture_output=True, timeout=300)


def sacct_steps(job_id: str) -> list[dict[str, str]]:
    """srun steps of one job (not the batch step), with their names, states and times."""
    fields = ["JobID", "JobName", "NTasks", "State", "Start", "End"]
    out = subprocess.run(
        ["sacct", "--parsable2", "--noheader", "--jobs", job_id, f"--format={','.join(fields)}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    return [row for row in rows if "." in row["JobID"] and row["JobID"].split(".")[1].isdigit()]


def pack_jobs(jobs: list[dict[str, str]]) -> list[dict[str, str]]:
    """The pack jobs among a run's allocations (their comment names the rule, ``rule_dft_pack...``)."""
    return [job for job in jobs if job["Comment"].startswith("rule_dft_")]


def overlap(steps: list[dict[str, str]]) -> bool:
    """True when every step started before any of them ended."""
    starts = [datetime.fromisoformat(step["Start"]) for step in steps]
    ends = [datetime.fromisoformat(step["End"]) for step in steps]
    return max(starts) < min(ends)


def wait_for(condition, timeout: float, what: str, poll: float = 2.0):
    """Poll ``condition()`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_packs_as_one_job_each_run_side_by_side_and_a_failed_structure_reruns_alone(slurm_cluster_4cpus, tmp_path):
    """``dft.structures_per_pack: 3``: the workflow itself plans one job per pack (dftscreen.dft_pack).

    One structure's relaxation is made to fail inside its pack: its srun step is
    cancelled (as a node fault or an operator would) after its first ionic step.
    """
    started = time.monotonic()
    workdir = tmp_path
    ids = write_rock_salts(workdir / "cifs")
    config = {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "stability": {"elemental_references": False},
        "ml": {"enabled": False},
        "dft": {
            "preset": "test",
            "structures_per_pack": 3,
            "overrides": {"relax": {"max_steps": 2}, "properties": {"band_path_npoints": 0}},
            # Never converges (0.1 s per step once the SCF is settled): still running when its step is cancelled.
            "structure_overrides": {OVERRUN: {"relax": {"fmax_eV_per_A": 0.0, "max_steps": 100_000}}},
        },
    }
    write_run_config(workdir, config)
    options = ["--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5",
               "--retries", "0"]

    # --- 1. two packs; one structure's step is cancelled mid-relaxation ----------------
    before = last_job_id()
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--profile", str(REPO / "profiles" / "slurm"), *options]
    run = subprocess.Popen(command, env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        checkpoint = workdir / "out" / "dft" / OVERRUN / "checkpoint.json"
        wait_for(lambda: checkpoint.is_file() and json.loads(checkpoint.read_text())["n_ionic_steps"] >= 1,
                 900, f"{OVERRUN}'s first ionic step")

        def overrun_step() -> str | None:
            # Every job of the run (sacct has a job's comment only once it ended).
            for job in jobs_settled(workdir, before, timeout=0):
                for step in sacct_steps(job["JobIDRaw"]):
                    if step["JobName"] == f"relax:{OVERRUN}" and step["State"] == "RUNNING":
                        return step["JobID"]
            return None

        step_id = wait_for(overrun_step, 120, f"the running srun step relax:{OVERRUN}")
        # Not check=True: this scancel cancels the step but may still exit non-zero ("Invalid job id"
        # for the step's job); the step's CANCELLED state in sacct is asserted below.
        subprocess.run(["scancel", step_id], timeout=60)
        log, _ = run.communicate(timeout=1500)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0, log[-5000:]
    jobs = jobs_settled(workdir, before)
    packs = pack_jobs(jobs)
    assert sorted(job["Comment"] for job in jobs if job not in packs) == ["rule_check", "rule_compare_known"], jobs
    assert len(packs) == 2 and all(job["Comment"].startswith("rule_dft_pack") for job in packs), jobs
    steps_by_pack = {job["JobIDRaw"]: sacct_steps(job["JobIDRaw"]) for job in packs}
    named = {step["JobName"]: (job_id, step) for job_id, steps in steps_by_pack.items() for step in steps}
    assert sorted(name for name in named if name.startswith("relax:")) == sorted(f"relax:{sid}" for sid in ids), named
    for steps in steps_by_pack.values():
        relax_steps = [step for step in steps if step["JobName"].startswith("relax:")]
        assert len(relax_steps) == 3 and overlap(relax_steps), steps
    pack_of_overrun, overrun = named[f"relax:{OVERRUN}"]
    assert overrun["State"].startswith("CANCELLED"), overrun
    assert f"properties:{OVERRUN}" not in named
    states = {job["JobIDRaw"]: job["State"] for job in packs}
    assert states[pack_of_overrun] == "FAILED", packs
    assert {state for job_id, state in states.items() if job_id != pack_of_overrun} == {"COMPLETED"}, packs
    partial = pd.read_csv(workdir / "out" / "results_partial.csv").set_index("structure_id")
    for sid in ids:
        if sid == OVERRUN:
            assert partial.loc[sid, "status"] == "not_finished"
        else:
            assert partial.loc[sid, "status"] in ("ok", "not_converged"), partial.loc[sid, "reason"]
            assert math.isfinite(partial.loc[sid, "energy_per_atom_eV"])
    steps_before_kill = int(json.loads(checkpoint.read_text())["n_ionic_steps"])
    status = subprocess.run(
        [sys.executable, "-m", "dftscreen.cli", "status", "--json", str(workdir / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    by_job = {job["job_id"]: job for job in report["slurm_jobs"]}
    assert sorted(sid for job_id in states for sid in by_job[job_id]["structures"]) == sorted(ids)
    assert OVERRUN in by_job[pack_of_overrun]["structures"]
    assert list(by_job[pack_of_overrun]["failed_steps"]) == [f"relax:{OVERRUN}"], by_job[pack_of_overrun]

    # --- 2. the same command: that structure alone, one submission, resumed ---------------
    config["dft"]["structure_overrides"][OVERRUN]["relax"]["max_steps"] = steps_before_kill + 1
    write_run_config(workdir, config)
    before = last_job_id()
    second = run_snakemake(workdir, *options, profile="slurm", timeout=1500)
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    jobs = jobs_settled(workdir, before)
    assert len(jobs) == 1 and jobs[0]["State"] == "COMPLETED", jobs
    assert {step["JobName"] for step in sacct_steps(jobs[0]["JobIDRaw"])} == {f"relax:{OVERRUN}",
                                                                               f"properties:{OVERRUN}"}
    record = json.loads((workdir / "out" / "dft" / OVERRUN / "relax.json").read_text())
    assert record["n_starts"] == 2 and record["resumed_from_step"] == steps_before_kill, record
    # The rerun kept the failed pack's name and structures (dftscreen.dft_pack.plan_packs).
    records = [json.loads(path.read_text()) for path in sorted((workdir / "out" / "packs").glob("pack_*.json"))]
    (pack_record,) = [r for r in records if OVERRUN in [m["structure_id"] for m in r["members"]]]
    assert len(records) == 2, records
    assert [(m["structure_id"], m["skipped"]) for m in pack_record["members"]] == [
        ("pack_MgO", True), (OVERRUN, False), ("pack_NaF", True)]
    assert pack_record["slurm_job_id"] == jobs[0]["JobIDRaw"]
    table = pd.read_csv(workdir / "out" / "results.csv").set_index("structure_id")
    assert sorted(table.index) == sorted(ids)
    for sid in ids:
        assert table.loc[sid, "status"] in ("ok", "not_converged"), table.loc[sid, "reason"]
    print(f"SLURM one-job-per-pack test: {time.monotonic() - started:.0f} s after the cluster was up")
