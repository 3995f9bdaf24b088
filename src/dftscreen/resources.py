"""Cluster resources of one GPAW job, scaled with the structure and the attempt.

The cost of a plane-wave calculation grows with the number of atoms (more
electrons, more bands, larger cell: roughly N² to N³), so larger structures
get more MPI ranks, more memory per rank and more wall time. A job that failed
(e.g. killed at its time limit) is retried by Snakemake with ``attempt`` + 1;
it gets proportionally more time and 50 % more memory per retry, and, because
relaxations resume from their checkpoint, the extra time is spent on new steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResourcePolicy:
    """How GPAW job resources scale (see ``dft.resources`` in the config).

    Attributes:
        max_tasks: most MPI ranks one job gets.
        atoms_per_task: one more rank per this many atoms (bench/README.md,
            "BLAS threads": with one BLAS thread per rank, two ranks ran one SCF
            of a 5-atom cell 1.8x faster than one rank).
        runtime_min_base: wall time (min) of a job on a tiny cell, first attempt.
        runtime_min_per_atom: extra wall time (min) per atom, first attempt.
        mem_mb_per_task_base: memory per rank (MB) for a tiny cell.
        mem_mb_per_task_per_atom: extra memory per rank (MB) per atom.
        max_mem_mb_per_task: most memory per rank (MB) a job may ask for; a
            structure whose estimate (:mod:`dftscreen.size_gate`) exceeds it is not sent.
        max_runtime_min: longest wall time (min) a job may ask for, first attempt; likewise.
    """

    max_tasks: int = 2
    atoms_per_task: int = 8
    runtime_min_base: int = 30
    runtime_min_per_atom: float = 5.0
    mem_mb_per_task_base: int = 1000
    mem_mb_per_task_per_atom: int = 50
    max_mem_mb_per_task: int = 12000
    max_runtime_min: int = 2880

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ResourcePolicy":
        return cls(**config)

    def tasks(self, n_atoms: int) -> int:
        """MPI ranks for a structure of ``n_atoms`` atoms."""
        return max(1, min(self.max_tasks, math.ceil(n_atoms / self.atoms_per_task)))

    def runtime_min(self, n_atoms: int, attempt: int = 1, estimate_min: float | None = None) -> int:
        """Wall-time limit (minutes); grows linearly with the attempt number.

        With an estimate (:mod:`dftscreen.size_gate`, margin included) larger than
        the per-atom rule, the estimate; never more than ``max_runtime_min`` on the first attempt.
        """
        base = self.runtime_min_base + self.runtime_min_per_atom * n_atoms
        if estimate_min is not None:
            base = min(max(base, estimate_min), max(self.max_runtime_min, self.runtime_min_base))
        return math.ceil(base * attempt)

    def mem_mb_per_task(self, n_atoms: int, attempt: int = 1, estimate_mb: float | None = None) -> int:
        """Memory per MPI rank (MB); 50 % more per retry.

        With an estimate (margin included) larger than the per-atom rule, the
        estimate; never more than ``max_mem_mb_per_task`` on the first attempt.
        """
        base = self.mem_mb_per_task_base + self.mem_mb_per_task_per_atom * n_atoms
        if estimate_mb is not None:
            base = min(max(base, estimate_mb), max(self.max_mem_mb_per_task, self.mem_mb_per_task_base))
        return math.ceil(base * (1 + 0.5 * (attempt - 1)))
