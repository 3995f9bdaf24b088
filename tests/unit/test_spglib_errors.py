"""spglib raises its errors (no deprecated None returns and warnings) and dftscreen catches them."""

import warnings

import pytest
import spglib
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer, SymmetryUndeterminedError

from dftscreen.bonds import equivalent_site_groups
from dftscreen.changes import relaxation_change


def too_close(distance_A: float) -> Structure:
    """Two Na atoms ``distance_A`` apart in a 3 Å cube: spglib refuses such a cell."""
    return Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [distance_A / 3.0, 0, 0]])


def rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_spglib_raises_instead_of_returning_none_and_warns_about_nothing():
    structure = rocksalt()
    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert spglib.get_symmetry_dataset(cell, symprec=0.1).number == 225
        assert SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number() == 225
        bad = too_close(0.003)
        with pytest.raises(spglib.SpglibError, match="too close distance between atoms"):
            spglib.get_symmetry_dataset((bad.lattice.matrix, bad.frac_coords, bad.atomic_numbers), symprec=0.1)
        # pymatgen passes spglib's reason on (the old handling gave only "Unable to determine symmetry").
        with pytest.raises(SymmetryUndeterminedError, match="too close distance between atoms"):
            SpacegroupAnalyzer(bad, symprec=0.1)


def test_equivalent_sites_of_a_cell_spglib_refuses_are_every_site_alone():
    assert equivalent_site_groups(too_close(3e-4)) == {0: 1, 1: 1}
    assert equivalent_site_groups(rocksalt()) == {0: 4, 4: 4}


def test_relaxation_change_names_spglibs_reason():
    with pytest.raises(SymmetryUndeterminedError, match="too close distance between atoms"):
        relaxation_change(too_close(0.003), too_close(0.003))
