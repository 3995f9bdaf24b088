"""Competing phases for the hull, chosen automatically from a known set.

For each DFT candidate's chemical system (e.g. Li-Fe-P-O) the known entries of that
system and of every subsystem (Li, Fe-O, Li-P-O, ...) are placed on the known set's
own hull: pymatgen's :class:`PhaseDiagram` of the known set's energies (e.g. MP's
corrected GGA/GGA+U energies), or of ML energies when the ML stage computed them
(``energies_per_atom``, keyed by entry id: the hook for that stage). The entries on
or within ``max_above_hull_eV_per_atom`` of that hull can bound the candidate's
hull; per exact chemical system at most ``max_per_system`` of them are kept (lowest
above the hull first, then smaller cells). They are then relaxed with GPAW at the
run's preset and join the hull beside the elemental references: the known set's
energies only *choose* phases, they are never mixed with GPAW energies.

A known set with energies above its own hull but no energies per atom (a table with only
``e_above_hull_column``) is ranked by those. A known set without any energy (a folder of
CIFs) cannot rank its phases: at most ``max_per_system`` per system are taken (never all of
them), fewest sites first, then by id; when that leaves phases out, the first note says they
were not ranked by energy.
Disordered entries (partial occupancies) are never chosen: DFT cannot relax them.

Each chosen phase has a key, ``<reduced formula>-<fingerprint>``, where the fingerprint
hashes the structure itself, so the same crystal from any known set is relaxed once
per DFT settings (see :mod:`dftscreen.reflib`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element, Structure

from dftscreen.known import KnownEntry, KnownSet, KnownSetError

#: Energy (eV/atom) above the highest entry of a system given to an element the known set lacks
#: altogether, so the hull can still be built; it only ever makes the selection take more phases.
MISSING_ELEMENT_OFFSET_EV_PER_ATOM = 1.0
#: A known entry this close to its known hull (eV/atom) is on it, and never dropped by ``max_per_system``.
ON_HULL_EV_PER_ATOM = 1e-6
#: ``energy_source`` of a phase chosen from a known set without any energy.
UNRANKED_SOURCE = "none (known set has no energies: not ranked, at most max_per_system per system, fewest sites first)"


@dataclass(frozen=True)
class ChosenPhase:
    """One known phase chosen for the hull (energies in eV/atom, by the selecting energies)."""

    phase_key: str
    entry_id: str
    reduced_formula: str
    chemical_system: str
    n_sites: int
    e_above_known_hull_eV_per_atom: float | None
    energy_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def structure_fingerprint(structure: Structure, decimals: int = 4) -> str:
    """A 12-hex-digit hash of a structure's lattice (Å), species and fractional positions.

    Rounded to ``decimals`` and with sites sorted, so the same CIF read twice, or the same
    entry from two files, gives the same fingerprint.
    """
    lattice = ";".join(f"{x:.{decimals}f}" for row in structure.lattice.matrix for x in row)
    sites = sorted(
        f"{site.species.formula}@" + ",".join(f"{(x % 1.0) % 1.0:.{decimals}f}" for x in site.frac_coords)
        for site in structure
    )
    text = lattice + "|" + "|".join(sites)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def phase_key(entry: KnownEntry) -> str:
    """The library key of a known phase: ``<reduced formula>-<structure fingerprint>``."""
    return f"{entry.reduced_formula}-{structure_fingerprint(entry.structure())}"


def system_name(elements: Iterable[str]) -> str:
    return "-".join(sorted(elements))


def _energy(entry: KnownEntry, energies_per_atom: dict[str, float] | None) -> float | None:
    if energies_per_atom is not None:
        return energies_per_atom.get(entry.entry_id)
    return entry.energy_per_atom_eV


def known_hull_distances(
    entries: list[KnownEntry],
    energies_per_atom: dict[str, float] | None = None,
) -> dict[str, float]:
    """Energy above the known hull (eV/atom) of every entry with an energy, keyed by entry id."""
    with_energy = [(e, _energy(e, energies_per_atom)) for e in entries]
    with_energy = [(e, energy) for e, energy in with_energy if energy is not None]
    if not with_energy:
        return {}
    pd_entries = {
        e.entry_id: PDEntry(Composition(e.reduced_formula), energy * Composition(e.reduced_formula).num_atoms,
                            name=e.entry_id)
        for e, energy in with_energy
    }
    present = {el for e, _ in with_energy for el in e.elements}
    unary = {el for e, _ in with_energy if len(e.elements) == 1 for el in e.elements}
    highest = max(energy for _, energy in with_energy)
    placeholders = [
        PDEntry(Composition(el), highest + MISSING_ELEMENT_OFFSET_EV_PER_ATOM, name=f"placeholder:{el}")
        for el in sorted(present - unary)
    ]
    diagram = PhaseDiagram(list(pd_entries.values()) + placeholders, elements=[Element(el) for el in sorted(present)])
    return {eid: float(diagram.get_e_above_hull(entry, allow_negative=True)) for eid, entry in pd_entries.items()}


def _distances(
    in_system: list[KnownEntry], mode: str, energies_per_atom: dict[str, float] | None
) -> dict[str, float]:
    """Distance above the known hull (eV/atom) by entry id: from energies (``mode`` "energy"),
    the set's own energies above hull ("hull") or none ("none")."""
    if mode == "energy":
        # Distances on the hull of every entry, elements included: without them pymatgen's
        # hull would stand on placeholder elements and rank the compounds wrongly.
        return known_hull_distances(in_system, energies_per_atom)
    if mode == "hull":
        return {e.entry_id: e.e_above_hull_eV_per_atom for e in in_system if e.e_above_hull_eV_per_atom is not None}
    return {}


def _ranking(known: KnownSet, energies_per_atom: dict[str, float] | None, energy_source: str | None) -> tuple[str, str]:
    """How phases are ranked (``"energy"``, ``"hull"`` or ``"none"``) and how to describe it in the record."""
    if energies_per_atom is not None or known.has_energies:
        return "energy", energy_source or (
            "ML energies" if energies_per_atom is not None else f"energies of {known.label}")
    if any(e.e_above_hull_eV_per_atom is not None for e in known.entries):
        return "hull", energy_source or f"energies above hull of {known.label}"
    return "none", UNRANKED_SOURCE


def unranked_note(known: KnownSet, max_per_system: int) -> str:
    """The note of a choice from a known set without any energy: phases not ranked, capped per system."""
    return (f"known set {known.label} has no energies: its phases were not ranked by energy; at most "
            f"known_materials.competing_phases.max_per_system = {max_per_system} per chemical system were "
            "taken, fewest sites first, then by id (give the set's energy_per_atom_column or "
            "e_above_hull_column to rank them)")


def choose_competing_phases(
    systems: Iterable[Iterable[str]],
    known: KnownSet,
    *,
    max_above_hull_eV_per_atom: float,
    max_per_system: int,
    max_sites: int | None,
    include_elements: bool,
    energies_per_atom: dict[str, float] | None = None,
    energy_source: str | None = None,
) -> tuple[list[ChosenPhase], list[str]]:
    """Phases of ``known`` that can bound the hull of each chemical system in ``systems``.

    Args:
        systems: chemical systems of the DFT candidates (each an iterable of element symbols).
        max_above_hull_eV_per_atom: keep entries at most this far above the known hull.
        max_per_system: at most this many per exact chemical system, apart from phases on the
            known hull, which are always kept (they define it; a note says when they exceed it).
        max_sites: skip larger cells (their DFT would dominate the run); ``None``: no limit.
        include_elements: also choose elemental phases (extra candidates for the elemental references).
        energies_per_atom: energies (eV/atom) by entry id replacing the known set's own, e.g. from
            the ML stage; entries without one are then not chosen. Without them and without the
            set's own energies per atom, its own energies above hull rank the phases; without any
            energy, at most ``max_per_system`` per system are taken, fewest sites first, and when
            that leaves phases out the first note says they were not ranked.
        energy_source: how to describe those energies in the record.

    Returns:
        The chosen phases (sorted by key) and notes on what was skipped and why.
    """
    mode, source = _ranking(known, energies_per_atom, energy_source)
    ranked = mode != "none"
    chosen: dict[str, ChosenPhase] = {}
    notes: list[str] = []
    seen_systems: set[frozenset[str]] = set()
    capped = False  # whether max_per_system left a phase out somewhere
    for system in {frozenset(s) for s in systems}:
        if system in seen_systems:
            continue
        seen_systems.add(system)
        in_system = known.within(system)
        distances = _distances(in_system, mode, energies_per_atom)
        entries = [e for e in in_system if include_elements or len(e.elements) > 1]
        per_system: dict[frozenset[str], list[tuple[float, int, KnownEntry]]] = {}
        for entry in entries:
            if ranked:
                distance = distances.get(entry.entry_id)
                if distance is None or distance > max_above_hull_eV_per_atom + 1e-9:
                    continue
            else:
                distance = None
            try:
                n_sites = entry.n_sites or len(entry.structure())
                ordered = entry.structure().is_ordered
            except KnownSetError as exc:
                notes.append(f"{entry.entry_id}: skipped, {exc}")
                continue
            if not ordered:
                notes.append(f"{entry.entry_id} ({entry.reduced_formula}): skipped, a disordered structure "
                             "(partial occupancies) cannot be relaxed with DFT")
                continue
            if max_sites is not None and n_sites > max_sites:
                notes.append(f"{entry.entry_id} ({entry.reduced_formula}, {n_sites} sites): skipped, more than "
                             f"known_materials.competing_phases.max_sites = {max_sites} sites")
                continue
            per_system.setdefault(entry.elements, []).append((distance or 0.0, n_sites, entry))
        for elements, candidates in per_system.items():
            candidates.sort(key=lambda item: (item[0], item[1], item[2].entry_id))
            # Phases on the known hull define it: the cap never drops them (dropping V2O3 from V-O
            # would lower the hull and call structures stable that are not); it limits the rest.
            n_on_hull = sum(1 for c in candidates if ranked and c[0] <= ON_HULL_EV_PER_ATOM)
            n_keep = max(max_per_system, n_on_hull)
            if n_on_hull > max_per_system:
                notes.append(f"{system_name(elements)}: all {n_on_hull} phases on the known hull kept although "
                             f"max_per_system is {max_per_system} (they define the hull)")
            if len(candidates) > n_keep:
                capped = True
                dropped = ", ".join(c[2].entry_id for c in candidates[n_keep:])
                notes.append(f"{system_name(elements)}: kept {n_keep} phases (max_per_system), not {dropped}")
            for distance, n_sites, entry in candidates[:n_keep]:
                try:
                    key = phase_key(entry)
                except KnownSetError as exc:
                    notes.append(f"{entry.entry_id}: skipped, {exc}")
                    continue
                chosen.setdefault(key, ChosenPhase(
                    phase_key=key, entry_id=entry.entry_id, reduced_formula=entry.reduced_formula,
                    chemical_system=system_name(elements), n_sites=n_sites,
                    e_above_known_hull_eV_per_atom=distance if ranked else None,
                    energy_source=source,
                ))
    if capped and not ranked:
        notes.insert(0, unranked_note(known, max_per_system))
    return [chosen[key] for key in sorted(chosen)], notes
