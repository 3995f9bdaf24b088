"""End to end with real GPAW (test preset): novelty against a known set, competing phases chosen
from it and relaxed, and a reference library that a second run reuses without any new job."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ase.build import bulk
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from conftest import REPO, run_snakemake, write_run_config

pytestmark = [pytest.mark.e2e, pytest.mark.dft]

FIXTURE = REPO / "tests" / "data" / "known" / "known_NaCl_TiO_LiFePO.json.gz"


def write_cif(path: Path, *bulk_args, **bulk_kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    CifWriter(AseAtomsAdaptor.get_structure(bulk(*bulk_args, **bulk_kwargs))).write_file(path)


def job_counts(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs that ran, per rule, from Snakemake's 'Finished jobid: N (Rule: name)' lines.

    (Its 'Job stats' table is printed before the checkpoints add the DFT jobs, so it cannot count them.)
    """
    counts: dict[str, int] = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", proc.stdout + proc.stderr):
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def run(workdir: Path, inputs: str, output_dir: str) -> subprocess.CompletedProcess:
    write_run_config(workdir, {
        "input": {"cif_dir": inputs}, "output_dir": output_dir,
        "dft": {"preset": "test"},
        "known_materials": {"database": {"path": str(FIXTURE)}},
        # Shared by both runs, as two runs of a study would share it.
        "stability": {"reference_library_dir": "library"},
    })
    return run_snakemake(workdir, profile="local", timeout=1800)


def test_novelty_competing_phases_and_reused_library(tmp_path: Path):
    # Run 1: a known crystal (rocksalt NaCl, strained) and a polymorph of it (CsCl-type NaCl).
    write_cif(tmp_path / "run1" / "rocksalt_strained.cif", "NaCl", "rocksalt", a=5.5)
    write_cif(tmp_path / "run1" / "cscl_type.cif", "NaCl", "cesiumchloride", a=3.3)
    first = run(tmp_path, "run1", "out1")
    assert first.returncode == 0, first.stderr[-5000:]
    counts = job_counts(first)
    # Na (bcc, and the Δ-test's 9R Na as second candidate) and Cl2; from the fixture's Na-Cl
    # hull bcc Na and rocksalt NaCl, of which bcc Na is the very structure of Na's first
    # candidate, so it is computed once, as the element.
    assert counts.get("element_reference") == 3 and counts.get("relax_competing_phase") == 1, counts

    chosen = yaml.safe_load((tmp_path / "out1" / "known" / "competing_phases.json").read_text())
    assert sorted(p["entry_id"] for p in chosen["phases"]) == ["known-Na-bcc", "known-NaCl-rocksalt"]
    table = pd.read_csv(tmp_path / "out1" / "results.csv").set_index("structure_id")
    known, polymorph = table.loc["rocksalt_strained"], table.loc["cscl_type"]
    assert known["status"] == "ok" and polymorph["status"] == "ok", table["reason"].tolist()
    assert not known["novel"] and known["matches_known_id"] == "known-NaCl-rocksalt"
    assert polymorph["novel"] and pd.isna(polymorph["matches_known_id"])
    assert known["smact_valid"] and polymorph["smact_valid"]
    # The hull holds the relaxed known ground state (rocksalt), named in hull_reference.
    rocksalt_key = next(p["phase_key"] for p in chosen["phases"] if p["entry_id"] == "known-NaCl-rocksalt")
    assert f"{rocksalt_key} [known-NaCl-rocksalt]" in polymorph["hull_reference"]
    # The generated rocksalt relaxes to the same crystal as the known one: on the hull.
    assert abs(known["e_above_hull_eV_per_atom"]) < 0.01
    # CsCl-type NaCl is the high-pressure phase: above the rocksalt ground state.
    assert polymorph["e_above_hull_eV_per_atom"] > 0.02
    assert polymorph["decomposition_products"].startswith("NaCl")
    # Na's reference is the lower of its two candidates (bcc, 9R).
    assert "Na: " in polymorph["elemental_references"] and "Cl: Cl2 molecule" in polymorph["elemental_references"]
    summary = yaml.safe_load((tmp_path / "out1" / "summary.json").read_text())
    assert summary["novel"]["count"] == 1 and "known_NaCl_TiO_LiFePO" in summary["novel"]["known_set"]
    # The relaxed structures are judged too (compare_known_relaxed): rocksalt stays rocksalt,
    # CsCl-type (kept by the symmetry-constrained relaxation) stays novel; S.U.N. counts those.
    assert known["relaxed_matches_known_id"] == "known-NaCl-rocksalt" and not known["relaxed_novel"]
    assert polymorph["relaxed_novel"] and pd.isna(polymorph["relaxed_matches_known_id"])
    assert counts.get("compare_known_relaxed") == 1, counts
    assert summary["stable_unique_novel"]["novelty_of"] == "DFT-relaxed structure"
    expected_sun = int(polymorph["e_above_hull_eV_per_atom"] <= summary["stable_threshold_eV_per_atom"])
    assert summary["stable_unique_novel"]["count"] == expected_sun
    assert summary["stable_unique_novel"]["hull_column"] == "e_above_hull_eV_per_atom"

    # The ML pre-screen's hull holds the same known phase, relaxed by the ML model (issue 29),
    # its record kept in the library per model.
    assert f"{rocksalt_key} [known-NaCl-rocksalt]" in polymorph["ml_hull_reference"]
    assert polymorph["ml_e_above_hull_eV_per_atom"] > 0.02
    ml_records = sorted((tmp_path / "library" / "ml").glob("*/phases/*.json"))
    assert [p.stem for p in ml_records] == [rocksalt_key], ml_records
    ml_record_time = ml_records[0].stat().st_mtime_ns

    # The known set's index (dftscreen.known_index) is kept in the library for the next run.
    assert len(list((tmp_path / "library" / "known_index").glob("*.index.npz"))) == 1

    # Run 2: other structures in the same chemical system, another output folder, same library.
    write_cif(tmp_path / "run2" / "zincblende.cif", "NaCl", "zincblende", a=6.0)
    second = run(tmp_path, "run2", "out2")
    assert second.returncode == 0, second.stderr[-5000:]
    counts = job_counts(second)
    assert counts.get("relax") == 1, counts
    assert "element_reference" not in counts and "relax_competing_phase" not in counts, counts
    log = (tmp_path / "out2" / "logs" / "compare_known.log").read_text()
    assert "read from its index" in log and "index written" not in log, log  # the JSON was not parsed again
    row = pd.read_csv(tmp_path / "out2" / "results.csv").set_index("structure_id").loc["zincblende"]
    assert row["status"] == "ok" and row["novel"]
    assert row["e_above_hull_eV_per_atom"] > 0.02  # also above the rocksalt computed by run 1
    # The ML side too: run 1's ML record of the known phase is reused, not computed again.
    assert row["ml_e_above_hull_eV_per_atom"] > 0.02
    assert ml_records[0].stat().st_mtime_ns == ml_record_time
