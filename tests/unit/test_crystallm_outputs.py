"""Real raw CrystaLLM outputs (../shared/data/generated/crystallm): rebuild, CrystaLLM's metric, duplicates."""

import csv

import pytest
from pymatgen.core import Composition

from dftscreen.check_batch import check_and_deduplicate
from dftscreen.cif_reader import read_structure
from dftscreen.inputs import discover_cifs

from conftest import GENERATED, PEROV5, TEST_DATA

REFERENCE = TEST_DATA / "crystallm_reference" / "shared_generated_verdicts.csv"

#: Files where our crystallm_valid deliberately differs from what CrystaLLM's code says, and why.
DISAGREEMENTS = {
    # Indented loops (CrystaLLM-pi's layout): CrystaLLM's regex that swaps in the
    # space-group operators does not match, so its code reads the asymmetric unit as
    # P1 (Ti1 O2 instead of Ti2 O4), detects P4/mmm and fails the space-group check.
    # Rebuilt properly, this is rutile with declared and detected P4_2/mnm (136).
    "single/crystallm_pi_raw_gen_rutile.cif": True,
}


@pytest.fixture(scope="module")
def generated_results():
    if not GENERATED.is_dir():
        pytest.skip("../shared (reference data beside the checkout) is not present")
    items = discover_cifs(GENERATED)
    results = check_and_deduplicate(items, workers=2)
    return {item.relative_path: result for item, result in zip(items, results)}


def manifest() -> list[dict[str, str]]:
    with open(GENERATED / "manifest.csv") as handle:
        return list(csv.DictReader(handle))


def test_rebuilt_cells_have_the_declared_composition(shared_dir):
    for row in manifest():
        structure, messages = read_structure(GENERATED / row["file"])
        text = (GENERATED / row["file"]).read_text()
        declared = text.split("_chemical_formula_sum")[1].splitlines()[0].strip().strip("'")
        # The full (non-reduced) composition, not just the ratio: TiO2 with 4 Ti and 8 O.
        assert structure.composition == Composition(declared), row["file"]


def test_raw_files_are_marked_rebuilt(generated_results):
    assert generated_results["TiO2/baseline/rank01_sample_0020.cif"].rebuilt_from_asymmetric_unit is True
    # Written with every operator of P4/nmm: read as it is.
    assert generated_results["single/nomad_sample_1.cif"].rebuilt_from_asymmetric_unit is False


def test_crystallm_valid_agrees_with_crystallms_code_file_by_file(generated_results):
    with open(REFERENCE) as handle:
        reference = {row["file"]: row["valid"] == "True" for row in csv.DictReader(handle)}
    assert set(reference) == set(generated_results)
    for name, theirs in reference.items():
        expected = DISAGREEMENTS.get(name, theirs)
        assert generated_results[name].crystallm_valid is expected, (name, generated_results[name].crystallm_reason)


def test_byte_identical_twins_are_grouped(generated_results):
    def group(name: str) -> str:
        result = generated_results[name]
        return result.duplicate_of or result.structure_id

    n_pairs = 0
    for row in manifest():
        for twin in filter(None, row["byte_identical_to"].split(";")):
            assert group(row["file"]) == group(twin), (row["file"], twin)
            n_pairs += 1
    assert n_pairs > 20


def test_representative_has_the_lowest_volume_per_formula_unit(generated_results):
    by_id = {r.structure_id: r for r in generated_results.values()}
    duplicates = [r for r in generated_results.values() if r.duplicate_of]
    assert duplicates
    for dup in duplicates:
        rep = by_id[dup.duplicate_of]
        assert rep.valid and rep.duplicate_of is None
        assert dup.status == "duplicate" and not dup.valid and dup.dft_ready
        assert rep.structure_id in dup.reason
        assert rep.volume_per_formula_unit_A3 <= dup.volume_per_formula_unit_A3


def test_every_shared_perovskite_is_dft_ready(shared_dir):
    items = discover_cifs(PEROV5)
    assert len(items) == 50
    results = check_and_deduplicate(items, workers=2)
    not_ready = [(r.source_file, r.reason) for r in results if not r.dft_ready]
    assert not not_ready
