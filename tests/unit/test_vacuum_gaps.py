"""The vacuum note: a slab of empty space, not the gap between the layers of a layered crystal (issue 29).

Radii are pymatgen's van der Waals radii: Cs 3.43 Å, O 1.52 Å, C 1.70 Å.
"""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from dftscreen.check import VACUUM_MIN_FREE_WIDTH_A, vacuum_gaps, vacuum_note


def test_free_width_subtracts_every_sphere_reaching_into_the_gap() -> None:
    # O at height 0 and Cs 1 Å above it in a 15 Å tall cell: the gap runs from Cs (1 Å) up to
    # the next O (15 Å), 14 Å wide. Cs's sphere reaches 3.43 Å into it from below; from above,
    # the next Cs (1 Å over the ceiling) reaches 3.43 - 1 = 2.43 Å in, more than O's 1.52 Å.
    structure = Structure(Lattice.tetragonal(4.0, 15.0), ["O", "Cs"], [[0, 0, 0], [0.5, 0.5, 1 / 15]])
    gap = vacuum_gaps(structure)[2]
    assert gap.axis == "c"
    assert gap.width_A == pytest.approx(14.0)
    assert gap.free_width_A == pytest.approx(14.0 - 3.43 - 2.43)


def test_layers_whose_spheres_touch_are_no_slab() -> None:
    # Cs layers 7.5 Å apart: wider than check.vacuum_gap_A = 7 Å between centres (the note's
    # old criterion called it a slab), but only 7.5 - 2 x 3.43 = 0.64 Å beyond the van der Waals contact.
    layers = Structure(Lattice.hexagonal(5.3, 7.5), ["Cs"], [[0, 0, 0]])
    gap = vacuum_gaps(layers)[2]
    assert gap.width_A == pytest.approx(7.5)
    assert gap.free_width_A == pytest.approx(7.5 - 2 * 3.43)
    assert vacuum_note(layers, 7.0) == ""


def test_graphene_sheets_far_apart_are_a_slab_and_close_ones_are_not() -> None:
    def graphite(c_A: float) -> Structure:  # AA-stacked sheets, one per cell
        return Structure(Lattice.hexagonal(2.46, c_A), ["C", "C"], [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0]])

    # 15 Å apart: 15 - 3.4 = 11.6 Å of free width; the in-plane axes have none.
    note = vacuum_note(graphite(15.0), 7.0)
    assert note.startswith("vacuum: 15.0 Å along c (wider than check.vacuum_gap_A = 7 Å, and 11.6 Å wider")
    assert "looks like a slab (2D layer)" in note
    # 7.2 Å apart: over 7 Å between centres, but 3.8 Å of free width, over the 3 Å a van der
    # Waals gap can have: still vacuum. 6.3 Å apart: 2.9 Å of free width, a (PBE-opened) layer gap.
    assert "slab" in vacuum_note(graphite(7.2), 7.0)
    assert vacuum_note(graphite(6.3), 6.0) == ""
    assert 6.3 - 3.4 < VACUUM_MIN_FREE_WIDTH_A < 7.2 - 3.4


def test_bulk_crystal_has_no_vacuum() -> None:
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert all(gap.free_width_A < 0 for gap in vacuum_gaps(rocksalt))
    assert vacuum_note(rocksalt, 0.1) == ""
