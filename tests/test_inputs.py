from pathlib import Path

import pytest

from dftscreen.inputs import STRUCTURE_ID_PATTERN, assign_ids, discover_cifs, safe_id
import re


@pytest.mark.parametrize(
    "relative, expected",
    [
        ("NaCl.cif", "NaCl"),
        ("NaCl/baseline/rank01_sample_0709.cif", "NaCl__baseline__rank01_sample_0709"),
        ("a b (copy).CIF", "a_b__copy_"),
        ("../../etc/passwd.cif", "etc__passwd"),
        ("..cif", "structure"),
        ("-dash.cif", "_-dash"),
        ("Ba2+Ti.cif", "Ba2+Ti"),
    ],
)
def test_safe_id_is_path_safe(relative, expected):
    sid = safe_id(relative)
    assert sid == expected
    assert "/" not in sid and ".." not in sid and " " not in sid
    assert re.fullmatch(STRUCTURE_ID_PATTERN, sid)


def test_collisions_resolved_deterministically_and_reported():
    paths = ["a_b.cif", "a b.cif", "A_B.cif", "x/y.cif", "x__y.cif"]
    first = assign_ids(paths)
    second = assign_ids(list(reversed(paths)))
    assert first == second
    ids = [sid for _, sid, _ in first]
    assert len({i.lower() for i in ids}) == len(ids)
    notes = {rel: note for rel, _, note in first}
    # Sorted order: 'A_B.cif' < 'a b.cif' < 'a_b.cif'; the first keeps the id.
    assert notes["A_B.cif"] == ""
    assert "renamed to 'a_b-2'" in notes["a b.cif"]
    assert "renamed to 'a_b-3'" in notes["a_b.cif"]
    assert notes["x__y.cif"] and "x__y-2" in notes["x__y.cif"]


def test_discover_cifs_recurses_and_ignores_other_files(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "one.cif").write_text("data_x\n")
    (tmp_path / "two.CIF").write_text("data_x\n")
    (tmp_path / "notes.txt").write_text("not a cif")
    (tmp_path / ".hidden.cif").write_text("editor backup")
    found = discover_cifs(tmp_path)
    assert [f.structure_id for f in found] == ["sub__one", "two"]
    assert all(f.path.is_file() for f in found)


def test_discover_cifs_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="input.cif_dir"):
        discover_cifs(tmp_path / "nope")
