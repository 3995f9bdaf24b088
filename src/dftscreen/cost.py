"""What a run cost, in core-hours, and what the structures still to compute will cost.

A job's cost is its wall time times its MPI ranks. A relaxation that was killed
and resumed pays for every start: the relaxation keeps the sum over its starts
in its checkpoint (``wall_time_all_starts_s``, ``core_seconds_all_starts``,
up to its last completed ionic step) and writes it into ``relax.json``.
Records written before that existed carry only the last start's
``wall_time_s``; their cost is then that start's alone (a lower bound).

Failures are sorted into a small taxonomy (:data:`FAILURE_KINDS`) from the
reason a record gives or, for a job killed without writing one, from the tail
of its job log.
"""

from __future__ import annotations

import math
from typing import Any

SECONDS_PER_HOUR = 3600.0

#: Failure kinds, in the order reports list them.
SCF_NOT_CONVERGED = "SCF not converged"
TIME_LIMIT = "time limit"
MEMORY = "memory"
OTHER = "other"
FAILURE_KINDS = (SCF_NOT_CONVERGED, TIME_LIMIT, MEMORY, OTHER)

# Lower-case fragments that identify each kind, in reasons and job logs.
# SLURM writes "CANCELLED AT ... DUE TO TIME LIMIT" and "oom-kill"/"OUT_OF_MEMORY";
# dftscreen's own reasons say "SCF did not converge"; GPAW raises ConvergenceError.
_KIND_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (SCF_NOT_CONVERGED, ("scf did not converge", "convergenceerror", "did not converge after")),
    (TIME_LIMIT, ("time limit", "timeout", "due to time")),
    (MEMORY, ("out of memory", "out_of_memory", "oom-kill", "oom_kill", "memoryerror", "cannot allocate memory")),
)


def failure_kind(text: str | None) -> str:
    """Taxonomy of a failure from its reason (or job-log tail): one of :data:`FAILURE_KINDS`.

    >>> failure_kind("relaxation: SCF did not converge after 4 strategies: ...")
    'SCF not converged'
    >>> failure_kind("slurmstepd: error: *** JOB 7 CANCELLED AT 2026-01-01 DUE TO TIME LIMIT ***")
    'time limit'
    """
    lowered = (text or "").lower()
    for kind, markers in _KIND_MARKERS:
        if any(marker in lowered for marker in markers):
            return kind
    return OTHER


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def relax_core_hours(record: dict[str, Any] | None) -> float | None:
    """Core-hours of a relaxation over all its starts (wall time × ranks), or ``None`` when unknown.

    Uses the accumulated ``core_seconds_all_starts`` when the record has it,
    else the last start's ``wall_time_s`` × ``mpi_ranks``.
    """
    if not record:
        return None
    accumulated = _number(record.get("core_seconds_all_starts"))
    if accumulated is not None:
        return accumulated / SECONDS_PER_HOUR
    return job_core_hours(record)


def job_core_hours(record: dict[str, Any] | None) -> float | None:
    """Core-hours of one job record: ``wall_time_s`` (s) × ``mpi_ranks`` / 3600, or ``None``."""
    if not record:
        return None
    wall, ranks = _number(record.get("wall_time_s")), _number(record.get("mpi_ranks"))
    if wall is None:
        return None
    return wall * (ranks or 1.0) / SECONDS_PER_HOUR


def cost_per_atom(core_hours: list[float], n_atoms: list[int]) -> float | None:
    """Measured core-hours per atom: total cost over total atoms of the finished jobs, or ``None``.

    A linear model (DFT cost grows faster than linearly with cell size), good
    for a projection over structures of sizes like those already computed.
    """
    pairs = [(c, n) for c, n in zip(core_hours, n_atoms) if c is not None and n]
    atoms = sum(n for _, n in pairs)
    return sum(c for c, _ in pairs) / atoms if atoms else None


def projection(
    finished_core_hours: dict[str, list[float]],
    finished_atoms: dict[str, list[int]],
    pending_atoms: dict[str, list[int]],
) -> dict[str, Any]:
    """Projected core-hours of the pending jobs of each stage, from the measured cost per atom.

    Args:
        finished_core_hours: per stage, the cost of each finished job (core-hours).
        finished_atoms: per stage, the atoms of each of those jobs (same order).
        pending_atoms: per stage, the atoms of each job still to run.

    Returns:
        ``{"stages": {stage: {...}}, "pending_core_hours": total or None}``; a
        stage with pending jobs but nothing measured yet projects ``None``.
    """
    stages: dict[str, Any] = {}
    total: float | None = 0.0
    for stage in dict.fromkeys([*finished_core_hours, *pending_atoms]):  # in pipeline order
        rate = cost_per_atom(finished_core_hours.get(stage, []), finished_atoms.get(stage, []))
        pending = pending_atoms.get(stage, [])
        projected = rate * sum(pending) if rate is not None else (0.0 if not pending else None)
        stages[stage] = {
            "measured_core_hours": sum(c for c in finished_core_hours.get(stage, []) if c is not None),
            "core_hours_per_atom": rate,
            "pending_jobs": len(pending),
            "pending_atoms": int(sum(pending)),
            "projected_core_hours": projected,
        }
        total = None if total is None or projected is None else total + projected
    return {"stages": stages, "pending_core_hours": total}
