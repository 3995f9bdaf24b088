"""End to end (SevenNet-0 on the CPU, GPAW test preset): the ML pre-screen judges against the known hull.

Issue 29: a CsCl-type NaCl polymorph, alone in its run, is on the hull of the elements and the
generated structures (it passes any screen); with a known set holding rocksalt NaCl it is measured
against the known phases compare_known chose, relaxed by the ML model as by DFT, and SevenNet puts
it about 0.15 eV/atom above rocksalt: screened out at 0.05. The ML and the DFT hull hold the same
known phases, and a rerun after the finished run plans nothing. The known set is added to a run whose
ML stage had finished without it: the screen is redone (compare_known, then the ML references, then
the screen) before any DFT is planned, so the polymorph never gets DFT. (A first run with ML and a
known set from scratch: tests/workflow/test_known_workflow.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, run_snakemake, write_run_config

pytestmark = [pytest.mark.e2e, pytest.mark.dft]
pytest.importorskip("sevenn", reason="the ML stage needs the sevenn package (pyproject dependency)")

FIXTURE = REPO / "tests" / "data" / "known" / "known_NaCl_TiO_LiFePO.json.gz"
THRESHOLD = 0.05


def configure(workdir: Path, output_dir: str, known: bool) -> None:
    write_run_config(workdir, {
        "input": {"cif_dir": "cifs"},
        "output_dir": output_dir,
        "dft": {"preset": "test", "resources": {"atoms_per_task": 1}},
        "ml": {"screen_e_above_hull_eV_per_atom": THRESHOLD, "audit_fraction": 0.0},
        "known_materials": {"database": {"path": str(FIXTURE) if known else None}},
    })


def test_a_polymorph_above_a_known_phase_is_screened_out_by_ml_against_the_dft_hull_phases(tmp_path: Path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    (tmp_path / "cifs").mkdir()
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(cscl).write_file(tmp_path / "cifs" / "NaCl_cscl.cif")

    # Before: without known phases the ML hull is the elements + the generated structure: it passes.
    configure(tmp_path, "out", known=False)
    proc = run_snakemake(tmp_path, "out/ml/dft_ids.txt", profile="local", timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    before = json.loads((tmp_path / "out" / "ml" / "screen.json").read_text())
    assert before["hull_column"] == "ml_e_above_hull_vs_generated_only_eV_per_atom"
    assert before["dft_ids"] == ["NaCl_cscl"]

    # With the known set, one run redoes the screen and then everything else in one go.
    configure(tmp_path, "out", known=True)
    proc = run_snakemake(tmp_path, profile="local", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = tmp_path / "out"
    screen = json.loads((out / "ml" / "screen.json").read_text())
    assert screen["hull_column"] == "ml_e_above_hull_eV_per_atom"
    verdict = screen["structures"]["NaCl_cscl"]
    assert verdict["ml_e_above_hull_eV_per_atom"] > THRESHOLD and verdict["screened_out"], verdict
    assert screen["dft_ids"] == [] and not (out / "dft" / "NaCl_cscl").exists()
    table = pd.read_csv(out / "results.csv").set_index("structure_id")
    assert table.loc["NaCl_cscl", "status"] == "screened_out"
    assert table.loc["NaCl_cscl", "ml_e_above_hull_eV_per_atom"] == pytest.approx(
        verdict["ml_e_above_hull_eV_per_atom"])

    # One set of competing phases: the known phases DFT relaxed are those the ML hull holds.
    chosen = json.loads((out / "known" / "competing_phases.json").read_text())
    rocksalt = next(p["phase_key"] for p in chosen["phases"] if p["entry_id"] == "known-NaCl-rocksalt")
    library = tmp_path / chosen["library"]  # relative to the run folder
    dft_phases = sorted(p.parent.name for p in library.glob("phases/*/relax.json"))
    references = json.loads((out / "ml" / "references.json").read_text())
    ml_phases = sorted(r["structure_id"] for r in references["known_phases"])
    assert dft_phases == ml_phases == [rocksalt], (dft_phases, ml_phases)
    assert screen["hull_phases"] == [f"{rocksalt} [known-NaCl-rocksalt]"]
    assert f"{rocksalt} [known-NaCl-rocksalt]" in verdict["ml_hull_reference"]
    # The ML records of known phases are kept in the reference library, per model.
    record = references["known_phases"][0]
    kept = library.parent / "ml" / record["ml_model_key"] / "phases" / f"{rocksalt}.json"
    assert json.loads(kept.read_text())["energy_eV"] == record["energy_eV"]

    # A rerun after the finished run plans nothing.
    plan = run_snakemake(tmp_path, "-n", profile="local", timeout=600)
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, (
        plan.stdout[-3000:] + plan.stderr[-3000:])
