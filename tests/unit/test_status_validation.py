"""`dftscreen status` on wrongly typed records, a results path that is a file, a crashed job's log and
``--configfile``; `dftscreen install-profile` refusing names that leave the profile folder (issue 28).

No scheduler (PATH without sacct/squeue), no Snakemake: hand-made results folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dftscreen import cli
from dftscreen.status import configfile_run_config, cost_projection, run_status


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_run(workdir: Path, checks: list[Any] | None = None) -> Path:
    """Results folder ``out`` of a run with the given check table (default: three structures to DFT)."""
    out = workdir / "out"
    default = [{"structure_id": sid, "valid": True, "n_sites": 2} for sid in ("a", "b", "c")]
    write_json(out / "check" / "checks.json", default if checks is None else checks)
    return out


@pytest.fixture(autouse=True)
def no_scheduler(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.chdir(tmp_path)


def status_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["status", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


# --- wrongly typed records: failures with a reason, never a traceback ---------------------


def test_wrongly_typed_stage_records_are_failures_with_a_reason(tmp_path: Path, capsys):
    out = make_run(tmp_path, [
        {"structure_id": "a", "valid": True, "n_sites": "abc"},
        {"structure_id": "b", "valid": True, "n_sites": 2},
        {"structure_id": "c", "valid": True, "n_sites": [1]},
        {"structure_id": "d", "valid": True, "n_sites": 2},
    ])
    write_json(out / "dft" / "a" / "relax.json", [1, 2])  # a list, not a record
    write_json(out / "dft" / "b" / "relax.json", {"status": ["relaxed"]})  # status not text
    write_json(out / "dft" / "c" / "relax.json", {"status": "relaxed", "wall_time_s": "abc", "mpi_ranks": "x"})
    write_json(out / "dft" / "d" / "relax.json", {"status": "failed", "reason": {"why": 1}})
    relax = run_status(out).to_dict()["stages"]["relax"]
    assert (relax["done"], relax["failed"]) == (1, 3)
    assert relax["failure_reasons"] == {
        "corrupt record: relax.json is not a JSON object; delete it and rerun": 1,
        "corrupt record: relax.json has a status that is not text; delete it and rerun": 1,
        "corrupt record: relax.json has a reason that is not text; delete it and rerun": 1,
    }
    assert cost_projection(out) is not None
    code, text, err = status_cli(capsys, "out")
    assert code == 0 and "relax       1 done, 3 failed" in text and err == ""
    code, text, _ = status_cli(capsys, "--json", "out")
    assert code == 0 and json.loads(text)["stages"]["relax"]["failed"] == 3


@pytest.mark.parametrize(
    "checks, expected",
    [
        ([["a", True]], "has an entry (0) that is not a record with a structure_id"),
        ([{"structure_id": 7, "valid": True}], "has an entry (0) that is not a record with a structure_id"),
        ([{"structure_id": "a", "valid": False, "status": ["invalid"]}], "(a) whose status or reason is not text"),
        ({"a": 1}, "is not a readable check table"),
    ],
)
def test_a_wrongly_typed_check_table_is_a_corrupt_record(tmp_path: Path, capsys, checks, expected):
    out = make_run(tmp_path, checks)
    status = run_status(out)
    assert status.problem.startswith("corrupt record") and expected in status.problem
    assert cost_projection(out) is None
    code, text, _ = status_cli(capsys, "out")
    assert code == 1 and expected in text


def test_wrongly_typed_screen_and_compare_known_records_are_ignored(tmp_path: Path, capsys):
    out = make_run(tmp_path)
    write_json(out / "ml" / "screen.json", {"screened_out_ids": 5, "audited_ids": "a"})
    write_json(out / "known" / "competing_phases.json", {"library": 5, "phases": "x"})
    status = run_status(out).to_dict()
    assert status["check"]["n_to_dft"] == 3
    write_json(out / "known" / "competing_phases.json", {"library": "lib/abc", "phases": 3})
    assert run_status(out).to_dict()["references"]["known_phases"]["failed"] == 0
    code, _, _ = status_cli(capsys, "out")
    assert code == 0


# --- a crashed job's log, a results path that is a file --------------------------------


def test_the_log_of_a_crashed_job_is_named(tmp_path: Path, capsys):
    out = make_run(tmp_path)
    log = out / "logs" / "relax" / "b.log"
    log.parent.mkdir(parents=True)
    log.write_text("Segmentation fault\n")
    relax = run_status(out).to_dict()["stages"]["relax"]
    assert relax["failed_ids"] == ["b"] and relax["logs"] == {"b": str(log)}
    assert "the job started but wrote no record (it crashed or was killed; see its log); rerun" in relax[
        "failure_reasons"]
    _, text, _ = status_cli(capsys, "out")
    assert f"    log of b: {Path('out') / 'logs' / 'relax' / 'b.log'}" in text


def test_a_results_path_that_is_a_file_says_so(tmp_path: Path, capsys):
    (tmp_path / "results").write_text("not a folder\n")
    status = run_status(tmp_path / "results")
    assert "is a file, not a results folder" in status.problem
    code, text, err = status_cli(capsys, "results")
    assert code == 1 and "results is a file, not a results folder" in text and err == ""
    code, text, _ = status_cli(capsys, "missing")
    assert code == 1 and "missing does not exist" in text


# --- --configfile ----------------------------------------------------------------------


def test_configfile_is_merged_over_config_yaml_like_snakemake(tmp_path: Path, capsys):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(
        {"output_dir": "out", "dft": {"structures_per_pack": 4, "preset": "fast"}}))
    (tmp_path / "run_b.yaml").write_text(yaml.safe_dump({"output_dir": "other", "dft": {"preset": "standard"}}))
    config = configfile_run_config(tmp_path / "run_b.yaml", tmp_path)
    assert config["output_dir"] == "other"
    assert config["dft"]["preset"] == "standard" and config["dft"]["structures_per_pack"] == 4
    assert config["check"]["max_atoms"] == 500  # the schema's defaults fill the rest
    make_run(tmp_path)
    (tmp_path / "out").rename(tmp_path / "other")
    code, text, _ = status_cli(capsys, "--configfile", "run_b.yaml")
    assert code == 0 and "results: other" in text and "check       3 files checked" in text
    # Without the option the run's own config/config.yaml names out/, which is not there.
    code, text, _ = status_cli(capsys)
    assert code == 1 and "out does not exist" in text


def test_configfile_without_config_yaml_and_unreadable_configfiles(tmp_path: Path, capsys):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": "out"}))
    assert configfile_run_config(tmp_path / "run.yaml", tmp_path)["output_dir"] == "out"
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    for name, expected in (("nope.yaml", "cannot read the run config nope.yaml"),
                           ("list.yaml", "is not a mapping of settings")):
        code, text, err = status_cli(capsys, "--configfile", name)
        assert code == 2 and text == "" and expected in err and len(err.strip().splitlines()) == 1


# --- install-profile names -------------------------------------------------------------


@pytest.mark.parametrize("name", ["", " ", ".", "..", "../x", "a/b", "/tmp/x", "x/"])
def test_install_profile_refuses_names_that_leave_the_profile_folder(tmp_path: Path, monkeypatch, capsys, name):
    root = tmp_path / "profiles" / "user"
    monkeypatch.setattr(cli, "user_profile_dir", lambda: root)
    assert cli.main(["install-profile", "--name", name]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith("dftscreen install-profile: profile name ") and len(captured.err.splitlines()) == 1
    assert not (tmp_path / "profiles").exists() and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="is not a folder name"):
        cli.install_profile(name, None, None, None, target_root=root)


def test_install_profile_takes_a_plain_name(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "user_profile_dir", lambda: tmp_path / "user")
    assert cli.main(["install-profile", "--name", "slurm-big", "--account", "p1"]) == 0
    assert (tmp_path / "user" / "slurm-big" / "config.yaml").is_file()
