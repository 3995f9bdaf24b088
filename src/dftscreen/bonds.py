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

Speed: pymatgen's CrystalNN spends ~10 ms per site in Python loops over
Voronoi facets. :func:`crystalnn_neighbours` runs the same algorithm (VoronoiNN
with solid-angle weights inside a 7 Å sphere, CrystalNN's porous,
electronegativity and covalent-radius distance weights, 3-decimal rounding and
semicircle CN selection, all at CrystalNN's defaults) with the facet geometry
vectorised, and hands any case outside that fast path (oxidation states,
pathological Voronoi cells, missing radii, overlapping atoms) to pymatgen's
CrystalNN. ``tests/unit/test_fast_paths.py`` checks that both give the same
neighbours and scores on the shared CrystaLLM outputs, perovskites and
perturbed copies of them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Element, Structure
from pymatgen.core.molecule_structure_comparator import CovalentRadius
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer, SymmetryUndeterminedError
from scipy.spatial import Voronoi
from spglib import SpglibError

#: Relative deviation from the expected length still counted as reasonable.
DEFAULT_TOLERANCE = 0.32
#: Bonds involving hydrogen are reasonable below this ratio.
DEFAULT_H_FACTOR = 2.5
#: Pauling electronegativity difference from which a bond counts as ionic.
IONIC_ELECTRONEGATIVITY_DIFFERENCE = 1.7
#: spglib tolerance (Å) for deciding that two sites are equivalent. Tight, so
#: equivalent sites have the same bond lengths to ~1e-3 Å.
EQUIVALENCE_SYMPREC_A = 1e-3

#: CrystalNN's defaults, which the fast path reproduces: initial Voronoi search
#: radius (Å), distance-penalty offsets beyond the covalent diameter (Å) and the
#: electronegativity-difference weight.
CRYSTALNN_SEARCH_CUTOFF_A = 7.0
CRYSTALNN_DISTANCE_CUTOFFS_A = (0.5, 1.0)
CRYSTALNN_X_DIFF_WEIGHT = 3.0


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
    except (SpglibError, SymmetryUndeterminedError):  # degenerate cells: treat every site on its own
        representatives = list(range(len(structure)))
    counts: dict[int, int] = {}
    for rep in representatives:
        counts[rep] = counts.get(rep, 0) + 1
    return counts


class _NotOnFastPath(Exception):
    """This site needs pymatgen's own CrystalNN (a case the fast path does not reproduce)."""


@dataclass(frozen=True)
class Neighbour:
    """One CrystalNN neighbour of a site: its index in the structure and Cartesian position (Å)."""

    site_index: int
    coords: np.ndarray


@lru_cache(maxsize=None)
def _covalent_radius_A(symbol: str) -> float | None:
    """CrystalNN's default radius of an element (covalent, else atomic; Å); ``None`` if neither exists."""
    radius = CovalentRadius.radius.get(symbol)
    if radius is None:
        radius = Element(symbol).atomic_radius
    return None if radius is None else float(radius)


@lru_cache(maxsize=None)
def _electronegativity(symbol: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(Element(symbol).X)


def _facet_solid_angles_and_volumes(
    center: np.ndarray, vertices: np.ndarray, facets: list[list[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Solid angle (sr) each Voronoi facet subtends at ``center`` and the volume (Å³) of its pyramid.

    Each facet (vertex indices in qhull's cyclic order) is split into the fan
    of triangles (v0, vi, vi+1), as pymatgen's ``solid_angle``/``vol_tetra`` do.
    """
    first, second, third, owner = [], [], [], []
    for f, facet in enumerate(facets):
        n = len(facet) - 2
        first += [facet[0]] * n
        second += facet[1:-1]
        third += facet[2:]
        owner += [f] * n
    a = vertices[first] - center
    b = vertices[second] - center
    c = vertices[third] - center
    na, nb, nc = (np.sqrt(np.einsum("ij,ij->i", v, v)) for v in (a, b, c))
    triple = np.einsum("ij,ij->i", a, np.cross(b, c))
    tp = np.abs(triple)
    de = (
        na * nb * nc
        + nc * np.einsum("ij,ij->i", a, b)
        + nb * np.einsum("ij,ij->i", a, c)
        + na * np.einsum("ij,ij->i", b, c)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi), np.arctan(tp / de))
    angle = np.where(angle > 0, angle, angle + math.pi) * 2
    # Tetrahedron (center, v0, vi, vi+1): |(center - vi+1) . ((v0 - vi+1) x (vi - vi+1))| / 6.
    volume = np.abs(np.einsum("ij,ij->i", -c, np.cross(a - c, b - c))) / 6
    n_facets = len(facets)
    owner_array = np.asarray(owner)
    return (
        np.bincount(owner_array, weights=angle, minlength=n_facets),
        np.bincount(owner_array, weights=volume, minlength=n_facets),
    )


@dataclass
class _Tessellation:
    """One Voronoi tessellation of every atom within the CrystalNN search radius of any site of the cell."""

    points: np.ndarray  # Cartesian (Å)
    point_site: np.ndarray  # site index of each point
    home_point: dict[int, int]  # site index -> its point in the home cell
    voronoi: Voronoi
    ridges_of_point: dict[int, list[int]]


def _tessellate(structure: Structure) -> _Tessellation:
    """Voronoi tessellation shared by all sites: one qhull run instead of one per site.

    Every site's cell is exact because all atoms within 7 Å of every home-cell
    site are included, the sphere pymatgen's VoronoiNN tessellates per site.

    Raises:
        _NotOnFastPath: overlapping atoms or a qhull failure.
    """
    centres, neighbours, images, distances = structure.get_neighbor_list(CRYSTALNN_SEARCH_CUTOFF_A)
    if len(distances) and distances.min() < 1e-4:
        raise _NotOnFastPath("overlapping atoms")
    n_sites = len(structure)
    keys = np.concatenate(
        [
            np.column_stack([np.arange(n_sites), np.zeros((n_sites, 3), dtype=int)]),
            np.column_stack([neighbours, np.rint(images).astype(int)]),
        ]
    )
    # Back to first-occurrence order, so the home-cell points are points 0..n_sites-1.
    unique_keys, first = np.unique(keys, axis=0, return_index=True)
    unique_keys = unique_keys[np.argsort(first, kind="stable")]
    fcoords = structure.frac_coords[unique_keys[:, 0]] + unique_keys[:, 1:]
    points = structure.lattice.get_cartesian_coords(fcoords)
    try:
        voronoi = Voronoi(points)
    except Exception as exc:
        raise _NotOnFastPath(str(exc)) from exc
    home_point = {int(site): k for k, site in enumerate(unique_keys[:n_sites, 0])}
    # Facets of home points, each point's in ridge order (the order pymatgen iterates them).
    ridge_points = voronoi.ridge_points
    on_home = ridge_points < n_sites
    ridge_index = np.concatenate([np.flatnonzero(on_home[:, 0]), np.flatnonzero(on_home[:, 1])])
    owner = np.concatenate([ridge_points[on_home[:, 0], 0], ridge_points[on_home[:, 1], 1]])
    order = np.lexsort((ridge_index, owner))
    ridge_index, owner = ridge_index[order], owner[order]
    bounds = np.searchsorted(owner, np.arange(n_sites + 1))
    ridges_of_point = {k: ridge_index[bounds[k] : bounds[k + 1]].tolist() for k in range(n_sites)}
    return _Tessellation(points, unique_keys[:, 0].astype(int), home_point, voronoi, ridges_of_point)


def _fast_crystalnn_neighbours(structure: Structure, i: int, cells: _Tessellation) -> list[Neighbour]:
    """CrystalNN (default settings) neighbours of site ``i`` from the shared tessellation.

    Raises:
        _NotOnFastPath: for any case pymatgen would handle differently
            (pathological cell, missing radius).
    """
    centre_point = cells.home_point[i]
    ridges = cells.ridges_of_point[centre_point]
    if not ridges:
        raise _NotOnFastPath("no Voronoi facet")
    voronoi = cells.voronoi
    others = voronoi.ridge_points[ridges].sum(axis=1) - centre_point  # the partner of the centre
    facets = [voronoi.ridge_vertices[r] for r in ridges]
    if any(-1 in facet for facet in facets):
        raise _NotOnFastPath("pathological Voronoi cell")
    points = cells.points
    center = points[centre_point]
    solid_angle, volume = _facet_solid_angles_and_volumes(center, voronoi.vertices, facets)
    face_dist = np.linalg.norm(center - points[others], axis=1) / 2
    area = 3 * volume / face_dist

    species = [site.specie.symbol for site in structure]
    symbols = [species[cells.point_site[o]] for o in others]
    centre_symbol = species[i]
    # VoronoiNN: weight = solid angle / largest solid angle, facets with zero angle dropped.
    max_angle = max(float(x) for x in solid_angle)
    entries = []
    x_centre = _electronegativity(centre_symbol)
    for k, other in enumerate(others):
        angle = float(solid_angle[k])
        if not angle > 0:
            continue
        weight = angle / max_angle
        weight *= angle / float(area[k])  # CrystalNN's porous adjustment
        x_other = _electronegativity(symbols[k])
        if not (math.isnan(x_centre) or math.isnan(x_other)):
            weight *= 1 + CRYSTALNN_X_DIFF_WEIGHT * math.sqrt(abs(x_centre - x_other) / 3.3)
        entries.append([weight, k, other])
    if not entries:
        raise _NotOnFastPath("no neighbour with a positive solid angle")
    entries.sort(key=lambda e: e[0], reverse=True)
    if entries[0][0] == 0:
        return []
    highest = entries[0][0]
    r_centre = _covalent_radius_A(centre_symbol)
    for entry in entries:
        entry[0] /= highest
        r_other = _covalent_radius_A(symbols[entry[1]])
        if r_centre is None or r_other is None:
            raise _NotOnFastPath("no covalent or atomic radius")
        diameter = r_centre + r_other
        dist = float(np.linalg.norm(center - points[entry[2]]))
        low = diameter + CRYSTALNN_DISTANCE_CUTOFFS_A[0]
        high = diameter + CRYSTALNN_DISTANCE_CUTOFFS_A[1]
        if dist <= low:
            dist_weight = 1.0
        elif dist < high:
            dist_weight = (math.cos((dist - low) / (high - low) * math.pi) + 1) * 0.5
        else:
            dist_weight = 0.0
        entry[0] *= dist_weight
    entries.sort(key=lambda e: e[0], reverse=True)
    if entries[0][0] == 0:
        return []
    for entry in entries:
        entry[0] = round(entry[0], 3)
    entries = [e for e in entries if e[0] > 0]
    # CrystalNN's choice of coordination number: the most probable one over the distinct weights.
    bins: list[float] = []
    for entry in entries:
        if not bins or bins[-1] != entry[0]:
            bins.append(entry[0])
    bins.append(0)
    cn_weights: dict[int, float] = {}
    cn_entries: dict[int, list] = {}
    for b, value in enumerate(bins):
        if value != 0:
            chosen = [e for e in entries if e[0] >= value]
            cn_entries[len(chosen)] = chosen
            cn_weights[len(chosen)] = CrystalNN._semicircle_integral(bins, b)
    cn0_weight = 1 - sum(cn_weights.values())
    if cn0_weight > 0:
        cn_entries[0] = []
        cn_weights[0] = cn0_weight
    best = max(cn_weights, key=lambda cn: cn_weights[cn])
    return [Neighbour(int(cells.point_site[e[2]]), points[e[2]]) for e in cn_entries[best]]


def _pymatgen_crystalnn_neighbours(structure: Structure, i: int) -> list[Neighbour]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = CrystalNN().get_nn_info(structure, i)
    return [Neighbour(int(info["site_index"]), np.asarray(info["site"].coords)) for info in found]


def crystalnn_neighbours(
    structure: Structure, sites: list[int], use_pymatgen: bool = False
) -> dict[int, list[Neighbour]]:
    """Neighbours of each of ``sites`` as pymatgen's ``CrystalNN()`` (default settings) finds them.

    Args:
        use_pymatgen: always call pymatgen's CrystalNN (slow reference) instead
            of the vectorised fast path.

    Raises:
        whatever pymatgen's CrystalNN raises on a degenerate geometry.
    """
    cells = None
    if not use_pymatgen and all(isinstance(site.specie, Element) for site in structure):
        try:
            cells = _tessellate(structure)
        except _NotOnFastPath:
            cells = None
    found: dict[int, list[Neighbour]] = {}
    for i in sites:
        if cells is not None:
            try:
                found[i] = _fast_crystalnn_neighbours(structure, i, cells)
                continue
            except _NotOnFastPath:
                pass
        found[i] = _pymatgen_crystalnn_neighbours(structure, i)
    return found


def bond_length_score(
    structure: Structure,
    tolerance: float = DEFAULT_TOLERANCE,
    h_factor: float = DEFAULT_H_FACTOR,
    use_symmetry: bool = True,
    use_pymatgen_crystalnn: bool = False,
) -> BondScore:
    """Fraction of CrystalNN bonds whose length is within ``1 ± tolerance`` of the expected length.

    Bonds from a site to its own periodic image are skipped, as in CrystaLLM.
    ``use_symmetry=False`` searches every site (slower, same result up to
    rounding of equivalent bond lengths); ``use_pymatgen_crystalnn=True`` uses
    pymatgen's CrystalNN instead of the vectorised fast path (reference for tests).
    """
    groups = equivalent_site_groups(structure) if use_symmetry else {i: 1 for i in range(len(structure))}
    n_bonds = n_reasonable = 0
    try:
        neighbours_of = crystalnn_neighbours(structure, list(groups), use_pymatgen_crystalnn)
    except Exception as exc:  # CrystalNN fails on some degenerate geometries
        return BondScore(None, 0, 0, f"CrystalNN failed: {str(exc).strip() or type(exc).__name__}")
    for i, weight in groups.items():
        site = structure[i]
        for neighbour in neighbours_of[i]:
            if neighbour.site_index == i:
                continue
            a, b = site.specie.symbol, structure[neighbour.site_index].specie.symbol
            expected = expected_bond_length_A(a, b)
            length = float(np.linalg.norm(site.coords - neighbour.coords))
            ok = expected is not None and is_reasonable(length / expected, "H" in (a, b), tolerance, h_factor)
            n_bonds += weight
            n_reasonable += weight * ok
    if n_bonds == 0:
        return BondScore(0.0, 0, 0, "CrystalNN found no bonds between different sites")
    return BondScore(n_reasonable / n_bonds, n_bonds, n_reasonable)
