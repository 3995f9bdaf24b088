"""Formation energies and energies above the convex hull, from GPAW energies only.

Every energy here comes from the same DFT preset: the generated structures,
the elemental references (:mod:`dftscreen.references`) and any reference
phases the user supplies. pymatgen's :class:`PhaseDiagram` builds the hull,
one per chemical system (a ternary oxide is judged against everything whose
elements are a subset of its own), which keeps it fast for large runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymatgen.core import Composition

if TYPE_CHECKING:  # pymatgen's phase diagrams import matplotlib and scipy (seconds): load them when a hull is built
    from pymatgen.analysis.phase_diagram import PDEntry

# Column names (dftscreen.columns). With compound reference phases the hull is the known one
# (elements and reference phases; the value may be negative); without them it is built from
# the elements and the generated structures alone, and the column name says so.


@dataclass(frozen=True)
class EnergyRecord:
    """A computed total energy (eV) of a structure of a given composition."""

    name: str
    composition: Composition
    energy_eV: float

    @property
    def energy_per_atom_eV(self) -> float:
        return self.energy_eV / self.composition.num_atoms


def chemical_potentials(elements: Iterable[EnergyRecord]) -> dict[str, float]:
    """Energy per atom (eV) of each element: the lowest of its candidate structures, keyed by symbol."""
    return {element: record.energy_per_atom_eV for element, record in lowest_elemental_records(elements).items()}


def lowest_elemental_records(candidates: Iterable[EnergyRecord]) -> dict[str, EnergyRecord]:
    """Per element, the candidate with the lowest energy per atom (the ground state at these settings).

    Candidates are every relaxed structure of a single element: the workflow's elemental
    reference and any elemental phase of a known set; records of compounds are ignored.
    """
    lowest: dict[str, EnergyRecord] = {}
    for record in candidates:
        symbols = [el.symbol for el in record.composition.elements]
        if len(symbols) != 1:
            continue
        current = lowest.get(symbols[0])
        if current is None or record.energy_per_atom_eV < current.energy_per_atom_eV:
            lowest[symbols[0]] = record
    return lowest


def formation_energy_per_atom(record: EnergyRecord, mu: dict[str, float]) -> float:
    """Formation energy (eV/atom) relative to the elemental references.

    Raises:
        KeyError: an element has no reference; the message names it.
    """
    missing = sorted(el.symbol for el in record.composition.elements if el.symbol not in mu)
    if missing:
        raise KeyError(f"no elemental reference energy for {', '.join(missing)}")
    reference = sum(amount * mu[el.symbol] for el, amount in record.composition.items())
    return (record.energy_eV - reference) / record.composition.num_atoms


def _decomposition_text(decomposition: dict[PDEntry, float]) -> str:
    parts = sorted(decomposition.items(), key=lambda item: -item[1])
    return " + ".join(f"{entry.composition.reduced_formula} ({fraction:.2f})" for entry, fraction in parts)


def hull_analysis(
    generated: list[EnergyRecord],
    elements: list[EnergyRecord],
    phases: list[EnergyRecord] | None = None,
) -> dict[str, dict[str, Any]]:
    """Energy above hull (eV/atom) and decomposition products of every generated structure.

    With compound reference phases (known materials, relaxed with the same preset),
    each generated structure is judged against the hull of the elemental references
    and those phases only, as Matbench Discovery and MatterGen judge against the
    known hull: a negative value means below the known hull (a candidate new stable
    phase), and a structure's value does not depend on what else the batch holds
    (adding inputs changes no finished row, and an ML screen verdict stays put).
    Without compound phases the hull is that of the elements and all generated
    structures in the system (the only competitors there are), so values are >= 0.
    An elemental phase among ``phases`` (a known set's α-S) stands for its element
    like a reference does; structures with an element that has neither get a
    ``reason`` instead.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    phases = phases or []
    mu = chemical_potentials([*elements, *phases])
    pool = [PDEntry(r.composition, r.energy_eV, name=f"element:{r.name}") for r in elements]
    pool += [PDEntry(r.composition, r.energy_eV, name=f"phase:{r.name}") for r in phases]
    generated_entries = {r.name: PDEntry(r.composition, r.energy_eV, name=r.name) for r in generated}
    if not any(len(p.composition.elements) > 1 for p in phases):
        pool += list(generated_entries.values())

    diagrams: dict[frozenset[str], PhaseDiagram] = {}
    results: dict[str, dict[str, Any]] = {}
    for record in generated:
        system = frozenset(el.symbol for el in record.composition.elements)
        missing = sorted(system - set(mu))
        if missing:
            results[record.name] = {"reason": f"no elemental reference energy for {', '.join(missing)}"}
            continue
        if system not in diagrams:
            members = [e for e in pool if {el.symbol for el in e.composition.elements} <= system]
            diagrams[system] = PhaseDiagram(members)
        diagram = diagrams[system]
        decomposition, e_hull = diagram.get_decomp_and_e_above_hull(generated_entries[record.name], allow_negative=True)
        results[record.name] = {
            "e_above_hull_eV_per_atom": float(e_hull),
            "decomposition": _decomposition_text(decomposition),
        }
    return results
