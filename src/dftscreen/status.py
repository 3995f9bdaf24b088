"""How far a run got, from its results folder alone: what a user checks in the morning.

Reads the files the workflow writes (``check/checks.json``, ``dft/<id>/relax.json``
and ``properties.json``, ``known/competing_phases.json`` and the reference library's
``relax.json`` records) and, when a scheduler is there, asks it once about this run's jobs. It never builds
Snakemake's DAG, so it answers in about a second even for 100,000 inputs.

Each structure sent to DFT is, per stage:

``done``     its record exists and is not a failure
``failed``   its record says ``failed`` (the reason is the record's), or no record
             exists and the last scheduler job for it ended badly (time limit,
             out of memory, node failure, cancelled: the reason names the state)
``running``  a scheduler job for it runs, or a live local process names its record
             (``--out-json <record>``), or a live Snakemake in the working folder
             holds its lock and marks the output in progress
``pending``  anything else: queued at the scheduler, or waiting for its turn

The known-materials jobs are counted the same way, each group apart: ``compare_known``
(one job), the ``elements``' reference candidates of the structures sent to DFT, and the
``known_phases`` compare_known chose (both in the reference library compare_known names;
see :func:`reference_jobs`), and the ``user_phases`` of ``stability.reference_cif_dir``
(in the results folder; their elements join the elemental references).

A local job that started (its log exists) but left no record and is not running
any more crashed or was killed (its mark in progress left behind, with no live
Snakemake holding the lock: interrupted), and one whose record is not readable JSON has a
corrupt record: both count as ``failed`` with that reason, never as pending. The
whole run is told apart as "no results folder here" (wrong folder, or never
run), "corrupt record" (``check/checks.json`` unreadable) and "not finished"
(the check has not written its table yet).

Scheduler jobs are matched by the comment the Snakemake SLURM plugin gives each
job (``rule_<rule>_wildcards_<wildcards>``) and by their working directory. A pack
(one SLURM job running many structures, :mod:`dftscreen.dft_pack`) is a job
whose comment names the pack, not the structures; its structures are found
from its srun steps, which are named ``<rule>:<structure id>``, and each step's
state counts for its structure. ``slurm_jobs`` in the JSON lists every DFT job of
the run with the structures it ran.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dftscreen.config import ConfigError, read_run_config, with_defaults
from dftscreen.dft_pack import finished_pack_records, lost_records_reason, plan_phonon_packs, read_started_packs
from dftscreen.layout import DFT_STAGES, ReferenceLibrary, ResultsLayout
from dftscreen.phonon_results import dft_phonon_mode
from dftscreen.plan import RunPlan
from dftscreen.settings import deep_merge
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
#: Rules of the known-materials jobs, one SLURM job each (never in a pack).
REFERENCE_RULES = ("compare_known", "element_reference", "relax_competing_phase", "relax_reference_phase")
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
    #: Job name -> its log, for failed jobs that left no record (crashed, killed, interrupted):
    #: the path is kept apart from the reason, which is grouped with alike reasons.
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.done + self.failed + self.running + self.pending

    def add_failure(self, structure_id: str, reason: str, log: Path | None = None) -> None:
        """Count one failed job, its reason (grouped by :func:`reason_kind`) and its log when there is one."""
        self.failed += 1
        self.failure_reasons[reason_kind(reason)] += 1
        self.failed_ids.append(structure_id)
        if log is not None and log.is_file():
            self.logs[structure_id] = str(log)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
            "pending": self.pending,
            "failure_reasons": dict(self.failure_reasons.most_common()),
            "failed_ids": sorted(self.failed_ids),
            "logs": dict(sorted(self.logs.items())),
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
    #: Why there is nothing to count: "" (there is), or a sentence starting with
    #: "no results folder here", "corrupt record" or "not finished".
    problem: str = ""
    #: DFT jobs of the run with the structures each ran (see :func:`job_structures`).
    allocations: list[dict[str, Any]] = field(default_factory=list)
    #: The reference jobs (:func:`reference_jobs`): compare_known, elements, known_phases, user_phases.
    references: dict[str, StageStatus] = field(default_factory=dict)
    #: The ML stage (``ml.enabled``): one job per structure, each run by its ML batch; None when off.
    ml: StageStatus | None = None
    #: Whether the ML pre-screen wrote ``ml/screen.json`` (it decides which structures go to DFT).
    ml_screen_done: bool = False
    #: ML phonons (``phonons.ml``): one record per ML-relaxed structure, run by its batch; None when off.
    ml_phonons: StageStatus | None = None
    #: DFT phonons (``phonons.dft``), once their checkpoint planned them; None before or when off.
    phonons: StageStatus | None = None
    #: What to say about the phonons instead of counts, and their projected cost (:func:`phonon_status`).
    phonon_note: str = ""
    phonon_projected_core_hours: float | None = None
    #: Snakemake's lock of the run folder left by a Snakemake that is gone (killed): the next run
    #: stops with "Directory cannot be locked" until it is run once with ``--unlock``.
    stale_snakemake_lock: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "slurm_jobs": self.allocations,
            "results_dir": str(self.results_dir),
            "problem": self.problem,
            "check": {
                "done": self.n_inputs is not None,
                "n_inputs": self.n_inputs,
                "n_to_dft": self.n_to_dft,
                "statuses": dict(self.check_counts),
                "invalid_reasons": dict(self.invalid_reasons.most_common()),
            },
            "ml": None if self.ml is None else {**self.ml.to_dict(), "screen_done": self.ml_screen_done},
            "ml_phonons": None if self.ml_phonons is None else self.ml_phonons.to_dict(),
            "stages": {name: stage.to_dict() for name, stage in self.stages.items()},
            "references": {name: group.to_dict() for name, group in self.references.items()},
            "phonons": None if self.phonons is None else {
                **self.phonons.to_dict(), "projected_core_hours": self.phonon_projected_core_hours},
            "phonon_note": self.phonon_note,
            "stale_snakemake_lock": self.stale_snakemake_lock,
            "scheduler": self.scheduler,
        }


def reason_kind(reason: str) -> str:
    """A failure reason with numbers and quoted names blanked, so alike reasons count together.

    >>> reason_kind("atoms 1 and 4 are 0.31 Å apart")
    'atoms # and # are # Å apart'
    """
    text = " ".join(str(reason or "unknown reason").split())
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


#: Seconds the first question to SLURM may take before status goes on without the scheduler.
PROBE_TIMEOUT_S = 1.0


def controller_answers(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether SLURM answers within ``timeout`` seconds (asked once per status), by a short question
    to the client status then asks: ``squeue`` of the user's own jobs, else a one-minute ``sacct``.

    An error is an answer (the real questions then fail as quickly); a client installed without a
    reachable controller would otherwise keep each question waiting for its own time-out (about 10 s).
    """
    if shutil.which("squeue"):
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
        mine = ["--user", user] if user else []
        return _answer(["squeue", "--noheader", "--format=%i", *mine], timeout) is not None
    if shutil.which("sacct"):
        return _answer(["sacct", "--noheader", "--allocations", "--starttime=now-1minute", "--format=JobID"],
                       timeout) is not None
    return True


def _answer(command: list[str], timeout: float) -> str | None:
    """What ``command`` printed (also when it failed: an error is an answer), or None when it did not
    finish within ``timeout`` seconds or cannot start."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout + proc.stderr


def slurm_jobs(workdir: Path, since: str = "now-7days") -> tuple[list[SchedulerJob], str]:
    """This run's SLURM jobs (those submitted from ``workdir``), oldest first, and the sources used.

    sacct (accounting) knows finished jobs; squeue knows queued and running ones
    (sacct may store a job's comment only once it ends). Both are asked for
    explicit fields, '|'-separated; squeue's view of a job wins. When no controller answers
    (:func:`controller_answers`) neither is asked.
    """
    if not (shutil.which("sacct") or shutil.which("squeue")):
        return [], "none"
    if not controller_answers():
        return [], f"none (no SLURM controller answered within {PROBE_TIMEOUT_S:g} s)"
    finished = _rows(
        [
            "sacct",
            "--parsable2",
            "--noheader",
            "--allocations",
            f"--starttime={since}",
            "--format=JobIDRaw,State,Comment,WorkDir,Timelimit,Elapsed",
        ]
    )
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
    """Outputs a local run is writing now: its incomplete markers while a live Snakemake holds its lock,
    and the files named on the command line of a live process started in ``workdir`` (the GPAW jobs'
    ``--out-json <record>``), also when the Snakemake that started it is gone.

    Snakemake marks each output of a started job in .snakemake/incomplete/ (file name: URL-safe
    base64 of the output as the workflow names it) and removes the mark when the job ends; it
    writes .snakemake/locks/ while it runs and removes them when it stops, unless it was killed.
    """
    held = _lock_held(workdir)
    marked = _incomplete_marks(workdir) if held else set()
    return marked | _live_outputs(workdir)


def interrupted_local_outputs(workdir: Path) -> set[str]:
    """Outputs a killed local run left marked as in progress: marks no live Snakemake holds a lock
    over (no lock, or a lock left by a Snakemake that is gone) and no live process names."""
    if _lock_held(workdir):
        return set()
    return _incomplete_marks(workdir) - _live_outputs(workdir)


def _lock_held(workdir: Path) -> bool:
    """Whether a Snakemake holds the lock of ``workdir``: lock files exist and, where the running
    processes can be read (``/proc``), a Snakemake process works in ``workdir``."""
    if not _locked(workdir):
        return False
    alive = snakemake_alive(workdir)
    return True if alive is None else alive


def stale_lock(workdir: Path) -> bool:
    """Whether ``workdir`` holds Snakemake lock files that no live Snakemake holds (a killed run's)."""
    return _locked(workdir) and not _lock_held(workdir)


def _locked(workdir: Path) -> bool:
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def _decode_marker(relative: Path) -> str | None:
    """The output a marker file names: the URL-safe base64 of its path under .snakemake/incomplete/
    (Snakemake splits long names into folders whose names start with ``@``), or None."""
    text = "".join(part.removeprefix("@") for part in relative.parts)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _incomplete_marks(workdir: Path) -> set[str]:
    """The outputs Snakemake's marks in .snakemake/incomplete/ name, each also relative to
    ``workdir`` when Snakemake named it by an absolute path inside it."""
    incomplete = workdir / ".snakemake" / "incomplete"
    outputs: set[str] = set()
    for folder, _, files in os.walk(incomplete):
        for name in files:
            output = _decode_marker((Path(folder) / name).relative_to(incomplete))
            if output is not None and name != "migration_underway":
                outputs |= _both_names(output, workdir)
    return outputs


def _both_names(path: str, workdir: Path) -> set[str]:
    """``path`` as given, and relative to ``workdir`` when it is an absolute path inside it."""
    names = {path}
    if os.path.isabs(path):
        relative = os.path.relpath(os.path.normpath(path), os.path.abspath(workdir))
        if not relative.startswith(".."):
            names.add(relative)
    return names


@dataclass(frozen=True)
class LiveProcess:
    """A process of this machine as ``/proc`` shows it: its working folder and command line."""

    pid: int
    cwd: str
    args: tuple[str, ...]


def live_processes() -> list[LiveProcess] | None:
    """The processes whose working folder and command line can be read; None without ``/proc``."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").is_file():
        return None
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone meanwhile, a kernel thread, or another user's
            continue
        if raw:
            found.append(LiveProcess(int(entry.name), cwd, tuple(arg.decode(errors="replace")
                                                                 for arg in raw.rstrip(b"\0").split(b"\0"))))
    return found


def _is_snakemake(args: tuple[str, ...]) -> bool:
    """Whether a command line runs Snakemake (``snakemake ...``, ``python .../snakemake ...``,
    ``python -m snakemake ...``), not one of its job scripts."""
    head = list(args[:3])
    if any(os.path.basename(arg) == "snakemake" for arg in head[:2]):
        return True
    return head[1:3] == ["-m", "snakemake"]


def _snakemake_folder(process: LiveProcess) -> str:
    """The folder a Snakemake process works in: its ``--directory``/``-d``, else its working folder."""
    args = process.args
    for index, arg in enumerate(args[:-1]):
        if arg in ("--directory", "-d"):
            return os.path.normpath(os.path.join(process.cwd, args[index + 1]))
        if arg.startswith("--directory="):
            return os.path.normpath(os.path.join(process.cwd, arg.split("=", 1)[1]))
    return os.path.normpath(process.cwd)


def snakemake_alive(workdir: Path) -> bool | None:
    """Whether a Snakemake process works in ``workdir``; None when the processes cannot be read."""
    processes = live_processes()
    if processes is None:
        return None
    wanted = os.path.realpath(workdir)
    return any(
        _is_snakemake(process.args) and os.path.realpath(_snakemake_folder(process)) == wanted
        for process in processes
    )


def _live_outputs(workdir: Path) -> set[str]:
    """The files named after ``--out-json`` on the command lines of live processes, as paths relative
    to ``workdir`` (where they are inside it) and absolute: the records running jobs will write."""
    outputs: set[str] = set()
    for process in live_processes() or []:
        for index, arg in enumerate(process.args[:-1]):
            if arg == "--out-json":
                outputs |= _both_names(os.path.normpath(os.path.join(process.cwd, process.args[index + 1])), workdir)
    return outputs


#: Returned by :func:`_read_record` for a file that exists but is not JSON.
CORRUPT = {"status": "corrupt"}


def _read_record(path: Path) -> Any:
    """The JSON in ``path``; ``None`` when it does not exist; :data:`CORRUPT` when it is not readable JSON."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return CORRUPT


def run_config(run_folder: Path) -> dict[str, Any]:
    """The run's ``config/config.yaml`` in ``run_folder`` with the schema's defaults filled in, as the
    workflow reads it (:func:`dftscreen.config.read_run_config`); the defaults alone when it is missing
    or not readable (the workflow itself then says why)."""
    try:
        return read_run_config(Path(run_folder) / "config" / "config.yaml")
    except ConfigError:
        return with_defaults({})


def configfile_run_config(configfile: str | os.PathLike[str], run_folder: Path) -> dict[str, Any]:
    """The config of a run started with ``snakemake --configfile FILE``, as Snakemake merges it.

    The workflow's own ``config/config.yaml`` in ``run_folder`` (when there) is read first
    and ``configfile`` merged over it, key by key; then the schema's defaults fill the rest.

    Raises:
        ConfigError: ``configfile`` cannot be read, is not YAML or not a mapping
            (:func:`dftscreen.config.read_run_config`'s sentence).
    """
    given = read_run_config(configfile)  # raises for an unreadable file, with the reason
    base_path = Path(run_folder) / "config" / "config.yaml"
    try:
        base = yaml.safe_load(base_path.read_text()) if base_path.is_file() else None
    except (OSError, yaml.YAMLError):
        base = None
    if not isinstance(base, dict):
        return given
    return with_defaults(deep_merge(base, yaml.safe_load(Path(configfile).read_text()) or {}))


def _check_table_problem(path: Path, checks: Any) -> str | None:
    """Why the check table cannot be counted (not a list of records with a text ``structure_id``), or None."""
    if checks is CORRUPT or not isinstance(checks, list):
        return f"{path} is not a readable check table"
    for index, record in enumerate(checks):
        if not isinstance(record, dict) or not isinstance(record.get("structure_id"), str):
            return f"{path} has an entry ({index}) that is not a record with a structure_id"
        if any(record.get(key) is not None and not isinstance(record[key], str) for key in ("status", "reason")):
            return f"{path} has a record ({record['structure_id']}) whose status or reason is not text"
    return None


def _id_list(value: Any) -> list[str]:
    """A list of structure ids read from a record; anything else (a number, a string) counts as none."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def dft_structures(
    results: Path, checks: list[dict[str, Any]], plan: RunPlan | None = None
) -> tuple[dict[str, dict[str, Any]], int, int]:
    """The check records of the structures sent to DFT, by id, how many the ML pre-screen kept
    from DFT (:mod:`dftscreen.ml_hull`; those its audit sent anyway go to DFT) and how many the
    DFT budget left out (``plan``'s ``dft.max_structures_per_cohort``, :mod:`dftscreen.dft_budget`)."""
    valid = {record["structure_id"]: record for record in checks if record.get("valid")}
    screen_path = Path(ResultsLayout.of(results).ml_screen)
    screen = _read_record(screen_path) if screen_path.is_file() else None
    screened: set[str] = set()
    if isinstance(screen, dict):
        screened = set(_id_list(screen.get("screened_out_ids"))) - set(_id_list(screen.get("audited_ids")))
    candidates = [sid for sid in valid if sid not in screened]
    kept = set(plan.within_dft_budget(candidates)) if plan is not None else set(candidates)
    return {sid: valid[sid] for sid in candidates if sid in kept}, len(screened), len(candidates) - len(kept)


def _malformed_record(path: Path, record: Any) -> str | None:
    """Why a stage record read as JSON cannot be judged (not an object, a status or reason not text), or None."""
    if not isinstance(record, dict):
        return f"corrupt record: {path.name} is not a JSON object; delete it and rerun"
    for key in ("status", "reason"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"corrupt record: {path.name} has a {key} that is not text; delete it and rerun"
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


@dataclass(frozen=True)
class Job:
    """One job of the run as status finds it: the record it writes and the names it goes by."""

    #: What the report calls it: a structure id, ``<El>/<reference key>``, a phase key.
    name: str
    #: Its record on disk.
    record: Path
    #: The same record as Snakemake names the output (how its in-progress marks name it).
    output: str
    #: Rule and wildcard values, as the SLURM plugin's job comment and a pack's step name give them.
    rule: str
    wildcards: str
    log: Path
    #: Which :data:`FINISHED_OK` entry judges its record (``""``: any readable record is a success).
    kind: str = "relax"


def count_jobs(
    title: str,
    jobs: list[Job],
    last_jobs: dict[tuple[str, str], SchedulerJob],
    local_running: set[str],
    interrupted: set[str] = frozenset(),  # type: ignore[assignment]
    lost: Mapping[str, str] | None = None,
) -> StageStatus:
    """Counts of one group of jobs (a DFT stage, the references, ...): done, failed, running, pending.

    ``lost``: job name -> why its missing record will not come back by a rerun alone
    (a structure whose records were deleted after its pack finished).
    """
    status = StageStatus(title)
    for job in jobs:
        record = _read_record(job.record)
        if record is CORRUPT:
            status.add_failure(job.name, f"corrupt record: {job.record.name} is not readable JSON; delete it and rerun")
            continue
        malformed = _malformed_record(job.record, record) if record is not None else None
        if malformed:
            status.add_failure(job.name, malformed)
            continue
        if record is not None:
            reason = _record_failure(job.kind, record)
            if reason is None:
                status.done += 1
            else:
                status.add_failure(job.name, reason)
            continue
        if lost and job.name in lost:
            status.add_failure(job.name, lost[job.name])
            continue
        scheduled = last_jobs.get((job.rule, job.wildcards))
        # The scheduler's word first: Snakemake marks a submitted job's output
        # as in progress while it still waits in the queue.
        if scheduled is not None and scheduled.state in SLURM_RUNNING_STATES:
            status.running += 1
        elif scheduled is not None and scheduled.state in SLURM_PENDING_STATES:
            status.pending += 1
        elif job.output in local_running:
            status.running += 1
        elif scheduled is not None and scheduled.state != "COMPLETED":
            status.add_failure(job.name, _scheduler_failure(scheduled), job.log)
        elif job.output in interrupted:
            status.add_failure(job.name, "interrupted: the Snakemake run was killed while this job ran; rerun", job.log)
        elif scheduled is None and job.log.is_file():
            status.add_failure(
                job.name, "the job started but wrote no record (it crashed or was killed; see its log); rerun", job.log
            )
        else:
            status.pending += 1
    return status


def pack_member_outputs(marked: set[str], packs: Mapping[str, list[str]], out_prefix: str) -> set[str]:
    """The relax and properties outputs of the structures in the packs ``marked`` names.

    With ``dft.structures_per_pack`` a local run marks only the pack's record as in progress
    (:mod:`dftscreen.dft_pack`); its structures are what runs. ``packs``: pack name -> ids,
    as the workflow plans them (:meth:`dftscreen.plan.RunPlan.packs`).
    """
    prefix = ResultsLayout(out_prefix)
    return {
        prefix.stage_record(sid, stage)
        for name, members in packs.items()
        if prefix.pack_record(name) in marked
        for sid in members
        for stage in DFT_STAGES
    }


def ml_jobs(plan: RunPlan, ids: list[str], out_prefix: str) -> list[Job]:
    """The ML relaxation of each (valid) structure: its record ``ml/structures/<id>/record.json``,
    written by the ML batch that holds it (:meth:`dftscreen.plan.RunPlan.ml_batches`), whose
    output, log and SLURM job say whether it runs."""
    layout, prefix = plan.layout, ResultsLayout(out_prefix)
    return [
        Job(sid, Path(layout.ml_record(sid)), prefix.ml_batch_record(batch), "ml_batch", str(batch),
            Path(layout.log("ml", f"batch_{batch}")), "relax")
        for batch, members in plan.ml_batches(ids).items()
        for sid in members
    ]


def ml_phonon_jobs(plan: RunPlan, ids: list[str], out_prefix: str) -> list[Job]:
    """The ML phonons of each (valid) structure: ``ml/structures/<id>/phonons.json``, written by the
    ML phonon job of its ML batch (rule ``ml_phonon_batch``)."""
    layout, prefix = plan.layout, ResultsLayout(out_prefix)
    return [
        Job(sid, Path(layout.ml_phonon_record(sid)), prefix.ml_phonon_batch_record(batch), "ml_phonon_batch",
            str(batch), Path(layout.log("ml", f"phonons_{batch}")), "phonons")
        for batch, members in plan.ml_batches(ids).items()
        for sid in members
    ]


def structure_jobs(stage: str, ids: list[str], results: Path, out_prefix: str) -> list[Job]:
    """The jobs of one DFT stage (``relax``, ``properties``) over the structure ids sent to DFT."""
    layout, prefix = ResultsLayout.of(results), ResultsLayout(out_prefix)
    return [
        Job(sid, Path(layout.stage_record(sid, stage)), prefix.stage_record(sid, stage), stage, sid,
            Path(layout.log(stage, sid)), stage)
        for sid in ids
    ]


def phonon_jobs(layout: ResultsLayout, out_prefix: str) -> tuple[list[Job], dict[str, Any]] | None:
    """The DFT phonon jobs the checkpoint planned (``dft/phonon_candidates.json``), and the plan; None before it ran."""
    plan = _read_record(Path(layout.phonon_candidates))
    if not isinstance(plan, dict):
        return None
    prefix = ResultsLayout(out_prefix)
    jobs = [
        Job(sid, Path(layout.phonon_record(sid)), prefix.phonon_record(sid), "dft_phonons", sid,
            Path(layout.phonon_log(sid)), "phonons")
        for sid in plan.get("runnable", [])
    ]
    return jobs, plan


def ml_status(
    plan: RunPlan, checks: list[dict[str, Any]], out_prefix: str, count: Callable[[str, list[Job]], StageStatus]
) -> tuple[StageStatus | None, StageStatus | None]:
    """The ML relaxations and the ML phonons of the valid structures; None for a stage switched off."""
    if not plan.config["ml"]["enabled"]:
        return None, None
    valid_ids = [record["structure_id"] for record in checks if record.get("valid")]
    ml = count("ml", ml_jobs(plan, valid_ids, out_prefix))
    phonons = count("ml_phonons", ml_phonon_jobs(plan, valid_ids, out_prefix)) if plan.config["phonons"]["ml"] else None
    return ml, phonons


def phonon_pack_member_outputs(
    plan: RunPlan, phonon_plan: dict[str, Any], marked: set[str], out_prefix: str
) -> set[str]:
    """The phonon records of the structures in the DFT phonon packs ``marked`` names (with
    ``dft.structures_per_pack`` a local run marks only the pack's record as in progress)."""
    per_pack = plan.config["dft"].get("structures_per_pack")
    if not per_pack:
        return set()
    prefix = ResultsLayout(out_prefix)
    packs = plan_phonon_packs(phonon_plan, per_pack, read_started_packs(plan.layout, phonons=True))
    return {prefix.phonon_record(sid) for name, members in packs.items()
            if prefix.phonon_pack_record(name) in marked for sid in members}


def phonon_status(
    plan: RunPlan, layout: ResultsLayout, out_prefix: str, count: Callable[[str, list[Job]], StageStatus],
    local: tuple[set[str], set[str]] = (set(), set()),
) -> tuple[StageStatus | None, str, float | None]:
    """DFT phonon counts, a note (off, or not planned yet), and the core-hours the unfinished jobs are
    projected to take (the size gate's estimate for each supercell, margin excluded)."""
    mode = dft_phonon_mode(plan.config["phonons"], plan.config["dft"]["preset"])
    if mode == "none":
        return None, "off (phonons.dft: none)", None
    planned = phonon_jobs(layout, out_prefix)
    if planned is None:
        return None, f"not planned until every DFT job has finished (phonons.dft: {mode})", None
    jobs, chosen = planned
    for marked in local:  # the local runs' running and interrupted outputs, phonon packs' members added
        marked |= phonon_pack_member_outputs(plan, chosen, marked, out_prefix)
    stage = count("phonons", jobs)
    waiting = [job.name for job in jobs if not job.record.is_file()]
    projected = sum(chosen["jobs"][sid]["runtime_min"] * chosen["jobs"][sid]["tasks"] / 60.0 for sid in waiting)
    too_large = sum(1 for job in chosen["jobs"].values() if job.get("too_large"))
    note = f"{too_large} supercell(s) too large for DFT phonons" if too_large else ""
    return stage, note, projected


def reference_jobs(plan: RunPlan, out_prefix: str, formulas: list[str | None]) -> dict[str, list[Job]]:
    """The reference jobs: ``compare_known``, the ``elements``' references, the chosen ``known_phases``,
    the ``user_phases`` (:func:`user_phase_jobs`), as the workflow plans them (:class:`dftscreen.plan.RunPlan`).

    The reference library is the folder compare_known names in ``known/competing_phases.json``;
    until it has run, the elements and known phases are not listed. ``formulas`` are those of
    the structures sent to DFT.
    """
    layout, prefix = plan.layout, ResultsLayout(out_prefix)
    user_phases, phases = user_phase_jobs(plan, prefix)
    groups: dict[str, list[Job]] = {
        "compare_known": [
            Job("compare_known", Path(layout.competing_phases), prefix.competing_phases, "compare_known", "",
                Path(layout.log("compare_known")), "")
        ],
        "elements": [],
        "known_phases": [],
        "user_phases": user_phases,
    }
    chosen = _read_record(Path(layout.competing_phases))
    if not isinstance(chosen, dict) or chosen is CORRUPT or not isinstance(chosen.get("library"), str):
        return groups
    # Split as written (not normalised): Snakemake names the outputs by their text.
    library = ReferenceLibrary(*chosen["library"].rstrip("/").rsplit("/", 1))
    on_disk = (lambda text: Path(text)) if os.path.isabs(library.root) else (lambda text: plan.folder / text)
    groups["elements"] = [
        Job(f"{el}/{key}", on_disk(library.element_record(el, key)), library.element_record(el, key),
            "element_reference", f"{el}_{key}", Path(layout.element_reference_log(el, key)))
        for el, key in plan.element_jobs(plan.elements_needed(formulas, phases))
    ]
    groups["known_phases"] = [
        Job(key, on_disk(library.phase_record(key)), library.phase_record(key), "relax_competing_phase", key,
            Path(layout.known_phase_log(key)))
        for key in _chosen_phase_keys(plan, chosen)
    ]
    return groups


def _chosen_phase_keys(plan: RunPlan, chosen: dict[str, Any]) -> list[str]:
    """The chosen known phases that get a job; none when compare_known's table is malformed (wrongly typed)."""
    try:
        return plan.competing_phase_keys(chosen)
    except (AttributeError, KeyError, TypeError, ValueError):
        return []


def user_phase_jobs(plan: RunPlan, prefix: ResultsLayout) -> tuple[list[Job], dict[str, Any]]:
    """The relaxations of the user's reference phases (``stability.reference_cif_dir``), and the phases.

    The phases are the folder's CIFs, with the structure ids the workflow gives them
    (:attr:`dftscreen.plan.RunPlan.reference_phases`). No folder: no jobs.
    """
    try:
        phases = plan.reference_phases
    except (OSError, ValueError):  # the workflow itself stops on a missing folder, with the reason
        return [], {}
    layout = plan.layout
    jobs = [
        Job(sid, Path(layout.phase_record(sid)), prefix.phase_record(sid), "relax_reference_phase", sid,
            Path(layout.reference_phase_log(sid)), "relax")
        for sid in phases
    ]
    return jobs, phases


def _wildcard_value(wildcards: str) -> str:
    """The structure id in the plugin's comment (``sid=X`` or, in 2.x, the bare value ``X``)."""
    return wildcards.split("=", 1)[1] if "=" in wildcards else wildcards


@dataclass(frozen=True)
class SchedulerStep:
    """One srun step of a pack: ``<rule>:<structure id>`` and how it ended."""

    job_id: str
    rule: str
    structure_id: str
    state: str


def slurm_steps(job_ids: list[str]) -> list[SchedulerStep]:
    """The named GPAW steps (``<rule>:<id>``) of the given SLURM jobs, from sacct (explicit fields)."""
    if not job_ids:
        return []
    rows = (
        _rows(["sacct", "--parsable2", "--noheader", "--jobs", ",".join(job_ids), "--format=JobID,JobName,State"]) or []
    )
    steps = []
    for row in rows:
        if len(row) < 3 or "." not in row[0]:
            continue
        rule, sep, structure_id = row[1].partition(":")
        if sep and rule in (*STAGES, "dft_phonons") and structure_id:
            steps.append(SchedulerStep(row[0].split(".")[0], rule, structure_id, row[2].split()[0]))
    return steps


def step_jobs(packs: list[SchedulerJob], steps: list[SchedulerStep]) -> list[SchedulerJob]:
    """One job per structure and stage that ran as a step of a pack, with the step's state.

    A step that never ended (its pack was killed at the pack's time limit, or is
    gone) takes the pack's state when the pack ended badly.
    """
    pack_state = {pack.job_id: pack.state for pack in packs}
    jobs = []
    for step in steps:
        state = step.state
        if state in SLURM_RUNNING_STATES and pack_state.get(step.job_id) not in SLURM_RUNNING_STATES:
            state = pack_state.get(step.job_id, state)
        jobs.append(SchedulerJob(step.job_id, state, step.rule, step.structure_id))
    return jobs


def job_structures(jobs: list[SchedulerJob], steps: list[SchedulerStep]) -> list[dict[str, Any]]:
    """Every DFT job of the run (one per structure, or a pack) with the structures it ran.

    Returns dicts ``{"job_id", "state", "pack", "structures", "failed_steps"}``;
    ``pack`` is True for a pack job (:mod:`dftscreen.dft_pack`); ``failed_steps`` maps a pack's step name
    (``relax:<id>``) to its state when that is not COMPLETED (or still running).
    """
    by_job: dict[str, list[SchedulerStep]] = {}
    for step in steps:
        by_job.setdefault(step.job_id, []).append(step)
    summaries = []
    for job in jobs:
        if job.rule in STAGES:
            structures = [_wildcard_value(job.wildcards)]
            failed: dict[str, str] = {}
        elif job.job_id in by_job:
            job_steps = by_job[job.job_id]
            structures = sorted({step.structure_id for step in job_steps})
            failed = {
                f"{step.rule}:{step.structure_id}": step.state
                for step in job_steps
                if step.state != "COMPLETED" and step.state not in SLURM_RUNNING_STATES
            }
        else:
            continue
        summaries.append(
            {
                "job_id": job.job_id,
                "state": job.state,
                "pack": job.rule not in STAGES,
                "structures": structures,
                "failed_steps": failed,
            }
        )
    return summaries


def mark_unfinished(allocations: list[dict[str, Any]], dft_dir: Path) -> None:
    """Add ``unfinished`` to each pack: its structures that still lack a stage's record."""
    for job in allocations:
        if job["pack"]:
            job["unfinished"] = [
                sid
                for sid in job["structures"]
                if not all(
                    Path(ResultsLayout.of(dft_dir.parent).stage_record(sid, stage)).is_file() for stage in STAGES
                )
            ]


def format_allocations(allocations: list[dict[str, Any]], top: int = 5) -> list[str]:
    """Text lines: how many packs ran how many structures, and the packs whose failures are not made good yet."""
    packs = [job for job in allocations if job["pack"]]
    if not packs:
        return []
    n_structures = len({sid for job in packs for sid in job["structures"]})
    lines = [f"packs       {len(packs)} SLURM jobs ran {n_structures} structures"]
    open_failures = [
        job
        for job in packs
        if job.get("unfinished")
        and (job["failed_steps"] or job["state"] not in SLURM_RUNNING_STATES | SLURM_PENDING_STATES | {"COMPLETED"})
    ]
    for job in open_failures[:top]:
        steps = ", ".join(f"{name} {state}" for name, state in job["failed_steps"].items())
        lines.append(
            f"    job {job['job_id']} {job['state']}: not finished {', '.join(job['unfinished'])}"
            + (f" ({steps})" if steps else "")
            + f"; {len(job['structures']) - len(job['unfinished'])} others of the pack done"
        )
    if len(open_failures) > top:
        lines.append(f"    (+{len(open_failures) - top} more packs with unfinished structures)")
    return lines


def _no_results_problem(results: Path) -> str | None:
    """Why ``results`` is no results folder (missing, or a regular file), or None when it is a folder."""
    if results.is_dir():
        return None
    what = "is a file, not a results folder" if results.exists() else "does not exist"
    return (
        f"no results folder here: {results} {what} (run from the folder holding config/config.yaml, "
        "name the run's output_dir, or give the run's --configfile)"
    )


def run_status(
    results_dir: str | os.PathLike[str],
    workdir: str | os.PathLike[str] | None = None,
    query_scheduler: bool = True,
    config: dict[str, Any] | None = None,
) -> RunStatus:
    """Status of the run whose results are in ``results_dir``.

    Args:
        results_dir: the workflow's ``output_dir``.
        workdir: the folder Snakemake ran in (default: the parent of
            ``results_dir``, which is right when output_dir is a plain name).
        query_scheduler: ask sacct/squeue about this run's jobs.
        config: the run's config with defaults (default: ``config/config.yaml`` in
            ``workdir``, :func:`run_config`; see :func:`configfile_run_config` for ``--configfile``).
    """
    results = Path(results_dir)
    work = Path(workdir) if workdir is not None else results.resolve().parent
    stages = {name: StageStatus(name) for name in STAGES}
    problem = _no_results_problem(results)
    if problem:
        return RunStatus(results, None, 0, Counter(), Counter(), stages, "not asked", problem)
    checks_path = Path(ResultsLayout.of(results).checks_table)
    checks = _read_record(checks_path)
    table_problem = _check_table_problem(checks_path, checks) if checks is not None else None
    if table_problem:
        problem = (
            f"corrupt record: {table_problem}; delete it and rerun the workflow "
            "(the check is redone, finished DFT is kept)"
        )
        return RunStatus(results, None, 0, Counter(), Counter(), stages, "not asked", problem)
    jobs, source = slurm_jobs(work) if query_scheduler else ([], "not asked")
    packs = [job for job in jobs if job.rule not in (*STAGES, "check", *REFERENCE_RULES)]
    steps = slurm_steps([job.job_id for job in packs])
    # The last job per (rule, structure) decides: earlier attempts were retried.
    ordered = sorted([*jobs, *step_jobs(packs, steps)], key=lambda job: int(re.sub(r"\D.*", "", job.job_id) or 0))
    last_jobs = {(job.rule, _wildcard_value(job.wildcards)): job for job in ordered}
    allocations = job_structures(jobs, steps)
    local_running = running_local_outputs(work)
    interrupted = interrupted_local_outputs(work)
    try:
        out_prefix = os.path.relpath(results.resolve(), work.resolve())
    except ValueError:
        out_prefix = str(results)

    if checks is None:
        check_job = last_jobs.get(("check", ""))
        stages = {name: StageStatus(name) for name in STAGES}
        run = RunStatus(
            results,
            None,
            0,
            Counter(),
            Counter(),
            stages,
            source,
            f"not finished: the check has not written {checks_path} yet",
            allocations=allocations,
        )
        if check_job is not None and check_job.state not in SLURM_RUNNING_STATES | SLURM_PENDING_STATES | {"COMPLETED"}:
            run.invalid_reasons[_scheduler_failure(check_job)] += 1
        return run

    check_counts = Counter(
        record.get("status") or ("to DFT" if record.get("valid") else "invalid") for record in checks
    )
    invalid_reasons = Counter(
        reason_kind(record.get("reason", ""))
        for record in checks
        if not record.get("valid") and record.get("status") != "duplicate"
    )
    # The jobs Snakemake plans for this run (dftscreen.plan), over the results folder read here.
    plan = RunPlan(config or run_config(work), folder=work, layout=ResultsLayout.of(results))
    to_dft, screened, left_out = dft_structures(results, checks, plan)
    ids = list(to_dft)
    lost: dict[str, str] = {}
    if plan.config["dft"]["structures_per_pack"]:
        packs = plan.packs(ids)
        local_running |= pack_member_outputs(local_running, packs, out_prefix)
        interrupted |= pack_member_outputs(interrupted, packs, out_prefix)
        lost = {sid: lost_records_reason(plan.layout, sid, record)
                for sid, record in finished_pack_records(plan.layout).items()}
    mark_unfinished(allocations, Path(ResultsLayout.of(results).dft_dir))
    if screened:
        check_counts["screened_out (ML)"] = screened
    if left_out:
        check_counts["not_sampled (DFT budget)"] = left_out
    stages = {
        name: count_jobs(name, structure_jobs(name, ids, results, out_prefix), last_jobs, local_running, interrupted,
                         lost)
        for name in STAGES
    }
    ml, ml_phonons = ml_status(plan, checks, out_prefix,
                               lambda name, group: count_jobs(name, group, last_jobs, local_running, interrupted))
    references = {
        name: count_jobs(name, group, last_jobs, local_running, interrupted)
        for name, group in reference_jobs(plan, out_prefix, [to_dft[sid].get("reduced_formula") for sid in ids]).items()
    }
    phonons, phonon_note, phonon_cost = phonon_status(
        plan, plan.layout, out_prefix,
        lambda name, group: count_jobs(name, group, last_jobs, local_running, interrupted),
        (local_running, interrupted))
    return RunStatus(
        results,
        len(checks),
        len(ids),
        check_counts,
        invalid_reasons,
        stages,
        source,
        allocations=allocations,
        references=references,
        ml=ml,
        ml_screen_done=Path(ResultsLayout.of(results).ml_screen).is_file(),
        ml_phonons=ml_phonons,
        phonons=phonons,
        phonon_note=phonon_note,
        phonon_projected_core_hours=phonon_cost,
        stale_snakemake_lock=stale_lock(work),
    )


def format_status(status: RunStatus, top: int = 5, show_ids: int = 0) -> str:
    """Human-readable status: one block per stage, the most common failure reasons first."""
    lines = [f"results: {status.results_dir}"]
    if status.problem and not status.problem.startswith("not finished"):
        lines.append(status.problem)
        return "\n".join(lines)
    if status.n_inputs is None:
        lines.append(f"check       not finished yet (no {ResultsLayout.of(status.results_dir).checks_table})")
        for reason, count in status.invalid_reasons.most_common(top):
            lines.append(f"    {count:>7}  {reason}")
        return "\n".join(lines)
    statuses = ", ".join(f"{count} {name}" for name, count in status.check_counts.most_common())
    lines.append(f"check       {status.n_inputs} files checked: {statuses}")
    for reason, count in status.invalid_reasons.most_common(top):
        lines.append(f"    {count:>7}  {reason}")
    width = len(str(max(status.n_to_dft, status.ml.total if status.ml else 0)))
    if status.ml is not None:
        screen = "written" if status.ml_screen_done else "not written yet (DFT waits for it)"
        lines.append(f"ml screen   {screen}: {ResultsLayout.of(status.results_dir).ml_screen}")
    ml_stages = [stage for stage in (status.ml, status.ml_phonons) if stage is not None]
    for stage in [*ml_stages, *status.stages.values(), *status.references.values()]:
        if stage.name in ("elements", "known_phases") and not status.references["compare_known"].done:
            lines.append(f"{stage.name:<11} not listed until compare_known has run (it names the reference library)")
            continue
        lines.append(
            f"{stage.name:<11} {stage.done:>{width}} done, {stage.failed:>{width}} failed, "
            f"{stage.running:>{width}} running, {stage.pending:>{width}} pending  (of {stage.total})"
        )
        for reason, count in stage.failure_reasons.most_common(top):
            lines.append(f"    {count:>7}  {reason}")
        if show_ids and stage.failed_ids:
            shown = sorted(stage.failed_ids)[:show_ids]
            more = len(stage.failed_ids) - len(shown)
            lines.append("    failed: " + ", ".join(shown) + (f" (+{more} more)" if more else ""))
        lines.extend(_log_lines(stage.logs, top))
    lines.extend(_phonon_lines(status, width, top))
    if status.stale_snakemake_lock:
        lines.append("snakemake   a killed run left its lock in .snakemake/locks: run the same command once with "
                     "--unlock added (when no other Snakemake runs in this folder), then again without it")
    lines.extend(format_allocations(status.allocations, top))
    lines.append(f"scheduler: {status.scheduler}")
    return "\n".join(lines)


def _phonon_lines(status: RunStatus, width: int, top: int) -> list[str]:
    """The DFT phonon stage's line(s): counts and projected core-hours, or why there are none yet."""
    stage = status.phonons
    if stage is None:
        return [f"{'phonons':<11} {status.phonon_note}"] if status.phonon_note else []
    lines = [
        f"{'phonons':<11} {stage.done:>{width}} done, {stage.failed:>{width}} failed, "
        f"{stage.running:>{width}} running, {stage.pending:>{width}} pending  (of {stage.total})"
    ]
    lines += [f"    {count:>7}  {reason}" for reason, count in stage.failure_reasons.most_common(top)]
    if status.phonon_projected_core_hours:
        lines.append(f"    projected: {status.phonon_projected_core_hours:.1f} core-hours for the unfinished "
                     "phonon jobs (size-gate estimate)")
    if status.phonon_note:
        lines.append(f"    {status.phonon_note}")
    return lines


def _log_lines(logs: dict[str, str], top: int) -> list[str]:
    """Text lines naming the logs of the first ``top`` jobs that failed without a record."""
    names = sorted(logs)[: max(top, 1)]
    lines = [f"    log of {name}: {logs[name]}" for name in names]
    if len(logs) > len(names):
        lines.append(f"    (+{len(logs) - len(names)} more logs: --json lists them)")
    return lines


def _atoms(check: dict[str, Any]) -> int:
    """A check record's ``n_sites`` as a count of atoms (1 when missing or not a number)."""
    try:
        return max(1, int(check.get("n_sites") or 1))
    except (TypeError, ValueError, OverflowError):
        return 1


def cost_projection(
    results_dir: str | os.PathLike[str],
    workdir: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Core-hours spent per DFT stage and projected for the structures still without a record.

    The projection multiplies the measured core-hours per atom of each stage
    (finished and failed jobs alike: both were paid for) by the atoms of the
    structures waiting for that stage (:func:`dftscreen.cost.projection`), within the run's
    DFT budget (its config in ``workdir``, as :func:`run_status` reads it).
    ``None`` before the check stage has finished.
    """
    from dftscreen.cost import job_core_hours, projection, relax_core_hours

    results = Path(results_dir)
    layout = ResultsLayout.of(results)
    checks = _read_record(Path(layout.checks_table))
    if not results.is_dir() or checks is None or _check_table_problem(Path(layout.checks_table), checks):
        return None
    work = Path(workdir) if workdir is not None else results.resolve().parent
    plan = RunPlan(config or run_config(work), folder=work, layout=layout)
    cost_of = {"relax": relax_core_hours, "properties": job_core_hours}
    finished_cost: dict[str, list[float]] = {stage: [] for stage in STAGES}
    finished_atoms: dict[str, list[int]] = {stage: [] for stage in STAGES}
    pending_atoms: dict[str, list[int]] = {stage: [] for stage in STAGES}
    for check in dft_structures(results, checks, plan)[0].values():
        atoms = _atoms(check)
        relax_failed = False
        for stage in STAGES:
            path = Path(layout.stage_record(check["structure_id"], stage))
            record = _read_record(path) if path.is_file() else None
            if record is not None and _malformed_record(path, record):
                continue  # counted as a failure by run_status; its cost is unknown
            if record is None:
                # After a failed relaxation the properties job only records that it was skipped.
                if not relax_failed:
                    pending_atoms[stage].append(atoms)
                continue
            relax_failed = stage == "relax" and record.get("status") == "failed"
            core_hours = cost_of[stage](record)
            if core_hours is not None:
                finished_cost[stage].append(core_hours)
                finished_atoms[stage].append(atoms)
    return projection(finished_cost, finished_atoms, pending_atoms)


def format_cost_projection(cost: dict[str, Any] | None) -> str:
    """One line per DFT stage: core-hours spent, per atom, and projected for what is pending."""
    if cost is None:
        return "cost        unknown until the check stage has finished"
    lines = []
    for name, stage in cost["stages"].items():
        rate = stage["core_hours_per_atom"]
        projected = stage["projected_core_hours"]
        pending = (
            "nothing pending"
            if not stage["pending_jobs"]
            else f"{stage['pending_jobs']} pending ({stage['pending_atoms']} atoms): "
            + (f"about {projected:.3g} core-hours more" if projected is not None else "no finished job to measure yet")
        )
        per_atom = f" ({rate:.3g} per atom)" if rate is not None else ""
        lines.append(f"cost {name:<11} {stage['measured_core_hours']:.3g} core-hours spent{per_atom}; {pending}")
    total = cost["pending_core_hours"]
    if total:
        lines.append(f"cost pending     about {total:.3g} core-hours in all (measured cost per atom x pending atoms)")
    return "\n".join(lines)
