"""The machine-learned stage (dftscreen.ml): batching, screening, DFT start, provenance, resume.

Tests marked nothing run on the CPU with the SevenNet-0 weights from the installed
sevenn wheel (offline); the one workflow test is marked e2e.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dftscreen import columns, ml, ml_hull, status_codes
from dftscreen import table as table_module
from dftscreen.layout import ResultsLayout, generated_cif_beside
from dftscreen.plan import ml_batches
from dftscreen.summary import ml_agreement, summarize

from conftest import EXAMPLES, REPO

pytest.importorskip("sevenn", reason="the ML stage needs the sevenn package (pyproject dependency)")

#: Small example structures (5, 2 and 5 atoms).
BATCH = [
    ("MgGeO3", EXAMPLES / "MgGeO3_perov5_16100.cif"),
    ("NaCl", EXAMPLES / "NaCl_crystallm_P4nmm.cif"),
    ("ScBN2O", EXAMPLES / "ScBN2O_perov5_6130.cif"),
]
#: Loose and short, so a test relaxation takes seconds; the shipped defaults are tighter.
QUICK = ml.MLSettings(optimizer="BFGS", fmax_eV_per_A=0.05, max_steps=200)


@pytest.fixture(scope="module")
def calculator():
    """SevenNet-0 from the installed wheel, loaded once for the module (one torch thread)."""
    return ml.load_calculator(ml.DEFAULT_MODEL, threads=1)


# --- no model needed ---------------------------------------------------------------------


def test_batches_are_few_cover_every_id_and_adding_one_moves_no_other():
    ids = [f"s{i:03d}" for i in range(95)]
    batches = ml_batches(ids, batch_size=20)
    assert len(batches) == 5
    assert sorted(sid for members in batches.values() for sid in members) == ids
    # One more structure, same number of batches: every earlier id keeps its batch.
    grown = ml_batches([*ids, "s999"], batch_size=20)
    where = {sid: n for n, members in batches.items() for sid in members}
    assert all(where[sid] == n for n, members in grown.items() for sid in members if sid != "s999")


def test_screen_threshold_by_preset_number_and_off():
    config = {"enabled": True, "screen_e_above_hull_eV_per_atom": "by_preset",
              "screen_by_preset": {"test": None, "fast": 0.2}}
    assert ml_hull.screen_threshold(config, "test") is None
    assert ml_hull.screen_threshold(config, "fast") == 0.2
    assert ml_hull.screen_threshold(config, "my_preset") is None
    assert ml_hull.screen_threshold({**config, "screen_e_above_hull_eV_per_atom": 0.05}, "test") == 0.05
    assert ml_hull.screen_threshold({**config, "screen_e_above_hull_eV_per_atom": None}, "fast") is None
    assert ml_hull.screen_threshold({**config, "enabled": False}, "fast") is None


def _record(formula: str, energy_eV: float, status: str = status_codes.RELAXED) -> dict:
    return {"formula": formula, "energy_eV": energy_eV, "status": status}


# Made-up energies (eV): only the hull arithmetic is under test here.
ELEMENTS = {"elements": [{**_record("Na1", -1.3), "element": "Na"}, {**_record("Cl2", -3.6), "element": "Cl"}],
            "phases": []}


def test_screen_uses_ml_hull_and_threshold_moves_a_structure_between_dft_and_screened_out():
    records = {"low": _record("Na1 Cl1", -6.5), "high": _record("Na1 Cl1", -6.1),
               "broken": _record("Na1 Cl1", -6.0, status=status_codes.FAILED)}
    ids = [*records, "no_record"]
    strict = ml_hull.screen(ids, records, ELEMENTS, threshold_eV_per_atom=0.1)
    column = strict["hull_column"]
    assert strict["structures"]["high"][column] == pytest.approx(0.2)
    assert strict["structures"]["low"][column] == pytest.approx(0.0)
    assert strict["structures"]["low"][columns.ML_FORMATION_COLUMN] == pytest.approx((-6.5 + 1.3 + 1.8) / 2)
    assert strict["screened_out_ids"] == ["high"]
    # Without an ML verdict a structure is never screened out.
    assert strict["dft_ids"] == ["broken", "low", "no_record"]
    loose = ml_hull.screen(ids, records, ELEMENTS, threshold_eV_per_atom=0.3)
    assert loose["screened_out_ids"] == [] and "high" in loose["dft_ids"]
    off = ml_hull.screen(ids, records, ELEMENTS, threshold_eV_per_atom=None)
    assert off["screened_out_ids"] == []
    # One model per hull: a record of another model has no verdict (and is not screened out).
    mixed = {sid: {**r, "ml_checkpoint_sha256": "model-a"} for sid, r in records.items()}
    mixed["high"]["ml_checkpoint_sha256"] = "model-b"
    references = {"elements": [{**r, "ml_checkpoint_sha256": "model-a"} for r in ELEMENTS["elements"]],
                  "phases": []}
    one_model = ml_hull.screen(ids, mixed, references, 0.1, checkpoint_sha256="model-a")
    assert one_model["screened_out_ids"] == [] and one_model["structures"]["high"]["note"] == "no ML record"


def test_known_phases_make_the_ml_hull_and_screen_out_a_polymorph_above_them():
    """Issue 29: with the known phases compare_known chose, a lone polymorph is measured against them
    (negative below), not against the elements and the other generated structures."""
    polymorph = {"cscl": _record("Na1 Cl1", -6.1)}
    alone = ml_hull.screen(["cscl"], polymorph, ELEMENTS, threshold_eV_per_atom=0.1)
    assert alone["hull_column"] == columns.ML_E_HULL_COLUMN_NO_PHASES and alone["screened_out_ids"] == []
    known = {**ELEMENTS, "known_phases": [
        {**_record("Na1 Cl1", -6.5), "structure_id": "NaCl-abc", "entry_id": "mp-22862"},
        # An elemental known phase lower than the reference stands for its element (lowest per element).
        {**_record("Na2", -2.8), "structure_id": "Na-def", "entry_id": "mp-10172"},
    ]}
    below = {"low": _record("Na1 Cl1", -6.7)}
    judged = ml_hull.screen(["cscl", "low"], {**polymorph, **below}, known, threshold_eV_per_atom=0.1)
    column = judged["hull_column"]
    assert column == columns.ML_E_HULL_COLUMN
    assert judged["structures"]["cscl"][column] == pytest.approx(0.2)
    assert judged["structures"]["low"][column] == pytest.approx(-0.1)  # below the known hull, not part of it
    assert judged["screened_out_ids"] == ["cscl"]
    assert judged["structures"]["low"][columns.ML_FORMATION_COLUMN] == pytest.approx((-6.7 + 1.4 + 1.8) / 2)
    label = judged["structures"]["cscl"]["ml_hull_reference"]
    assert label == "ML: elements + 1 reference phases (NaCl-abc [mp-22862])"
    assert judged["hull_phases"] == ["Na-def [mp-10172]", "NaCl-abc [mp-22862]"]


def test_dft_start_is_the_ml_geometry_only_when_prerelaxing_and_usable(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path)
    generated = "cifs/x.cif"
    assert ml_hull.dft_start_cif(layout, "x", generated, prerelax=False) == generated
    # Before the ML record exists: the ML path (a missing input, never a silent fallback).
    assert ml_hull.dft_start_cif(layout, "x", generated, prerelax=True) == layout.ml_relaxed_cif("x")
    Path(layout.ml_record("x")).parent.mkdir(parents=True)
    Path(layout.ml_record("x")).write_text(json.dumps({"usable_as_dft_start": False}))
    assert ml_hull.dft_start_cif(layout, "x", generated, prerelax=True) == generated
    Path(layout.ml_record("x")).write_text(json.dumps({"usable_as_dft_start": True}))
    assert ml_hull.dft_start_cif(layout, "x", generated, prerelax=True) == layout.ml_relaxed_cif("x")


def test_dft_relaxation_from_ml_geometry_compares_with_the_generated_cif(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path)
    relaxed, beside = Path(layout.ml_relaxed_cif("x")), Path(layout.ml_generated_cif("x"))
    relaxed.parent.mkdir(parents=True)
    relaxed.write_text("data_x\n")
    assert generated_cif_beside(relaxed) is None  # no copy of the generated CIF: compare with the start
    beside.write_text("data_x\n")
    assert generated_cif_beside(relaxed) == beside
    assert generated_cif_beside(EXAMPLES / "MgGeO3_perov5_16100.cif") is None


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_agreement_confusion_mae_and_what_each_screen_would_discard():
    hull, ml_hull = "e_above_hull_eV_per_atom", columns.ML_E_HULL_COLUMN
    table = _table([
        {"structure_id": "a", "status": "ok", hull: 0.00, ml_hull: 0.02, "formation_energy_eV_per_atom": -1.0,
         columns.ML_FORMATION_COLUMN: -1.1, "ml_model": "7net-0"},
        {"structure_id": "b", "status": "ok", hull: 0.08, ml_hull: 0.25, "formation_energy_eV_per_atom": -0.5,
         columns.ML_FORMATION_COLUMN: -0.3, "ml_model": "7net-0"},
        {"structure_id": "c", "status": "ok", hull: 0.40, ml_hull: 0.45, "formation_energy_eV_per_atom": 0.2,
         columns.ML_FORMATION_COLUMN: 0.2, "ml_model": "7net-0"},
        {"structure_id": "d", "status": "screened_out", hull: None, ml_hull: 0.9, "ml_model": "7net-0"},
    ])
    result = ml_agreement(table, stable_threshold_eV_per_atom=0.1)
    assert result["n_compared"] == 3 and result["n_screened_out"] == 1
    assert result["confusion"]["0.05"] == {
        "both_stable": 1, "ml_stable_dft_unstable": 0, "ml_unstable_dft_stable": 0, "both_unstable": 2,
        "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert result["confusion"]["0.1"]["ml_unstable_dft_stable"] == 1  # b: DFT 0.08, ML 0.25
    assert result["formation_energy_mae_eV_per_atom"] == pytest.approx(0.1)
    assert result["dft_stable"] == 2
    assert result["dft_stable_discarded_by_screen"]["0.2"] == 1
    assert result["dft_stable_discarded_by_screen"]["0.3"] == 0
    assert result["dft_stable_discarded_by_screen"]["0"] == 2
    summary = summarize(table, stable_threshold_eV_per_atom=0.1)
    assert summary["ml_vs_dft"]["n_compared"] == 3
    assert summary["valid"]["count"] == 4  # a screened-out structure was valid


def test_screened_out_row_has_ml_values_and_no_dft(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path)
    for sid, energy in (("low", -6.5), ("high", -6.1)):
        Path(layout.ml_record(sid)).parent.mkdir(parents=True)
        Path(layout.ml_record(sid)).write_text(json.dumps({
            **_record("Na1 Cl1", energy), "ml_model": "7net-0", "ml_package_version": "x",
            "ml_checkpoint_sha256": "abc", "energy_per_atom_eV": energy / 2, "usable_as_dft_start": True,
            "relaxed_cif": "relaxed.cif"}))
    result = ml_hull.screen(["low", "high"], ml_hull.read_records(layout, ["low", "high"]), ELEMENTS, 0.1)
    ml_hull.write_screen(result, layout.ml_screen, layout.ml_dft_ids)
    assert Path(layout.ml_dft_ids).read_text() == "low\n"
    table = pd.DataFrame([
        {"structure_id": "low", "status": status_codes.OK, "reason": "", "energy_eV": -7.0},
        {"structure_id": "high", "status": status_codes.NOT_FINISHED, "reason": "relaxation has not finished",
         "energy_eV": None},
    ])
    out = table_module.add_ml_columns(table, tmp_path).set_index("structure_id")
    assert out.loc["high", "status"] == status_codes.SCREENED_OUT
    assert "exceeds the screening threshold 0.1" in out.loc["high", "reason"]
    assert out.loc["high", result["hull_column"]] == pytest.approx(0.2)
    assert pd.isna(out.loc["high", "energy_eV"])
    assert out.loc["low", "status"] == status_codes.OK
    assert out.loc["low", "dft_start_geometry"] == "ml_relaxed"
    assert out.loc["low", "ml_model"] == "7net-0"


def test_duplicate_of_a_screened_out_structure_says_its_representative_was_screened_out(tmp_path: Path):
    from dftscreen.aggregate import build_table
    from dftscreen.check import CheckResult
    from dftscreen.io import atomic_write_json
    from dftscreen.table import add_verdicts

    layout = ResultsLayout.of(tmp_path)
    checks = [CheckResult(structure_id="rep", source_file="rep.cif", valid=True, n_sites=2).to_dict(),
              CheckResult(structure_id="dup", source_file="dup.cif", valid=False, status="duplicate",
                          duplicate_of="rep", reason="same structure as rep", n_sites=2).to_dict()]
    note = "ML energy above hull 0.450 eV/atom exceeds the screening threshold 0.2 eV/atom; no DFT"
    atomic_write_json(layout.ml_screen, {
        "threshold_eV_per_atom": 0.2, "hull_column": "ml_e_above_hull_eV_per_atom", "dft_ids": [],
        "structures": {"rep": {"screened_out": True, "note": note, "ml_e_above_hull_eV_per_atom": 0.45}},
        "screened_out_ids": ["rep"]})
    atomic_write_json(layout.ml_record("rep"), {"status": "relaxed", "energy_per_atom_eV": -3.0})
    table = table_module.add_ml_columns(build_table(checks, layout.dft_dir), tmp_path)
    table = add_verdicts(table, stable_threshold_eV_per_atom=0.1).set_index("structure_id")
    assert table.loc["rep", "status"] == status_codes.SCREENED_OUT
    duplicate = table.loc["dup"]
    assert duplicate["status"] == status_codes.DUPLICATE
    # Not "DFT status of rep: not_finished" (which asks for a rerun): rep's DFT never ran.
    assert duplicate["reason"] == f"same structure as rep (rep was screened out by ML: {note})"
    assert duplicate["verdict"] == (
        "duplicate of rep, which was screened out by ML before DFT (0.45 eV/atom above the ML hull)"
    )


# --- with the model (CPU, offline) ------------------------------------------------------------


def test_prerelaxation_lowers_the_ml_energy_of_a_distorted_cell(calculator):
    from ase.io import read

    atoms = read(EXAMPLES / "MgGeO3_perov5_16100.cif")
    atoms.set_cell(atoms.cell * 1.06, scale_atoms=True)  # every length 6 % too long
    relaxed, record = ml.relax_atoms(atoms, calculator, QUICK)
    assert record["converged"]
    assert record["energy_eV"] < record["initial_energy_eV"] - 0.05
    assert record["max_force_eV_per_A"] <= QUICK.fmax_eV_per_A
    assert record["final_volume_A3"] < record["initial_volume_A3"]  # the stretch is undone
    # The returned geometry is the one the energy belongs to.
    assert relaxed.get_potential_energy() == pytest.approx(record["energy_eV"], abs=1e-4)


def test_batch_writes_provenance_and_the_geometry_dft_reads(tmp_path: Path, calculator):
    from ase.io import read

    layout = ResultsLayout.of(tmp_path)
    summary = ml.run_batch([("MgGeO3", str(BATCH[0][1]))], layout, QUICK, lambda: calculator,
                           out_json=layout.ml_batch_record(0))
    assert summary["computed"] == ["MgGeO3"]
    record = json.loads(Path(layout.ml_record("MgGeO3")).read_text())
    checkpoint = ml.checkpoint_path(ml.DEFAULT_MODEL)
    assert checkpoint.is_relative_to(Path(__import__("sevenn").__file__).parent)  # shipped in the wheel
    assert record["ml_model"] == "7net-0"
    assert record["ml_package_version"] == version("sevenn")
    assert record["ml_checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert record["status"] == status_codes.RELAXED and record["usable_as_dft_start"]
    # The CIF the DFT rule reads holds the ML-relaxed cell, and the generated CIF is kept beside it.
    start = ml_hull.dft_start_cif(layout, "MgGeO3", str(BATCH[0][1]), prerelax=True)
    assert start == layout.ml_relaxed_cif("MgGeO3")
    assert read(start).get_volume() == pytest.approx(record["final_volume_A3"], rel=1e-4)
    assert Path(layout.ml_generated_cif("MgGeO3")).read_bytes() == BATCH[0][1].read_bytes()
    assert generated_cif_beside(start) == Path(layout.ml_generated_cif("MgGeO3"))
    row = table_module.ml_row(record, None, layout, "MgGeO3", prerelax=True)
    assert row["ml_checkpoint_sha256"] == record["ml_checkpoint_sha256"]
    assert row["dft_start_geometry"] == "ml_relaxed"


KILLABLE_BATCH = """
import sys
from pathlib import Path
from dftscreen import ml
from dftscreen.layout import ResultsLayout
settings = ml.MLSettings(optimizer="BFGS", fmax_eV_per_A=0.05, max_steps=200)  # = QUICK
items = [(sid, cif) for sid, cif in zip(sys.argv[2::2], sys.argv[3::2])]
ml.run_batch(items, ResultsLayout.of(sys.argv[1]), settings, lambda: ml.load_calculator("7net-0", 1))
"""


def test_a_killed_batch_keeps_what_it_finished_and_the_rerun_does_only_the_rest(tmp_path: Path, calculator):
    layout = ResultsLayout.of(tmp_path / "out")
    args = [str(tmp_path / "out")] + [str(x) for sid, cif in BATCH for x in (sid, cif)]
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_BATCH, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = Path(layout.ml_record(BATCH[0][0]))
    deadline = time.monotonic() + 300
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_file(), proc.stderr.read()[-3000:]
    finished = [sid for sid, _ in BATCH if Path(layout.ml_record(sid)).is_file()]
    assert BATCH[-1][0] not in finished, "the batch finished before it could be killed"
    finished_records = {sid: Path(layout.ml_record(sid)).read_text() for sid in finished}

    loads = []
    summary = ml.run_batch([(sid, str(cif)) for sid, cif in BATCH], layout, QUICK,
                           lambda: loads.append(1) or calculator)
    assert summary["reused"] == finished
    assert summary["computed"] == [sid for sid, _ in BATCH if sid not in finished]
    assert loads == [1]  # the model is loaded once per job
    # What was finished is untouched; everything is there now.
    assert all(Path(layout.ml_record(sid)).read_text() == text for sid, text in finished_records.items())
    assert all(Path(layout.ml_record(sid)).is_file() for sid, _ in BATCH)
    # A rerun with nothing left to do does not even load the model.
    again = ml.run_batch([(sid, str(cif)) for sid, cif in BATCH], layout, QUICK,
                         lambda: pytest.fail("model loaded with nothing to do"))
    assert again["computed"] == []
    # Other settings: the records are stale and recomputed.
    other = ml.MLSettings(optimizer="BFGS", fmax_eV_per_A=0.04, max_steps=200)
    changed = ml.run_batch([BATCH[0]], layout, other, lambda: calculator)
    assert changed["computed"] == [BATCH[0][0]]


def test_references_are_the_dft_reference_structures_relaxed_with_the_model(tmp_path: Path, calculator):
    layout = ResultsLayout.of(tmp_path)
    records = ml.relax_references(["Na", "Cl", "At"], {}, {"rocksalt": str(EXAMPLES / "NaCl_crystallm_P4nmm.cif")},
                                  layout, QUICK, lambda: calculator, out_json=layout.ml_references)
    by_element = {r["element"]: r for r in records["elements"]}
    assert by_element["Na"]["status"] == status_codes.RELAXED
    assert by_element["Cl"]["reference_kind"] == "molecule"  # Cl2 in a box, as for DFT
    # Astatine (no PAW dataset, no crystal ASE builds): the reason is the record's.
    assert by_element["At"]["status"] == status_codes.FAILED and "no automatic elemental reference" in (
        by_element["At"]["reason"])
    assert records["phases"][0]["status"] == status_codes.RELAXED
    assert np.isfinite(records["phases"][0]["energy_eV"])


def test_known_phases_are_relaxed_once_per_model_and_kept_in_the_reference_library(tmp_path: Path, calculator):
    from dftscreen.layout import ReferenceLibrary

    library = ReferenceLibrary(str(tmp_path / "library"), "dft-settings")
    start = tmp_path / "library" / "dft-settings" / "phases" / "NaCl-abc" / "start.cif"
    start.parent.mkdir(parents=True)
    start.write_bytes((EXAMPLES / "NaCl_crystallm_P4nmm.cif").read_bytes())
    known = {"NaCl-abc": {"start_cif": str(start), "entry_id": "mp-1"}}
    calls = []

    def factory():
        calls.append(1)
        return calculator

    first = ml.relax_references([], {}, {}, ResultsLayout.of(tmp_path / "run1"), QUICK, factory,
                                known_phases=known, library=library)
    record = first["known_phases"][0]
    assert record["status"] == status_codes.RELAXED and record["structure_id"] == "NaCl-abc"
    assert record["entry_id"] == "mp-1" and record["reference_description"] == "known phase mp-1"
    key = ml.model_key(QUICK, record["ml_checkpoint_sha256"])
    assert key.startswith("7net-0-") and record["ml_model_key"] == key
    path = Path(library.ml_phase_record(key, "NaCl-abc"))
    assert path.is_file() and path.is_relative_to(tmp_path / "library" / "ml")
    # Another run (other results folder, another known set naming it otherwise) reuses it: no model loaded.
    again = ml.relax_references([], {}, {}, ResultsLayout.of(tmp_path / "run2"), QUICK, factory,
                                known_phases={"NaCl-abc": {**known["NaCl-abc"], "entry_id": "other-7"}},
                                library=library)
    assert calls == [1] and again["known_phases"][0]["energy_eV"] == record["energy_eV"]
    assert again["known_phases"][0]["entry_id"] == "other-7"
    # Other relaxation settings: another model key, computed again.
    looser = ml.MLSettings(optimizer="BFGS", fmax_eV_per_A=0.1, max_steps=200)
    assert ml.model_key(looser, record["ml_checkpoint_sha256"]) != key


def test_the_screen_audit_sends_a_seeded_sample_of_screened_out_structures_to_dft():
    """ml.audit_fraction: about that fraction of the screened-out ids join dft_ids, the same ones on a rerun,
    and adding structures keeps the others' draws."""
    ids = [f"s{i:03d}" for i in range(400)]
    verdicts = {sid: {"screened_out": i % 2 == 0, "note": "ML energy above hull ...; no DFT"} for i, sid in
                enumerate(ids)}
    screened = [sid for sid in ids if verdicts[sid]["screened_out"]]
    result = {"structures": verdicts, "dft_ids": [s for s in ids if s not in screened], "screened_out_ids": screened}
    audited = ml_hull.audit(result, fraction=0.25, seed=7)
    assert 0.15 < len(audited["audited_ids"]) / len(screened) < 0.35
    assert set(audited["audited_ids"]) <= set(screened) and set(audited["audited_ids"]) <= set(audited["dft_ids"])
    assert audited == ml_hull.audit(result, fraction=0.25, seed=7)
    assert ml_hull.audit(result, fraction=0.25, seed=8)["audited_ids"] != audited["audited_ids"]
    assert ml_hull.audit(result, fraction=0.0, seed=7)["dft_ids"] == result["dft_ids"]
    first = audited["audited_ids"][0]
    verdict = audited["structures"][first]
    assert verdict["audited"] and "audited: goes to DFT anyway" in verdict["note"]
    assert "audited" not in result["structures"][first]  # the input is not changed


def test_an_audited_row_keeps_its_dft_status_and_says_how_likely_its_dft_was(tmp_path: Path):
    from dftscreen.aggregate import build_table
    from dftscreen.check import CheckResult
    from dftscreen.io import atomic_write_json

    layout = ResultsLayout.of(tmp_path)
    checks = [CheckResult(structure_id=sid, source_file=f"{sid}.cif", valid=True, n_sites=2).to_dict()
              for sid in ("kept", "audited", "dropped")]
    note = "ML energy above hull 0.450 eV/atom exceeds the screening threshold 0.2 eV/atom"
    atomic_write_json(layout.ml_screen, {
        "threshold_eV_per_atom": 0.2, "hull_column": "ml_e_above_hull_eV_per_atom", "audit_fraction": 0.1,
        "structures": {"kept": {"screened_out": False, "note": ""},
                       "audited": {"screened_out": True, "audited": True, "note": note},
                       "dropped": {"screened_out": True, "note": note}},
        "dft_ids": ["kept", "audited"], "screened_out_ids": ["audited", "dropped"], "audited_ids": ["audited"]})
    for sid in ("kept", "audited", "dropped"):
        atomic_write_json(layout.ml_record(sid), {"status": "relaxed", "energy_per_atom_eV": -3.0})
    table = table_module.add_ml_columns(build_table(checks, layout.dft_dir), tmp_path).set_index("structure_id")
    assert table.loc["audited", "status"] == status_codes.NOT_FINISHED  # its DFT is to run, not screened out
    assert table.loc["dropped", "status"] == status_codes.SCREENED_OUT
    assert list(table["ml_screened_out"]) == [False, True, True]
    assert list(table["ml_audited"]) == [False, True, False]
    assert list(table["dft_inclusion_probability"]) == [1.0, 0.1, 0.1]


def test_a_sulfide_and_a_manganese_compound_get_ml_formation_energies(tmp_path: Path, calculator):
    """Issue 29: α-S and α-Mn (references.PUBLISHED_CRYSTALS) are the ML references of S and Mn,
    through the same function as for DFT, so ZnS and MnO get plausible ML formation energies."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    layout = ResultsLayout.of(tmp_path)
    crystals = {"ZnS": bulk("ZnS", "zincblende", a=5.41), "MnO": bulk("MnO", "rocksalt", a=4.445)}
    items = []
    for sid, atoms in crystals.items():
        cif = tmp_path / f"{sid}.cif"
        CifWriter(AseAtomsAdaptor.get_structure(atoms)).write_file(cif)
        items.append((sid, str(cif)))
    ml.run_batch(items, layout, QUICK, lambda: calculator)
    references = ml.relax_references(["Mn", "O", "S", "Zn"], {}, {}, layout, QUICK, lambda: calculator)
    by_element = {r["element"]: r for r in references["elements"]}
    assert "α-S" in by_element["S"]["reference_description"] and by_element["S"]["n_atoms"] == 32
    assert "α-Mn" in by_element["Mn"]["reference_description"] and by_element["Mn"]["n_atoms"] == 29
    records = ml_hull.read_records(layout, list(crystals))
    verdicts = ml_hull.screen(list(crystals), records, references, None)["structures"]
    formation = {sid: verdicts[sid].get(columns.ML_FORMATION_COLUMN) for sid in crystals}
    # SevenNet-0 learned Materials Project energies without MP's fitted corrections (MP2020, pymatgen's
    # MP2020Compatibility.yaml: -0.503 eV per sulfide S, -0.687 per oxide O, -1.668 per Mn with U). The
    # measured formation enthalpies (ZnS -2.13, MnO -3.99 eV per formula unit) less those corrections:
    # ZnS (-2.13 + 0.503) / 2 = -0.81 and MnO (-3.99 + 1.668 + 0.687) / 2 = -0.82 eV/atom.
    assert -1.2 < formation["ZnS"] < -0.5, verdicts["ZnS"]
    assert -1.2 < formation["MnO"] < -0.5, verdicts["MnO"]
