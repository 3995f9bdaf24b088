"""`dftscreen status` on packs (many structures in one SLURM job), sacct/squeue answers faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dftscreen import status

# sacct --allocations rows: JobIDRaw|State|Comment|WorkDir|Timelimit|Elapsed
ALLOCATIONS = [
    "11|COMPLETED|rule_check|{workdir}|04:00:00|00:00:30",
    "12|FAILED|rule_dft_properties_relax|{workdir}|01:10:00|00:01:30",
    "13|RUNNING|rule_dft_properties_relax|{workdir}|01:10:00|00:00:20",
]
# sacct --jobs 12,13 rows: JobID|JobName|State
STEPS = [
    "12|04cd229f|FAILED", "12.batch|batch|FAILED",
    "12.0|relax:A|COMPLETED", "12.1|relax:B|TIMEOUT", "12.2|relax:C|COMPLETED",
    "12.3|properties:A|COMPLETED", "12.4|properties:C|COMPLETED",
    "13|9fe91dec|RUNNING", "13.0|relax:D|RUNNING",
]


@pytest.fixture(autouse=True)
def slurm_client(monkeypatch):
    """A SLURM client on PATH whose controller answers (each test fakes the rows it returns): these
    tests must not depend on whether the machine has SLURM installed (a fresh one has not; the
    end-to-end set installs it later)."""
    real_which = status.shutil.which

    def which(name, *args, **kwargs):
        return f"/usr/bin/{name}" if name in ("sacct", "squeue") else real_which(name, *args, **kwargs)

    monkeypatch.setattr(status.shutil, "which", which)
    monkeypatch.setattr(status, "controller_answers", lambda timeout=status.PROBE_TIMEOUT_S: True)


def fake_scheduler(monkeypatch, workdir: Path) -> None:
    def rows(command):
        if command[0] == "squeue":
            return []
        lines = STEPS if "--jobs" in command else [line.format(workdir=workdir) for line in ALLOCATIONS]
        return [line.split("|") for line in lines]

    monkeypatch.setattr(status, "_rows", rows)


def write_run(workdir: Path) -> Path:
    out = workdir / "out"
    (out / "check").mkdir(parents=True)
    checks = [{"structure_id": sid, "valid": True, "status": None} for sid in "ABCD"]
    (out / "check" / "checks.json").write_text(json.dumps(checks))
    for sid in "AC":
        (out / "dft" / sid).mkdir(parents=True)
        (out / "dft" / sid / "relax.json").write_text(json.dumps({"status": "relaxed"}))
        (out / "dft" / sid / "properties.json").write_text(json.dumps({"status": "ok"}))
    return out


def test_pack_steps_name_the_structures_and_a_killed_step_fails_its_structure_only(tmp_path, monkeypatch):
    fake_scheduler(monkeypatch, tmp_path)
    run = status.run_status(write_run(tmp_path), workdir=tmp_path)
    relax = run.stages["relax"]
    assert (relax.done, relax.failed, relax.running, relax.failed_ids) == (2, 1, 1, ["B"])
    assert any("TIMEOUT" in reason for reason in relax.failure_reasons)
    jobs = {job["job_id"]: job for job in run.to_dict()["slurm_jobs"]}
    assert jobs["12"]["pack"] and jobs["12"]["structures"] == ["A", "B", "C"]
    assert jobs["12"]["failed_steps"] == {"relax:B": "TIMEOUT"} and jobs["12"]["unfinished"] == ["B"]
    assert jobs["13"]["structures"] == ["D"] and jobs["13"]["failed_steps"] == {}
    text = status.format_status(run)
    assert "packs       2 SLURM jobs ran 4 structures" in text
    assert "job 12 FAILED: not finished B (relax:B TIMEOUT); 2 others of the pack done" in text
    assert "job 13" not in text  # still running: nothing to report yet


def test_runs_without_packs_show_no_pack_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(status, "_rows", lambda command: [] if command[0] == "squeue" else [
        f"21|TIMEOUT|rule_relax_wildcards_B|{tmp_path}|00:01:00|00:01:00".split("|")])
    run = status.run_status(write_run(tmp_path), workdir=tmp_path)
    assert run.stages["relax"].failed_ids == ["B"]
    assert run.allocations == [{"job_id": "21", "state": "TIMEOUT", "pack": False, "structures": ["B"],
                                "failed_steps": {}}]
    assert "\npacks " not in status.format_status(run)


def test_a_running_phonon_pack_counts_its_members_running(tmp_path, monkeypatch):
    """DFT phonons in packs: on SLURM the pack's steps (``dft_phonons:<id>``) say which member runs;
    locally the pack record Snakemake marks in progress stands for its members."""
    from dftscreen.dft_pack import plan_phonon_packs
    from dftscreen.io import atomic_write_json
    from dftscreen.layout import ResultsLayout

    out = write_run(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        "dft:\n  structures_per_pack: 2\nphonons:\n  dft: all\n")
    layout = ResultsLayout.of(out)
    phonon_plan = {"runnable": ["A", "C"], "not_selected": {},
                   "jobs": {sid: {"tasks": 1, "runtime_min": 10.0} for sid in "AC"}}
    atomic_write_json(layout.phonon_candidates, phonon_plan)
    atomic_write_json(layout.phonon_record("A"), {"status": "computed", "dynamically_stable": True})

    rows = {
        "allocations": [f"14|RUNNING|rule_dft_phonon_pack|{tmp_path}|01:00:00|00:05:00"],
        "steps": ["14|5be5e2a1|RUNNING", "14.0|dft_phonons:A|COMPLETED", "14.1|dft_phonons:C|RUNNING"],
    }
    monkeypatch.setattr(status, "_rows", lambda command: [] if command[0] == "squeue" else [
        line.split("|") for line in rows["steps" if "--jobs" in command else "allocations"]])
    phonons = status.run_status(out, workdir=tmp_path).phonons
    assert (phonons.done, phonons.running, phonons.pending) == (1, 1, 0)

    # Locally: the pack's record marked in progress under a live Snakemake's lock.
    (pack,) = plan_phonon_packs(phonon_plan, 2, {})
    marked = {ResultsLayout("out").phonon_pack_record(pack)}
    monkeypatch.setattr(status, "running_local_outputs", lambda workdir: set(marked))
    phonons = status.run_status(out, workdir=tmp_path, query_scheduler=False).phonons
    assert (phonons.done, phonons.running, phonons.pending) == (1, 1, 0)
    marked.clear()
    phonons = status.run_status(out, workdir=tmp_path, query_scheduler=False).phonons
    assert (phonons.running, phonons.pending) == (0, 1)
