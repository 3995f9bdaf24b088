"""Is a generated structure already known? StructureMatcher against a known set, by reduced formula.

Every unique ``dft_ready`` structure is compared only with the known entries of its
reduced formula (the matcher cannot match different formulas), with the tolerances
of the run's deduplication (``check.dedupe``) and the same speed-ups as
:mod:`dftscreen.dedupe`: each structure is reduced to its Niggli primitive cell once,
and a pair is only compared when the primitive cells have as many sites. A known
entry's structure is only built when a generated structure of its formula exists.

Results per structure id: ``novel`` (True/False) and the id of a matching entry (or None):
when several known entries match (a database's near-duplicates), the one closest in
volume per atom is named, ties by id.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from dftscreen.dedupe import MatchSettings, reduced_for_matching
from dftscreen.known import KnownEntry, KnownSet, KnownSetError


@dataclass(frozen=True)
class NoveltyResult:
    """Outcome for one generated structure: ``match_id`` is the first known entry it matches."""

    structure_id: str
    novel: bool
    match_id: str | None = None


def _volume_per_atom_A3(entry: KnownEntry) -> float | None:
    """Cell volume per atom (Å³) of a known entry, from its stored lattice when it has one (no structure built)."""
    if entry.raw_structure is not None:
        try:
            matrix = np.array(entry.raw_structure["lattice"]["matrix"], dtype=float)
            return abs(float(np.linalg.det(matrix))) / len(entry.raw_structure["sites"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
    try:
        structure = entry.structure()
    except KnownSetError:
        return None
    return structure.volume / len(structure)


def _match_one_formula(
    generated: list[tuple[str, Structure]], known: list[KnownEntry], settings: MatchSettings
) -> dict[str, str | None]:
    """Map each generated id to the id of a known entry it matches (None: novel).

    Known entries are tried closest in volume per atom first (a copy is found at once),
    reduced only when first needed, and skipped unreduced when the generated primitive
    cell's site count cannot divide theirs (a primitive cell's sites divide the cell's).
    """
    matcher = settings.matcher()
    volumes = {e.entry_id: _volume_per_atom_A3(e) for e in known}
    reduced_known: dict[str, Structure | None] = {}

    def known_reduced(entry: KnownEntry) -> Structure | None:
        if entry.entry_id not in reduced_known:
            try:
                reduced_known[entry.entry_id] = reduced_for_matching(entry.structure(), settings)
            except KnownSetError:
                reduced_known[entry.entry_id] = None  # an unreadable known entry can match nothing
        return reduced_known[entry.entry_id]

    matches: dict[str, str | None] = {}
    for structure_id, structure in generated:
        reduced = reduced_for_matching(structure, settings)
        volume = structure.volume / len(structure)

        def closeness(entry: KnownEntry, volume: float = volume) -> tuple[float, str]:
            v = volumes[entry.entry_id]
            return (abs(math.log(v / volume)) if v else math.inf, entry.entry_id)

        matches[structure_id] = None
        for entry in sorted(known, key=closeness):
            if entry.n_sites and entry.n_sites % len(reduced):
                continue  # its primitive cell, whose sites divide n_sites, cannot have len(reduced) sites
            known_structure = known_reduced(entry)
            if known_structure is None or len(known_structure) != len(reduced):
                continue  # the matcher rejects different primitive site counts before any lattice search
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                same = matcher.fit(known_structure, reduced, skip_structure_reduction=True)
            if same:
                matches[structure_id] = entry.entry_id
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
