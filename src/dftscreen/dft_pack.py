"""Many structures' DFT in one job: a pack, one Snakemake job and one SLURM allocation.

With ``dft.structures_per_pack: N`` (N >= 1) the workflow plans one ``dft_pack`` job per N
structures (``workflow/rules/pack.smk``) instead of a relax and a properties job per
structure. The job runs :func:`run_pack`: every structure's relaxation and then its single
point, the structures side by side, each GPAW run as its own MPI launch of its own size
and time limit (inside SLURM an ``srun --exact`` step named ``<stage>:<structure id>``,
which ``sacct`` and ``dftscreen status`` show; outside SLURM ``mpiexec``). The commands
are the ones the per-structure rules run (``python -m dftscreen.relax`` / ``.properties``),
so the records, logs and checkpoints are the same files in the same places.

Why a job per pack and not Snakemake's group jobs: the dry run plans one job per pack
instead of two per structure, which is what brings a ``snakemake -n`` over 100,000
inputs under 30 s (bench/README.md, "Dry-run scale"); and the pinned SLURM plugin runs a
group's members one after another, not side by side (its issue #469).

Failure isolation: a structure whose GPAW run crashes or overruns its own time limit
leaves no record; the others go on. The pack then fails (no pack record, exit status 1),
so the rerun of the same command runs the pack again, and that run skips every
structure whose records exist (written atomically: a record is whole or absent) and
resumes the unfinished one from its checkpoint. Nothing finished is computed twice.

Which structures share a pack (:func:`plan_packs`): a pack writes its members to
``packs/members/pack_<name>.txt`` before its first GPAW run and keeps them from then on;
the structures of no started pack form new packs of N, named by a hash of their ids.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dftscreen.io import atomic_write_json, atomic_write_text, read_json
from dftscreen.layout import DFT_STAGES, ResultsLayout
from dftscreen.mpi_launch import MPIEXEC, step_name
from dftscreen.resources import ResourcePolicy


@dataclass(frozen=True)
class PackMember:
    """One structure of a pack and what sizes its GPAW runs.

    Attributes:
        structure_id: the structure's id (its folder under ``dft/``).
        start_cif: the CIF the relaxation starts from (generated or ML-relaxed).
        n_sites: atoms in the cell (sets MPI ranks, wall time and memory).
        runtime_estimate_min: the size gate's wall-time estimate (minutes, with margin), or None.
        mem_estimate_mb: the size gate's memory estimate per rank (MB, with margin), or None.
        settings_json: this structure's DFT settings (JSON) when ``dft.structure_overrides``
            changes them, else None (the run's settings).
    """

    structure_id: str
    start_cif: str
    n_sites: int
    runtime_estimate_min: float | None = None
    mem_estimate_mb: float | None = None
    settings_json: str | None = None

    def tasks(self, policy: ResourcePolicy) -> int:
        """MPI ranks of each of this structure's GPAW runs."""
        return policy.tasks(self.n_sites)

    def runtime_min(self, policy: ResourcePolicy, attempt: int = 1) -> int:
        """Time limit (minutes) of one of its GPAW runs (relax or properties), as its own job would get."""
        return policy.runtime_min(self.n_sites, attempt, self.runtime_estimate_min)

    def mem_mb_per_task(self, policy: ResourcePolicy, attempt: int = 1) -> int:
        return policy.mem_mb_per_task(self.n_sites, attempt, self.mem_estimate_mb)


#: What :func:`pack_name` gives (the ``pack`` wildcard of rules/pack.smk).
PACK_NAME_PATTERN = r"[0-9a-f]{12}"


def pack_name(structure_ids: Sequence[str]) -> str:
    """A new pack's name: the first 12 hex digits of the SHA-256 of its sorted member ids.

    Named by what it holds, not by its position among the packs, so a pack keeps its name
    while other packs start or finish and when structures are added to the run.
    """
    digest = hashlib.sha256("\n".join(sorted(structure_ids)).encode())
    return digest.hexdigest()[:12]


def plan_packs(structure_ids: Sequence[str], structures_per_pack: int,
               started: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Pack name -> member ids, covering every id in ``structure_ids`` once.

    Args:
        structure_ids: the structures going to DFT.
        structures_per_pack: N, the size of a new pack.
        started: the members of packs that have started before (name -> ids, as
            :func:`read_started_packs` gives them).

    A pack that has started keeps its members that are still in ``structure_ids`` (so a
    failed pack reruns with the same structures, and a finished one stays finished). The
    other ids, in sorted order, form new packs of N consecutive ids, every one full but the
    last, named by :func:`pack_name`. Adding structures therefore forms new packs of only
    the new ones, and packs that start or finish take whole runs of N out of the ids still
    to pack, which leaves the names of the other new packs as they were: a SLURM job plans
    its own pack again inside its allocation and must find it by that name.
    """
    if structures_per_pack < 1:
        raise ValueError(f"structures per pack must be at least 1, not {structures_per_pack}")
    ids = sorted(set(structure_ids))
    wanted = set(ids)
    packs: dict[str, list[str]] = {}
    packed: set[str] = set()
    for name in sorted(started or {}):
        members = [sid for sid in dict.fromkeys(started[name]) if sid in wanted and sid not in packed]
        if members:
            packs[name] = members
            packed.update(members)
    rest = [sid for sid in ids if sid not in packed]
    for start in range(0, len(rest), structures_per_pack):
        members = rest[start:start + structures_per_pack]
        packs[pack_name(members)] = members
    return packs


def read_started_packs(layout: ResultsLayout) -> dict[str, list[str]]:
    """Pack name -> member ids of every pack that has started (:meth:`ResultsLayout.pack_members`).

    Unreadable files, and files not named as :func:`pack_name` names packs, are left out:
    their structures are packed anew.
    """
    started = {}
    for name, path in layout.pack_member_files().items():
        if not re.fullmatch(PACK_NAME_PATTERN, name):
            continue
        try:
            started[name] = path.read_text().split()
        except (OSError, UnicodeDecodeError):
            continue
    return started


def finished_pack_records(layout: ResultsLayout) -> dict[str, str]:
    """Structure id -> the record of the pack job that finished it.

    A pack writes its record only when every member has its records, so a member
    listed here whose records are missing lost them after the pack ran (its
    ``dft/<id>/`` folder was deleted): Snakemake sees the pack record and runs nothing.
    Unreadable pack records are left out.
    """
    finished = {}
    for path in layout.pack_records().values():
        try:
            members = read_json(path)["members"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for member in members if isinstance(members, list) else []:
            if isinstance(member, dict) and member.get("finished") and member.get("structure_id"):
                finished[member["structure_id"]] = str(path)
    return finished


def lost_records_reason(layout: ResultsLayout, structure_id: str, pack_record: str) -> str:
    """What to do about a structure whose records are gone although its pack finished."""
    return (
        f"its DFT records under {layout.structure_dir(structure_id)}/ are gone, but the pack job that ran it"
        f" finished ({pack_record}); delete {pack_record} and rerun the workflow to recompute it"
        " (the pack's other structures are skipped, not recomputed)"
    )


@dataclass(frozen=True)
class PackSize:
    """What a pack asks the scheduler for, all members running at the same time."""

    tasks: int
    runtime_min: int
    mem_mb_per_task: int


def pack_size(members: Sequence[PackMember], policy: ResourcePolicy, attempt: int = 1) -> PackSize:
    """The sum of the members' ranks; the longest relax + properties; the largest memory per rank."""
    if not members:
        raise ValueError("a pack needs at least one structure")
    return PackSize(
        tasks=sum(member.tasks(policy) for member in members),
        runtime_min=max(2 * member.runtime_min(policy, attempt) for member in members),
        mem_mb_per_task=max(member.mem_mb_per_task(policy, attempt) for member in members),
    )


def launcher(stage: str, member: PackMember, policy: ResourcePolicy, attempt: int,
             environ: Mapping[str, str] | None = None, default: str = MPIEXEC) -> list[str]:
    """The MPI launch of one GPAW run of ``member``.

    Inside a SLURM allocation: ``srun --exact`` (the step takes only its own ranks, so the
    pack's structures run side by side) named ``<stage>:<id>`` with the run's own time
    limit: a structure that overruns is killed alone. Outside SLURM: ``default -n <ranks>``.
    """
    environ = os.environ if environ is None else environ
    tasks = member.tasks(policy)
    if "SLURM_JOB_ID" not in environ:
        return [*shlex.split(default), "-n", str(tasks)]
    return ["srun", "--exact", f"--ntasks={tasks}", "--cpus-per-task=1",
            f"--job-name={step_name(stage, member.structure_id)}",
            f"--time={member.runtime_min(policy, attempt)}"]


def stage_command(stage: str, member: PackMember, layout: ResultsLayout, settings_json: str,
                  python: Sequence[str]) -> list[str]:
    """The GPAW program of one stage, with the arguments the per-structure rule gives it.

    ``settings_json`` is the run's DFT settings; a member with its own (an override) uses those.
    """
    sid = member.structure_id
    common = ["--structure-id", sid, "--settings", member.settings_json or settings_json,
              "--out-json", layout.stage_record(sid, stage), "--workdir", layout.structure_dir(sid)]
    if stage == "relax":
        return [*python, "-m", "dftscreen.relax", "--cif", member.start_cif, "--out-cif", layout.relaxed_cif(sid),
                *common]
    if stage == "properties":
        return [*python, "-m", "dftscreen.properties", "--relax-json", layout.relax_record(sid), *common]
    raise ValueError(f"unknown DFT stage {stage!r}")


def stages_to_run(member: PackMember, layout: ResultsLayout) -> list[str]:
    """The stages whose record is missing, in order (a relaxation run again means its single point too)."""
    missing = [stage for stage in DFT_STAGES if not Path(layout.stage_record(member.structure_id, stage)).is_file()]
    return list(DFT_STAGES) if "relax" in missing else missing


@dataclass
class MemberOutcome:
    """What a pack did with one structure (a row of the pack's record)."""

    structure_id: str
    ranks: int
    skipped: bool = False
    stages: dict[str, int] = field(default_factory=dict)  # stage -> exit status
    started: float | None = None
    ended: float | None = None
    finished: bool = False


Runner = Callable[[list[str], Path], int]


def run_logged(command: list[str], log: Path) -> int:
    """Run one GPAW program, its output into ``log`` (the per-structure rule's log file); exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                              env=dict(os.environ, OMP_NUM_THREADS="1")).returncode


class _Slots:
    """A pool of ``budget`` CPU slots; a member larger than the budget runs alone."""

    def __init__(self, budget: int) -> None:
        self.budget = max(1, budget)
        self.free = self.budget
        self.condition = threading.Condition()

    def take(self, n: int) -> int:
        n = min(n, self.budget)
        with self.condition:
            self.condition.wait_for(lambda: self.free >= n)
            self.free -= n
        return n

    def give(self, n: int) -> None:
        with self.condition:
            self.free += n
            self.condition.notify_all()


def run_pack(
    members: Sequence[PackMember],
    layout: ResultsLayout,
    settings_json: str,
    policy: ResourcePolicy,
    *,
    budget: int,
    attempt: int = 1,
    python: Sequence[str] = (sys.executable, "-m", "gpaw", "python"),
    environ: Mapping[str, str] | None = None,
    run: Runner | None = None,
) -> list[MemberOutcome]:
    """Run every member's missing stages, members side by side within ``budget`` CPU slots.

    Inside SLURM every member starts at once whatever ``budget`` says: the allocation
    holds the sum of their ranks, and SLURM itself holds back an ``srun --exact`` step
    until its CPUs are free (Snakemake inside the allocation may scale ``threads`` down
    to the node's core count, which says nothing about the allocation). Outside SLURM,
    ``budget`` is the cores Snakemake gave the job. A member's stages run one after the other; a
    failing stage (non-zero exit, e.g. killed at its time limit) stops that member only.
    ``run(command, log)`` starts one GPAW program and returns its exit status
    (default :func:`run_logged`).
    """
    run = run or run_logged
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" in environ:
        budget = max(budget, sum(member.tasks(policy) for member in members))
    slots = _Slots(budget)
    outcomes = [MemberOutcome(member.structure_id, member.tasks(policy)) for member in members]

    def work(member: PackMember, outcome: MemberOutcome) -> None:
        stages = stages_to_run(member, layout)
        if not stages:
            outcome.skipped = outcome.finished = True
            return
        taken = slots.take(outcome.ranks)
        try:
            outcome.started = time.time()
            for stage in stages:
                command = [*launcher(stage, member, policy, attempt, environ), *stage_command(
                    stage, member, layout, settings_json, python)]
                outcome.stages[stage] = status = run(command, Path(layout.log(stage, member.structure_id)))
                if status != 0:
                    break
            outcome.ended = time.time()
        finally:
            slots.give(taken)
        outcome.finished = not stages_to_run(member, layout)

    threads = [threading.Thread(target=work, args=pair, name=pair[0].structure_id) for pair in zip(members, outcomes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def pack_record(pack: str, outcomes: Sequence[MemberOutcome],
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pack's record: which structures ran in which job (SLURM job id when there is one) and how."""
    environ = os.environ if environ is None else environ
    return {
        "pack": pack,
        "slurm_job_id": environ.get("SLURM_JOB_ID"),
        "n_structures": len(outcomes),
        "n_finished": sum(outcome.finished for outcome in outcomes),
        "members": [asdict(outcome) for outcome in outcomes],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", required=True, help="the pack's name (in logs and records)")
    parser.add_argument("--plan", required=True,
                        help="JSON: {'members': [PackMember fields], 'resources': dft.resources}")
    parser.add_argument("--settings", required=True,
                        help="the run's DFT settings (JSON), as the per-structure rules get them")
    parser.add_argument("--out-dir", required=True, type=Path, help="the run's output_dir")
    parser.add_argument("--out-json", required=True, type=Path,
                        help="the pack record; written only when every member finished")
    parser.add_argument("--budget", required=True, type=int, help="CPU slots of the job (Snakemake's threads)")
    parser.add_argument("--attempt", type=int, default=1, help="Snakemake's attempt (time limits grow with it)")
    args = parser.parse_args(argv)

    plan = json.loads(args.plan)
    members = [PackMember(**member) for member in plan["members"]]
    policy = ResourcePolicy.from_config(plan["resources"])
    layout = ResultsLayout.of(args.out_dir)
    # Before any GPAW run: from now on the workflow keeps these structures in this pack
    # (plan_packs), so a rerun, here or in the SLURM allocation, finds the same pack.
    atomic_write_text(Path(layout.pack_members(args.pack)),
                      "".join(f"{member.structure_id}\n" for member in members))
    outcomes = run_pack(members, layout, args.settings, policy, budget=args.budget, attempt=args.attempt)
    record = pack_record(args.pack, outcomes)
    for outcome in outcomes:
        state = "already finished" if outcome.skipped else ("finished" if outcome.finished else "NOT finished")
        print(f"{outcome.structure_id}: {state} (exit status {outcome.stages or '-'})", flush=True)
    unfinished = [outcome.structure_id for outcome in outcomes if not outcome.finished]
    if unfinished:
        print(f"dftscreen: pack {args.pack}: {len(unfinished)} of {len(outcomes)} structures did not finish "
              f"({', '.join(unfinished)}; logs: {layout.log('relax', unfinished[0])} and beside it). "
              "The rerun of the same command redoes only them.", file=sys.stderr)
        return 1
    atomic_write_json(args.out_json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
