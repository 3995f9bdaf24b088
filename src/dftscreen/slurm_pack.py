"""Pack many structures' DFT jobs into few SLURM allocations, run side by side inside each.

How a pack is asked for: Snakemake's group jobs, from the profile or the command line
(no rule names a group)::

    groups: ["relax=dft", "properties=dft"]
    group-components: ["dft=8"]

The relax and properties jobs of 8 structures then go to SLURM as one ``sbatch`` job
whose ``--ntasks`` is the sum of the structures' MPI ranks; inside it each structure's
GPAW run is one ``srun`` step of its own size, all started at once.

The pinned snakemake-executor-plugin-slurm 2.8.0 submits group jobs, but as submitted
they do not do that (read in its source, shown on the one-node SLURM):

1. inside the allocation Snakemake runs with ``--executor slurm-jobstep --jobs 1`` and
   the jobstep executor waits for each job before the next: the members run one after
   another (plugin issue #469);
2. the sbatch line sums every numeric resource over the members, also the per-CPU
   ones: ``--cpus-per-task`` and ``--mem-per-cpu`` come out N times too large;
3. the Snakemake inside the allocation stops scheduling at the first failing member
   (no ``--keep-going``), so one broken structure leaves the rest of its pack unrun;
4. a retried group is rerun with ``--force``: members that finished are redone.

And Snakemake itself, after a failed group job, deletes the outputs of *every* member
as possibly corrupt, unless ``keep-incomplete`` is set (the SLURM profile sets it; every
result file of this workflow is written atomically, so a kept file is a whole one).

:func:`install` fixes 1-4 for group jobs only (other jobs are submitted exactly as the
plugin does), by wrapping two functions of the plugin: the command run inside the
allocation, and the sbatch line. It is our code around the plugin's, not a copy of it,
and it checks the plugin's version: another version is left alone, with a warning,
instead of being patched blindly. Each member's GPAW ``srun`` step carries its own time limit
(``--time``: a structure that overruns is killed alone, the others go on) and a name
``<rule>:<structure id>`` that ``sacct`` and ``dftscreen status`` show.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from typing import Any

#: How a GPAW job's ranks are started outside SLURM (OpenMPI would pin every job's first rank
#: to core 0, so jobs running side by side would share one core).
MPIEXEC = "mpiexec --bind-to none"
#: The plugin version this fix was written and tested against (pyproject pins it).
PLUGIN_VERSION = "2.8.0"
#: Set inside a pack's allocation (to the group id): GPAW steps then get --exact, a name and --time.
PACK_ENV = "DFTSCREEN_SLURM_PACK"
#: Set beside it: each member's time limit, ``<step name>=<minutes>`` joined by ``,``.
PACK_RUNTIMES_ENV = "DFTSCREEN_SLURM_PACK_RUNTIMES"
_SAFE_WORD = re.compile(r"[\w.+:-]+")
#: What the plugin asks the Snakemake inside every allocation to run with.
_JOBSTEP_ARGS = "--executor slurm-jobstep --jobs 1"
_FORCE = re.compile(r"(?<=\s)--force(?=\s|$)")
#: Resources the plugin reads per CPU or per task: a pack needs the largest member's value, not the sum.
PER_CPU_RESOURCES = ("cpus_per_task", "mem_mb_per_cpu")


def step_name(rule: str, wildcard_values: list[str]) -> str:
    """Name of a job's srun step in a pack: ``<rule>:<wildcard values joined by _>``."""
    return f"{rule}:{'_'.join(str(value) for value in wildcard_values)}"


def parse_runtimes(text: str) -> dict[str, int]:
    """``relax:A=30,relax:B=1`` -> ``{"relax:A": 30, "relax:B": 1}`` (see :data:`PACK_RUNTIMES_ENV`)."""
    runtimes = {}
    for item in filter(None, text.split(",")):
        name, _, minutes = item.rpartition("=")
        runtimes[name] = int(minutes)
    return runtimes


def format_runtimes(runtimes: Mapping[str, int]) -> str:
    """Inverse of :func:`parse_runtimes`; names must be shell-safe words (structure ids are)."""
    for name in runtimes:
        if not _SAFE_WORD.fullmatch(name):
            raise ValueError(f"step name {name!r} is not a shell-safe word")
    return ",".join(f"{name}={int(minutes)}" for name, minutes in runtimes.items())


def pack_profile_settings(structures_per_pack: int, group: str = "dft") -> dict[str, list[str]]:
    """Snakemake profile entries that pack the DFT jobs of ``structures_per_pack`` structures per SLURM job."""
    if structures_per_pack < 1:
        raise ValueError(f"structures per pack must be at least 1, not {structures_per_pack}")
    return {"groups": [f"relax={group}", f"properties={group}"],
            "group-components": [f"{group}={int(structures_per_pack)}"]}


def mpi_launcher(default: str, step: str, environ: Mapping[str, str] | None = None) -> str:
    """The MPI launcher command of one GPAW job (the ``mpi`` resource of the GPAW rules).

    Args:
        default: the launcher outside SLURM (e.g. ``mpiexec --bind-to none``).
        step: the job's step name (:func:`step_name`).
        environ: the process environment (``os.environ`` when None).

    Outside a SLURM allocation: ``default``. Inside a job of its own: ``srun`` (the
    job's size and time limit are the step's). Inside a pack: ``srun --exact`` (the
    step takes only its own ranks, so the pack's structures run side by side), named
    after the job, with the job's own time limit (minutes, from the pack's
    environment): a structure that overruns is killed alone.
    """
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in environ:
        return default
    if not environ.get(PACK_ENV):
        return "srun"
    launcher = f"srun --exact --job-name={shlex.quote(step)}"
    minutes = parse_runtimes(environ.get(PACK_RUNTIMES_ENV, "")).get(step)
    if minutes:
        launcher += f" --time={minutes}"
    return launcher


def pack_exec_command(command: str, ntasks: int, attempt: int, group_id: str, runtimes: Mapping[str, int]) -> str:
    """The command a pack's allocation runs, from the one the plugin built.

    Runs Snakemake's local executor on ``ntasks`` cores (members side by side; each
    member's own ``srun`` step takes its ranks from the allocation), keeps going past
    a failed member, and on a retry does not force members that already finished.
    ``runtimes`` (minutes per step name) become the members' step time limits.

    Raises:
        RuntimeError: the plugin's command is not the expected one (another plugin version).
    """
    if _JOBSTEP_ARGS not in command:
        raise RuntimeError(
            f"dftscreen.slurm_pack: the SLURM plugin's job command lacks '{_JOBSTEP_ARGS}'; "
            f"this fix is for snakemake-executor-plugin-slurm {PLUGIN_VERSION} only"
        )
    command = command.replace(_JOBSTEP_ARGS, f"--executor local --cores {int(ntasks)} --keep-going")
    if attempt > 1:
        # A retry: members whose outputs are there finished in an earlier attempt.
        command = _FORCE.sub("", command)
    if not _SAFE_WORD.fullmatch(group_id):
        raise ValueError(f"group id {group_id!r}: use letters, digits, '_', '-' or '.'")
    return (
        f"export {PACK_ENV}={group_id} {PACK_RUNTIMES_ENV}={format_runtimes(runtimes)} && {command}"
    )


def pack_resources(group_resources: Mapping[str, Any], member_resources: list[Mapping[str, Any]]) -> dict[str, Any]:
    """sbatch resources of a pack: Snakemake's group totals, per-CPU values of the largest member.

    Snakemake sums ``tasks`` over members that run at the same time (right: the
    allocation's ranks) and adds up runtimes of successive layers (right: relax then
    properties), but it also sums per-CPU values; those are taken as the members' maximum.
    """
    # Without `mpi` the plugin submits --ntasks as it is; with it, it refuses one task
    # (a pack of one 1-rank structure). The ranks are started by each member's srun.
    resources = {name: value for name, value in group_resources.items() if name != "mpi"}
    for name in PER_CPU_RESOURCES:
        values = [member[name] for member in member_resources if isinstance(member.get(name), int)]
        if values:
            resources[name] = max(values)
    return resources


class PackJob:
    """A group job as the plugin's sbatch line should see it (see :func:`pack_resources`)."""

    def __init__(self, group_job: Any) -> None:
        from snakemake.iocontainers import ResourceList

        self._job = group_job
        members = [dict(job.resources.items()) for job in group_job.jobs]
        self.resources = ResourceList(fromdict=pack_resources(dict(group_job.resources.items()), members))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)


def install() -> bool:
    """Fix the pinned SLURM plugin's group jobs (see the module docstring); idempotent.

    Returns False (and changes nothing) when the plugin is not installed, or is not
    the version this fix was written for: then a warning says that packs run as the
    plugin runs them (members one after another), and everything else is unaffected.
    """
    try:
        import snakemake_executor_plugin_slurm as plugin
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:
        return False
    try:
        installed = version("snakemake-executor-plugin-slurm")
    except PackageNotFoundError:
        installed = "unknown"
    if installed != PLUGIN_VERSION:
        print(
            f"dftscreen: snakemake-executor-plugin-slurm {installed} is installed, the pack fix "
            f"(dftscreen.slurm_pack) is for {PLUGIN_VERSION}: not applied; grouped DFT jobs (packs) "
            "run as the plugin runs them. Install the pinned version (pyproject.toml).",
            file=sys.stderr,
        )
        return False
    executor = plugin.Executor
    if getattr(executor, "_dftscreen_pack_fix", False):
        return True
    plugin_format_job_exec = executor.format_job_exec
    plugin_submit_command = plugin.get_submit_command

    def format_job_exec(self: Any, job: Any) -> str:
        command = plugin_format_job_exec(self, job)
        if not job.is_group():
            return command
        runtimes = {
            step_name(member.rule.name, list(member.wildcards)): member.resources.get("runtime")
            for member in job.jobs
            if isinstance(member.resources.get("runtime"), int)
        }
        ntasks = PackJob(job).resources.get("tasks") or 1
        return pack_exec_command(command, ntasks, job.attempt, job.groupid, runtimes)

    def get_submit_command(job: Any, params: Any, *args: Any, **kwargs: Any) -> str:
        if job.is_group():
            job = PackJob(job)
        return plugin_submit_command(job, params, *args, **kwargs)

    executor.format_job_exec = format_job_exec
    plugin.get_submit_command = get_submit_command
    executor._dftscreen_pack_fix = True
    return True
