"""Write the largest known set available without network: crystals the installed packages ship.

    .venv/bin/python bench/offline_known_set.py [--out /work/runs/known_offline.json.gz]

Format (a) of :mod:`dftscreen.known` (a JSON list of pymatgen ``ComputedStructureEntry``
dicts, what mp-api returns), so a run reads it with ``known_materials.database.path``.
Sources, each entry's id saying where it came from:

- ``aflow:<AFLOW label>:<formula>``: pymatgen's bundled AFLOW Library of Crystallographic
  Prototypes (``pymatgen.analysis.prototypes``, ``aflow_prototypes.json.gz``): 288 prototypes,
  each with the real composition and lattice of the crystal that names it (cinnabar HgS,
  C11b MoSi2, ...). Nine AFLOW labels are shared by two prototypes (same label, other
  composition), hence the formula in the id.
- ``pymatgen:<name>``: the bulk crystals of ``pymatgen/util/structures/*.json`` (pymatgen's
  test structures, shipped in the wheel), oxidation states removed. Left out: the
  ``Si_SiO2_Interface`` slab (not a bulk crystal) and ``He_BCC`` (an artificial test cell:
  helium is not bcc at any pressure a generator targets).
- ``ase:<element>``: ``ase.build.bulk(<element>)`` for every element whose ASE reference state
  (``ase.data.reference_states``) ``bulk`` can build (fcc, bcc, hcp, diamond, sc, bct,
  rhombohedral, orthorhombic, ...; molecules, atoms and states bulk cannot build skipped).
- ``ase-dcdft:<element>``: ASE's ``dcdft`` collection: the 71 elemental crystals of the
  Delta codes-DFT test (Lejaeghere et al.), the structures WIEN2k was run on.
- ``ase-cod:<COD id>``: the 8 mineral CIFs from the Crystallography Open Database that ASE
  ships as test data (``ase/test/testdata/minerals``).

No source gives a total energy, so every ``energy`` is null: the set serves novelty only
(``known_materials.competing_phases`` cannot rank its phases; disable it). Entries are not
deduplicated across sources (Si appears in four); the script prints how many distinct
crystals (StructureMatcher at the dedupe tolerances, within a reduced formula) they hold.
"""

from __future__ import annotations

import argparse
import warnings
from collections import Counter
from pathlib import Path

from ase.build import bulk
from ase.collections import dcdft
from ase.data import atomic_numbers, chemical_symbols, reference_states
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor

from dftscreen.known import read_entries_json, write_entries_json

PYMATGEN_STRUCTURES = Path(__import__("pymatgen.util", fromlist=["x"]).__file__).parent / "structures"
ASE_MINERALS = Path(__import__("ase").__file__).parent / "test" / "testdata" / "minerals"
PYMATGEN_LEFT_OUT = {
    "Si_SiO2_Interface": "a slab interface, not a bulk crystal",
    "He_BCC": "an artificial test cell (He is not bcc)",
}


def aflow_entries() -> list[tuple[str, Structure, dict]]:
    from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY

    rows = []
    for item in AFLOW_PROTOTYPE_LIBRARY:
        structure = item["snl"].structure.copy()
        tags = item["tags"]
        entry_id = f"aflow:{tags['aflow']}:{structure.composition.reduced_formula}"
        note = {"source": "pymatgen AFLOW prototype library (aflow_prototypes.json.gz)", **tags}
        rows.append((entry_id, structure, note))
    return rows


def pymatgen_entries() -> tuple[list[tuple[str, Structure, dict]], list[str]]:
    rows, skipped = [], []
    for path in sorted(PYMATGEN_STRUCTURES.glob("*.json")):
        if path.stem in PYMATGEN_LEFT_OUT:
            skipped.append(f"pymatgen:{path.stem} ({PYMATGEN_LEFT_OUT[path.stem]})")
            continue
        structure = Structure.from_file(path)
        structure.remove_oxidation_states()
        rows.append((f"pymatgen:{path.stem}", structure,
                     {"source": f"pymatgen bundled structure util/structures/{path.name}"}))
    return rows, skipped


def ase_reference_entries() -> tuple[list[tuple[str, Structure, dict]], list[str]]:
    rows, skipped = [], []
    for symbol in chemical_symbols[1:]:
        state = reference_states[atomic_numbers[symbol]]
        if not state:
            continue
        symmetry = state["symmetry"]
        if symmetry in ("atom", "diatom"):
            skipped.append(f"ase:{symbol} ({symmetry})")
            continue
        try:
            atoms = bulk(symbol)
        except Exception as exc:  # noqa: BLE001 (ASE raises several types for states it cannot build)
            skipped.append(f"ase:{symbol} ({symmetry}: {exc})")
            continue
        rows.append((f"ase:{symbol}", AseAtomsAdaptor.get_structure(atoms),
                     {"source": f"ase.build.bulk('{symbol}'), ASE reference state {symmetry}"}))
    return rows, skipped


def ase_dcdft_entries() -> list[tuple[str, Structure, dict]]:
    return [(f"ase-dcdft:{name}", AseAtomsAdaptor.get_structure(dcdft[name]),
             {"source": "ase.collections.dcdft (Delta codes-DFT test structures)"}) for name in dcdft.names]


def ase_cod_entries() -> list[tuple[str, Structure, dict]]:
    rows = []
    for path in sorted(ASE_MINERALS.glob("*.cif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(path)
        rows.append((f"ase-cod:{path.stem.removeprefix('cod_')}", structure,
                     {"source": f"ASE test data minerals/{path.name} (Crystallography Open Database)"}))
    return rows


def entry_dict(entry_id: str, structure: Structure, note: dict) -> dict:
    data = {"material_id": entry_id, **note, "energy_source": None}
    record = ComputedStructureEntry(structure, float("nan"), entry_id=entry_id, data=data).as_dict()
    record["energy"] = None  # no source states an energy: JSON null, as dftscreen.known reads it
    return record


def distinct_crystals(rows: list[tuple[str, Structure, dict]]) -> int:
    """Crystals among the entries: StructureMatcher groups (ltol 0.2, stol 0.3, angle_tol 5) per formula."""
    matcher = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
    by_formula: dict[str, list[Structure]] = {}
    for _, structure, _ in rows:
        by_formula.setdefault(structure.composition.reduced_formula, []).append(structure)
    return sum(len(matcher.group_structures(group)) if len(group) > 1 else 1 for group in by_formula.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/work/runs/known_offline.json.gz")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # pymatgen: no Pauling electronegativity for noble gases, CIF notes

    pymatgen_rows, pymatgen_skipped = pymatgen_entries()
    ase_rows, ase_skipped = ase_reference_entries()
    sources = {
        "aflow": aflow_entries(),
        "pymatgen": pymatgen_rows,
        "ase": ase_rows,
        "ase-dcdft": ase_dcdft_entries(),
        "ase-cod": ase_cod_entries(),
    }
    rows = [row for part in sources.values() for row in part]
    ids = Counter(entry_id for entry_id, _, _ in rows)
    repeated = {k: v for k, v in ids.items() if v > 1}
    if repeated:
        raise SystemExit(f"repeated entry ids: {repeated}")
    count = write_entries_json([entry_dict(*row) for row in rows], args.out)
    known = read_entries_json(args.out)  # read back as the workflow reads it
    formulas = {e.reduced_formula for e in known.entries}
    elements = set().union(*(e.elements for e in known.entries))
    disordered = sum(not s.is_ordered for _, s, _ in rows)
    print(f"wrote {count} entries to {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB)")
    print("per source: " + ", ".join(f"{name} {len(part)}" for name, part in sources.items()))
    print(f"read back: {known.label}; {len(formulas)} reduced formulas, {len(elements)} elements, "
          f"{disordered} disordered, energies: {'some' if known.has_energies else 'none'}")
    print(f"distinct crystals (StructureMatcher within a formula): {distinct_crystals(rows)}")
    print("left out: " + "; ".join(pymatgen_skipped + ase_skipped))


if __name__ == "__main__":
    main()
