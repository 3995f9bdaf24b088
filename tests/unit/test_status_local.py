"""`dftscreen status` on a local run: running jobs (live processes) told from crashed ones (issue 28)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dftscreen.status import format_status, run_status


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def two_structure_run(workdir: Path, name: str = "out") -> Path:
    """Two structures sent to DFT, no record yet, both relaxation logs written (the jobs started)."""
    out = workdir / name
    write_json(out / "check" / "checks.json", [{"structure_id": sid, "valid": True} for sid in ("a", "b")])
    for sid in ("a", "b"):
        log = out / "logs" / "relax" / f"{sid}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("GPAW starting\n")
    return out


def mark_in_progress(workdir: Path, outputs: list[str], lock: bool = True) -> None:
    """Snakemake's marks as Snakemake 9 writes them: URL-safe base64 names, and a lock file."""
    meta = workdir / ".snakemake"
    (meta / "incomplete").mkdir(parents=True, exist_ok=True)
    for output in outputs:
        (meta / "incomplete" / base64.urlsafe_b64encode(output.encode()).decode()).write_text("{}")
    if lock:
        (meta / "locks").mkdir(parents=True, exist_ok=True)
        (meta / "locks" / "0.output.lock").write_text("\n".join(outputs) + "\n")


def started(proc: subprocess.Popen, marker: str) -> subprocess.Popen:
    """``proc`` once its command line shows ``marker`` (right after the fork it still shows pytest's)."""
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 10
    while marker.encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


@contextmanager
def live_process(cwd: Path, args: list[str]) -> Iterator[subprocess.Popen]:
    """A real process sleeping in ``cwd`` whose command line carries ``args``; killed on leaving."""
    proc = started(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args], cwd=cwd), args[-1])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def fake_snakemake(workdir: Path) -> Iterator[subprocess.Popen]:
    """A real process named ``snakemake`` (``python <dir>/snakemake``) working in ``workdir``."""
    script = workdir / "bin" / "snakemake"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import time\ntime.sleep(60)\n")
    proc = started(subprocess.Popen([sys.executable, str(script), "--cores", "1"], cwd=workdir), str(script))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_running_gpaw_jobs_count_as_running_then_crashed_once_killed(tmp_path: Path):
    """Issue 28: both jobs alive -> running; killed with their Snakemake gone -> failed, log named."""
    out = two_structure_run(tmp_path)
    outputs = ["out/dft/a/relax.json", "out/dft/b/relax.json"]
    mark_in_progress(tmp_path, outputs)
    with live_process(tmp_path, ["--out-json", outputs[0]]), live_process(tmp_path, ["--out-json", outputs[1]]):
        relax = run_status(out, query_scheduler=False).stages["relax"]
        assert (relax.running, relax.failed) == (2, 0)
        assert "started but wrote no record" not in format_status(run_status(out, query_scheduler=False))
    # Processes gone, the lock left behind by a killed Snakemake: interrupted, with the logs.
    status = run_status(out, query_scheduler=False)
    relax = status.stages["relax"]
    assert (relax.running, relax.failed) == (0, 2)
    text = format_status(status)
    assert "interrupted" in text and str(out / "logs" / "relax" / "a.log") in text


def test_running_job_found_without_any_snakemake_marks(tmp_path: Path):
    """A live GPAW process naming the record counts as running even when no mark names it."""
    out = two_structure_run(tmp_path)
    with live_process(tmp_path, ["--settings", "x.yaml", "--out-json", str(tmp_path / "out/dft/a/relax.json")]):
        relax = run_status(out, query_scheduler=False).stages["relax"]
        assert (relax.running, relax.failed) == (1, 1)
        assert "crashed or was killed" in next(iter(relax.failure_reasons))


def test_a_live_snakemake_holds_its_lock(tmp_path: Path):
    """Marks under the lock of a live Snakemake in the folder: running; the same Snakemake killed: interrupted."""
    out = two_structure_run(tmp_path)
    mark_in_progress(tmp_path, ["out/dft/a/relax.json"])
    with fake_snakemake(tmp_path):
        relax = run_status(out, query_scheduler=False).stages["relax"]
        assert (relax.running, relax.failed) == (1, 1)
    relax = run_status(out, query_scheduler=False).stages["relax"]
    assert (relax.running, relax.failed) == (0, 2)
    assert any(reason.startswith("interrupted") for reason in relax.failure_reasons)


def test_long_and_absolute_marks_are_read(tmp_path: Path):
    """Snakemake splits marks longer than a file name into '@' folders and may name outputs absolutely."""
    name = "d" * 120 + "/" + "e" * 120 + "/out"  # the output's name is longer than a file name
    out = two_structure_run(tmp_path, name)
    encoded = base64.urlsafe_b64encode(f"{name}/dft/a/relax.json".encode()).decode()
    parts = [encoded[i : i + 254] for i in range(0, len(encoded), 254)]
    assert len(parts) > 1
    marker = tmp_path / ".snakemake" / "incomplete" / Path(*["@" + p for p in parts[:-1]], parts[-1])
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    interrupted = run_status(out, workdir=tmp_path, query_scheduler=False).stages["relax"]
    assert interrupted.failed == 2 and sum(r.startswith("interrupted") for r in interrupted.failure_reasons) == 1
    # An output named by its absolute path (an absolute output_dir) is the same job.
    short = two_structure_run(tmp_path / "abs")
    mark_in_progress(tmp_path / "abs", [str(short / "dft" / "b" / "relax.json")], lock=False)
    relax = run_status(short, query_scheduler=False).stages["relax"]
    assert relax.failure_reasons["interrupted: the Snakemake run was killed while this job ran; rerun"] == 1


def hanging_scheduler(bin_dir: Path, names: tuple[str, ...] = ("sacct", "squeue")) -> None:
    """SLURM clients installed without a controller: each command waits 30 s."""
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
        script.chmod(0o755)


def test_status_does_not_wait_on_an_absent_controller(tmp_path: Path, monkeypatch):
    """Issue 29.5: sacct and squeue hang (no controller): status answers within a few seconds."""
    out = two_structure_run(tmp_path)
    hanging_scheduler(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # not the machine's own SLURM client
    start = time.monotonic()
    status = run_status(out)
    assert time.monotonic() - start < 5
    assert status.scheduler.startswith("none (no SLURM controller answered")
    # Only sacct installed: it is the one asked, as briefly.
    (tmp_path / "bin" / "squeue").unlink()
    start = time.monotonic()
    assert run_status(out).scheduler.startswith("none (no SLURM")
    assert time.monotonic() - start < 5


def test_ml_stage_is_counted(tmp_path: Path):
    """Issue 29.5: the ML stage (one record per valid structure, run by its batch) in text and JSON."""
    out = two_structure_run(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("ml:\n  enabled: true\n")
    write_json(out / "ml" / "structures" / "a" / "record.json", {"structure_id": "a", "status": "relaxed"})
    status = run_status(out, query_scheduler=False)
    assert (status.ml.done, status.ml.failed, status.ml.pending) == (1, 0, 1)
    assert status.to_dict()["ml"]["screen_done"] is False
    write_json(out / "ml" / "structures" / "b" / "record.json",
               {"structure_id": "b", "status": "failed", "reason": "ML relaxation raised"})
    write_json(out / "ml" / "screen.json", {"structures": {}})
    status = run_status(out, query_scheduler=False)
    data = status.to_dict()["ml"]
    assert (data["done"], data["failed"], data["screen_done"]) == (1, 1, True)
    assert data["failure_reasons"] == {"ML relaxation raised": 1}
    text = format_status(status)
    assert "ml screen   written" in text and "\nml " in text
    (tmp_path / "config" / "config.yaml").write_text("ml:\n  enabled: false\n")
    assert run_status(out, query_scheduler=False).to_dict()["ml"] is None


def test_ml_phonons_are_counted(tmp_path: Path):
    """The ML phonon records (one per valid structure, run by its ML batch's phonon job), in text and JSON."""
    out = two_structure_run(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("ml:\n  enabled: true\nphonons:\n  ml: true\n")
    write_json(out / "ml" / "structures" / "a" / "phonons.json", {"structure_id": "a", "status": "computed"})
    write_json(out / "ml" / "structures" / "b" / "phonons.json",
               {"structure_id": "b", "status": "failed", "reason": "phonopy raised"})
    status = run_status(out, query_scheduler=False)
    assert (status.ml_phonons.done, status.ml_phonons.failed, status.ml_phonons.total) == (1, 1, 2)
    assert status.to_dict()["ml_phonons"]["failure_reasons"] == {"phonopy raised": 1}
    assert "\nml_phonons  1 done, 1 failed" in format_status(status)
    (tmp_path / "config" / "config.yaml").write_text("ml:\n  enabled: true\nphonons:\n  ml: false\n")
    assert run_status(out, query_scheduler=False).to_dict()["ml_phonons"] is None
