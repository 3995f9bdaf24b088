"""Known-materials sources, novelty matching, competing-phase choice and SMACT validity (no DFT)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from ase.build import bulk
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from dftscreen.competing import choose_competing_phases, structure_fingerprint
from dftscreen.dedupe import MatchSettings
from dftscreen.known import KnownSetError, write_entries_json
from dftscreen.known_index import read_known_set
from dftscreen.novelty import match_against_known
from dftscreen.smact_check import smact_valid

from conftest import TEST_DATA

FIXTURE = TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz"


def caps(max_above_hull: float, max_per_system: int, include_elements: bool = True) -> dict:
    """The competing-phase limits (config known_materials.competing_phases), no cell-size limit."""
    return {"max_above_hull_eV_per_atom": max_above_hull, "max_per_system": max_per_system, "max_sites": None,
            "include_elements": include_elements}


def structure(*args, **kwargs):
    return AseAtomsAdaptor.get_structure(bulk(*args, **kwargs))


def test_fixture_is_in_the_repo_and_covers_the_shared_chemistries():
    known = read_known_set({"path": str(FIXTURE)})
    assert "12 ComputedStructureEntry objects" in known.label
    systems = {"-".join(sorted(e.elements)) for e in known.entries}
    assert {"Cl-Na", "O-Ti", "Fe-Li-O-P"} <= systems
    rocksalt = next(e for e in known.entries if e.entry_id == "known-NaCl-rocksalt")
    # CRC Handbook: ΔHf(NaCl) = -411.2 kJ/mol over 2 atoms.
    assert rocksalt.energy_per_atom_eV == pytest.approx(-411.2 / 96.485 / 2)
    assert len(rocksalt.structure()) == 2
    # Every stored dict loads with pymatgen itself (the format mp-api returns), energies aside.
    with gzip.open(FIXTURE, "rt") as handle:
        for item in json.load(handle):
            if item["energy"] is not None:
                ComputedStructureEntry.from_dict(item)


def test_entries_json_round_trip_and_dataframe_layout(tmp_path: Path):
    entries = [
        ComputedStructureEntry(structure("NaCl", "rocksalt", a=5.64), -7.0, correction=-0.2, entry_id="mp-22862"),
        ComputedStructureEntry(structure("Na", "bcc", a=4.23), -1.3, entry_id="mp-127"),
    ]
    assert write_entries_json(entries, tmp_path / "set.json.gz") == 2
    known = read_known_set({"path": str(tmp_path / "set.json.gz")})
    by_id = {e.entry_id: e for e in known.entries}
    assert by_id["mp-22862"].energy_per_atom_eV == pytest.approx(-3.6)  # corrected energy per atom
    assert known.by_formula["Na"][0].entry_id == "mp-127"
    # Matbench Discovery's snapshot: DataFrame.to_json() with an 'entry' column.
    frame = {"entry": {"mp-22862": entries[0].as_dict()}, "formula": {"mp-22862": "NaCl"}}
    (tmp_path / "mbd.json").write_text(json.dumps(frame))
    assert [e.entry_id for e in read_known_set({"path": str(tmp_path / "mbd.json")}).entries] == ["mp-22862"]


def test_structures_table_and_cif_folder(tmp_path: Path):
    cif = str(CifWriter(structure("NaCl", "rocksalt", a=5.64)))
    frame = pd.DataFrame({"material_id": ["a", "b"], "cif": [cif, cif], "e_form": [-2.1, -2.0]})
    frame.to_parquet(tmp_path / "t.parquet")
    known = read_known_set({"path": str(tmp_path / "t.parquet"), "id_column": "material_id", "cif_column": "cif",
                            "energy_per_atom_column": "e_form"})
    assert [(e.entry_id, e.reduced_formula, e.energy_per_atom_eV) for e in known.entries] == [
        ("a", "NaCl", -2.1), ("b", "NaCl", -2.0)]
    with pytest.raises(KnownSetError, match="energy_per_atom_column 'nope' is not a column"):
        read_known_set({"path": str(tmp_path / "t.parquet"), "cif_column": "cif", "id_column": None,
                        "energy_per_atom_column": "nope"})
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "rocksalt.cif").write_text(cif)
    known = read_known_set({"path": str(folder)})
    assert [e.entry_id for e in known.entries] == ["rocksalt"] and not known.has_energies
    with pytest.raises(KnownSetError, match="does not exist"):
        read_known_set({"path": str(tmp_path / "missing.json")})
    assert read_known_set({"path": None}) is None


def test_novelty_matches_by_formula_and_reports_the_known_id():
    known = read_known_set({"path": str(FIXTURE)})
    generated = [
        ("rocksalt_strained", structure("NaCl", "rocksalt", a=5.4, cubic=True)),  # conventional cell, other volume
        ("cscl_type", structure("NaCl", "cesiumchloride", a=3.3)),
        ("rutile_copy", next(e for e in known.entries if e.entry_id == "known-TiO2-rutile").structure()),
        ("no_such_formula", structure("Na", "fcc", a=5.3)),
    ]
    result = match_against_known(generated, known, MatchSettings())
    assert (result["rocksalt_strained"].novel, result["rocksalt_strained"].match_id) == (False, "known-NaCl-rocksalt")
    assert result["cscl_type"].novel and result["cscl_type"].match_id is None
    assert result["rutile_copy"].match_id == "known-TiO2-rutile"
    assert result["no_such_formula"].novel
    assert match_against_known(generated, known, MatchSettings(), workers=2) == result


def test_a_known_cif_with_oxidation_states_matches_the_same_crystal_without(tmp_path: Path):
    """ICSD and COD CIFs label sites Na+ / Cl-; generated CIFs do not: the crystal is the same."""
    rocksalt = structure("NaCl", "rocksalt", a=5.64)
    labelled = rocksalt.copy()
    labelled.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    folder = tmp_path / "icsd"
    folder.mkdir()
    CifWriter(labelled).write_file(folder / "NaCl_icsd.cif")
    known = read_known_set({"path": str(folder)})
    assert {str(sp) for sp in known.entries[0].structure().species} == {"Na+", "Cl-"}  # kept as read
    result = match_against_known([("generated", rocksalt)], known, MatchSettings())
    assert (result["generated"].novel, result["generated"].match_id) == (False, "NaCl_icsd")


def test_competing_phases_are_those_near_the_known_hull_capped_per_system():
    known = read_known_set({"path": str(FIXTURE)})
    chosen, notes = choose_competing_phases([{"Ti", "O"}], known, **caps(0.025, 3))
    ids = {p.entry_id for p in chosen}
    # Anatase lies 0.018 eV/atom above rutile (CRC enthalpies): inside 0.025, outside 0.01.
    assert ids == {"known-Ti-hcp", "known-TiO-rocksalt", "known-TiO2-rutile", "known-TiO2-anatase"}
    tight, _ = choose_competing_phases([{"Ti", "O"}], known, **caps(0.01, 3))
    assert "known-TiO2-anatase" not in {p.entry_id for p in tight}
    capped, notes = choose_competing_phases([{"Ti", "O"}], known, **caps(0.025, 1))
    # TiO and rutile are both on the known hull, which they define: the cap keeps them and drops
    # the metastable anatase, and the notes say so.
    assert {p.entry_id for p in capped} == {"known-Ti-hcp", "known-TiO-rocksalt", "known-TiO2-rutile"}
    assert "O-Ti: all 2 phases on the known hull kept although max_per_system is 1 (they define the hull)" in notes
    assert "O-Ti: kept 2 phases (max_per_system), not known-TiO2-anatase" in notes
    # ML energies (the ML stage's hook) replace the known set's: here they make anatase the ground state.
    ml = {"known-TiO2-rutile": -9.0, "known-TiO2-anatase": -9.1, "known-Ti-hcp": -7.0}
    by_ml, _ = choose_competing_phases([{"Ti", "O"}], known, **caps(0.0, 3), energies_per_atom=ml)
    assert {p.entry_id for p in by_ml} == {"known-TiO2-anatase", "known-Ti-hcp"}
    assert by_ml[0].energy_source == "ML energies"
    # Subsystems are included, and the key names the formula and the structure.
    na_cl, _ = choose_competing_phases([{"Na", "Cl"}], known, **caps(0.025, 3))
    rocksalt = next(p for p in na_cl if p.entry_id == "known-NaCl-rocksalt")
    assert {p.entry_id for p in na_cl} == {"known-Na-bcc", "known-NaCl-rocksalt"}
    entry = next(e for e in known.entries if e.entry_id == "known-NaCl-rocksalt")
    assert rocksalt.phase_key == f"NaCl-{structure_fingerprint(entry.structure())}"


def test_a_known_set_without_energies_gives_every_phase_up_to_the_cap(tmp_path: Path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    CifWriter(structure("NaCl", "rocksalt", a=5.64, cubic=True)).write_file(folder / "rs_conv.cif")
    CifWriter(structure("NaCl", "cesiumchloride", a=3.3)).write_file(folder / "cscl.cif")
    CifWriter(structure("Ti", "hcp", a=2.95, c=4.68)).write_file(folder / "ti.cif")
    known = read_known_set({"path": str(folder)})
    chosen, _ = choose_competing_phases([{"Na", "Cl"}], known, **caps(0.025, 1))
    assert [p.entry_id for p in chosen] == ["cscl"]  # the smaller cell first; Ti is another system
    assert chosen[0].e_above_known_hull_eV_per_atom is None


def test_fingerprint_is_stable_and_tells_structures_apart():
    a = structure("NaCl", "rocksalt", a=5.64)
    assert structure_fingerprint(a) == structure_fingerprint(a.copy())
    assert structure_fingerprint(a) != structure_fingerprint(structure("NaCl", "rocksalt", a=5.65))


@pytest.mark.parametrize(("formula", "valid"), [("NaCl", True), ("TiO2", True), ("LiFePO4", True),
                                                ("NaCl2", False), ("Fe3Al", True)])
def test_smact_validity(formula, valid):
    assert smact_valid(formula) is valid


def test_compare_with_known_reports_both_sets_and_writes_each_phase_once(tmp_path: Path):
    """The compare_known job's logic: database and training novelty apart, phases' CIFs in the library."""
    import os

    from dftscreen.compare_known import compare_with_known

    cifs = tmp_path / "cifs"
    cifs.mkdir()
    CifWriter(structure("NaCl", "rocksalt", a=5.5)).write_file(cifs / "rs.cif")
    CifWriter(structure("NaCl", "cesiumchloride", a=3.3)).write_file(cifs / "cscl.cif")
    training = tmp_path / "finetune.csv"
    pd.DataFrame({"material_id": ["ft-1"], "cif": [str(CifWriter(structure("NaCl", "cesiumchloride", a=3.4)))]}
                 ).to_csv(training, index=False)
    checks = [{"structure_id": sid, "reduced_formula": "NaCl"} for sid in ("rs", "cscl")]
    checks.append({"structure_id": "broken", "reduced_formula": None})
    config = {"database": {"path": str(FIXTURE)}, "training": {"path": str(training), "cif_column": "cif",
                                                                 "id_column": "material_id"},
              "competing_phases": {"max_above_hull_eV_per_atom": 0.025, "max_per_system": 5, "max_sites": 40,
                                   "include_elements": True}}
    library = tmp_path / "library" / "key"

    def run():
        return compare_with_known(checks, {"rs": str(cifs / "rs.cif"), "cscl": str(cifs / "cscl.cif")}, config,
                                  MatchSettings(), choose_phases=True, library_folder=str(library),
                                  settings={"preset": "test"})

    novelty, phases = run()
    rows = novelty["structures"]
    assert rows["rs"] == {"smact_valid": True, "novel": False, "matches_known_id": "known-NaCl-rocksalt",
                          "novel_vs_training": True, "matches_training_id": None}
    assert rows["cscl"]["novel"] and rows["cscl"]["matches_training_id"] == "ft-1"  # memorised, though novel
    assert rows["broken"] == {"smact_valid": None}
    assert "finetune.csv (1 structures)" == novelty["training_set"]
    keys = sorted(p["phase_key"] for p in phases["phases"])
    assert [k.split("-")[0] for k in keys] == ["Na", "NaCl"]
    start = library / "phases" / keys[1] / "start.cif"
    assert start.is_file() and (library / "settings.json").is_file()
    os.utime(start, (1_000_000, 1_000_000))
    run()  # unchanged phases keep their files' times: Snakemake reruns nothing
    assert start.stat().st_mtime == 1_000_000


def test_novelty_agrees_with_plain_structure_matcher_fit():
    """The speed-ups (formula index, site-count pruning, volume order) change no verdict."""
    import random
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    known = read_known_set({"path": str(FIXTURE)})
    rng = random.Random(1)
    generated = []
    for entry in known.entries:
        base = entry.structure()
        for k in range(3):
            copy = base.copy()
            copy.scale_lattice(base.volume * rng.uniform(0.9, 1.1))
            copy.perturb(rng.uniform(0.0, 0.25) if k else 0.0)
            generated.append((f"{entry.entry_id}_{k}", copy * (1, 1, 2) if k == 2 and len(base) < 6 else copy))
    generated += [("cscl", structure("NaCl", "cesiumchloride", a=3.3)), ("zb", structure("NaCl", "zincblende", a=6))]
    result = match_against_known(generated, known, MatchSettings())
    matcher = StructureMatcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sid, s in generated:
            fits = {e.entry_id for e in known.entries
                    if e.reduced_formula == s.composition.reduced_formula and matcher.fit(e.structure(), s)}
            assert result[sid].novel == (not fits), sid
            assert result[sid].match_id is None or result[sid].match_id in fits, sid


def _toy_entry(entry_id: str, structure, energy_per_atom_eV: float | None = None):
    from dftscreen.known import KnownEntry

    composition = structure.composition
    return KnownEntry(entry_id=entry_id, reduced_formula=composition.reduced_formula,
                      elements=frozenset(el.symbol for el in composition.elements), n_sites=len(structure),
                      energy_per_atom_eV=energy_per_atom_eV, _structure=structure)


def test_phases_are_ranked_on_the_hull_with_the_elements_even_when_elements_are_not_chosen():
    """include_elements=False leaves the elemental phases out of the choice, not out of the ranking hull."""
    from pymatgen.core import Lattice, Structure

    from dftscreen.known import KnownSet

    def toy(entry_id, species, energy):  # cells differ only to give each a distinct fingerprint
        return _toy_entry(entry_id, Structure(Lattice.cubic(3 + len(species)), species,
                                              [[k / len(species), 0, 0] for k in range(len(species))]), energy)

    entries = [toy("Fe", ["Fe"], 0.0), toy("O", ["O", "O"], 0.0), toy("FeO", ["Fe", "O"], -1.0),  # on the hull
               toy("Fe3O", ["Fe"] * 3 + ["O"], -0.45), toy("Fe5O", ["Fe"] * 5 + ["O"], -0.30)]  # 0.05, 0.033 above
    chosen, _ = choose_competing_phases([{"Fe", "O"}], KnownSet("toy", entries),
                                        **caps(0.025, 2, include_elements=False))
    assert [(c.entry_id, c.e_above_known_hull_eV_per_atom) for c in chosen] == [("FeO", pytest.approx(0.0))]


def test_disordered_known_entries_are_never_chosen():
    from pymatgen.core import Lattice, Structure

    from dftscreen.known import KnownSet

    disordered = _toy_entry("FeNi_A1", Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]))
    ordered = _toy_entry("FeNi_L10", Structure(Lattice.tetragonal(2.53, 3.58), ["Fe", "Ni"],
                                               [[0, 0, 0], [0.5, 0.5, 0.5]]))
    chosen, notes = choose_competing_phases([{"Fe", "Ni"}], KnownSet("toy", [disordered, ordered]),
                                            **caps(0.025, 1, include_elements=False))
    assert [c.entry_id for c in chosen] == ["FeNi_L10"]
    assert notes == ["FeNi_A1 (Fe0.5Ni0.5): skipped, a disordered structure (partial occupancies) "
                     "cannot be relaxed with DFT"]


def test_repeated_entry_ids_are_renamed_so_no_entry_takes_another_ones_place(caplog):
    """Hull distances, phase structures and matches_known_id are keyed by id."""
    from pymatgen.core import Lattice, Structure

    from dftscreen.known import KnownSet

    rocksalt = structure("NaCl", "rocksalt", a=5.64)
    cscl = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    known = KnownSet("toy", [_toy_entry("mp-1", cscl, -3.0), _toy_entry("mp-1", rocksalt, -3.5),
                             _toy_entry("mp-1", cscl, -3.0)])
    assert [e.entry_id for e in known.entries] == ["mp-1", "mp-1#2", "mp-1#3"]
    assert "2 entries repeat an earlier entry's id" in caplog.text
    result = match_against_known([("generated", rocksalt)], known, MatchSettings())
    assert result["generated"].match_id == "mp-1#2"


def test_relaxed_structures_are_judged_against_the_database_and_drive_the_sun_rate(tmp_path: Path):
    """A generated P4/nmm-like NaCl that relaxed into rocksalt is novel as generated, known once relaxed."""
    from dftscreen.compare_known import relaxed_novelty
    from dftscreen.io import atomic_write_json
    from dftscreen.summary import summarize
    from dftscreen.table import add_known_columns
    from dftscreen.verdict import verdict

    records = {}
    for sid, cif in (("to_rocksalt", structure("NaCl", "rocksalt", a=5.6)),
                     ("cscl", structure("NaCl", "cesiumchloride", a=3.4)), ("no_cif", None), ("broken", "x")):
        folder = tmp_path / "dft" / sid
        folder.mkdir(parents=True)
        record = {"status": "relaxed" if cif is not None else "failed"}
        if cif is not None:
            record["relaxed_cif"] = "relaxed.cif"
            if isinstance(cif, str):
                (folder / "relaxed.cif").write_text("data_broken\n_cell_length_a 1\n")
            else:
                CifWriter(cif).write_file(folder / "relaxed.cif")
        atomic_write_json(folder / "relax.json", record)
        records[sid] = str(folder / "relax.json")
    config = {"database": {"path": str(FIXTURE)}}
    relaxed = relaxed_novelty(records, config, MatchSettings())
    assert relaxed["known_set"] == read_known_set(config["database"]).label
    # A structure without a (readable) relaxed CIF has no relaxed novelty; the others keep theirs.
    assert relaxed["structures"] == {
        "to_rocksalt": {"relaxed_novel": False, "relaxed_matches_known_id": "known-NaCl-rocksalt"},
        "cscl": {"relaxed_novel": True, "relaxed_matches_known_id": None},
    }
    assert relaxed_novelty(records, {"database": {"path": None}}, MatchSettings()) == {
        "known_set": None, "structures": {}}

    novelty = {"known_set": "db", "training_set": None, "structures": {
        sid: {"smact_valid": True, "novel": True, "matches_known_id": None} for sid in ("to_rocksalt", "cscl")}}
    table = pd.DataFrame({"structure_id": ["to_rocksalt", "cscl", "copy"], "status": ["ok", "ok", "duplicate"],
                          "duplicate_of": [None, None, "to_rocksalt"],
                          "e_above_hull_eV_per_atom": [0.0, 0.05, 0.0]})
    table = add_known_columns(table, novelty, relaxed)
    assert table["relaxed_matches_known_id"].tolist() == ["known-NaCl-rocksalt", None, "known-NaCl-rocksalt"]
    summary = summarize(table, stable_threshold_eV_per_atom=0.1, known_set="db")
    assert summary["novel"]["count"] == 2
    assert summary["novel_after_relaxation"]["count"] == 1
    # S.U.N. counts the relaxed structure: only the CsCl-type one.
    assert summary["stable_unique_novel"]["count"] == 1
    assert summary["stable_unique_novel"]["novelty_of"] == "DFT-relaxed structure"
    row = table.set_index("structure_id").loc["to_rocksalt"].to_dict()
    assert verdict(row, stable_threshold_eV_per_atom=0.1).startswith(
        "novel as generated, but relaxes into known known-NaCl-rocksalt, stable"
    )
