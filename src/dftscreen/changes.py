"""How much a structure changed on relaxation: the key finding for generative-model papers.

A generated structure that relaxes into a different one was not a prediction
of a stable crystal; one that stays (same StructureMatcher verdict, same space
group, small displacement and volume change) was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

#: StructureMatcher defaults (pymatgen's): fractional length tolerance,
#: site tolerance (fraction of (V/N)^(1/3)), angle tolerance (degrees).
DEFAULT_MATCHER = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}


def rms_displacement_A(generated: Structure, relaxed: Structure) -> float:
    """RMS displacement of the atoms (Å), measured in the relaxed cell.

    The relaxation keeps the atom order, so site i of one is site i of the
    other; fractional differences are wrapped to the nearest image. The change
    of the cell itself is reported separately (volume change).
    """
    if len(generated) != len(relaxed):
        raise ValueError("structures have different numbers of sites")
    delta = relaxed.frac_coords - generated.frac_coords
    delta -= np.round(delta)
    # The rigid shift of all atoms together is not a displacement.
    delta -= delta.mean(axis=0)
    cartesian = relaxed.lattice.get_cartesian_coords(delta)
    return float(np.sqrt((cartesian**2).sum(axis=1).mean()))


def relaxation_change(
    generated: Structure,
    relaxed: Structure,
    symprec: float = 0.1,
    matcher: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare the generated and the relaxed structure.

    Returns ``relaxed_matches_generated`` (StructureMatcher verdict),
    ``structure_matcher_rms_norm`` (its RMS distance in units of (V/N)^(1/3), or
    ``None`` without a match), ``rms_displacement_A``, and the space group (spglib at ``symprec`` Å) before and after,
    number and symbol: ``spacegroup_changed`` compares these two numbers, so the symbols that name a
    change are these, not the check's (found at ``check.symprec_A``, from the file as read by the check).

    Raises:
        SymmetryUndeterminedError: spglib finds no space group for one of them
            (pymatgen's error, with spglib's reason; the caller records it).
    """
    sm = StructureMatcher(**(matcher or DEFAULT_MATCHER))
    match = bool(sm.fit(generated, relaxed))
    rms = sm.get_rms_dist(generated, relaxed) if match else None
    before = SpacegroupAnalyzer(generated, symprec=symprec)
    after = SpacegroupAnalyzer(relaxed, symprec=symprec)
    number_before = int(before.get_space_group_number())
    number_after = int(after.get_space_group_number())
    return {
        "relaxed_matches_generated": match,
        "structure_matcher_rms_norm": None if rms is None else float(rms[0]),
        "rms_displacement_A": rms_displacement_A(generated, relaxed),
        "spacegroup_number_generated": number_before,
        "spacegroup_symbol_generated": before.get_space_group_symbol(),
        "spacegroup_number_relaxed": number_after,
        "spacegroup_symbol_relaxed": after.get_space_group_symbol(),
        "spacegroup_changed": number_before != number_after,
    }
