"""A DFT budget per cohort: a seeded random sample of each cohort's DFT candidates (issue 30).

``dft.max_structures_per_cohort: N`` sends at most N structures of each cohort to DFT.
Where a cohort has more candidates (the structures past the checks, dedupe and the ML
screen, audited ones included), N of them are drawn at random, not the first N: the DFT
rates of the cohort are then estimates from a simple random sample, and each sampled
structure stood for ``M / N`` candidates (``M`` the cohort's candidates). Its
``dft_inclusion_probability`` is the screen's (1, or ``ml.audit_fraction`` for an audited
structure) times ``N / M``; :func:`dftscreen.cohort_table.audit_rates` weights the rates back.

The draw is a hash of ``dft.budget_seed`` and the structure id (:func:`budget_draw`), ranked
within the cohort, so it is reproducible, independent of the screen audit's draw (another
hash), and stable as structures are added: a structure sampled once stays sampled unless a
new candidate draws a smaller number. A structure whose DFT already finished outside the
sample (e.g. before the budget was set) keeps its results: nothing is computed twice and
nothing finished is thrown away.

Pure functions, no I/O: the workflow plans with :func:`budget_sample` when the DAG is built
(:meth:`dftscreen.plan.RunPlan.within_dft_budget`) and the aggregate job calls it again on
the same candidates to say in the table which structures the budget left out.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def budget_draw(structure_id: str, seed: int) -> float:
    """A uniform number in [0, 1) for a structure: a hash of ``seed`` and its id (not the audit's hash)."""
    digest = hashlib.sha256(f"dft-budget:{seed}:{structure_id}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15


@dataclass(frozen=True)
class BudgetSample:
    """Which DFT candidates the budget keeps.

    Attributes:
        selected: the kept ids, in the candidates' order.
        left_out: the candidates the budget left out, in their order.
        fraction: per cohort, sampled / candidates (1.0 for a cohort within the budget).
        counts: per cohort, (sampled, candidates).
    """

    selected: tuple[str, ...]
    left_out: tuple[str, ...] = ()
    fraction: dict[str, float] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def note(self, cohort: str, max_per_cohort: int) -> str:
        """Why a structure of ``cohort`` is not in the sample, in words."""
        sampled, candidates = self.counts.get(cohort, (0, 0))
        return (
            f"not in the DFT sample: dft.max_structures_per_cohort = {max_per_cohort} sent a seeded random "
            f"{sampled} of the {candidates} candidates of cohort '{cohort}' to DFT"
        )


def budget_sample(
    candidates: Sequence[str], cohort_of: Mapping[str, str], *, max_per_cohort: int | None, seed: int
) -> BudgetSample:
    """At most ``max_per_cohort`` candidates of each cohort, a seeded random sample where it has more.

    Args:
        candidates: the ids that would go to DFT without a budget.
        cohort_of: the cohort label of each candidate (a missing one: cohort ``""``).
        max_per_cohort: ``dft.max_structures_per_cohort``; ``None`` keeps every candidate.
        seed: ``dft.budget_seed``.
    """
    by_cohort: dict[str, list[str]] = defaultdict(list)
    for sid in candidates:
        by_cohort[cohort_of.get(sid, "")].append(sid)
    if max_per_cohort is None:
        counts = {c: (len(ids), len(ids)) for c, ids in by_cohort.items()}
        return BudgetSample(tuple(candidates), (), {c: 1.0 for c in by_cohort}, counts)
    kept: set[str] = set()
    fraction: dict[str, float] = {}
    counts: dict[str, tuple[int, int]] = {}
    for cohort, ids in by_cohort.items():
        chosen = sorted(ids, key=lambda sid: (budget_draw(sid, seed), sid))[:max_per_cohort]
        kept.update(chosen)
        fraction[cohort] = len(chosen) / len(ids)
        counts[cohort] = (len(chosen), len(ids))
    return BudgetSample(
        selected=tuple(sid for sid in candidates if sid in kept),
        left_out=tuple(sid for sid in candidates if sid not in kept),
        fraction=fraction,
        counts=counts,
    )
