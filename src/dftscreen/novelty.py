"""Is a generated structure already known? StructureMatcher against a known set, by reduced formula.

Every unique ``dft_ready`` structure is compared only with the known entries of its
reduced formula (the matcher cannot match different formulas), with the tolerances
of the run's deduplication (``check.dedupe``) and the same speed-ups as
:mod:`dftscreen.dedupe`: each structure is reduced to its Niggli primitive cell once,
and a pair is only compared when the primitive cells have as many sites. A known
entry's structure is only built when a generated structure of its formula exists.
When the known set was read through an index (:mod:`dftscreen.known_index`), the known
entries' reduced cells come from there, and the ones this run reduced are saved back.

Results per structure id: ``novel`` (True/False) and the id of a matching entry (or None):
when several known entries match (a database's near-duplicates), the one closest in
volume per atom is named, ties by id.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from pymatgen.core import Structure

from dftscreen.dedupe import MatchSettings, reduced_for_matching
from dftscreen.known import KnownEntry, KnownSet, KnownSetError
from dftscreen.known_index import ReducedCell, volume_per_atom_A3


@dataclass(frozen=True)
class NoveltyResult:
    """Outcome for one generated structure: ``match_id`` is the first known entry it matches."""

    structure_id: str
    novel: bool
    match_id: str | None = None


def _volume_per_atom_A3(entry: KnownEntry) -> float | None:
    """Cell volume per atom (Å³) of a known entry, from the index or its stored lattice when it has one."""
    if entry.volume_per_atom_A3 is not None:
        return entry.volume_per_atom_A3
    if entry.raw_structure is not None:
        return volume_per_atom_A3(entry.raw_structure)
    try:
        structure = entry.structure()
    except KnownSetError:
        return None
    return structure.volume / len(structure)


def _match_one_formula(
    generated: list[tuple[str, Structure]],
    known: list[KnownEntry],
    settings: MatchSettings,
    cells: dict[str, ReducedCell] | None = None,
) -> tuple[dict[str, str | None], dict[str, ReducedCell]]:
    """Map each generated id to the id of a known entry it matches (None: novel).

    Known entries are tried closest in volume per atom first (a copy is found at once),
    reduced only when first needed (or taken from ``cells``, reduced cells by entry id), and
    skipped unreduced when the generated primitive cell's site count cannot divide theirs (a
    primitive cell's sites divide the cell's). Also returns the cells reduced here.
    """
    matcher = settings.matcher()
    volumes = {e.entry_id: _volume_per_atom_A3(e) for e in known}
    cells = cells or {}
    reduced_known: dict[str, Structure | None] = {}
    new_cells: dict[str, ReducedCell] = {}

    def known_reduced(entry: KnownEntry) -> Structure | None:
        if entry.entry_id not in reduced_known:
            cell = cells.get(entry.entry_id)
            if cell is not None:
                reduced_known[entry.entry_id] = cell.structure()
                return reduced_known[entry.entry_id]
            try:
                reduced = reduced_for_matching(entry.structure(), settings)
            except KnownSetError:
                reduced = None  # an unreadable known entry can match nothing
            else:
                kept = ReducedCell.from_structure(reduced)
                if kept is not None:
                    new_cells[entry.entry_id] = kept
            reduced_known[entry.entry_id] = reduced
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
    return matches, new_cells


def match_against_known(
    generated: list[tuple[str, Structure]],
    known: KnownSet,
    settings: MatchSettings | None = None,
    workers: int = 1,
) -> dict[str, NoveltyResult]:
    """Novelty of every generated ``(structure_id, structure)`` against ``known``.

    Formulas are split over ``workers`` processes (largest first) when there are several;
    ``settings`` defaults to pymatgen's tolerances. With an index (``known.index``), known
    entries' reduced cells are read from it and the newly reduced ones written back.
    """
    settings = settings or MatchSettings()
    by_formula: dict[str, list[tuple[str, Structure]]] = {}
    for structure_id, structure in generated:
        by_formula.setdefault(structure.composition.reduced_formula, []).append((structure_id, structure))
    cells: dict[str, ReducedCell] = known.index.load_reduced(settings) if known.index is not None else {}
    tasks = []
    for formula, items in by_formula.items():
        if formula in known.by_formula:
            entries = known.by_formula[formula]
            tasks.append((items, entries, settings,
                          {e.entry_id: cells[e.entry_id] for e in entries if e.entry_id in cells}))
    matches: dict[str, str | None] = {}
    new_cells: dict[str, ReducedCell] = {}
    if workers > 1 and len(tasks) > 1:
        tasks.sort(key=lambda task: -len(task[0]) * len(task[1]))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for found, reduced in pool.map(_match_task, tasks, chunksize=max(1, len(tasks) // (8 * workers))):
                matches.update(found)
                new_cells.update(reduced)
    else:
        for task in tasks:
            found, reduced = _match_task(task)
            matches.update(found)
            new_cells.update(reduced)
    if known.index is not None and new_cells:
        known.index.save_reduced(settings, new_cells)
    return {
        sid: NoveltyResult(sid, novel=matches.get(sid) is None, match_id=matches.get(sid))
        for sid, _ in generated
    }


def _match_task(
    task: tuple[list[tuple[str, Structure]], list[KnownEntry], MatchSettings, dict[str, ReducedCell]],
) -> tuple[dict[str, str | None], dict[str, ReducedCell]]:
    return _match_one_formula(*task)
