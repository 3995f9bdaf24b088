import re
from pathlib import Path

import pytest

from dftscreen.inputs import MAX_ID_CHARS, STRUCTURE_ID_PATTERN, assign_ids, discover_cifs, make_id, no_input_message


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


# Issue 28, N2 and N6: the crawl skips exactly the workflow's own folders ---------------------------


def _write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("data_x\n")
    return path


def test_cif_dir_inside_output_dir_is_read_and_only_the_workflows_own_folders_skipped(tmp_path: Path, monkeypatch):
    """run07/cifs with results in run07 (or output_dir: .): both structures are inputs, results are not."""
    run = tmp_path / "run07"
    _write(run / "cifs" / "a.cif")
    _write(run / "cifs" / "b.cif")
    _write(run / "dft" / "a" / "relaxed.cif")  # the workflow's own output
    _write(run / "ml" / "structures" / "a" / "relaxed.cif")
    ids = sorted(item.relative_path for item in discover_cifs(run / "cifs", run))
    assert ids == ["a.cif", "b.cif"]
    monkeypatch.chdir(run)
    assert sorted(i.relative_path for i in discover_cifs("cifs", ".")) == ["a.cif", "b.cif"]


def test_output_dir_at_the_root_is_refused_and_an_empty_crawl_says_why(tmp_path: Path):
    _write(tmp_path / "cifs" / "a.cif")
    with pytest.raises(ValueError, match="file system's root"):
        discover_cifs(tmp_path / "cifs", "/")
    _write(tmp_path / "cifs" / "out" / "dft" / "a" / "relaxed.cif")
    (tmp_path / "cifs" / "a.cif").unlink()
    message = no_input_message({"cif_dir": str(tmp_path / "cifs")}, tmp_path / "cifs" / "out")
    assert "the 1 CIF files under input.cif_dir" in message and "never read as inputs" in message
    assert no_input_message({"cif_dir": str(tmp_path / "empty")}, None).startswith("no input: the input folder")


def test_a_library_known_set_or_reference_cif_inside_cif_dir_is_no_input(tmp_path: Path, monkeypatch):
    from dftscreen.config import with_defaults
    from dftscreen.plan import RunPlan

    cifs = tmp_path / "cifs"
    _write(cifs / "gen" / "a.cif")
    _write(cifs / "library" / "abc" / "elements" / "Na" / "auto" / "relaxed.cif")
    _write(cifs / "known" / "NaCl.cif")
    _write(cifs / "refs" / "Na.cif")
    _write(cifs / "phases" / "Na2O.cif")
    monkeypatch.chdir(tmp_path)
    config = with_defaults({
        "input": {"cif_dir": "cifs"}, "output_dir": "out",
        "stability": {"reference_library_dir": "cifs/library", "elemental_reference_cifs": {"Na": "cifs/refs/Na.cif"},
                      "reference_cif_dir": "cifs/phases"},
        "known_materials": {"database": {"path": "cifs/known"}},
    })  # fmt: skip
    assert [item.relative_path for item in RunPlan(config).inputs.values()] == ["gen/a.cif"]
    # The same crawl from another folder, as `dftscreen status` plans it.
    monkeypatch.chdir("/")
    plan = RunPlan(config, folder=tmp_path)
    assert [item.relative_path for item in plan.inputs.values()] == ["gen/a.cif"]


# Issue 28, N1: no path Snakemake cannot take reaches it -------------------------------------------


def test_a_file_snakemake_cannot_name_is_read_by_dft_from_the_workflows_copy(tmp_path: Path, monkeypatch):
    from dftscreen.config import with_defaults
    from dftscreen.inputs import needs_workflow_copy, snakemake_unsafe, write_input_copy
    from dftscreen.plan import RunPlan

    normal = _write(tmp_path / "cifs" / "a.cif")
    odd = _write(tmp_path / "cifs" / "sample_<unk>_{3}.cif")
    odd.write_text("data_odd\n")
    assert snakemake_unsafe(odd) and not snakemake_unsafe(normal)
    monkeypatch.chdir(tmp_path)
    plan = RunPlan(with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out"}))
    by_path = {item.relative_path: item for item in plan.inputs.values()}
    odd_item, normal_item = by_path["sample_<unk>_{3}.cif"], by_path["a.cif"]
    assert needs_workflow_copy(odd_item) and not needs_workflow_copy(normal_item)
    # A normal file is read where it is (a finished run's inputs keep their paths); the odd one from out/inputs.
    assert plan.input_cif(normal_item.structure_id) == "cifs/a.cif"
    copy = plan.input_cif(odd_item.structure_id)
    assert copy == f"out/inputs/{odd_item.structure_id}.cif" and not snakemake_unsafe(copy)
    written = write_input_copy(odd_item, "out/inputs")
    assert str(written) == copy and written.read_text() == "data_odd\n"
    mtime = written.stat().st_mtime_ns
    write_input_copy(odd_item, "out/inputs")  # unchanged: not rewritten, so no DFT reruns
    assert written.stat().st_mtime_ns == mtime


def test_configured_paths_snakemake_cannot_take_are_refused_at_start_up(tmp_path: Path):
    from dftscreen.config import with_defaults
    from dftscreen.guards import ConfigError, check_snakemake_paths

    check_snakemake_paths(with_defaults({"output_dir": "run 07 (ä)"}))
    for key, config in [
        ("output_dir", {"output_dir": "run_<unk>"}),
        ("known_materials.database.path", {"known_materials": {"database": {"path": "known/{set}"}}}),
        ("stability.elemental_reference_cifs.Na", {"stability": {"elemental_reference_cifs": {"Na": "na<1>.cif"}}}),
    ]:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)} '.*' holds .* wildcard or path variable"):
            check_snakemake_paths(with_defaults(config))


def test_a_known_set_folder_lists_only_the_files_snakemake_can_track(tmp_path: Path):
    from dftscreen.known import known_set_files

    _write(tmp_path / "known" / "a.cif")
    _write(tmp_path / "known" / "b_<unk>.cif")
    assert known_set_files({"path": str(tmp_path / "known")}) == [str(tmp_path / "known" / "a.cif")]
