"""Is a generated structure already known? StructureMatcher against a known set, by reduced formula.

Every unique ``dft_ready`` structure is compared only with the known entries of its
reduced formula (the matcher cannot match different formulas), with the tolerances
of the run's deduplication (``check.dedupe``) and the same speed-ups as
:mod:`dftscreen.dedupe`: each structure is reduced to its Niggli primitive cell once,
and a pair is only compared when the primitive cells have as many sites. A known
entry's structure is only built when a generated structure of its formula exists.

Results per structure id: ``novel`` (True/False) and the matching entry's id (or None).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from pymatgen.core import Structure

from dftscreen.dedupe import MatchSettings, reduced_for_matching
from dftscreen.known import KnownEntry, KnownSet, KnownSetError


@dataclass(frozen=True)
class NoveltyResult:
    """Outcome for one generated structure: ``match_id`` is the first known entry it matches."""

    structure_id: str
    novel: bool
    match_id: str | None = None


def _match_one_formula(
    generated: list[tuple[str, Structure]], known: list[KnownEntry], settings: MatchSettings
) -> dict[str, str | None]:
    """Map each generated id to the id of the first known entry it matches (None: novel)."""
    matcher = settings.matcher()
    reduced_known: list[tuple[str, Structure]] = []
    for entry in sorted(known, key=lambda e: e.entry_id):
        try:
            reduced_known.append((entry.entry_id, reduced_for_matching(entry.structure(), settings)))
        except KnownSetError:
            continue  # an unreadable known entry can match nothing
    matches: dict[str, str | None] = {}
    for structure_id, structure in generated:
        reduced = reduced_for_matching(structure, settings)
        matches[structure_id] = None
        for entry_id, known_reduced in reduced_known:
            if len(known_reduced) != len(reduced):
                continue  # the matcher rejects different primitive site counts before any lattice search
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                same = matcher.fit(known_reduced, reduced, skip_structure_reduction=True)
            if same:
                matches[structure_id] = entry_id
                break
    return matches


def match_against_known(
    generated: list[tuple[str, Structure]],
    known: KnownSet,
    settings: MatchSettings | None = None,
    workers: int = 1,
) -> dict[str, NoveltyResult]:
    """Novelty of every generated ``(structure_id, structure)`` against ``known``.

    Formulas are split over ``workers`` processes (largest first) when there are several;
    ``settings`` defaults to pymatgen's tolerances.
    """
    settings = settings or MatchSettings()
    by_formula: dict[str, list[tuple[str, Structure]]] = {}
    for structure_id, structure in generated:
        by_formula.setdefault(structure.composition.reduced_formula, []).append((structure_id, structure))
    tasks = [(items, known.by_formula[formula]) for formula, items in by_formula.items() if formula in known.by_formula]
    matches: dict[str, str | None] = {}
    if workers > 1 and len(tasks) > 1:
        tasks.sort(key=lambda task: -len(task[0]) * len(task[1]))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_match_task, [(items, entries, settings) for items, entries in tasks],
                                   chunksize=max(1, len(tasks) // (8 * workers))):
                matches.update(result)
    else:
        for items, entries in tasks:
            matches.update(_match_one_formula(items, entries, settings))
    return {
        sid: NoveltyResult(sid, novel=matches.get(sid) is None, match_id=matches.get(sid))
        for sid, _ in generated
    }


def _match_task(task: tuple[list[tuple[str, Structure]], list[KnownEntry], MatchSettings]) -> dict[str, str | None]:
    return _match_one_formula(*task)
