"""`dftscreen status` on hand-made results folders, with sacct/squeue stand-ins on PATH (no SLURM, no DFT)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_status_local import fake_snakemake

from dftscreen import cli
from dftscreen.dft_pack import plan_packs
from dftscreen.status import parse_comment, reason_kind, run_status


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_run(workdir: Path) -> Path:
    """A run of 6 files: 1 invalid, 1 duplicate, 4 sent to DFT in various states."""
    out = workdir / "out"
    checks = [
        {"structure_id": "bad", "valid": False, "status": "invalid", "reason": "atoms 1 and 2 are 0.31 Å apart"},
        {
            "structure_id": "twin",
            "valid": False,
            "status": "duplicate",
            "reason": "same crystal as done",
            "duplicate_of": "done",
        },
        {"structure_id": "done", "valid": True},
        {"structure_id": "scf_failed", "valid": True},
        {"structure_id": "timed_out", "valid": True},
        {"structure_id": "queued", "valid": True},
    ]
    write_json(out / "check" / "checks.json", checks)
    write_json(out / "dft" / "done" / "relax.json", {"status": "relaxed"})
    write_json(out / "dft" / "done" / "properties.json", {"status": "done"})
    write_json(
        out / "dft" / "scf_failed" / "relax.json",
        {"status": "failed", "reason": "SCF did not converge after 4 strategies: preset"},
    )
    # timed_out: a checkpoint but no record (SLURM killed it); queued: nothing yet.
    write_json(out / "dft" / "timed_out" / "checkpoint.json", {"n_ionic_steps": 3})
    return out


def fake_scheduler(bin_dir: Path, workdir: Path, sacct_rows: list[str], squeue_rows: list[str]) -> None:
    """sacct and squeue stand-ins printing fixed '|'-separated rows (fields as dftscreen.status asks)."""
    bin_dir.mkdir(exist_ok=True)
    for name, rows in (("sacct", sacct_rows), ("squeue", squeue_rows)):
        script = bin_dir / name
        body = "".join(f"echo '{row.format(workdir=workdir)}'\n" for row in rows)
        script.write_text(f"#!/bin/sh\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def run_with_scheduler(tmp_path: Path, monkeypatch) -> Path:
    out = make_run(tmp_path)
    fake_scheduler(
        tmp_path / "bin",
        tmp_path,
        sacct_rows=[
            "11|COMPLETED|rule_check|{workdir}|04:00:00|00:00:10",
            "12|COMPLETED|rule_relax_wildcards_done|{workdir}|00:10:00|00:01:00",
            "13|TIMEOUT|rule_relax_wildcards_timed_out|{workdir}|00:01:00|00:01:05",
            # Another run's job with the same structure id must not count.
            "14|RUNNING|rule_relax_wildcards_queued|/elsewhere|00:10:00|00:00:05",
        ],
        squeue_rows=["15|PENDING|rule_relax_wildcards_queued|{workdir}|10:00|0:00"],
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return out


def test_counts_per_stage_with_scheduler_states(run_with_scheduler: Path):
    status = run_status(run_with_scheduler).to_dict()
    assert status["check"]["n_inputs"] == 6 and status["check"]["n_to_dft"] == 4
    assert status["check"]["statuses"] == {"invalid": 1, "duplicate": 1, "to DFT": 4}
    assert status["check"]["invalid_reasons"] == {"atoms # and # are # Å apart": 1}
    relax = status["stages"]["relax"]
    assert (relax["done"], relax["failed"], relax["running"], relax["pending"]) == (1, 2, 0, 1)
    assert relax["failed_ids"] == ["scf_failed", "timed_out"]
    assert relax["failure_reasons"] == {
        "SCF did not converge after # strategies: preset": 1,
        "SLURM TIMEOUT: killed by SLURM at its time limit; raise its runtime and rerun": 1,
    }
    properties = status["stages"]["properties"]
    # Properties of the failed relaxations wait (their relax stage says why).
    assert (properties["done"], properties["failed"], properties["pending"]) == (1, 0, 3)
    assert status["scheduler"] == "sacct+squeue"


def test_text_output_names_stages_and_reasons(run_with_scheduler: Path, capsys):
    assert cli.main(["status", str(run_with_scheduler)]) == 0
    text = capsys.readouterr().out
    assert "check       6 files checked: 4 to DFT, 1 invalid, 1 duplicate" in text
    assert "relax       1 done, 2 failed, 0 running, 1 pending  (of 4)" in text
    assert "killed by SLURM at its time limit" in text
    assert "failed: scf_failed, timed_out" in text


def test_without_scheduler_and_before_checks(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct, no squeue
    out = make_run(tmp_path)
    relax = run_status(out).to_dict()["stages"]["relax"]
    assert (relax["done"], relax["failed"], relax["pending"]) == (1, 1, 2)
    empty = run_status(tmp_path / "nothing")
    assert empty.n_inputs is None
    assert "no results folder here" in cli.format_status(empty)
    (tmp_path / "started").mkdir()
    started = run_status(tmp_path / "started")
    assert started.n_inputs is None and started.problem.startswith("not finished")
    assert "not finished yet" in cli.format_status(started)


def test_corrupt_records_and_crashed_jobs_are_failures_not_pending(tmp_path: Path, monkeypatch):
    """A missing folder, a corrupt table, a corrupt record and a crashed local job each say so."""
    monkeypatch.setenv("PATH", str(tmp_path))
    out = make_run(tmp_path)
    relax_before = run_status(out).to_dict()["stages"]["relax"]
    pending = relax_before["pending"]
    assert pending >= 2
    # A job that started (its log exists) and left no record, with no Snakemake running: crashed.
    (out / "logs" / "relax").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "relax" / "queued.log").write_text("Segmentation fault\n")
    # A record cut off mid-write.
    (out / "dft" / "timed_out" / "relax.json").write_text('{"status": "rel')
    relax = run_status(out).to_dict()["stages"]["relax"]
    reasons = " | ".join(relax["failure_reasons"])
    assert "the job started but wrote no record" in reasons
    assert "corrupt record: relax.json is not readable JSON" in reasons
    assert relax["pending"] == pending - 2 and set(relax["failed_ids"]) >= {"queued", "timed_out"}
    # The whole check table corrupt: said so, not "not finished".
    (out / "check" / "checks.json").write_text("[{")
    corrupt = run_status(out)
    assert corrupt.problem.startswith("corrupt record") and "corrupt record" in cli.format_status(corrupt)


def test_local_run_in_progress_counts_as_running(tmp_path: Path, monkeypatch):
    """A local Snakemake run marks outputs it is writing in .snakemake/incomplete while it holds a lock."""
    import base64

    monkeypatch.setenv("PATH", str(tmp_path))
    out = make_run(tmp_path)
    meta = tmp_path / ".snakemake"
    (meta / "locks").mkdir(parents=True)
    (meta / "locks" / "0.input.lock").write_text("")
    (meta / "incomplete").mkdir()
    marker = base64.b64encode(b"out/dft/queued/relax.json").decode()
    (meta / "incomplete" / marker).write_text("")
    with fake_snakemake(tmp_path):  # the lock is held while that Snakemake lives (test_status_local.py)
        relax = run_status(out).to_dict()["stages"]["relax"]
    assert relax["running"] == 1 and relax["pending"] == 1


def test_a_running_local_pack_counts_its_unfinished_structures_as_running(tmp_path: Path, monkeypatch):
    """With dft.structures_per_pack Snakemake marks only the pack's record; its structures are what runs."""
    import base64

    import yaml

    monkeypatch.setenv("PATH", str(tmp_path))
    out = make_run(tmp_path)
    pending = run_status(out).to_dict()["stages"]["relax"]["pending"]
    assert pending >= 2
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"dft": {"structures_per_pack": 100}}))
    meta = tmp_path / ".snakemake"
    (meta / "locks").mkdir(parents=True)
    (meta / "locks" / "0.input.lock").write_text("")
    (meta / "incomplete").mkdir()
    # The one pack of the four DFT structures, named as the workflow names it.
    with fake_snakemake(tmp_path):  # a live Snakemake holds the lock
        (pack,) = plan_packs(["done", "scf_failed", "timed_out", "queued"], 100)
        marker = meta / "incomplete" / base64.b64encode(f"out/packs/pack_{pack}.json".encode()).decode()
        marker.write_text("")
        relax = run_status(out).to_dict()["stages"]["relax"]
        assert (relax["running"], relax["pending"]) == (pending, 0)
        # Another pack in progress says nothing about these structures.
        marker.unlink()
        (meta / "incomplete" / base64.b64encode(b"out/packs/pack_0123456789ab.json").decode()).write_text("")
        assert run_status(out).to_dict()["stages"]["relax"]["pending"] == pending
        # A pack that started keeps its structures (its members file), also when more are added.
        write_json(out / "check" / "checks.json", [*json.loads((out / "check" / "checks.json").read_text()),
                                                   {"structure_id": "added", "valid": True}])
        (out / "packs" / "members").mkdir(parents=True)
        (out / "packs" / "members" / f"pack_{pack}.txt").write_text("done\nscf_failed\ntimed_out\nqueued\n")
        marker.write_text("")
        relax = run_status(out).to_dict()["stages"]["relax"]
        assert (relax["running"], relax["pending"]) == (pending, 1)


def test_reason_kinds_and_plugin_comments():
    assert reason_kind("atoms 1 and 4 are 0.31 Å apart") == "atoms # and # are # Å apart"
    assert reason_kind("built NaCl2 from 'x 1.cif'") == "built NaCl2 from '…'"
    assert parse_comment("rule_relax_wildcards_NaCl_rank01") == ("relax", "NaCl_rank01")
    assert parse_comment("rule_check") == ("check", "")
    assert parse_comment("something else") is None


def test_console_script_runs_without_snakemake_dag(run_with_scheduler: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "dftscreen.cli", "status", "--json", str(run_with_scheduler)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stages"]["relax"]["done"] == 1


def test_install_profile_makes_bare_profile_name_resolve(tmp_path: Path, monkeypatch):
    """`dftscreen install-profile` writes where Snakemake looks up `--profile slurm`."""
    from snakemake.cli import get_profile_dir

    monkeypatch.setattr(cli, "user_profile_dir", lambda: tmp_path / "snakemake-config")
    monkeypatch.chdir(tmp_path)
    path = cli.install_profile("slurm", account="proj42", partition="compute", qos="normal")
    profile = yaml.safe_load(path.read_text())
    assert profile["executor"] == "slurm"
    assert profile["default-resources"]["slurm_account"] == "proj42"
    assert profile["default-resources"]["slurm_partition"] == "compute"
    assert profile["slurm-qos"] == "normal"
    assert profile["set-resources"]["relax"]["cpus_per_task"] == 1
    assert profile["keep-incomplete"] is True  # a failed job keeps what it finished (atomic writes)
    # Snakemake's own lookup of a bare name searches the user folder.
    monkeypatch.setattr(
        "snakemake.cli.get_appdirs",
        lambda: type(
            "D", (), {"user_config_dir": str(tmp_path / "snakemake-config"), "site_config_dir": str(tmp_path / "site")}
        )(),
    )
    found = get_profile_dir("slurm")
    assert found is not None and Path(found[1]) == path


def test_status_finds_the_output_dir_of_the_run_config(tmp_path):
    from dftscreen.cli import default_results_dir

    assert default_results_dir(tmp_path) == tmp_path / "results"  # no config: the workflow's default
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("input: {cif_dir: cifs}\noutput_dir: out\n")
    assert default_results_dir(tmp_path) == tmp_path / "out"
    (tmp_path / "config" / "config.yaml").write_text("- not a mapping\n")
    assert default_results_dir(tmp_path) == tmp_path / "results"


def test_a_structure_whose_records_were_deleted_after_its_pack_finished_says_which_record_to_delete(tmp_path: Path,
                                                                                                      monkeypatch):
    """Snakemake reruns nothing for it (the pack record exists): 'rerun' alone would not help."""
    monkeypatch.setenv("PATH", str(tmp_path))
    out = make_run(tmp_path)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"dft": {"structures_per_pack": 8}}))
    pending = run_status(out).to_dict()["stages"]["relax"]["pending"]
    record = out / "packs" / "pack_0123456789ab.json"
    write_json(record, {"members": [{"structure_id": "queued", "finished": True}]})
    relax = run_status(out).to_dict()["stages"]["relax"]
    assert relax["pending"] == pending - 1
    (reason,) = [reason for reason in relax["failure_reasons"] if "pack" in reason]
    # (Numbers in the tmp path are folded for grouping reasons: compare the record's own name.)
    assert "; delete " in reason and f"{record.name} and rerun the workflow" in reason, relax
