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

DFT phonons in packs (``rules/phonons.smk``, rule ``dft_phonon_pack``): with the same
``dft.structures_per_pack`` the structures the phonon checkpoint chose go N to a job too
(:func:`plan_phonon_packs`: ordered by the size gate's runtime estimate of their phonons,
so a pack's members take similar times; each sized as its own ``dft_phonons`` job would be,
:func:`phonon_pack_member`). The job runs this module with ``--phonon-settings``: every
member's ``python -m dftscreen.phonons``, side by side as above, which writes the same
``dft/<id>/phonons.json`` and one file per displaced supercell, so a rerun redoes only the
missing displacements. Their started packs are kept under ``packs/phonons/members/``.
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
from dftscreen.size_gate import MARGIN

#: The stage of a DFT phonon pack (its member's log is ``logs/phonons/<id>.log``, as alone).
PHONON_STAGE = "phonons"
#: A stage's srun step is named ``<rule>:<id>`` by the rule that runs it alone (relax, properties
#: and dft_phonons), as ``dftscreen status`` reads step names.
STEP_RULES = {PHONON_STAGE: "dft_phonons"}


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
               started: Mapping[str, Sequence[str]] | None = None,
               order: Callable[[str], Any] | None = None) -> dict[str, list[str]]:
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
    its own pack again inside its allocation and must find it by that name. With ``order``,
    the ids are sorted by ``(order(id), id)`` instead (a fixed order too, so the same holds).
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
    if order is not None:
        rest.sort(key=lambda sid: (order(sid), sid))
    for start in range(0, len(rest), structures_per_pack):
        members = rest[start:start + structures_per_pack]
        packs[pack_name(members)] = members
    return packs


def read_started_packs(layout: ResultsLayout, phonons: bool = False) -> dict[str, list[str]]:
    """Pack name -> member ids of every pack that has started (:meth:`ResultsLayout.pack_members`;
    with ``phonons`` of every DFT phonon pack, :meth:`ResultsLayout.phonon_pack_members`).

    Unreadable files, and files not named as :func:`pack_name` names packs, are left out:
    their structures are packed anew.
    """
    started = {}
    files = layout.phonon_pack_member_files() if phonons else layout.pack_member_files()
    for name, path in files.items():
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


def phonon_pack_member(structure_id: str, job: Mapping[str, Any], relaxed_cif: str,
                       settings_json: str | None = None) -> PackMember:
    """A structure of a DFT phonon pack, sized as its own ``dft_phonons`` job: ``job`` is its entry
    of the phonon plan (:func:`dftscreen.phonon_results.supercell_job`); its ranks, time limit and
    memory come from the supercell's atoms and the size gate's estimates, with their margin."""
    return PackMember(
        structure_id=structure_id,
        start_cif=relaxed_cif,
        n_sites=int(job["n_supercell_atoms"]),
        runtime_estimate_min=MARGIN * float(job["runtime_min"]),
        mem_estimate_mb=MARGIN * float(job["mem_mb_per_task"]),
        settings_json=settings_json,
    )


def plan_phonon_packs(phonon_plan: Mapping[str, Any], structures_per_pack: int,
                      started: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Pack name -> member ids of the DFT phonon packs: the structures the phonon checkpoint runs
    (``phonon_plan["runnable"]``), N to a pack, in the order of their phonons' estimated runtime
    (the size gate's, in the plan), so a pack's time limit, its longest member's, fits them all
    about equally. Started packs (:func:`read_started_packs` with ``phonons``) keep their members,
    as :func:`plan_packs` says."""
    jobs = phonon_plan["jobs"]
    return plan_packs(phonon_plan["runnable"], structures_per_pack, started,
                      order=lambda sid: float(jobs[sid].get("runtime_min") or 0.0))


@dataclass(frozen=True)
class PackSize:
    """What a pack asks the scheduler for, all members running at the same time."""

    tasks: int
    runtime_min: int
    mem_mb_per_task: int


def pack_size(members: Sequence[PackMember], policy: ResourcePolicy, attempt: int = 1,
              n_stages: int = len(DFT_STAGES)) -> PackSize:
    """The sum of the members' ranks; the longest relax + properties (``n_stages`` runs: 1 for
    phonons); the largest memory per rank."""
    if not members:
        raise ValueError("a pack needs at least one structure")
    return PackSize(
        tasks=sum(member.tasks(policy) for member in members),
        runtime_min=max(n_stages * member.runtime_min(policy, attempt) for member in members),
        mem_mb_per_task=max(member.mem_mb_per_task(policy, attempt) for member in members),
    )


def launcher(stage: str, member: PackMember, policy: ResourcePolicy, attempt: int,
             environ: Mapping[str, str] | None = None, default: str = MPIEXEC) -> list[str]:
    """The MPI launch of one GPAW run of ``member``.

    Inside a SLURM allocation: ``srun --exact`` (the step takes only its own ranks, so the
    pack's structures run side by side) named ``<rule>:<id>`` (:data:`STEP_RULES`) with the run's own time
    limit: a structure that overruns is killed alone. Outside SLURM: ``default -n <ranks>``.
    """
    environ = os.environ if environ is None else environ
    tasks = member.tasks(policy)
    if "SLURM_JOB_ID" not in environ:
        return [*shlex.split(default), "-n", str(tasks)]
    return ["srun", "--exact", f"--ntasks={tasks}", "--cpus-per-task=1",
            f"--job-name={step_name(STEP_RULES.get(stage, stage), member.structure_id)}",
            f"--time={member.runtime_min(policy, attempt)}"]


def stage_command(stage: str, member: PackMember, layout: ResultsLayout, settings_json: str,
                  python: Sequence[str], phonon_settings: str | None = None) -> list[str]:
    """The GPAW program of one stage, with the arguments the per-structure rule gives it.

    ``settings_json`` is the run's DFT settings; a member with its own (an override) uses those.
    Stage ``phonons`` (a phonon pack's members: ``start_cif`` is the DFT-relaxed CIF) needs
    ``phonon_settings``, the config section as the ``dft_phonons`` rule gives it.
    """
    sid = member.structure_id
    common = ["--structure-id", sid, "--settings", member.settings_json or settings_json,
              "--out-json", stage_record(layout, sid, stage), "--workdir", layout.structure_dir(sid)]
    if stage == PHONON_STAGE:
        if phonon_settings is None:
            raise ValueError("a phonon pack needs the phonon settings")
        return [*python, "-m", "dftscreen.phonons", "--relaxed-cif", member.start_cif,
                "--relax-json", layout.relax_record(sid), "--phonon-settings", phonon_settings, *common]
    if stage == "relax":
        return [*python, "-m", "dftscreen.relax", "--cif", member.start_cif, "--out-cif", layout.relaxed_cif(sid),
                *common]
    if stage == "properties":
        return [*python, "-m", "dftscreen.properties", "--relax-json", layout.relax_record(sid), *common]
    raise ValueError(f"unknown DFT stage {stage!r}")


def stage_record(layout: ResultsLayout, structure_id: str, stage: str) -> str:
    """The record a stage's program writes when it finishes (relax, properties or phonons)."""
    return layout.phonon_record(structure_id) if stage == PHONON_STAGE else layout.stage_record(structure_id, stage)


def stages_to_run(member: PackMember, layout: ResultsLayout, stages: Sequence[str] = DFT_STAGES) -> list[str]:
    """The stages whose record is missing, in order (a relaxation run again means its single point too)."""
    missing = [stage for stage in stages if not Path(stage_record(layout, member.structure_id, stage)).is_file()]
    return list(stages) if "relax" in missing else missing


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
    stages: Sequence[str] = DFT_STAGES,
    phonon_settings: str | None = None,
) -> list[MemberOutcome]:
    """Run every member's missing stages, members side by side within ``budget`` CPU slots.

    Inside SLURM every member starts at once whatever ``budget`` says: the allocation
    holds the sum of their ranks, and SLURM itself holds back an ``srun --exact`` step
    until its CPUs are free (Snakemake inside the allocation may scale ``threads`` down
    to the node's core count, which says nothing about the allocation). Outside SLURM,
    ``budget`` is the cores Snakemake gave the job. A member's stages run one after the other; a
    failing stage (non-zero exit, e.g. killed at its time limit) stops that member only.
    ``run(command, log)`` starts one GPAW program and returns its exit status
    (default :func:`run_logged`). A phonon pack: ``stages=("phonons",)`` with ``phonon_settings``.
    """
    run = run or run_logged
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" in environ:
        budget = max(budget, sum(member.tasks(policy) for member in members))
    slots = _Slots(budget)
    outcomes = [MemberOutcome(member.structure_id, member.tasks(policy)) for member in members]

    def work(member: PackMember, outcome: MemberOutcome) -> None:
        missing = stages_to_run(member, layout, stages)
        if not missing:
            outcome.skipped = outcome.finished = True
            return
        taken = slots.take(outcome.ranks)
        try:
            outcome.started = time.time()
            for stage in missing:
                command = [*launcher(stage, member, policy, attempt, environ), *stage_command(
                    stage, member, layout, settings_json, python, phonon_settings)]
                outcome.stages[stage] = status = run(command, Path(layout.log(stage, member.structure_id)))
                if status != 0:
                    break
            outcome.ended = time.time()
        finally:
            slots.give(taken)
        outcome.finished = not stages_to_run(member, layout, stages)

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
    parser.add_argument("--phonon-settings", default=None,
                        help="a DFT phonon pack: the config section phonons as JSON (as rule dft_phonons gives it)")
    args = parser.parse_args(argv)

    plan = json.loads(args.plan)
    members = [PackMember(**member) for member in plan["members"]]
    policy = ResourcePolicy.from_config(plan["resources"])
    layout = ResultsLayout.of(args.out_dir)
    phonons = args.phonon_settings is not None
    stages = (PHONON_STAGE,) if phonons else DFT_STAGES
    # Before any GPAW run: from now on the workflow keeps these structures in this pack
    # (plan_packs), so a rerun, here or in the SLURM allocation, finds the same pack.
    atomic_write_text(Path(layout.phonon_pack_members(args.pack) if phonons else layout.pack_members(args.pack)),
                      "".join(f"{member.structure_id}\n" for member in members))
    outcomes = run_pack(members, layout, args.settings, policy, budget=args.budget, attempt=args.attempt,
                        stages=stages, phonon_settings=args.phonon_settings)
    record = pack_record(args.pack, outcomes)
    for outcome in outcomes:
        state = "already finished" if outcome.skipped else ("finished" if outcome.finished else "NOT finished")
        print(f"{outcome.structure_id}: {state} (exit status {outcome.stages or '-'})", flush=True)
    unfinished = [outcome.structure_id for outcome in outcomes if not outcome.finished]
    if unfinished:
        print(f"dftscreen: pack {args.pack}: {len(unfinished)} of {len(outcomes)} structures did not finish "
              f"({', '.join(unfinished)}; logs: {layout.log(stages[0], unfinished[0])} and beside it). "
              "The rerun of the same command redoes only them.", file=sys.stderr)
        return 1
    atomic_write_json(args.out_json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
