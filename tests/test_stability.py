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


def test_missing_element_gives_a_reason_not_a_crash():
    result = hull_analysis([EnergyRecord("s", Composition("NaS"), -5.0)], [NA])
    assert result["s"] == {"reason": "no elemental reference energy for S"}


def test_reference_structures():
    fe = elemental_reference("Fe")
    assert fe.kind == "crystal" and len(fe.atoms) == 1 and fe.atoms.get_initial_magnetic_moments()[0] > 0
    o2 = elemental_reference("O")
    assert o2.kind == "molecule" and o2.atoms.get_distance(0, 1) == pytest.approx(1.208)
    assert o2.atoms.get_initial_magnetic_moments().sum() == pytest.approx(2.0)  # triplet
    with pytest.raises(NoElementalReference, match="Mn"):
        elemental_reference("Mn")
    with pytest.raises(NoElementalReference, match="not a chemical element"):
        elemental_reference("Xx")


def test_molecule_settings_keep_the_box_and_use_gamma_only():
    settings = resolve_settings("test")
    molecule = reference_settings(settings, "molecule")
    assert molecule["relax"]["relax_cell"] is False
    assert molecule["gpaw"]["kpts"] == {"size": [1, 1, 1], "gamma": True}
    assert reference_settings(settings, "crystal") == settings
