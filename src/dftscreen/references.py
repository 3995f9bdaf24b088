"""Elemental reference states, computed by the workflow with the same DFT preset.

Formation energies need the energy per atom of every element in its standard
state, computed with exactly the settings used for the compounds (GPAW energies
are relative to GPAW's reference atoms and are not comparable with VASP or
Materials Project numbers). Each element gets one relaxation job.

Which structure stands for an element:

- crystals: ASE's reference state (``ase.data.reference_states``, e.g. bcc Fe,
  diamond Si, hcp Mg), built by ``ase.build.bulk`` and relaxed (cell + positions);
- gases and halogens: the diatomic molecule in a cubic box, positions relaxed,
  Γ point only. Bond lengths (Å) are the experimental ones from the NIST
  Computational Chemistry Comparison and Benchmark Database (CCCBDB); O2 is
  the spin triplet (2 µB).
- elements whose ground state is a complex crystal ASE cannot build (B, P, S,
  Mn, Ga, Se, Te, ...) have no automatic reference: structures containing them
  get no formation energy, and the reason says which element is missing.

Run one under MPI as ``mpiexec -n N gpaw python -m dftscreen.references --element Fe ...``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, reference_states

from dftscreen.dft import common_arguments, parse_settings, write_on_master
from dftscreen.settings import deep_merge, initial_magmoms

#: Diatomic references: experimental bond length (Å, NIST CCCBDB) and total spin moment (µB).
DIATOMIC_REFERENCES: dict[str, tuple[float, float]] = {
    "H": (0.741, 0.0),
    "N": (1.098, 0.0),
    "O": (1.208, 2.0),
    "F": (1.412, 0.0),
    "Cl": (1.988, 0.0),
    "Br": (2.281, 0.0),
    "I": (2.666, 0.0),
}

#: Edge of the cubic box (Å) around a reference molecule: ~6 Å of vacuum.
MOLECULE_BOX_A = 8.0


class NoElementalReference(ValueError):
    """The element's standard state cannot be built automatically; the message says why."""


@dataclass
class ElementalReference:
    """The structure standing for one element and how to compute it."""

    element: str
    atoms: Atoms
    kind: str  # "crystal" or "molecule"
    description: str


def elemental_reference(element: str, box_A: float = MOLECULE_BOX_A) -> ElementalReference:
    """Reference structure of ``element`` (see the module docstring).

    Raises:
        NoElementalReference: unknown element, or a ground state ASE cannot build.
    """
    if element not in atomic_numbers:
        raise NoElementalReference(f"'{element}' is not a chemical element")
    if element in DIATOMIC_REFERENCES:
        bond, moment = DIATOMIC_REFERENCES[element]
        atoms = Atoms(
            [element, element],
            positions=[[0, 0, 0], [0, 0, bond]],
            cell=[box_A, box_A, box_A],
            pbc=True,
        )
        atoms.center()
        atoms.set_initial_magnetic_moments([moment / 2, moment / 2])
        return ElementalReference(element, atoms, "molecule", f"{element}2 molecule in a {box_A:g} Å box")
    state = reference_states[atomic_numbers[element]]
    symmetry = state.get("symmetry") if state else None
    try:
        atoms = bulk(element)
    except Exception as exc:
        raise NoElementalReference(
            f"no automatic elemental reference for {element} (its ground state, "
            f"'{symmetry}', is a crystal ASE cannot build)"
        ) from exc
    moments = initial_magmoms(atoms.get_chemical_symbols())
    atoms.set_initial_magnetic_moments(moments)
    return ElementalReference(element, atoms, "crystal", f"{symmetry} {element} (ASE reference state)")


def reference_settings(settings: dict[str, Any], kind: str) -> dict[str, Any]:
    """The run's DFT settings adapted to a reference of ``kind``.

    A molecule keeps its box (positions only, no symmetry constraint) and needs
    only the Γ point; a crystal uses the settings unchanged.
    """
    if kind != "molecule":
        return settings
    return deep_merge(
        settings,
        {"relax": {"relax_cell": False, "fix_symmetry": False}, "gpaw": {"kpts": {"size": [1, 1, 1], "gamma": True}}},
    )


def main(argv: list[str] | None = None) -> int:
    from dftscreen import relax

    parser = common_arguments("GPAW relaxation of one elemental reference")
    parser.add_argument("--element", required=True)
    parser.add_argument("--out-cif", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    try:
        reference = elemental_reference(args.element)
    except NoElementalReference as exc:
        write_on_master(args.out_json, {
            "structure_id": args.structure_id, "element": args.element,
            "status": relax.STATUS_FAILED, "reason": str(exc),
        })
        return 0
    record = relax.run(
        cif=None,
        structure_id=args.structure_id,
        settings=reference_settings(settings, reference.kind),
        out_json=args.out_json,
        out_cif=args.out_cif,
        workdir=args.workdir,
        load_atoms=lambda: reference.atoms,
        extra={"element": args.element, "reference_kind": reference.kind, "reference_description": reference.description},
    )
    return 0 if record else 1


if __name__ == "__main__":
    sys.exit(main())
