"""The check log's explanation of crystallm_valid failures (issue 29.5)."""

from __future__ import annotations

from dftscreen.check import check_text, crystallm_failure_summary


def nacl_cif(space_group: str = "P 1", number: int = 1, a: float = 5.64) -> bytes:
    """Rock-salt NaCl in its conventional cell (8 atoms), written out in full with the given declared group."""
    sites = [("Na", 0, 0, 0), ("Na", 0.5, 0.5, 0), ("Na", 0.5, 0, 0.5), ("Na", 0, 0.5, 0.5),
             ("Cl", 0.5, 0, 0), ("Cl", 0, 0.5, 0), ("Cl", 0, 0, 0.5), ("Cl", 0.5, 0.5, 0.5)]
    rows = "".join(f"{el} {el}{i} 1 {x} {y} {z} 1\n" for i, (el, x, y, z) in enumerate(sites))
    return (
        f"data_NaCl\n_symmetry_space_group_name_H-M '{space_group}'\n_symmetry_Int_Tables_number {number}\n"
        f"_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_chemical_formula_sum 'Na4 Cl4'\n"
        "loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n"
        "loop_\n_atom_site_type_symbol\n_atom_site_label\n_atom_site_symmetry_multiplicity\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n" + rows
    ).encode()


def test_p1_files_get_the_space_group_hint():
    results = [check_text(nacl_cif(), f"s{i}", f"s{i}.cif") for i in range(3)]
    assert all(r.spacegroup_consistent is False and not r.crystallm_valid for r in results)
    assert all(r.dft_ready for r in results)  # nothing wrong for DFT
    lines = crystallm_failure_summary(results)
    assert lines[0] == "not crystallm_valid: 3 files; sub-checks failed: spacegroup_consistent 3"
    assert "declare P1" in lines[1] and "harmless for DFT" in lines[1]


def test_other_failures_are_named_without_the_p1_hint():
    wrong_formula = nacl_cif().replace(b"'Na4 Cl4'", b"'Na4 Cl2'")
    results = [check_text(wrong_formula, "f", "f.cif"), check_text(b"not a cif", "x", "x.cif"),
               check_text(nacl_cif(), "p", "p.cif")]
    lines = crystallm_failure_summary(results)
    assert len(lines) == 1 and "formula_consistent 1" in lines[0] and "spacegroup_consistent" in lines[0]
    assert lines[0].startswith("not crystallm_valid: 3 files")
    assert crystallm_failure_summary([]) == []
