"""Each check on hand-made structures whose verdict is known.

Rock salt NaCl: Fm-3m (225), a = 5.64 Å (Na-Cl 2.82 Å); pymatgen's radii give
an expected Na+-Cl- length of 1.16 + 1.67 = 2.83 Å, so every bond is reasonable.
"""

import pytest

from dftscreen.check import CheckSettings, check_text
from dftscreen.cif_reader import normalise_cif_text, read_cif_text

CELL = """_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90.0
_cell_angle_beta 90.0
_cell_angle_gamma {gamma}
"""

SITES = """loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_symmetry_multiplicity
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na Na0 {m} 0.0000 0.0000 0.0000 1
Cl Cl1 {m} 0.5000 0.5000 0.5000 1
"""


def raw_rock_salt(
    symbol_line: str = "_symmetry_space_group_name_H-M Fm-3m",
    multiplicity: str = "4",
    formula_sum: str = "'Na4 Cl4'",
    a: float = 5.64,
    gamma: float = 90.0,
    data_name: str = "Na4Cl4",
    extra: str = "",
) -> bytes:
    """Rock salt as CrystaLLM writes it: asymmetric unit and the identity operator only."""
    text = (
        f"data_{data_name}\n{symbol_line}\n"
        + CELL.format(a=a, gamma=gamma)
        + f"_symmetry_Int_Tables_number 225\n_chemical_formula_structural NaCl\n"
        f"_chemical_formula_sum {formula_sum}\n_cell_volume {a**3:.4f}\n_cell_formula_units_Z 4\n"
        "loop_\n_symmetry_equiv_pos_site_id\n_symmetry_equiv_pos_as_xyz\n1 'x, y, z'\n"
        + SITES.format(m=multiplicity)
        + extra
    )
    return text.encode()


def p1_rock_salt(symbol_line: str, na_x: float = 0.0) -> bytes:
    """The conventional rock-salt cell written out in full (8 atoms), declared P1."""
    na = [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    cl = [(0.5, 0.5, 0.5), (0, 0, 0.5), (0, 0.5, 0), (0.5, 0, 0)]
    na[0] = (na_x, 0, 0)
    rows = [f"Na Na{i} 1 {x} {y} {z} 1" for i, (x, y, z) in enumerate(na)]
    rows += [f"Cl Cl{i} 1 {x} {y} {z} 1" for i, (x, y, z) in enumerate(cl)]
    text = (
        f"data_NaCl\n{symbol_line}\n"
        + CELL.format(a=5.64, gamma=90.0)
        + "_chemical_formula_sum 'Na4 Cl4'\n_chemical_formula_structural NaCl\n"
        "loop_\n_symmetry_equiv_pos_site_id\n_symmetry_equiv_pos_as_xyz\n1 'x, y, z'\n"
        "loop_\n_atom_site_type_symbol\n_atom_site_label\n_atom_site_symmetry_multiplicity\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n" + "\n".join(rows) + "\n"
    )
    return text.encode()


def check(raw: bytes, **settings):
    return check_text(raw, "s", "s.cif", settings=CheckSettings(**settings), available_elements={"Na", "Cl"})


def test_raw_rock_salt_is_rebuilt_and_valid():
    result = check(raw_rock_salt())
    assert result.rebuilt_from_asymmetric_unit and result.n_sites == 8
    assert result.reduced_formula == "NaCl"
    assert result.crystallm_valid, result.crystallm_reason
    assert result.dft_ready and result.valid, result.reason
    assert (result.declared_spacegroup_number, result.spacegroup_number) == (225, 225)
    assert result.bond_length_score == 1.0 and result.n_bonds == 48  # 8 atoms x 6 neighbours
    assert result.min_distance_A == pytest.approx(2.82, abs=1e-6)
    assert result.volume_implied_A3 == pytest.approx(5.64**3, rel=1e-9)


@pytest.mark.parametrize(
    "variant",
    [
        raw_rock_salt(symbol_line="_symmetry_space_group_name_H-M 'F m -3 m'"),
        raw_rock_salt(symbol_line="_space_group_name_H-M_alt 'F m -3 m'"),
        raw_rock_salt(multiplicity="4.0"),
        raw_rock_salt(data_name="Na4Cl4(rocksalt)"),
        # Indented lines and CRLF, as other writers produce.
        normalise_cif_text(raw_rock_salt().decode()).replace("\n", "\r\n    ").encode(),
    ],
    ids=["spaced-symbol", "H-M_alt", "multiplicity-4.0", "bracket-data-name", "indented-crlf"],
)
def test_formatting_variants_get_the_same_verdict(variant):
    reference = check(raw_rock_salt())
    result = check(variant)
    for column in (
        "n_sites",
        "reduced_formula",
        "crystallm_valid",
        "dft_ready",
        "spacegroup_number",
        "multiplicity_consistent",
    ):
        assert getattr(result, column) == getattr(reference, column), (column, result.crystallm_reason)


def test_p1_written_with_and_without_space_is_the_same():
    spaced = check(p1_rock_salt("_symmetry_space_group_name_H-M 'P 1'"))
    compact = check(p1_rock_salt("_symmetry_space_group_name_H-M P1"))
    assert not spaced.rebuilt_from_asymmetric_unit and spaced.n_sites == 8
    assert spaced.declared_spacegroup_number == compact.declared_spacegroup_number == 1
    # Declared P1 but spglib finds Fm-3m: the space-group check fails (numbers, not strings).
    assert spaced.spacegroup_consistent is False and compact.spacegroup_consistent is False
    assert spaced.crystallm_valid == compact.crystallm_valid is False
    assert spaced.dft_ready and compact.dft_ready


def test_na_moved_next_to_cl_is_not_dft_ready_for_the_stated_reason():
    # Na from (0,0,0) to (0.4468,0,0): 0.3 Å from the Cl at (0.5,0,0) (a = 5.64 Å).
    result = check(p1_rock_salt("_symmetry_space_group_name_H-M 'P 1'", na_x=0.5 - 0.3 / 5.64))
    assert not result.dft_ready and not result.valid
    assert result.min_distance_A == pytest.approx(0.3, abs=1e-3)
    assert "0.300 Å apart" in result.reason


def test_wrong_multiplicity_fails_the_multiplicity_check_only():
    result = check(raw_rock_salt(multiplicity="2"))
    assert result.multiplicity_consistent is False
    assert "multiplicities add up to Na2 Cl2" in result.crystallm_reason
    assert result.formula_consistent is True  # the rebuilt cell is still Na4Cl4
    assert not result.crystallm_valid and result.dft_ready


def test_formula_sum_disagreeing_with_the_structure_blocks_dft():
    result = check(raw_rock_salt(formula_sum="'Na4 Cl8'", data_name="Na4Cl8"))
    assert result.formula_consistent is False and not result.dft_ready
    assert "_chemical_formula_sum says NaCl2 but the structure built is NaCl" in result.reason


def test_absent_optional_tags_are_not_applicable():
    text = raw_rock_salt().decode()
    for tag in ("_chemical_formula_sum 'Na4 Cl4'", "_chemical_formula_structural NaCl"):
        text = text.replace(tag + "\n", "")
    text = text.replace("data_Na4Cl4", "data_sample_17").replace("_atom_site_symmetry_multiplicity\n", "")
    text = text.replace("Na0 4 ", "Na0 ").replace("Cl1 4 ", "Cl1 ")
    result = check(text.encode())
    assert result.formula_consistent is None and result.multiplicity_consistent is None
    assert result.crystallm_valid and result.dft_ready


def test_declared_space_group_not_found_is_reported_not_gating_unless_configured():
    raw = p1_rock_salt("_symmetry_space_group_name_H-M 'P 1'")
    result = check(raw)
    assert result.spacegroup_consistent is False and "spglib finds Fm-3m (225)" in result.crystallm_reason
    assert result.dft_ready
    assert not check(raw, dft_require_spacegroup_match=True).dft_ready


def test_cesium_chloride_layout_declared_pm3m_is_consistent():
    # The same asymmetric unit declared Pm-3m builds CsCl-type NaCl (2 atoms), found as Pm-3m.
    raw = raw_rock_salt(symbol_line="_symmetry_space_group_name_H-M Pm-3m", multiplicity="1", formula_sum="'Na1 Cl1'")
    raw = raw.replace(b"_Int_Tables_number 225", b"_Int_Tables_number 221")
    result = check(raw)
    assert result.n_sites == 2 and result.spacegroup_number == 221 and result.spacegroup_consistent


def test_cell_outside_sensible_range():
    result = check(raw_rock_salt(gamma=175.0))
    assert result.cell_sensible is False and not result.dft_ready
    assert "cell angle gamma = 175° is outside 10-170°" in result.reason


def test_stretched_cell_lowers_the_bond_score():
    # a = 8 Å: Na-Cl 4.0 Å, ratio 4.0 / 2.83 = 1.41 > 1.32 for every bond.
    result = check(raw_rock_salt(a=8.0))
    assert result.bond_length_score == 0.0 and not result.crystallm_valid
    assert result.dft_ready  # the bond score does not gate DFT by default
    assert not check(raw_rock_salt(a=8.0), dft_min_bond_score=0.5).dft_ready


def test_single_atom_cell_has_no_bonds_and_score_zero():
    raw = (
        "data_Po\n_symmetry_space_group_name_H-M 'P 1'\n"
        + CELL.format(a=3.35, gamma=90.0)
        + "loop_\n_atom_site_type_symbol\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n"
        "_atom_site_fract_z\n_atom_site_occupancy\nPo Po1 0 0 0 1\n"
    ).encode()
    result = check_text(raw, "s", "s.cif")
    assert result.bond_length_score == 0.0 and result.n_bonds == 0
    assert "no bonds" in result.crystallm_reason


def test_partial_occupancy_is_not_dft_ready():
    raw = raw_rock_salt().replace(b"Na Na0 4 0.0000 0.0000 0.0000 1", b"Na Na0 4 0.0000 0.0000 0.0000 0.5")
    result = check(raw)
    assert result.ordered is False and not result.dft_ready
    assert "disordered" in result.reason and "DFT" in result.reason


def test_element_without_paw_dataset_is_named():
    result = check_text(raw_rock_salt(), "s", "s.cif", available_elements={"Na"})
    assert result.paw_available is False and "no PAW dataset installed for Cl" in result.reason


def test_read_cif_text_keeps_declared_values():
    read = read_cif_text(raw_rock_salt().decode())
    assert read.tags.space_group_symbol == "Fm-3m" and read.tags.space_group_number == 225
    assert read.tags.site_multiplicities == ["4", "4"]


def test_table_columns_named_like_result_columns_overwrite_nothing():
    from dftscreen.check import CheckResult

    result = CheckResult(
        "a", "t.csv row 0", False, status="invalid", input_columns={"status": "s", "input_status": "i", "score": 1}
    )
    row = result.to_dict()
    assert row["status"] == "invalid" and row["score"] == 1
    assert sorted(v for k, v in row.items() if k.endswith("input_status")) == ["i", "s"]


@pytest.mark.parametrize("symprec", [None, 0.1])
def test_atoms_are_counted_before_building_as_pymatgen_builds_them(symprec):
    """The atom cap counts sites x operators cheaply; it must agree with the cell pymatgen builds,
    for a P1 file with every atom and for an asymmetric unit with all 192 operators of F m -3 m."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    from dftscreen.cif_reader import expanded_site_count, file_operators, parse_cif_block, read_cif_text, read_tags

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    text = str(CifWriter(rocksalt, symprec=symprec))
    block = parse_cif_block(text)
    assert expanded_site_count(block, file_operators(read_tags(block))) == len(read_cif_text(text).structure) == 8
