"""Generated vs relaxed structure: StructureMatcher verdict, RMS displacement, space group."""

import pytest
from pymatgen.core import Lattice, Structure

from dftscreen.changes import relaxation_change, rms_displacement_A


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_uniform_expansion_is_the_same_structure_without_displacement():
    generated = rocksalt(5.64)
    relaxed = rocksalt(5.70)
    change = relaxation_change(generated, relaxed)
    assert change["relaxed_matches_generated"] is True
    assert change["rms_displacement_A"] == pytest.approx(0.0, abs=1e-12)
    assert change["spacegroup_number_generated"] == change["spacegroup_number_relaxed"] == 225
    assert change["spacegroup_changed"] is False


def test_moving_one_atom_gives_its_rms_displacement_and_breaks_symmetry():
    generated = rocksalt()
    relaxed = generated.copy()
    relaxed.translate_sites([0], [0.3, 0, 0], frac_coords=False)  # 0.3 Å along x
    # Rigid shift removed: 8 atoms, one moved by d -> each of the other 7 by d/8 relative to the mean.
    d = 0.3
    expected = ((d * 7 / 8) ** 2 + 7 * (d / 8) ** 2) / 8
    assert rms_displacement_A(generated, relaxed) == pytest.approx(expected**0.5)
    change = relaxation_change(generated, relaxed)
    assert change["spacegroup_changed"] is True


def test_relaxing_into_another_structure_is_reported():
    generated = rocksalt()
    cesium_chloride_type = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError):
        rms_displacement_A(generated, cesium_chloride_type)  # different site counts
    same_count = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                           [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                            [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75]])
    change = relaxation_change(generated, same_count)  # zinc-blende arrangement
    assert change["relaxed_matches_generated"] is False
    assert change["structure_matcher_rms_norm"] is None
