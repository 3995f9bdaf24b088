import csv
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from dftscreen.check import CheckSettings, check_structure_file, min_interatomic_distance
from dftscreen.check_batch import check_all
from dftscreen.inputs import InputFile, discover_cifs

from conftest import EXAMPLES, PEROV5


def item(path: Path, sid: str = "s") -> InputFile:
    return InputFile(structure_id=sid, path=path, relative_path=path.name)


def test_generated_nacl_with_symmetry_operators_is_expanded_and_valid():
    result = check_structure_file(item(EXAMPLES / "NaCl_crystallm_P4nmm.cif"))
    assert result.valid, result.reason
    assert result.reduced_formula == "NaCl"
    assert result.n_sites == 4  # 2 Na + 2 Cl after applying the 16 operators
    # Declared P4/nmm (129); spglib at 0.1 Å finds the higher P4/mmm (123).
    assert result.spacegroup_number == 123
    assert result.min_distance_A == pytest.approx(3.084, abs=1e-3)


def test_perovskites_match_their_reference_formula_and_site_count(shared_dir):
    with open(PEROV5 / "properties.csv") as handle:
        rows = list(csv.DictReader(handle))[:10]
    for row in rows:
        result = check_structure_file(item(PEROV5 / row["file"]))
        assert result.valid, (row["file"], result.reason)
        from pymatgen.core import Composition

        assert Composition(result.reduced_formula).reduced_formula == Composition(row["formula"]).reduced_formula
        assert result.n_sites == int(row["nsites"])
        assert result.volume_generated_A3 == pytest.approx(float(row["volume_A3"]), rel=1e-4)


def test_cubic_perovskite_space_group():
    result = check_structure_file(item(EXAMPLES / "MgGeO3_perov5_16100.cif"))
    assert (result.spacegroup_symbol, result.spacegroup_number) == ("Pm-3m", 221)


def test_overlapping_atoms_are_invalid_with_distance_in_reason():
    result = check_structure_file(item(EXAMPLES / "broken overlapping atoms.cif"))
    assert not result.valid
    assert "0.195 Å apart" in result.reason and "0.5 Å" in result.reason


def test_threshold_is_configurable(tmp_path: Path):
    # Rock salt with one Na moved to 0.45 Å from a Cl: invalid at 0.5 Å, accepted at 0.4 Å.
    structure = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.08, 0, 0]])
    path = tmp_path / "close.cif"
    CifWriter(structure).write_file(path)
    assert not check_structure_file(item(path)).valid
    assert check_structure_file(item(path), settings=CheckSettings(min_distance_A=0.4)).valid


def test_truncated_and_empty_files_are_invalid_not_crashes(tmp_path: Path):
    truncated = check_structure_file(item(EXAMPLES / "broken_truncated.cif"))
    assert not truncated.valid and "no atom positions" in truncated.reason and "truncated" in truncated.reason
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    assert check_structure_file(item(empty)).reason == "file is empty"
    garbage = tmp_path / "garbage.cif"
    garbage.write_bytes(b"\x00\xff not a cif at all")
    assert not check_structure_file(item(garbage)).valid


def test_disordered_structure_is_invalid(tmp_path: Path):
    structure = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path = tmp_path / "disordered.cif"
    CifWriter(structure).write_file(path)
    result = check_structure_file(item(path))
    assert not result.valid and "disordered" in result.reason


def test_element_without_paw_dataset_is_named():
    result = check_structure_file(item(EXAMPLES / "NaCl_crystallm_P4nmm.cif"), available_elements={"Na"})
    assert not result.valid
    assert "Cl" in result.reason and "PAW" in result.reason


def test_min_distance_of_one_atom_cell_is_shortest_lattice_vector():
    a = 2.87
    bcc_primitive = Structure(
        Lattice([[-a / 2, a / 2, a / 2], [a / 2, -a / 2, a / 2], [a / 2, a / 2, -a / 2]]), ["Fe"], [[0, 0, 0]]
    )
    assert min_interatomic_distance(bcc_primitive) == pytest.approx(a * 3**0.5 / 2, rel=1e-6)


def test_check_all_gives_one_result_per_file_in_order():
    items = discover_cifs(EXAMPLES)
    results = check_all(items)
    assert [r.structure_id for r in results] == [i.structure_id for i in items]
    assert sum(r.valid for r in results) == 3
