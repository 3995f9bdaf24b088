"""Issue 29, items 3 and 4: novelty of every parsed structure; a known table without energy columns.

3. A structure that parses but is not ``dft_ready`` (Tc, Ac, Th: no PAW dataset) is matched
   against the known set too; a duplicate takes its representative's value; an unparsable
   file has none.
4. A database table with a column that looks like an energy, but none configured, is refused
   at start-up naming the column and the key; without any energy the phases per system are
   capped by ``max_per_system`` (fewest sites first) and a note says they were not ranked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dftscreen.check import CheckSettings
from dftscreen.check_batch import check_and_deduplicate
from dftscreen.compare_known import compare_with_known, other_parsed_ids, read_other_parsed
from dftscreen.competing import UNRANKED_SOURCE, choose_competing_phases
from dftscreen.config import with_defaults
from dftscreen.dedupe import MatchSettings
from dftscreen.guards import ConfigError
from dftscreen.inputs import discover_inputs
from dftscreen.known import check_known_sets
from dftscreen.known_index import read_known_set
from dftscreen.table import add_known_columns

from conftest import TEST_DATA

FIXTURE = TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz"
LOG = logging.getLogger("test_known_issue29")
#: The schema's defaults of a known set (workflow/schemas/config.schema.yaml).
SET_DEFAULTS = {"path": None, "cif_column": "cif", "id_column": "material_id", "formula_column": None,
                "energy_per_atom_column": None, "e_above_hull_column": None}
CAPS = {"max_above_hull_eV_per_atom": 0.025, "max_sites": None, "include_elements": True}


def cif(formula: str, kind: str, a: float) -> str:
    """CIF text of an ASE bulk crystal."""
    return str(CifWriter(AseAtomsAdaptor.get_structure(bulk(formula, kind, a=a))))


# --- item 3: novelty of every structure that parses ------------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> dict:
    """A run's inputs (two Tc carbides without a PAW dataset, NaCl and its copy, a broken file), checked."""
    known = tmp_path / "known"
    known.mkdir()
    (known / "TcC_rs.cif").write_text(cif("TcC", "rocksalt", 4.30))
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "tc_match.cif").write_text(cif("TcC", "rocksalt", 4.35))  # the known crystal, slightly strained
    (gen / "tc_new.cif").write_text(cif("TcC", "cesiumchloride", 2.70))  # not in the known set
    (gen / "nacl.cif").write_text(cif("NaCl", "rocksalt", 5.60))
    (gen / "nacl_copy.cif").write_text(cif("NaCl", "rocksalt", 5.62))
    (gen / "broken.cif").write_text("data_broken\n_cell_length_a 4\n")
    config = with_defaults({"input": {"cif_dir": str(gen)}, "output_dir": str(tmp_path / "out"),
                            "known_materials": {"database": {"path": str(known)}}})
    items = discover_inputs(config["input"], config["output_dir"])
    # Only Na and Cl have a PAW dataset here: the Tc carbides parse but are not dft_ready.
    results = check_and_deduplicate(items, CheckSettings(), MatchSettings(), {"Na", "Cl"})
    checks = [r.to_dict() for r in results]
    return {"config": config, "checks": checks, "gen": gen, "tmp": tmp_path,
            "valid": [r.structure_id for r in results if r.valid]}


def test_a_parsed_structure_not_going_to_dft_gets_its_novelty(run: dict):
    checks, valid = run["checks"], run["valid"]
    by_id = {c["structure_id"]: c for c in checks}
    assert valid == ["nacl"] and by_id["nacl_copy"]["duplicate_of"] == "nacl"
    assert not by_id["tc_match"]["dft_ready"] and not by_id["tc_new"]["dft_ready"]
    assert by_id["broken"]["reduced_formula"] is None
    assert other_parsed_ids(checks, set(valid)) == ["tc_match", "tc_new"]

    others = read_other_parsed(checks, set(valid), run["config"], LOG)
    assert [sid for sid, _ in others] == ["tc_match", "tc_new"]
    novelty, phases = compare_with_known(
        checks, {"nacl": str(run["gen"] / "nacl.cif")}, run["config"]["known_materials"], MatchSettings(),
        choose_phases=False, library_folder=str(run["tmp"] / "library" / "key"), settings={},
        other_structures=others,
    )
    rows = novelty["structures"]
    assert (rows["tc_match"]["novel"], rows["tc_match"]["matches_known_id"]) == (False, "TcC_rs")
    assert (rows["tc_new"]["novel"], rows["tc_new"]["matches_known_id"]) == (True, None)
    assert rows["nacl"]["novel"] is True
    assert "novel" not in rows["broken"] and "novel" not in rows["nacl_copy"]
    assert phases["phases"] == []

    table = add_known_columns(pd.DataFrame(checks)[["structure_id", "duplicate_of"]], novelty)
    table = table.set_index("structure_id")
    assert table.loc["tc_match", "novel"] is False and table.loc["tc_match", "matches_known_id"] == "TcC_rs"
    assert table.loc["tc_new", "novel"] is True
    assert table.loc["nacl_copy", "novel"] is True  # its representative's value
    assert table.loc["broken", "novel"] is None and table.loc["broken", "matches_known_id"] is None


def test_nothing_is_listed_when_every_parsed_structure_goes_to_dft(run: dict, monkeypatch):
    def no_listing(*args, **kwargs):
        raise AssertionError("the inputs are listed only when a parsed structure does not go to DFT")

    monkeypatch.setattr("dftscreen.inputs.discover_inputs", no_listing)
    checks = [c for c in run["checks"] if not c["structure_id"].startswith("tc_")]
    assert read_other_parsed(checks, set(run["valid"]), run["config"], LOG) == []


def test_an_input_unreadable_since_the_check_only_loses_its_own_novelty(run: dict, caplog):
    (run["gen"] / "tc_new.cif").write_text("garbage\n")
    with caplog.at_level(logging.WARNING):
        others = read_other_parsed(run["checks"], set(run["valid"]), run["config"], LOG)
    assert [sid for sid, _ in others] == ["tc_match"]
    assert "tc_new: input not readable now" in caplog.text


# --- item 4: a known table without energy columns --------------------------------------------------


def known_config(database: dict, enabled: bool = True) -> dict:
    return {"database": {**SET_DEFAULTS, **database}, "training": dict(SET_DEFAULTS),
            "competing_phases": {"enabled": enabled}}


@pytest.mark.parametrize(("column", "key", "meaning"), [
    ("e_above_hull", "e_above_hull_column", "an energy above hull"),
    ("Energy Above Hull (eV/atom)", "e_above_hull_column", "an energy above hull"),
    ("ehull", "e_above_hull_column", "an energy above hull"),
    ("formation_energy_per_atom", "energy_per_atom_column", "a formation energy per atom"),
    ("energy_per_atom", "energy_per_atom_column", "an energy per atom"),
])
def test_a_database_table_with_an_unnamed_energy_column_is_refused_naming_the_key(
    tmp_path: Path, column: str, key: str, meaning: str
):
    table = tmp_path / "mp.csv"
    pd.DataFrame({"material_id": ["a"], "cif": ["data_x\n"], column: [0.0]}).to_csv(table, index=False)
    with pytest.raises(ConfigError) as caught:
        check_known_sets(known_config({"path": str(table)}))
    message = str(caught.value)
    assert message == (
        f"known_materials.database has no energy column configured, but its table '{table}' has a column "
        f"'{column}' that looks like {meaning}: set known_materials.database.{key}: {column} so that its "
        "competing phases are ranked by energy (or rename the column if it holds no such energy)")
    assert caught.value.__cause__ is None
    # Named, it passes; so does the same table as a training set or with no phases chosen.
    assert check_known_sets(known_config({"path": str(table), key: column}))
    assert check_known_sets(known_config({"path": str(table)}, enabled=False))
    assert check_known_sets({**known_config({"path": None}), "training": {**SET_DEFAULTS, "path": str(table)}})


def test_a_table_without_energy_look_alikes_passes(tmp_path: Path):
    table = tmp_path / "ft.csv"
    pd.DataFrame({"material_id": ["a"], "cif": ["data_x\n"], "band_gap": [1.0], "energy_source": ["x"]}
                 ).to_csv(table, index=False)
    assert check_known_sets(known_config({"path": str(table)}))


def test_without_any_energy_phases_are_capped_per_system_and_the_note_says_so(tmp_path: Path):
    entries = read_known_set({"path": str(FIXTURE)}).entries
    folder = tmp_path / "cifs"
    folder.mkdir()
    for entry in entries:
        CifWriter(entry.structure()).write_file(folder / f"{entry.entry_id}.cif")
    known = read_known_set({"path": str(folder)})
    assert not known.has_energies

    chosen, notes = choose_competing_phases([{"Ti", "O"}], known, max_per_system=1, **CAPS)
    # One per system (O-Ti: TiO, rocksalt with 2 sites, before rutile (6) and anatase (12)), never all.
    assert {(p.chemical_system, p.entry_id) for p in chosen} == {("Ti", "known-Ti-hcp"),
                                                                  ("O-Ti", "known-TiO-rocksalt")}
    assert len(chosen) == 2
    assert all(p.energy_source == UNRANKED_SOURCE and p.e_above_known_hull_eV_per_atom is None for p in chosen)
    assert notes[0].startswith(f"known set {known.label} has no energies: its phases were not ranked by energy; "
                               "at most known_materials.competing_phases.max_per_system = 1 per chemical system")
    assert "O-Ti: kept 1 phases (max_per_system), not known-TiO2-rutile, known-TiO2-anatase" in notes
    two, _ = choose_competing_phases([{"Ti", "O"}], known, max_per_system=2, **CAPS)
    assert {p.entry_id for p in two if p.chemical_system == "O-Ti"} == {"known-TiO-rocksalt", "known-TiO2-rutile"}
    assert choose_competing_phases([{"Ti", "O"}], known, max_per_system=2, **CAPS) == (two, _)
    # When the cap leaves nothing out, ranking changed nothing: no note.
    every, notes = choose_competing_phases([{"Ti", "O"}], known, max_per_system=5, **CAPS)
    assert len(every) == 4 and not any("not ranked" in note for note in notes)
    # Nothing chosen, nothing to say.
    assert choose_competing_phases([{"Xe"}], known, max_per_system=1, **CAPS) == ([], [])


def test_a_table_with_only_energies_above_hull_is_ranked_by_them(tmp_path: Path):
    entries = [e for e in read_known_set({"path": str(FIXTURE)}).entries if e.elements <= {"Ti", "O"}]
    hull = {"known-TiO2-rutile": 0.0, "known-TiO2-anatase": 0.05, "known-TiO-rocksalt": 0.01, "known-Ti-hcp": 0.0}
    table = tmp_path / "mp.csv"
    pd.DataFrame({"material_id": [e.entry_id for e in entries],
                  "cif": [str(CifWriter(e.structure())) for e in entries],
                  "e_above_hull": [hull[e.entry_id] for e in entries]}).to_csv(table, index=False)
    known = read_known_set({**SET_DEFAULTS, "path": str(table), "e_above_hull_column": "e_above_hull"})
    chosen, notes = choose_competing_phases([{"Ti", "O"}], known, max_per_system=5, **CAPS)
    assert {p.entry_id: p.e_above_known_hull_eV_per_atom for p in chosen} == {
        "known-TiO2-rutile": 0.0, "known-TiO-rocksalt": 0.01, "known-Ti-hcp": 0.0}  # anatase: 0.05 > 0.025
    assert {p.energy_source for p in chosen} == {f"energies above hull of {known.label}"}
    assert not any("not ranked" in note for note in notes)
