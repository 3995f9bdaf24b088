import re
from pathlib import Path

import pytest

from dftscreen.inputs import MAX_ID_CHARS, STRUCTURE_ID_PATTERN, assign_ids, discover_cifs, make_id


@pytest.mark.parametrize(
    "relative, expected",
    [
        ("NaCl.cif", "NaCl"),
        ("NaCl/baseline/rank01_sample_0709.cif", "NaCl__baseline__rank01_sample_0709"),
        ("Ba2+Ti.cif", r"Ba2\+Ti"),
        ("a b (copy).CIF", r"a_b_copy_-[0-9a-f]{10}"),
        ("../../etc/passwd.cif", r"etc__passwd-[0-9a-f]{10}"),
        ("..cif", r"structure-[0-9a-f]{10}"),
        ("-dash.cif", r"_-dash-[0-9a-f]{10}"),
        ("rutile..copy.cif", r"rutile_copy-[0-9a-f]{10}"),
        ("ñ" * 25 + ".cif", r"n{25}-[0-9a-f]{10}"),
    ],
)
def test_safe_id_is_path_safe(relative, expected):
    sid, note = make_id(relative)
    assert re.fullmatch(expected, sid), sid
    assert "/" not in sid and ".." not in sid and " " not in sid
    assert re.fullmatch(STRUCTURE_ID_PATTERN, sid)
    # The table says how an id was made whenever it is not the path itself.
    assert bool(note) == ("[0-9a-f]" in expected)


def test_ids_are_unique_deterministic_and_say_how_they_were_made():
    paths = ["a_b.cif", "a b.cif", "A_B.cif", "x/y.cif", "x__y.cif"]
    first = assign_ids(paths)
    second = assign_ids(list(reversed(paths)))
    assert first == second
    ids = [sid for _, sid, _ in first]
    assert len({i.lower() for i in ids}) == len(ids)
    notes = {rel: note for rel, _, note in first}
    sids = {rel: sid for rel, sid, _ in first}
    assert sids["A_B.cif"] == "A_B" and notes["A_B.cif"] == ""
    assert sids["x/y.cif"] == "x__y" and notes["x/y.cif"] == ""
    assert "replaced by _" in notes["a b.cif"]
    # Differs from A_B only in letter case: the one case decided by another file.
    assert "already used by 'A_B.cif'" in notes["a_b.cif"]
    assert sids["x__y.cif"].startswith("x__y-") and notes["x__y.cif"]


def test_a_files_id_does_not_depend_on_the_other_files():
    """Adding files never renames an existing one (its finished DFT would run again)."""
    alone = dict((rel, sid) for rel, sid, _ in assign_ids(["a b.cif", "x__y.cif", "ñ.cif"]))
    crowded = dict(
        (rel, sid)
        for rel, sid, _ in assign_ids(
            ["a b.cif", "a_b.cif", "a__b.cif", "a  b.cif", "x/y.cif", "x__y.cif", "ñ.cif", "n.cif"]
        )
    )
    assert all(crowded[rel] == sid for rel, sid in alone.items())


def test_exotic_and_long_names_give_bounded_wildcard_safe_ids(tmp_path: Path):
    """20+ non-ASCII characters gave 20+ underscores (Snakemake's PeriodicWildcardError); nested
    folders gave ids over 255 bytes ("File name too long")."""
    deep = tmp_path / ("ä" * 100) / ("ö" * 100) / ("ü" * 100)
    deep.mkdir(parents=True)
    (deep / ("€" * 80 + " NaCl.cif")).write_text("data_x\n")
    (tmp_path / ("_" * 30 + ".cif")).write_text("data_x\n")
    (tmp_path / ("ab" * 40 + ".cif")).write_text("data_x\n")
    found = discover_cifs(tmp_path)
    assert len(found) == 3
    periodic = re.compile(r"(.+?)\1{19,}$")  # Snakemake's test for a periodic wildcard
    for item in found:
        assert len(item.structure_id.encode()) <= MAX_ID_CHARS
        assert re.fullmatch(STRUCTURE_ID_PATTERN, item.structure_id)
        assert not periodic.search(item.structure_id)
        assert item.id_note
    assert any(item.structure_id.startswith("aaaa") for item in found)  # a readable prefix


def test_crawling_skips_hidden_folders_and_output_dir_follows_links(tmp_path: Path):
    cifs = tmp_path / "cifs"
    (cifs / ".git").mkdir(parents=True)
    (cifs / ".git" / "old.cif").write_text("data_x\n")
    (cifs / "results" / "inputs").mkdir(parents=True)
    (cifs / "results" / "inputs" / "row.cif").write_text("data_x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.cif").write_text("data_x\n")
    (cifs / "link").symlink_to(elsewhere)
    (cifs / "loop").symlink_to(cifs)  # a cycle: read once
    (cifs / "one.cif").write_text("data_x\n")
    found = [f.relative_path for f in discover_cifs(cifs, output_dir=cifs / "results")]
    assert found == ["link/linked.cif", "one.cif"]
    with pytest.raises(ValueError, match="input folder"):
        discover_cifs(cifs, output_dir=cifs)


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
