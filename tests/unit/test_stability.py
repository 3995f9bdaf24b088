"""Formation energies and hulls from hand-made energies (bookkeeping; the DFT path is in test_workflow)."""

import pytest
from pymatgen.core import Composition

from dftscreen.references import NoElementalReference, elemental_reference, reference_settings
from dftscreen.settings import resolve_settings
from dftscreen.stability import EnergyRecord, chemical_potentials, formation_energy_per_atom, hull_analysis

NA = EnergyRecord("Na", Composition("Na"), -1.3)
CL2 = EnergyRecord("Cl", Composition("Cl2"), -3.4)


def test_formation_energy_is_relative_to_elements_per_atom():
    mu = chemical_potentials([NA, CL2])
    assert mu == {"Na": -1.3, "Cl": -1.7}
    nacl = EnergyRecord("x", Composition("Na4Cl4"), -28.0)
    assert formation_energy_per_atom(nacl, mu) == pytest.approx((-28.0 - 4 * -1.3 - 4 * -1.7) / 8)
    with pytest.raises(KeyError, match="no elemental reference energy for O"):
        formation_energy_per_atom(EnergyRecord("y", Composition("Na2O"), -10.0), mu)


def test_hull_puts_lowest_polymorph_on_hull_and_names_decomposition():
    generated = [
        EnergyRecord("ground", Composition("NaCl"), -7.0),
        EnergyRecord("polymorph", Composition("Na2Cl2"), -13.8),
        EnergyRecord("chlorine_rich", Composition("NaCl3"), -9.0),
    ]
    result = hull_analysis(generated, [NA, CL2])
    assert result["ground"]["e_above_hull_eV_per_atom"] == pytest.approx(0.0)
    assert result["polymorph"]["e_above_hull_eV_per_atom"] == pytest.approx(0.05)
    # NaCl3 -> NaCl + Cl2: (-7.0 - 3.4 - (-9.0)) / 4 atoms above the tie line.
    assert result["chlorine_rich"]["e_above_hull_eV_per_atom"] == pytest.approx(0.35)
    assert result["chlorine_rich"]["decomposition"] == "NaCl (0.50) + Cl2 (0.50)"


def test_reference_phase_lowers_the_hull():
    generated = [EnergyRecord("gen", Composition("NaCl"), -7.0)]
    phase = EnergyRecord("rocksalt", Composition("NaCl"), -7.2)
    assert hull_analysis(generated, [NA, CL2])["gen"]["e_above_hull_eV_per_atom"] == pytest.approx(0.0)
    assert hull_analysis(generated, [NA, CL2], [phase])["gen"]["e_above_hull_eV_per_atom"] == pytest.approx(0.1)


def test_with_reference_phases_a_structure_is_judged_against_the_known_hull_alone():
    """Below the known hull is negative, and one generated structure does not lift another."""
    phase = EnergyRecord("rocksalt", Composition("NaCl"), -7.2)
    generated = [
        EnergyRecord("better", Composition("NaCl"), -7.4),  # 0.1 eV/atom below the known NaCl
        EnergyRecord("sibling", Composition("NaCl"), -7.3),
    ]
    result = hull_analysis(generated, [NA, CL2], [phase])
    assert result["better"]["e_above_hull_eV_per_atom"] == pytest.approx(-0.1)
    # Judged against the known hull, not against "better": -0.05, not +0.05.
    assert result["sibling"]["e_above_hull_eV_per_atom"] == pytest.approx(-0.05)
    alone = hull_analysis(generated[1:], [NA, CL2], [phase])
    assert alone["sibling"] == result["sibling"]
    # Without compound phases the generated structures are the only competitors.
    without = hull_analysis(generated, [NA, CL2])
    assert without["better"]["e_above_hull_eV_per_atom"] == pytest.approx(0.0)
    assert without["sibling"]["e_above_hull_eV_per_atom"] == pytest.approx(0.05)


def test_an_elemental_phase_stands_for_an_element_without_reference():
    """S without a reference energy (its job failed): a known set's α-S phase gives it a chemical
    potential on the hull."""
    sulfur = EnergyRecord("S-abc", Composition("S32"), -32 * 4.1)
    pyrite = EnergyRecord("g", Composition("Na2S2"), 2 * -1.3 + 2 * -4.1 - 4 * 0.3)
    result = hull_analysis([pyrite], [NA], [sulfur])
    assert result["g"]["e_above_hull_eV_per_atom"] == pytest.approx(0.0)
    assert result["g"]["decomposition"] == "NaS (1.00)"
    assert chemical_potentials([NA, sulfur])["S"] == pytest.approx(-4.1)


def test_missing_element_gives_a_reason_not_a_crash():
    result = hull_analysis([EnergyRecord("s", Composition("NaS"), -5.0)], [NA])
    assert result["s"] == {"reason": "no elemental reference energy for S"}


def test_reference_structures():
    fe = elemental_reference("Fe")
    assert fe.kind == "crystal" and len(fe.atoms) == 1 and fe.atoms.get_initial_magnetic_moments()[0] > 0
    o2 = elemental_reference("O")
    assert o2.kind == "molecule" and o2.atoms.get_distance(0, 1) == pytest.approx(1.208)
    assert o2.atoms.get_initial_magnetic_moments().sum() == pytest.approx(2.0)  # triplet
    with pytest.raises(NoElementalReference, match="not a chemical element"):
        elemental_reference("Xx")


def test_chromium_reference_is_antiferromagnetic():
    import spglib

    cr = elemental_reference("Cr")
    moments = cr.atoms.get_initial_magnetic_moments()
    # Two sublattices of one bcc lattice: a 1-atom cell could not hold opposite moments.
    assert cr.kind == "crystal" and len(cr.atoms) == 2 and "antiferromagnetic" in cr.description
    assert moments[0] > 0 and moments[1] == -moments[0]
    cell = (cr.atoms.cell[:], cr.atoms.get_scaled_positions(), cr.atoms.numbers)
    assert spglib.get_symmetry_dataset(cell, symprec=1e-3).number == 229  # Im-3m: the atoms, without spins
    # Type-IV magnetic group: the body-centring translation flips the spin (ferromagnetic bcc is type I).
    assert spglib.get_magnetic_symmetry_dataset((*cell, moments), symprec=1e-3).msg_type == 4


@pytest.mark.parametrize(
    ("element", "n_atoms", "space_group"),
    # Ground states (Δ-test set, ASE dcdft): α-B, black P, α-Ga, trigonal Se and Te, in their
    # primitive cells (black P and α-Ga: 8-atom conventional cells in the Δ-test's CIFs).
    [("B", 12, 166), ("P", 4, 64), ("Ga", 4, 64), ("Se", 3, 152), ("Te", 3, 152)],
)
def test_delta_test_crystals_are_the_ground_states(element, n_atoms, space_group):
    import spglib

    reference = elemental_reference(element)
    atoms = reference.atoms
    assert reference.kind == "crystal" and "Δ-test" in reference.description
    assert set(atoms.get_chemical_symbols()) == {element} and len(atoms) == n_atoms
    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    assert spglib.get_symmetry_dataset(cell, symprec=1e-3).number == space_group


def test_primitive_cell_keeps_the_crystal_and_its_magnetic_order():
    import numpy as np
    from ase.build import bulk
    from ase.collections import dcdft

    from dftscreen.references import primitive_cell

    # α-Sn: the Δ-test's 8-atom conventional diamond cell becomes 2 atoms, same volume per atom.
    conventional = dcdft["Sn"]
    reduced = primitive_cell(conventional)
    assert len(conventional) == 8 and len(reduced) == 2
    assert reduced.get_volume() / 2 == pytest.approx(conventional.get_volume() / 8)
    # A7 Bi: its atoms sit ~0.1 Å off the simple-cubic positions, which a loose tolerance
    # (pymatgen's 0.25 Å) would call one atom; it stays the 2-atom rhombohedral cell.
    bismuth = bulk("Bi")
    assert len(bismuth) == 2 and primitive_cell(bismuth) is bismuth
    # Opposite moments on the two bcc sites keep the 2-atom cell; equal ones do not.
    antiferro = bulk("Cr", "bcc", cubic=True)
    antiferro.set_initial_magnetic_moments([2.0, -2.0])
    assert primitive_cell(antiferro) is antiferro
    ferro = bulk("Fe", "bcc", cubic=True)
    ferro.set_initial_magnetic_moments([2.2, 2.2])
    reduced_fe = primitive_cell(ferro)
    assert len(reduced_fe) == 1 and np.allclose(reduced_fe.get_initial_magnetic_moments(), [2.2])


def test_no_automatic_reference_says_why_and_how_to_supply_one():
    # Astatine: no PAW dataset, and no crystal ASE can build.
    with pytest.raises(NoElementalReference, match=r"At .*elemental_reference_cifs"):
        elemental_reference("At")


def test_reference_from_a_supplied_cif(tmp_path):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    cif = tmp_path / "alpha_po.cif"
    CifWriter(AseAtomsAdaptor.get_structure(bulk("Po", "sc", a=3.35))).write_file(cif)
    reference = elemental_reference("Po", cif=cif)
    assert reference.kind == "crystal" and "alpha_po.cif" in reference.description
    assert reference.atoms.get_chemical_symbols() == ["Po"]
    with pytest.raises(NoElementalReference, match=r"contains Po, not only S"):
        elemental_reference("S", cif=cif)
    compound = tmp_path / "nacl.cif"
    CifWriter(AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64))).write_file(compound)
    with pytest.raises(NoElementalReference, match=r"contains Cl, Na, not only Na"):
        elemental_reference("Na", cif=compound)
    with pytest.raises(NoElementalReference, match="cannot be read"):
        elemental_reference("Na", cif=tmp_path / "missing.cif")


def test_reference_jobs_scale_with_the_reference_cell(tmp_path):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    from dftscreen.references import reference_n_atoms

    assert [reference_n_atoms(el) for el in ("Na", "O", "Cr", "B")] == [1, 2, 2, 12]
    assert reference_n_atoms("At") == 1  # no reference: the job only writes why
    assert reference_n_atoms("S") == 32  # α-S's primitive cell (references.PUBLISHED_CRYSTALS)
    cif = tmp_path / "fcc_na.cif"
    CifWriter(AseAtomsAdaptor.get_structure(bulk("Na", "fcc", a=5.3, cubic=True))).write_file(cif)
    assert reference_n_atoms("Na", cif=cif) == 4


def test_molecule_settings_keep_the_box_and_use_gamma_only():
    settings = resolve_settings("test")
    molecule = reference_settings(settings, "molecule")
    assert molecule["relax"]["relax_cell"] is False
    assert molecule["gpaw"]["kpts"] == {"size": [1, 1, 1], "gamma": True}
    assert reference_settings(settings, "crystal") == settings


def test_a_configured_reference_cif_must_exist(tmp_path):
    from dftscreen.inputs import check_reference_cifs

    (tmp_path / "Na_bcc.cif").write_text("data_Na\n")
    check_reference_cifs({"Na": "Na_bcc.cif"}, tmp_path)
    with pytest.raises(ValueError, match=r"the CIF given for S, alpha_S.cif, does not exist"):
        check_reference_cifs({"Na": "Na_bcc.cif", "S": "alpha_S.cif"}, tmp_path)
