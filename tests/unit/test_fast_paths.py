"""The fast check and dedupe paths give exactly what the reference algorithms give.

Reference: pymatgen's CrystalNN per site, pairwise StructureMatcher.fit on
unreduced structures, every file checked even when byte-identical.

Each test runs on two sets: the small one bundled with the tests (always: real
CrystaLLM outputs and perov_5 perovskites in tests/data/fast_paths, see its
README, plus the structures pymatgen ships), and the larger shared set beside
the checkout (``../shared``, skipped when absent).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pymatgen
import pytest
from pymatgen.core import Structure

from dftscreen.bonds import bond_length_score, crystalnn_neighbours
from dftscreen.check import CheckSettings
from dftscreen.check_batch import check_and_deduplicate
from dftscreen.cif_reader import read_structure
from dftscreen.dedupe import Candidate, MatchSettings, group_one_formula, group_one_formula_plain
from dftscreen.inputs import discover_cifs

from conftest import GENERATED, PEROV5, SHARED, TEST_DATA

BUNDLED = TEST_DATA / "fast_paths"
#: Ordered structures pymatgen ships in its package (pymatgen/util/structures), of 2-56 atoms.
PYMATGEN_STRUCTURES = ("LiFePO4", "NaFePO4", "TiO2", "VO2", "Li2O", "SrTiO3", "BaNiO3", "K2O2", "CsCl", "Si", "SiO2")


def pymatgen_structure(name: str) -> Structure:
    # pymatgen is a namespace package (no __file__): its one folder is on __path__.
    return Structure.from_file(Path(next(iter(pymatgen.__path__))) / "util" / "structures" / f"{name}.json")


def _base_structures(source: str) -> list[tuple[str, Structure]]:
    if source == "shared":
        if not SHARED.is_dir():
            pytest.skip("../shared (reference data beside the checkout) is not present")
        # 29 of its 79 CrystaLLM files are byte-identical twins: a per-structure comparison
        # learns nothing from a second copy (the twins are the check test's business below).
        paths = sorted([*GENERATED.rglob("*.cif"), *PEROV5.glob("*.cif")])
        distinct = {hashlib.sha256(p.read_bytes()).digest(): p for p in reversed(paths)}
        return [(p.name, read_structure(p)[0]) for p in sorted(distinct.values())]
    from_files = [(p.name, read_structure(p)[0]) for p in sorted(BUNDLED.glob("*.cif"))]
    return from_files + [(name, pymatgen_structure(name)) for name in PYMATGEN_STRUCTURES]


def _structures(source: str, perturbations: tuple[float, ...]) -> list[tuple[str, Structure]]:
    """Every structure of the set, plus copies with every atom moved by each distance (Å), fixed seed."""
    np.random.seed(1)
    out = []
    for name, structure in _base_structures(source):
        out.append((name, structure))
        for distance in perturbations:
            moved = structure.copy()
            moved.perturb(distance)
            out.append((f"{name} moved {distance} Å", moved))
    return out


#: Smallest counts that show a comparison really ran over the whole set.
MIN_SITES_COMPARED = {"bundled": 500, "shared": 2000}
MIN_DUPLICATES_GROUPED = {"bundled": 30, "shared": 100}


@pytest.fixture(params=["bundled", "shared"])
def source(request) -> str:
    return request.param


def _same_neighbours(found: list, expected: list, atol_A: float = 1e-5) -> bool:
    """Same neighbour sites at the same positions (Å), up to floating-point noise.

    Rounding both to 6 decimals was not enough: two sums of the same vectors in a
    different order can straddle a rounding boundary (2.8757925 Å), and did.
    """
    if len(found) != len(expected):
        return False
    order = lambda ns: sorted(ns, key=lambda n: (n.site_index, *np.round(n.coords, 3)))  # noqa: E731
    return all(
        a.site_index == b.site_index and np.allclose(a.coords, b.coords, atol=atol_A, rtol=0)
        for a, b in zip(order(found), order(expected))
    )


def test_fast_crystalnn_finds_the_same_neighbours_as_pymatgen(source):
    structures = _structures(source, (0.03, 0.1))
    n_sites = 0
    for name, structure in structures:
        if not structure.is_ordered:
            continue
        sites = list(range(len(structure)))
        fast = crystalnn_neighbours(structure, sites)
        reference = crystalnn_neighbours(structure, sites, use_pymatgen=True)
        for i in sites:
            assert _same_neighbours(fast[i], reference[i]), (name, i)
            n_sites += 1
    assert n_sites > MIN_SITES_COMPARED[source]  # the comparison really ran over the whole set


def test_fast_bond_score_equals_pymatgen_bond_score(source):
    for name, structure in _structures(source, (0.05,)):
        if structure.is_ordered:
            assert bond_length_score(structure) == bond_length_score(structure, use_pymatgen_crystalnn=True), name


def test_dedupe_groups_unchanged_by_reduction_once_and_site_count_filter(source):
    match = MatchSettings()
    structures = _structures(source, (0.05, 0.15))
    by_formula: dict[str, list[Candidate]] = {}
    for k, (_name, structure) in enumerate(structures):
        formula, factor = structure.composition.get_reduced_composition_and_factor()
        by_formula.setdefault(formula.reduced_formula, []).append(
            Candidate(f"s{k:04d}", formula.reduced_formula, structure.volume / factor, structure)
        )
    n_duplicates = 0
    for candidates in by_formula.values():
        fast = group_one_formula(candidates, match)
        assert fast == group_one_formula_plain(candidates, match)
        n_duplicates += len(fast)
    assert n_duplicates > MIN_DUPLICATES_GROUPED[source]  # perturbed copies really were grouped


def test_check_and_dedupe_columns_identical_to_reference_path_bundled(tmp_path):
    # The bundled CIFs, one byte-identical twin and pymatgen's structures written as CIFs.
    shutil.copytree(BUNDLED, tmp_path / "cifs")
    shutil.copy(BUNDLED / "nomad_sample_1.cif", tmp_path / "cifs" / "nomad_sample_1_twin.cif")
    for name in PYMATGEN_STRUCTURES:
        pymatgen_structure(name).to(filename=str(tmp_path / "cifs" / f"{name}.cif"))
    items = discover_cifs(tmp_path / "cifs")
    fast = check_and_deduplicate(items, CheckSettings(), workers=1)
    reference = check_and_deduplicate(items, CheckSettings(reference_algorithms=True), workers=1)
    assert [r.to_dict() for r in fast] == [r.to_dict() for r in reference]
    assert sum(r.status == "duplicate" for r in fast) >= 1
    assert sum(r.dft_ready for r in fast) >= 20


def test_check_and_dedupe_columns_identical_to_reference_path(shared_dir):
    items = discover_cifs(GENERATED)
    fast = check_and_deduplicate(items, CheckSettings(), workers=1)
    reference = check_and_deduplicate(items, CheckSettings(reference_algorithms=True), workers=1)
    assert [r.to_dict() for r in fast] == [r.to_dict() for r in reference]
    # The shared set has byte-identical twins: they must come out as duplicates of one copy.
    assert sum(r.status == "duplicate" for r in fast) >= 79 - 50
