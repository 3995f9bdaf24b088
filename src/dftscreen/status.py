"""How far a run got, from its results folder alone: what a user checks in the morning.

Reads the files the workflow writes (``check/checks.json``, ``dft/<id>/relax.json``
and ``properties.json``, ``references/elements/<el>/relax.json``) and, when a
scheduler is there, asks it once about this run's jobs. It never builds
Snakemake's DAG, so it answers in about a second even for 100,000 inputs.

Each structure sent to DFT is, per stage:

``done``     its record exists and is not a failure
``failed``   its record says ``failed`` (the reason is the record's), or no record
             exists and the last scheduler job for it ended badly (time limit,
             out of memory, node failure, cancelled: the reason names the state)
``running``  a scheduler job for it runs, or a local Snakemake run holds its output
``pending``  anything else: queued at the scheduler, or waiting for its turn

Scheduler jobs are matched by the comment the Snakemake SLURM plugin gives each
job (``rule_<rule>_wildcards_<wildcards>``) and by their working directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dftscreen.status_codes import FINISHED_OK

#: SLURM states of a job that is still to finish.
SLURM_RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING"}
SLURM_PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"}
#: SLURM states of a job that ended without producing its result, and what they mean.
SLURM_FAILED_STATES = {
    "TIMEOUT": "killed by SLURM at its time limit",
    "OUT_OF_MEMORY": "killed by SLURM: out of memory",
    "NODE_FAIL": "its node failed",
    "CANCELLED": "cancelled",
    "FAILED": "the job exited with an error",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "missed its deadline",
}

STAGES = ("relax", "properties")
_COMMENT = re.compile(r"^rule_(?P<rule>\w+?)(?:_wildcards_(?P<wildcards>.*))?$")
# Numbers standing alone ("atoms 1 and 4", "0.31 Å"), not those in formulas ("NaCl2").
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_QUOTED = re.compile(r"'[^']*'")


@dataclass(frozen=True)
class SchedulerJob:
    """One cluster job of this run, as the scheduler reports it."""

    job_id: str
    state: str
    rule: str
    wildcards: str
    time_limit: str = ""
    elapsed: str = ""


@dataclass
class StageStatus:
    """Counts of one stage, and the reasons behind its failures."""

    name: str
    done: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    failure_reasons: Counter = field(default_factory=Counter)
    failed_ids: list[str] = field(default_factory=list)

    def add_failure(self, structure_id: str, reason: str) -> None:
        self.failed += 1
        self.failure_reasons[reason_kind(reason)] += 1
        self.failed_ids.append(structure_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
            "pending": self.pending,
            "failure_reasons": dict(self.failure_reasons.most_common()),
            "failed_ids": sorted(self.failed_ids),
        }


@dataclass
class RunStatus:
    """Status of a whole run: the check stage, then each DFT stage."""

    results_dir: Path
    n_inputs: int | None
    n_to_dft: int
    check_counts: Counter
    invalid_reasons: Counter
    stages: dict[str, StageStatus]
    scheduler: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "results_dir": str(self.results_dir),
            "check": {
                "done": self.n_inputs is not None,
                "n_inputs": self.n_inputs,
                "n_to_dft": self.n_to_dft,
                "statuses": dict(self.check_counts),
                "invalid_reasons": dict(self.invalid_reasons.most_common()),
            },
            "stages": {name: stage.to_dict() for name, stage in self.stages.items()},
            "scheduler": self.scheduler,
        }


def reason_kind(reason: str) -> str:
    """A failure reason with numbers and quoted names blanked, so alike reasons count together.

    >>> reason_kind("atoms 1 and 4 are 0.31 Å apart")
    'atoms # and # are # Å apart'
    """
    text = " ".join((reason or "unknown reason").split())
    text = _QUOTED.sub("'…'", text)
    return _NUMBER.sub("#", text)


def parse_comment(comment: str) -> tuple[str, str] | None:
    """Rule name and wildcard values from the SLURM plugin's job comment, or None."""
    match = _COMMENT.match(comment.strip())
    if not match:
        return None
    return match["rule"], match["wildcards"] or ""


def _run(command: list[str], timeout: float = 30) -> str | None:
    """stdout of a scheduler command, or None when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _rows(command: list[str]) -> list[list[str]] | None:
    out = _run(command)
    if out is None:
        return None
    return [line.split("|") for line in out.splitlines() if line]


def slurm_jobs(workdir: Path, since: str = "now-7days") -> tuple[list[SchedulerJob], str]:
    """This run's SLURM jobs (those submitted from ``workdir``), oldest first, and the sources used.

    sacct (accounting) knows finished jobs; squeue knows queued and running ones
    (sacct may store a job's comment only once it ends). Both are asked for
    explicit fields, '|'-separated; squeue's view of a job wins.
    """
    finished = _rows(["sacct", "--parsable2", "--noheader", "--allocations", f"--starttime={since}",
                      "--format=JobIDRaw,State,Comment,WorkDir,Timelimit,Elapsed"])
    active = _rows(["squeue", "--noheader", "--format=%i|%T|%k|%Z|%l|%M"])
    sources = [name for name, rows in (("sacct", finished), ("squeue", active)) if rows is not None]
    wanted = str(workdir.resolve())
    by_id: dict[str, SchedulerJob] = {}
    for row in (finished or []) + (active or []):
        if len(row) < 6:
            continue
        job_id, state, comment, job_workdir, time_limit, elapsed = row[:6]
        parsed = parse_comment(comment)
        if parsed is None or os.path.realpath(job_workdir) != wanted:
            continue
        # sacct writes e.g. "CANCELLED by 0": the first word is the state.
        by_id[job_id] = SchedulerJob(job_id, state.split()[0], parsed[0], parsed[1], time_limit, elapsed)
    jobs = sorted(by_id.values(), key=lambda job: int(re.sub(r"\D.*", "", job.job_id) or 0))
    return jobs, "+".join(sources) or "none"


def running_local_outputs(workdir: Path) -> set[str]:
    """Outputs a local Snakemake run is writing now (its incomplete markers, while it holds its lock).

    Snakemake marks each output of a started job in .snakemake/incomplete/
    (file name: base64 of the output path) and removes the mark when the job
    ends; a mark without a lock is left over from a killed run.
    """
    meta = workdir / ".snakemake"
    locks = meta / "locks"
    if not (locks.is_dir() and any(locks.iterdir())):
        return set()
    outputs = set()
    incomplete = meta / "incomplete"
    if incomplete.is_dir():
        for marker in incomplete.iterdir():
            try:
                outputs.add(base64.b64decode(marker.name).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return outputs


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _record_failure(stage: str, record: dict[str, Any]) -> str | None:
    """The failure reason written in a finished record, or None when the record is a success."""
    ok = FINISHED_OK.get(stage)
    if ok is not None and record.get("status") not in ok:
        return record.get("reason") or f"status {record.get('status')}"
    return None


def _scheduler_failure(job: SchedulerJob) -> str:
    """The reason of a job that ended without its record (the same text for alike failures)."""
    meaning = SLURM_FAILED_STATES.get(job.state, job.state.lower())
    advice = "raise its runtime and rerun" if job.state == "TIMEOUT" else "rerun to retry"
    return f"SLURM {job.state}: {meaning}; {advice}"


def stage_status(
    stage: str,
    ids: list[str],
    dft_dir: Path,
    last_jobs: dict[tuple[str, str], SchedulerJob],
    local_running: set[str],
    out_prefix: str,
) -> StageStatus:
    """Counts of one DFT stage over the structure ids sent to DFT."""
    status = StageStatus(stage)
    for sid in ids:
        record_path = dft_dir / sid / f"{stage}.json"
        record = _read_record(record_path) if record_path.is_file() else None
        if record is not None:
            reason = _record_failure(stage, record)
            if reason is None:
                status.done += 1
            else:
                status.add_failure(sid, reason)
            continue
        job = last_jobs.get((stage, sid))
        # The scheduler's word first: Snakemake marks a submitted job's output
        # as in progress while it still waits in the queue.
        if job is not None and job.state in SLURM_RUNNING_STATES:
            status.running += 1
        elif job is not None and job.state in SLURM_PENDING_STATES:
            status.pending += 1
        elif f"{out_prefix}/dft/{sid}/{stage}.json" in local_running:
            status.running += 1
        elif job is not None and job.state != "COMPLETED":
            status.add_failure(sid, _scheduler_failure(job))
        else:
            status.pending += 1
    return status


def _wildcard_value(wildcards: str) -> str:
    """The structure id in the plugin's comment (``sid=X`` or, in 2.x, the bare value ``X``)."""
    return wildcards.split("=", 1)[1] if "=" in wildcards else wildcards


def run_status(results_dir: str | os.PathLike[str], workdir: str | os.PathLike[str] | None = None,
               query_scheduler: bool = True) -> RunStatus:
    """Status of the run whose results are in ``results_dir``.

    Args:
        results_dir: the workflow's ``output_dir``.
        workdir: the folder Snakemake ran in (default: the parent of
            ``results_dir``, which is right when output_dir is a plain name).
        query_scheduler: ask sacct/squeue about this run's jobs.
    """
    results = Path(results_dir)
    work = Path(workdir) if workdir is not None else results.resolve().parent
    checks_path = results / "check" / "checks.json"
    checks = _read_record(checks_path) if checks_path.is_file() else None
    jobs, source = slurm_jobs(work) if query_scheduler else ([], "not asked")
    # The last job per (rule, structure) decides: earlier attempts were retried.
    last_jobs = {(job.rule, _wildcard_value(job.wildcards)): job for job in jobs}
    local_running = running_local_outputs(work)
    try:
        out_prefix = os.path.relpath(results.resolve(), work.resolve())
    except ValueError:
        out_prefix = str(results)

    if checks is None:
        check_job = last_jobs.get(("check", ""))
        stages = {name: StageStatus(name) for name in STAGES}
        run = RunStatus(results, None, 0, Counter(), Counter(), stages, source)
        if check_job is not None and check_job.state not in SLURM_RUNNING_STATES | SLURM_PENDING_STATES | {"COMPLETED"}:
            run.invalid_reasons[_scheduler_failure(check_job)] += 1
        return run

    check_counts = Counter(record.get("status") or ("to DFT" if record.get("valid") else "invalid") for record in checks)
    invalid_reasons = Counter(
        reason_kind(record.get("reason", "")) for record in checks
        if not record.get("valid") and record.get("status") != "duplicate"
    )
    ids = [record["structure_id"] for record in checks if record.get("valid")]
    # Structures the ML pre-screen kept from DFT (dftscreen.ml) are not waiting for it.
    from dftscreen.layout import ResultsLayout

    screen_path = Path(ResultsLayout.of(results).ml_screen)
    screened = set((_read_record(screen_path) or {}).get("screened_out_ids", [])) if screen_path.is_file() else set()
    if screened:
        ids = [sid for sid in ids if sid not in screened]
        check_counts["screened_out (ML)"] = len(screened)
    stages = {
        name: stage_status(name, ids, results / "dft", last_jobs, local_running, out_prefix)
        for name in STAGES
    }
    return RunStatus(results, len(checks), len(ids), check_counts, invalid_reasons, stages, source)


def format_status(status: RunStatus, top: int = 5, show_ids: int = 0) -> str:
    """Human-readable status: one block per stage, the most common failure reasons first."""
    lines = [f"results: {status.results_dir}"]
    if status.n_inputs is None:
        lines.append("check       not finished yet (no check/checks.json)")
        for reason, count in status.invalid_reasons.most_common(top):
            lines.append(f"    {count:>7}  {reason}")
        return "\n".join(lines)
    statuses = ", ".join(f"{count} {name}" for name, count in status.check_counts.most_common())
    lines.append(f"check       {status.n_inputs} files checked: {statuses}")
    for reason, count in status.invalid_reasons.most_common(top):
        lines.append(f"    {count:>7}  {reason}")
    width = len(str(status.n_to_dft))
    for stage in status.stages.values():
        lines.append(
            f"{stage.name:<11} {stage.done:>{width}} done, {stage.failed:>{width}} failed, "
            f"{stage.running:>{width}} running, {stage.pending:>{width}} pending  (of {status.n_to_dft})"
        )
        for reason, count in stage.failure_reasons.most_common(top):
            lines.append(f"    {count:>7}  {reason}")
        if show_ids and stage.failed_ids:
            shown = sorted(stage.failed_ids)[:show_ids]
            more = len(stage.failed_ids) - len(shown)
            lines.append("    failed: " + ", ".join(shown) + (f" (+{more} more)" if more else ""))
    lines.append(f"scheduler: {status.scheduler}")
    return "\n".join(lines)
