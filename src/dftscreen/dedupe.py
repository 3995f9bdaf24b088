"""Group structures that are the same crystal, so DFT runs once per group.

Only ``dft_ready`` structures take part. Within one reduced formula,
structures are visited in order of increasing volume per formula unit (then
structure id, so the outcome does not depend on input order); each one joins
the first existing group whose representative pymatgen's
:class:`~pymatgen.analysis.structure_matcher.StructureMatcher` matches, or
founds a new group. The representative of every group is therefore its member
with the lowest volume per formula unit, the rule CrystaLLM's deduplication uses.

Speed, with the same groups (``tests/unit/test_fast_paths.py`` compares with the
plain pairwise ``StructureMatcher.fit`` on the shared data):

* each structure is reduced (Niggli, primitive cell) once, with the matcher's
  own functions, instead of twice per comparison; comparisons then pass
  ``skip_structure_reduction=True``, as ``StructureMatcher.group_structures`` does;
* a representative is only tried when its primitive cell has as many sites as
  the candidate's: the matcher (no supercells, no subsets) rejects any other
  pair before comparing lattices, so skipping them changes nothing.

Volume and space group are *not* used to pre-group: the matcher rescales
volumes (``scale=True``) and can match structures spglib assigns different
groups at its tolerance, so either would split real duplicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymatgen.analysis.structure_matcher import ElementComparator, StructureMatcher
from pymatgen.core import Structure


@dataclass(frozen=True)
class MatchSettings:
    """StructureMatcher tolerances (pymatgen defaults): ``ltol`` and ``stol`` fractional, ``angle_tol`` degrees."""

    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0

    @classmethod
    def from_config(cls, dedupe_config: dict[str, Any]) -> MatchSettings:
        """The tolerances of the config section ``check.dedupe`` (its other keys are not the matcher's)."""
        return cls(**{k: v for k, v in dict(dedupe_config).items() if k in ("ltol", "stol", "angle_tol")})

    def matcher(self) -> StructureMatcher:
        """A StructureMatcher with these tolerances, comparing elements (other options at pymatgen's defaults).

        Elements, not species: a CIF that labels its sites with oxidation states (``Na+``,
        as ICSD and COD files do) is the same crystal as one that does not. pymatgen's
        default comparator would tell them apart, and a known NaCl would never match.
        """
        return StructureMatcher(ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol,
                                comparator=ElementComparator())


@dataclass(frozen=True)
class Candidate:
    """One dft_ready structure taking part in deduplication (volume in Å³ per formula unit).

    ``structure`` is the structure as read, or already passed through
    :func:`reduced_for_matching` with the same settings (``reduced=True``).
    """

    structure_id: str
    reduced_formula: str
    volume_per_formula_unit_A3: float
    structure: Structure
    reduced: bool = False


def reduced_for_matching(structure: Structure, settings: MatchSettings) -> Structure:
    """The Niggli-reduced primitive cell StructureMatcher.fit compares (computed once per structure).

    Uses the matcher's own steps (species processing, reduction), as
    ``StructureMatcher.group_structures`` does before its comparisons.
    """
    matcher = settings.matcher()
    processed = matcher._process_species([structure])[0]
    return matcher._get_reduced_structure(processed, matcher._primitive_cell, niggli=True)


def _ordered(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.volume_per_formula_unit_A3, c.structure_id))


def group_one_formula(
    candidates: list[Candidate], settings: MatchSettings, source_of: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Map each duplicate's id to its representative's id, for candidates of one reduced formula.

    ``source_of`` (id -> where the candidate comes from, e.g. its run in :mod:`dftscreen.compare_runs`):
    a candidate never joins a group that already has a member from its own source, so groups the
    sources made themselves stay apart; ``None``: every candidate may join any group.
    """
    matcher = settings.matcher()
    representatives: list[tuple[Candidate, Structure, set[str | None]]] = []
    duplicate_of: dict[str, str] = {}
    for candidate in _ordered(candidates):
        source = None if source_of is None else source_of[candidate.structure_id]
        reduced = candidate.structure if candidate.reduced else reduced_for_matching(candidate.structure, settings)
        for rep, rep_reduced, sources in representatives:
            if len(rep_reduced) != len(reduced):
                continue  # the matcher rejects different primitive site counts before any lattice search
            if source_of is not None and source in sources:
                continue  # a group holds at most one candidate of each source
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                same = matcher.fit(rep_reduced, reduced, skip_structure_reduction=True)
            if same:
                duplicate_of[candidate.structure_id] = rep.structure_id
                sources.add(source)
                break
        else:
            representatives.append((candidate, reduced, {source}))
    return duplicate_of


def group_one_formula_plain(candidates: list[Candidate], settings: MatchSettings) -> dict[str, str]:
    """As :func:`group_one_formula` with a plain ``fit`` on unreduced structures (reference for tests)."""
    matcher = settings.matcher()
    representatives: list[Candidate] = []
    duplicate_of: dict[str, str] = {}
    for candidate in _ordered(candidates):
        for rep in representatives:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                same = matcher.fit(rep.structure, candidate.structure)
            if same:
                duplicate_of[candidate.structure_id] = rep.structure_id
                break
        else:
            representatives.append(candidate)
    return duplicate_of


def by_formula(candidates: list[Candidate]) -> dict[str, list[Candidate]]:
    """Candidates grouped by reduced formula (only these can match each other)."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.reduced_formula, []).append(candidate)
    return groups


def find_duplicates(
    candidates: list[Candidate],
    settings: MatchSettings = MatchSettings(),
    source_of: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each duplicate structure id to its representative's id (representatives are absent).

    ``source_of``: as :func:`group_one_formula` (a group never holds two candidates of one source).
    """
    duplicate_of: dict[str, str] = {}
    for group in by_formula(candidates).values():
        duplicate_of.update(group_one_formula(group, settings, source_of))
    return duplicate_of


def duplicate_reason(representative_id: str, settings: MatchSettings) -> str:
    """Sentence for the reason column of a duplicate."""
    return (
        f"same crystal as {representative_id} (pymatgen StructureMatcher, ltol {settings.ltol:g}, "
        f"stol {settings.stol:g}, angle_tol {settings.angle_tol:g}°); DFT is run once, on {representative_id}"
    )
