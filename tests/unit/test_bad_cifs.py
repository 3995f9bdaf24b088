"""The bad-input corpus (tests/data/bad_cifs): every file gets a row with a specific reason.

The corpus is rutile TiO2 written as raw CrystaLLM output (good_rutile.cif) and
copies of it broken in one way each; the 1 MB file is generated here. Besides:
a 1.9 kB raw CIF declaring F m -3 m whose 40 sites expand to 7,584 atoms, a
7.3 kB CIF declaring F m -3 m whose operator loop has a malformed line
('x,y,z+0.5.5': pymatgen would drop the loop and expand its 200 sites with the
symbol's 192 operators to about 38,000 atoms), a rutile slab with 20 Å of
vacuum, CO2 in a 12 Å box, two structures in one file, and rutile with
oxidation-state type symbols (Ti4+, O2-).
"""

import shutil
from pathlib import Path

import pytest

from dftscreen.check import check_structure_file
from dftscreen.check_batch import check_and_deduplicate
from dftscreen.inputs import discover_cifs

from conftest import TEST_DATA

CORPUS = TEST_DATA / "bad_cifs"

#: file -> (dft_ready, words the reason must contain)
EXPECTED = {
    "empty.cif": (False, "file is empty"),
    "binary_junk.cif": (False, "binary data"),
    "truncated.cif": (False, "no atom positions"),
    "unknown_element.cif": (False, "unknown element symbol(s) Xx"),
    "negative_cell.cif": (False, "cell length b = -4.5987 Å"),
    "zero_cell.cif": (False, "cell length c = 0 Å"),
    "overlapping_atoms.cif": (False, "0.130 Å apart"),
    "unknown_space_group.cif": (False, "'Q4_9/xyz' is not a known Hermann-Mauguin symbol"),
    "one_megabyte.cif": (False, "larger than the 500 kB limit"),
    "huge_expansion.cif": (
        False,
        "the full cell has 7584 atoms (the asymmetric unit expanded with the 192 operators of Fm-3m), "
        "more than check.max_atoms = 500",
    ),
    "multi_block.cif": (False, "the file holds 2 structures (data blocks data_Ti2O4, data_Ti2O4_second)"),
    "malformed_operator.cif": (
        False, "symmetry operator 'x,y,z+0.5.5' (line 2 of 2 of the operator loop) is malformed"
    ),
    # Readable files: they are the good rutile and reach the dedupe stage.
    "good_rutile.cif": (True, ""),
    "non_utf8.cif": (True, ""),
    "wrong_multiplicities.cif": (True, ""),
    "name with spaces.cif": (True, ""),
    "rutile..copy.cif": (True, ""),
    "$(touch PWNED); rm -rf ~ `id` | cat &.cif": (True, ""),
    "oxidation_state_labels.cif": (True, ""),
    # Sound structures, but not bulk crystals: DFT may run, the notes say what they are.
    "vacuum_slab.cif": (True, ""),
    "molecule_in_box.cif": (True, ""),
}

#: file -> words its check_notes must contain
NOTES = {
    "vacuum_slab.cif": (
        "vacuum: 21.5 Å along c (wider than check.vacuum_gap_A = 7 Å, and 17.3 Å wider than the van der Waals contact"
    ),
    "molecule_in_box.cif": "looks like a molecule or cluster in a box",
    "good_rutile.cif": "rebuilt from the asymmetric unit",
}
#: Readable files that are rutile (the others readable are different structures).
RUTILE_COPIES = {
    "good_rutile.cif",
    "non_utf8.cif",
    "wrong_multiplicities.cif",
    "name with spaces.cif",
    "rutile..copy.cif",
    "$(touch PWNED); rm -rf ~ `id` | cat &.cif",
    "oxidation_state_labels.cif",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    shutil.copytree(CORPUS, folder)
    good = (folder / "good_rutile.cif").read_text()
    # A 1 MB CIF: the rutile followed by a comment padding it out.
    (folder / "one_megabyte.cif").write_text(good + "#" + "x" * 1_000_000 + "\n")
    return folder


def test_every_bad_file_gets_its_own_specific_reason(corpus: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    items = discover_cifs(corpus)
    assert {i.relative_path for i in items} == set(EXPECTED)
    results = {r.source_file: r for r in check_and_deduplicate(items, workers=2)}
    for name, (ready, words) in EXPECTED.items():
        result = results[name]
        assert result.dft_ready is ready, (name, result.reason)
        assert words in result.reason, (name, result.reason)
        if not ready:
            assert result.status == "invalid" and not result.valid
    for name, words in NOTES.items():
        assert words in results[name].check_notes, (name, results[name].check_notes)
    assert "vacuum" not in results["good_rutile.cif"].check_notes
    # The rutile copies are the same crystal: one representative, the rest duplicates.
    assert sum(results[n].valid for n in RUTILE_COPIES) == 1
    assert results["vacuum_slab.cif"].valid and results["molecule_in_box.cif"].valid
    assert results["wrong_multiplicities.cif"].multiplicity_consistent is False
    # Oxidation states in the type symbols are not a multiplicity mismatch (Ti4+ is Ti).
    assert results["oxidation_state_labels.cif"].multiplicity_consistent is True
    assert results["oxidation_state_labels.cif"].crystallm_valid
    # The huge cell was counted, not built: its row says how many atoms.
    assert results["huge_expansion.cif"].n_sites == 7584
    assert "not valid UTF-8" in " ".join(results["non_utf8.cif"].parse_warnings)
    # CIF text and file names are data: nothing was executed or written.
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert all("/" not in r.structure_id and ".." not in r.structure_id for r in results.values())


def test_a_bad_neighbour_does_not_change_a_good_verdict(corpus: Path):
    items = discover_cifs(corpus)
    in_batch = {r.source_file: r for r in check_and_deduplicate(items)}["good_rutile.cif"]
    alone = check_structure_file(next(i for i in items if i.relative_path == "good_rutile.cif"))
    for column in ("dft_ready", "crystallm_valid", "n_sites", "bond_length_score", "spacegroup_number"):
        assert getattr(in_batch, column) == getattr(alone, column)
    assert alone.crystallm_valid and alone.n_sites == 6
