"""Unreadable known entries are skipped, counted and named (issue 28, N3); only a set with none readable fails.

Each known-set format (JSON list, structures table, folder of CIFs) is made from the
repository's fixture plus broken entries; the compare_known job's logic must still give
novelty and competing phases from the readable entries, say what it skipped in
novelty.json, competing_phases.json and its log, and a set with no readable entry must
end the job with one sentence in the log.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter

import dftscreen.known_index as known_index
from dftscreen.compare_known import compare_with_known, job_log
from dftscreen.dedupe import MatchSettings
from dftscreen.known import KnownSetError, SkippedEntries, read_entries_json
from dftscreen.known_index import read_known_set
from dftscreen.novelty import match_against_known

from conftest import TEST_DATA

FIXTURE = TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz"
BROKEN_CIF = "data_broken\n_cell_length_a 1\n"
PHASE_LIMITS = {"max_above_hull_eV_per_atom": 0.025, "max_per_system": 5, "max_sites": 40,
                "include_elements": True}


def fixture_entries() -> list[dict]:
    with gzip.open(FIXTURE, "rt") as handle:
        return json.load(handle)


def known_set(tmp_path: Path, kind: str, broken: list[str], readable: bool = True) -> dict:
    """A config section ``known_materials.database`` of ``kind``: the fixture's entries (if ``readable``) and
    one unreadable entry per id in ``broken``."""
    from pymatgen.core import Structure

    entries = fixture_entries() if readable else []
    if kind == "json":
        items = entries + [{"entry_id": bid, "energy": -1.0, "data": {}} for bid in broken]  # no structure
        path = tmp_path / "known.json"
        path.write_text(json.dumps(items))
        return {"path": str(path)}
    cifs = {e["entry_id"]: str(CifWriter(Structure.from_dict(e["structure"]))) for e in entries}
    cifs.update({bid: BROKEN_CIF for bid in broken})
    if kind == "table":
        energies = {e["entry_id"]: (e["energy"] + (e.get("correction") or 0.0)) / len(e["structure"]["sites"])
                    if e["energy"] is not None else None for e in entries}
        path = tmp_path / "known.csv"
        pd.DataFrame({"material_id": list(cifs), "cif": list(cifs.values()),
                      "e_per_atom": [energies.get(i) for i in cifs]}).to_csv(path, index=False)
        return {"path": str(path), "cif_column": "cif", "id_column": "material_id",
                "energy_per_atom_column": "e_per_atom"}
    folder = tmp_path / "known_cifs"
    folder.mkdir()
    for entry_id, text in cifs.items():
        (folder / f"{entry_id}.cif").write_text(text)
    return {"path": str(folder)}


def generated(tmp_path: Path) -> dict[str, str]:
    """Two generated NaCl CIFs: a strained copy of the fixture's rocksalt and a CsCl-type polymorph."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    folder = tmp_path / "generated"
    folder.mkdir()
    paths = {}
    for sid, args in (("rs", ("NaCl", "rocksalt", 5.5)), ("cscl", ("NaCl", "cesiumchloride", 3.3))):
        CifWriter(AseAtomsAdaptor.get_structure(bulk(args[0], args[1], a=args[2]))).write_file(folder / f"{sid}.cif")
        paths[sid] = str(folder / f"{sid}.cif")
    return paths


def run_job(tmp_path: Path, database: dict, log_path: Path, index_dir: Path | None = None):
    """compare_with_known as the compare_known job runs it, logging through job_log into ``log_path``."""
    cifs = generated(tmp_path) if not (tmp_path / "generated").is_dir() else {
        sid: str(tmp_path / "generated" / f"{sid}.cif") for sid in ("rs", "cscl")}
    checks = [{"structure_id": sid, "reduced_formula": "NaCl"} for sid in cifs]
    config = {"database": database, "training": {"path": None}, "competing_phases": PHASE_LIMITS}
    with job_log("compare_known", str(log_path)) as log:
        return compare_with_known(checks, cifs, config, MatchSettings(), choose_phases=True,
                                  library_folder=str(tmp_path / "library" / "key"), settings={"preset": "test"},
                                  log=log, known_index_dir=None if index_dir is None else str(index_dir))


@pytest.mark.parametrize("kind", ["json", "table", "folder"])
def test_one_unreadable_entry_is_skipped_and_named_not_fatal(tmp_path: Path, kind: str):
    database = known_set(tmp_path, kind, broken=["broken-1"])
    log_path = tmp_path / "logs" / "compare_known.log"
    log_path.parent.mkdir()
    novelty, phases = run_job(tmp_path, database, log_path)
    rows = novelty["structures"]
    # Novelty from the readable entries: the strained rocksalt is the fixture's, CsCl-type NaCl is new.
    assert (rows["rs"]["novel"], rows["rs"]["matches_known_id"]) == (False, "known-NaCl-rocksalt")
    assert rows["cscl"]["novel"] and rows["cscl"]["matches_known_id"] is None
    # Competing phases chosen from the readable entries (NaCl and the elements of Na-Cl).
    chosen = {p["entry_id"] for p in phases["phases"]}
    assert "known-NaCl-rocksalt" in chosen and "broken-1" not in chosen
    # What was skipped: counted in the label, named in both tables' notes and in the log.
    assert "1 unreadable skipped" in novelty["known_set"] and phases["known_set"] == novelty["known_set"]
    note = next(n for n in novelty["notes"] if "broken-1" in n)
    assert note.startswith(f"known set {novelty['known_set']}: 1 unreadable entry skipped (broken-1)")
    assert "\n" not in note and note in phases["notes"]
    log = log_path.read_text()
    assert "1 unreadable entry skipped (broken-1)" in log and "WARNING" in log


def test_a_json_item_that_is_no_entry_dict_is_skipped_with_its_position(tmp_path: Path):
    path = tmp_path / "known.json.gz"
    items = fixture_entries()
    items[3:3] = ["not an entry", {"entry_id": "no-composition", "structure": {"sites": [{"species": "?"}]}}]
    with gzip.open(path, "wt") as handle:
        json.dump(items, handle)
    known = read_entries_json(path)
    assert len(known) == len(items) - 2
    assert known.skipped.ids == ["known.json.gz#3", "no-composition"]
    assert "known.json.gz#3, no-composition" in known.skipped_note


def test_many_skipped_entries_name_only_the_first_ones(tmp_path: Path):
    broken = [f"bad-{n}" for n in range(8)]
    known = read_known_set(known_set(tmp_path, "table", broken=broken))
    assert known.skipped.count == 8 and "8 unreadable skipped" in known.label
    assert "(bad-0, bad-1, bad-2, bad-3, bad-4, ...)" in known.skipped_note
    assert "bad-5" not in known.skipped_note and "row " in known.skipped_note  # the first reason names its row


@pytest.mark.parametrize("kind", ["json", "table", "folder"])
def test_a_set_with_no_readable_entry_fails_in_one_sentence(tmp_path: Path, kind: str):
    database = known_set(tmp_path, kind, broken=["broken-1", "broken-2"], readable=False)
    with pytest.raises(KnownSetError) as caught:
        read_known_set(database)
    message = str(caught.value)
    assert database["path"] in message and "none of its 2 entries can be read" in message
    assert "broken-1, broken-2" in message and "\n" not in message
    # The job: the sentence in its log (one line, no traceback), and on stderr through SystemExit.
    log_path = tmp_path / "compare_known.log"
    with pytest.raises(SystemExit) as stopped:
        run_job(tmp_path, database, log_path)
    assert str(stopped.value) == f"compare_known failed: {message}"
    lines = log_path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"ERROR compare_known: compare_known failed: {message}")
    assert not (tmp_path / "library").exists()  # nothing chosen, nothing written


def test_an_empty_known_set_fails_too(tmp_path: Path):
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(KnownSetError, match="empty.json has no entries"):
        read_known_set({"path": str(tmp_path / "empty.json")})


def test_job_log_says_an_unexpected_failure_in_one_sentence_and_raises_it_on(tmp_path: Path):
    log_path = tmp_path / "job.log"
    root_handlers = list(logging.getLogger().handlers)
    with pytest.raises(ZeroDivisionError), job_log("compare_known", str(log_path)) as log:
        log.info("started")
        raise ZeroDivisionError("division by zero\nsecond line")
    lines = log_path.read_text().splitlines()
    assert lines[0].endswith("INFO compare_known: started")
    assert lines[1].endswith("ERROR compare_known: compare_known failed: ZeroDivisionError: division by zero "
                             "second line")
    assert len(lines) == 2 and logging.getLogger().handlers == root_handlers  # the handler is gone again


def test_the_index_keeps_what_was_skipped_and_a_rerun_gives_the_same(tmp_path: Path, monkeypatch):
    database = known_set(tmp_path, "json", broken=["broken-1"])
    index_dir = tmp_path / "library" / "known_index"
    parsed: list[Path] = []
    real = known_index.read_entries_json
    monkeypatch.setattr(known_index, "read_entries_json", lambda path: parsed.append(Path(path)) or real(path))
    first = read_known_set(database, index_dir=index_dir)
    again = read_known_set(database, index_dir=index_dir)
    assert len(parsed) == 1 and len(list(index_dir.glob("*.index.npz"))) == 1  # the rerun read the index
    assert again.label == first.label and "1 unreadable skipped" in again.label
    assert again.skipped == first.skipped == SkippedEntries(1, ["broken-1"], first.skipped.first_reason)
    assert again.skipped_note == first.skipped_note
    assert [e.entry_id for e in again.entries] == [e.entry_id for e in first.entries]
    from dftscreen.cif_reader import read_structure

    structures = [(sid, read_structure(path)[0]) for sid, path in generated(tmp_path).items()]
    assert match_against_known(structures, again) == match_against_known(structures, first)
    # The compare_known job from the index: same tables, the note still there.
    log_path = tmp_path / "rerun.log"
    novelty, phases = run_job(tmp_path, database, log_path, index_dir=index_dir)
    assert len(parsed) == 1 and "1 unreadable entry skipped (broken-1)" in log_path.read_text()
    assert novelty["known_set"] == first.label and novelty["notes"] == [first.skipped_note]
    assert novelty["structures"]["rs"]["matches_known_id"] == "known-NaCl-rocksalt"
    assert phases["notes"][0] == first.skipped_note
