"""The known set's index (dftscreen.known_index): built once, reused without the JSON, never trusted stale."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from ase.build import bulk
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

import dftscreen.known_index as known_index
from dftscreen.competing import choose_competing_phases
from dftscreen.dedupe import MatchSettings
from dftscreen.known_index import read_known_set
from dftscreen.novelty import match_against_known

from conftest import TEST_DATA

FIXTURE = TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz"


def structure(*args, **kwargs):
    return AseAtomsAdaptor.get_structure(bulk(*args, **kwargs))


@pytest.fixture
def known_file(tmp_path: Path) -> Path:
    path = tmp_path / "known.json.gz"
    shutil.copy(FIXTURE, path)
    return path


@pytest.fixture
def json_reads(monkeypatch) -> list[Path]:
    """Every parse of a known-set JSON (the index builder's call of read_entries_json)."""
    calls: list[Path] = []
    real = known_index.read_entries_json

    def spy(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(known_index, "read_entries_json", spy)
    return calls


def generated_set():
    """A copy of every fixture structure (strained 2 %) and two novel NaCl polymorphs."""
    known = read_known_set({"path": str(FIXTURE)})
    items = []
    for entry in known.entries:
        copy = entry.structure().copy()
        copy.scale_lattice(copy.volume * 1.02)
        items.append((f"copy_{entry.entry_id}", copy))
    items += [("cscl", structure("NaCl", "cesiumchloride", a=3.3)), ("zb", structure("NaCl", "zincblende", a=6))]
    return items


def verdicts(result):
    return {sid: (r.novel, r.match_id) for sid, r in result.items()}


def test_index_is_built_then_reused_without_parsing_the_json(known_file, tmp_path, json_reads, monkeypatch):
    index_dir = tmp_path / "idx"
    generated = generated_set()
    plain = match_against_known(generated, read_known_set({"path": str(known_file)}), MatchSettings())

    cold = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    assert len(json_reads) == 1 and cold.index.path.is_file()
    assert verdicts(match_against_known(generated, cold, MatchSettings())) == verdicts(plain)
    cells = cold.index.load_reduced(MatchSettings())
    assert cells and set(cells) <= {e.entry_id for e in cold.entries}

    warm = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    assert len(json_reads) == 1  # the JSON was not parsed again
    assert warm.label == cold.label
    assert [(e.entry_id, e.reduced_formula, e.elements, e.n_sites, e.energy_per_atom_eV, e.e_above_hull_eV_per_atom)
            for e in warm.entries] == [
        (e.entry_id, e.reduced_formula, e.elements, e.n_sites, e.energy_per_atom_eV, e.e_above_hull_eV_per_atom)
        for e in cold.entries]
    # Structures from the index are those of the JSON: same phase CIFs for the reference library.
    for a, b in zip(cold.entries, warm.entries):
        assert str(CifWriter(a.structure())) == str(CifWriter(b.structure()))
    # No known entry is reduced again: every one the cold run needed comes from the index.
    import dftscreen.novelty as novelty

    reduced = []
    real_reduce = novelty.reduced_for_matching

    def spy(structure, settings):
        reduced.append(structure)
        return real_reduce(structure, settings)

    monkeypatch.setattr(novelty, "reduced_for_matching", spy)
    assert verdicts(match_against_known(generated, warm, MatchSettings())) == verdicts(plain)
    assert reduced and all(any(r is s for _, s in generated) for r in reduced)  # generated structures only
    # The competing-phase choice reads the same entries either way.
    systems = [{"Na", "Cl"}, {"Li", "Fe", "P", "O"}]
    caps = {"max_above_hull_eV_per_atom": 0.025, "max_per_system": 5, "max_sites": None, "include_elements": True}
    assert choose_competing_phases(systems, warm, **caps) == choose_competing_phases(systems, cold, **caps)


def test_index_is_rebuilt_when_the_known_file_changes(known_file, tmp_path, json_reads):
    index_dir = tmp_path / "idx"
    known = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    match_against_known(generated_set(), known, MatchSettings())
    # Same bytes, new mtime: the hash says it is the same file, the index stays.
    os.utime(known_file, (1_000_000, 1_000_000))
    again = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    assert len(json_reads) == 1 and again.index.load_reduced(MatchSettings())
    # Other content: a new index, and the old reduced cells are not used for it.
    entry = ComputedStructureEntry(structure("NaCl", "rocksalt", a=5.0), -7.0, entry_id="other-NaCl")
    from dftscreen.known import write_entries_json

    write_entries_json([entry], known_file)
    changed = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    assert len(json_reads) == 2
    assert [e.entry_id for e in changed.entries] == ["other-NaCl"]
    assert changed.index.load_reduced(MatchSettings()) == {}
    result = match_against_known([("x", structure("NaCl", "rocksalt", a=5.1))], changed, MatchSettings())
    assert result["x"].match_id == "other-NaCl"


def test_reduced_cells_are_kept_per_matcher_settings(known_file, tmp_path):
    index_dir = tmp_path / "idx"
    known = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    match_against_known(generated_set(), known, MatchSettings())
    assert known.index.load_reduced(MatchSettings())
    other = MatchSettings(ltol=0.1, stol=0.2, angle_tol=3.0)
    assert known.index.reduced_path(other) != known.index.reduced_path(MatchSettings())
    assert known.index.load_reduced(other) == {}
    # A reduced-cells file renamed to the other settings' name is refused by its header.
    shutil.copy(known.index.reduced_path(MatchSettings()), known.index.reduced_path(other))
    assert known.index.load_reduced(other) == {}


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_index_is_rebuilt_not_trusted(known_file, tmp_path, json_reads, damage):
    index_dir = tmp_path / "idx"
    known = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    generated = generated_set()
    expected = verdicts(match_against_known(generated, known, MatchSettings()))
    for path in (known.index.path, known.index.reduced_path(MatchSettings())):
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "flip":
            data[len(data) // 2] ^= 0xFF
        else:
            data = bytearray(b"not an npz file")
        path.write_bytes(bytes(data))
    rebuilt = read_known_set({"path": str(known_file)}, index_dir=index_dir)
    assert len(json_reads) == 2  # parsed again
    assert verdicts(match_against_known(generated, rebuilt, MatchSettings())) == expected
    assert read_known_set({"path": str(known_file)}, index_dir=index_dir).index.load_reduced(MatchSettings())
    assert len(json_reads) == 2


def test_reduced_cell_round_trip_keeps_species_and_floats():
    nacl = structure("NaCl", "rocksalt", a=5.64)
    cell = known_index.ReducedCell.from_structure(nacl)
    rebuilt = cell.structure()
    assert (rebuilt.lattice.matrix == nacl.lattice.matrix).all() and (rebuilt.frac_coords == nacl.frac_coords).all()
    assert [s.species for s in rebuilt] == [s.species for s in nacl]
    disordered = nacl.copy()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    assert [s.species for s in known_index.ReducedCell.from_structure(disordered).structure()] == [
        s.species for s in disordered]
    charged = nacl.copy()
    charged.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    assert [s.species for s in known_index.ReducedCell.from_structure(charged).structure()] == [
        s.species for s in charged]
