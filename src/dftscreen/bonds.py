"""Bond-length reasonableness score, with the semantics of CrystaLLM's evaluation.

For every neighbour pair CrystalNN finds, the bond length is divided by the
length expected from tabulated radii: ionic radii (cation + anion) when the
Pauling electronegativity difference is at least 1.7, else atomic radii. A
bond is reasonable when the ratio lies strictly within ``1 ± tolerance``
(bonds involving H: ratio below ``h_factor``). The score is the fraction of
reasonable bonds (Antunes et al., arXiv 2307.04340; CrystaLLM's metrics module).

Two differences from CrystaLLM's code, both about robustness, not semantics:
a structure where CrystalNN finds no bond gets score 0 and says so instead of
dividing by zero, and symmetry-equivalent sites are searched once (their
bonds are the same up to a symmetry operation) and weighted by their number,
which gives the same fraction several times faster.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

#: Relative deviation from the expected length still counted as reasonable.
DEFAULT_TOLERANCE = 0.32
#: Bonds involving hydrogen are reasonable below this ratio.
DEFAULT_H_FACTOR = 2.5
#: Pauling electronegativity difference from which a bond counts as ionic.
IONIC_ELECTRONEGATIVITY_DIFFERENCE = 1.7
#: spglib tolerance (Å) for deciding that two sites are equivalent. Tight, so
#: equivalent sites have the same bond lengths to ~1e-3 Å.
EQUIVALENCE_SYMPREC_A = 1e-3


@dataclass
class BondScore:
    """Outcome of :func:`bond_length_score`. ``score`` is ``None`` only if it could not be computed."""

    score: float | None
    n_bonds: int
    n_reasonable: int
    note: str = ""


@lru_cache(maxsize=None)
def expected_bond_length_A(element_a: str, element_b: str) -> float | None:
    """Expected bond length between two elements (Å), as CrystaLLM defines it; ``None`` if unknown."""
    a, b = Element(element_a), Element(element_b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about missing radii/electronegativities
        xa, xb = a.X, b.X
        if abs(xa - xb) >= IONIC_ELECTRONEGATIVITY_DIFFERENCE:
            cation, anion = (a, b) if xa < xb else (b, a)
            expected = cation.average_cationic_radius + anion.average_anionic_radius
        else:
            expected = (a.atomic_radius or 0.0) + (b.atomic_radius or 0.0)
    expected = float(expected)
    return expected if expected > 0 and np.isfinite(expected) else None


def is_reasonable(ratio: float, involves_hydrogen: bool, tolerance: float, h_factor: float) -> bool:
    """Whether a bond-length ratio (length / expected) counts as reasonable."""
    if involves_hydrogen:
        return ratio < h_factor
    return 1 - tolerance < ratio < 1 + tolerance


def equivalent_site_groups(structure: Structure) -> dict[int, int]:
    """One representative site index per set of symmetry-equivalent sites, with the set's size."""
    try:
        dataset = SpacegroupAnalyzer(structure, symprec=EQUIVALENCE_SYMPREC_A).get_symmetry_dataset()
        representatives = [int(i) for i in dataset.equivalent_atoms]
    except Exception:  # spglib can fail on degenerate cells: treat every site on its own
        representatives = list(range(len(structure)))
    counts: dict[int, int] = {}
    for rep in representatives:
        counts[rep] = counts.get(rep, 0) + 1
    return counts


def bond_length_score(
    structure: Structure,
    tolerance: float = DEFAULT_TOLERANCE,
    h_factor: float = DEFAULT_H_FACTOR,
    use_symmetry: bool = True,
) -> BondScore:
    """Fraction of CrystalNN bonds whose length is within ``1 ± tolerance`` of the expected length.

    Bonds from a site to its own periodic image are skipped, as in CrystaLLM.
    ``use_symmetry=False`` searches every site (slower, same result up to
    rounding of equivalent bond lengths).
    """
    groups = equivalent_site_groups(structure) if use_symmetry else {i: 1 for i in range(len(structure))}
    crystal_nn = CrystalNN()
    n_bonds = n_reasonable = 0
    for i, weight in groups.items():
        site = structure[i]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                neighbours = crystal_nn.get_nn_info(structure, i)
        except Exception as exc:  # CrystalNN fails on some degenerate geometries
            return BondScore(None, 0, 0, f"CrystalNN failed: {str(exc).strip() or type(exc).__name__}")
        for info in neighbours:
            if info["site_index"] == i:
                continue
            other = info["site"]
            a, b = site.specie.symbol, other.specie.symbol
            expected = expected_bond_length_A(a, b)
            length = float(np.linalg.norm(site.coords - other.coords))
            ok = expected is not None and is_reasonable(length / expected, "H" in (a, b), tolerance, h_factor)
            n_bonds += weight
            n_reasonable += weight * ok
    if n_bonds == 0:
        return BondScore(0.0, 0, 0, "CrystalNN found no bonds between different sites")
    return BondScore(n_reasonable / n_bonds, n_bonds, n_reasonable)
