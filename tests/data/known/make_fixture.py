"""Write the known-materials fixture known_NaCl_TiO_LiFePO.json.gz (format (a)): run from the repo root.

    PYTHONPATH=src python tests/data/known/make_fixture.py

Structures: ASE's builders with experimental lattice constants, pymatgen's bundled
structures (pymatgen/util/structures, MIT), and two structures built from their
published space group and positions (sources beside each). Energies: standard
enthalpies of formation at 298 K from the CRC Handbook of Chemistry and Physics
("Standard thermodynamic properties of chemical substances"), kJ/mol per formula
unit, stored as each entry's energy in eV per formula unit with every element at
0 eV. A hull is unchanged by adding a fixed energy per atom of each element, so
these energies rank the phases as total energies of one method would; they are
never compared with GPAW energies. README.md beside this file lists the entries.
"""

from __future__ import annotations

from pathlib import Path

from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor

from dftscreen.known import write_entries_json

KJ_PER_MOL_TO_EV = 1 / 96.485
PYMATGEN_STRUCTURES = Path(__import__("pymatgen.util", fromlist=["x"]).__file__).parent / "structures"
OUT = Path(__file__).parent / "known_NaCl_TiO_LiFePO.json.gz"


def ase(*args, **kwargs) -> Structure:
    return AseAtomsAdaptor.get_structure(bulk(*args, **kwargs))


def bundled(name: str) -> Structure:
    structure = Structure.from_file(PYMATGEN_STRUCTURES / f"{name}.json")
    structure.remove_oxidation_states()
    return structure


def entries() -> list[ComputedStructureEntry]:
    # (id, structure, ΔHf kJ/mol per formula unit of the structure's reduced formula or None, source of the structure)
    rows = [
        ("known-Na-bcc", ase("Na", "bcc", a=4.23), 0.0, "ASE bulk, bcc a = 4.23 Å (ASE reference state)"),
        ("known-NaCl-rocksalt", ase("NaCl", "rocksalt", a=5.64), -411.2, "ASE bulk, rocksalt a = 5.64 Å"),
        ("known-Na2O-antifluorite", ase("ONa2", "fluorite", a=5.55), -414.2, "ASE bulk, antifluorite a = 5.55 Å"),
        ("known-Ti-hcp", ase("Ti", "hcp", a=2.95, c=4.68), 0.0, "ASE bulk, hcp a = 2.95, c = 4.68 Å"),
        ("known-TiO-rocksalt", ase("TiO", "rocksalt", a=4.18), -542.7,
         "ASE bulk, idealised rocksalt a = 4.18 Å (real TiO has ordered vacancies)"),
        ("known-TiO2-rutile",
         Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                   [[0, 0, 0], [0.3048, 0.3048, 0]]),
         -944.0, "P4_2/mnm, a = 4.594, c = 2.959 Å, O at (u, u, 0), u = 0.3048 (Abrahams & Bernstein, "
         "J. Chem. Phys. 55, 3206 (1971))"),
        ("known-TiO2-anatase",
         Structure.from_spacegroup("I4_1/amd", Lattice.tetragonal(3.785, 9.514), ["Ti", "O"],
                                   [[0, 0, 0], [0, 0, 0.2083]]),
         -938.7, "I4_1/amd, a = 3.785, c = 9.514 Å, Ti at (0, 0, 0), O at (0, 0, 0.2083) (Horn et al., "
         "Z. Kristallogr. 136, 273 (1972)), origin choice 1"),
        ("known-Li-bcc", ase("Li", "bcc", a=3.51), 0.0, "ASE bulk, bcc a = 3.51 Å (ASE reference state)"),
        ("known-Fe-bcc", ase("Fe", "bcc", a=2.87), 0.0, "ASE bulk, bcc a = 2.87 Å (ASE reference state)"),
        ("known-Li2O", bundled("Li2O"), -597.9, "pymatgen bundled structure Li2O.json (antifluorite)"),
        ("known-FeO-rocksalt", ase("FeO", "rocksalt", a=4.33), -272.0, "ASE bulk, rocksalt a = 4.33 Å"),
        ("known-LiFePO4", bundled("LiFePO4"), None,
         "pymatgen bundled structure LiFePO4.json (olivine); no energy: the CRC Handbook lists none"),
    ]
    made = []
    for entry_id, structure, enthalpy_kj_mol, source in rows:
        units = structure.composition.get_reduced_composition_and_factor()[1]
        energy = None if enthalpy_kj_mol is None else enthalpy_kj_mol * KJ_PER_MOL_TO_EV * units
        data = {"material_id": entry_id, "structure_source": source,
                "energy_source": "CRC Handbook standard enthalpy of formation (298 K), elements at 0 eV"
                if energy is not None else None}
        made.append(ComputedStructureEntry(structure, energy if energy is not None else float("nan"),
                                           entry_id=entry_id, data=data))
    return made


def main() -> None:
    dicts = []
    for entry in entries():
        record = entry.as_dict()
        if record["energy"] != record["energy"]:  # NaN: no stated energy; JSON null
            record["energy"] = None
        dicts.append(record)
    count = write_entries_json(dicts, OUT)
    print(f"wrote {count} entries to {OUT}")


if __name__ == "__main__":
    main()
