"""End to end: two cohorts from sub-folders, the ML screen with its audit, cohorts.csv and the report.

Cohort model=a: rocksalt and CsCl-type NaCl (the smallest real cells of the ML test, two atoms
each); the screen threshold (1 meV/atom) keeps rocksalt, on the ML hull, and throws CsCl-type
NaCl away, and the audit (fraction 0.5, a seed that draws it) sends it to DFT anyway. Cohort
model=b: the same rocksalt (a duplicate of a's: no second DFT) and a file with overlapping
atoms. Baseline model=a. cohorts.csv must equal the counts recomputed here from results.csv.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.inputs import make_id
from dftscreen.ml_hull import audit_draw
from dftscreen.report import SECTIONS, figure_names

from conftest import EXAMPLES, assert_renders_in_chromium, assert_report_complete, run_snakemake, write_run_config

pytestmark = pytest.mark.e2e
pytest.importorskip("sevenn", reason="the ML stage needs the sevenn package (pyproject dependency)")

AUDITED = make_id("a/NaCl_cscl.cif")[0]
AUDIT_FRACTION = 0.5
#: The first seed whose draw sends the screened-out structure to DFT.
AUDIT_SEED = next(seed for seed in range(100) if audit_draw(AUDITED, seed) < AUDIT_FRACTION)


def write_inputs(cifs: Path) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    for folder in ("a", "b"):
        (cifs / folder).mkdir(parents=True)
    # Lattice constants near the PBE ones, so the test-preset relaxations are short.
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(rocksalt.get_primitive_structure()).write_file(cifs / "a" / "NaCl_rocksalt.cif")
    CifWriter(cscl).write_file(cifs / "a" / "NaCl_cscl.cif")
    shutil.copy(cifs / "a" / "NaCl_rocksalt.cif", cifs / "b" / "NaCl_rocksalt.cif")
    shutil.copy(EXAMPLES / "broken overlapping atoms.cif", cifs / "b" / "broken overlapping atoms.cif")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("cohorts")
    write_inputs(workdir / "cifs")
    write_run_config(workdir, {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        # The band path adds ~25 s a structure and nothing to the cohorts.
        "dft": {"preset": "test", "resources": {"atoms_per_task": 1},
                "overrides": {"properties": {"band_path_npoints": 0}}},
        "ml": {"screen_e_above_hull_eV_per_atom": 0.001, "relax": {"fmax_eV_per_A": 0.05},
               "audit_fraction": AUDIT_FRACTION, "audit_seed": AUDIT_SEED},
        "cohorts": {"source": "folders", "folder_levels": ["model"], "baseline": {"model": "a"}},
    })  # fmt: skip
    proc = run_snakemake(workdir, profile="local", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return workdir / "out"


def recount(results: pd.DataFrame, hull: str) -> pd.DataFrame:
    """Per cohort, counted here from results.csv: n, dft_ready, unique, screen, DFT and stability counts.

    A crystal counts once per cohort (duplicates by ``duplicate_of``); a duplicate's outcome is
    its representative's row's.
    """
    by_id = results.set_index("structure_id")
    rows = {}
    for cohort, part in results.groupby("cohort"):
        ready = part[part["dft_ready"] == True]  # noqa: E712
        crystals = ready["duplicate_of"].fillna(ready["structure_id"]).drop_duplicates()
        outcome = by_id.loc[crystals.tolist()]
        finished = outcome["status"] == "ok"
        e_hull = pd.to_numeric(outcome[hull], errors="coerce")
        rows[cohort] = {
            "n": len(part),
            "dft_ready_count": len(ready),
            "unique_in_cohort_count": len(crystals),
            "passed_ml_screen_count": int((outcome["ml_screened_out"] != True).sum()),  # noqa: E712
            "dft_done_count": int(outcome["status"].isin(["ok", "not_converged"]).sum()),
            "dft_failed_count": int((outcome["status"] == "failed").sum()),
            "stable_count": int((finished & (e_hull <= 0.0)).sum()),
            "metastable_count": int((finished & (e_hull <= 0.1)).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def test_cohorts_csv_equals_the_counts_of_results_csv(finished_run: Path):
    results = pd.read_csv(finished_run / "results.csv")
    assert sorted(results["cohort"]) == ["model=a", "model=a", "model=b", "model=b"]
    audited = results.set_index("structure_id").loc[AUDITED]
    assert audited["ml_screened_out"] and audited["ml_audited"] and audited["status"] in ("ok", "not_converged")
    assert audited["dft_inclusion_probability"] == AUDIT_FRACTION
    hull = "e_above_hull_vs_generated_only_eV_per_atom"  # elemental references, no known set
    cohorts = pd.read_csv(finished_run / "cohorts.csv").set_index("cohort")
    expected = recount(results, hull)
    assert cohorts.index.tolist() == ["model=a", "model=b"]
    assert cohorts[expected.columns].astype(int).to_dict() == expected.to_dict()
    assert cohorts.loc["model=a", "stable_count"] == 1 and cohorts.loc["model=b", "stable_count"] == 1
    # The audit: a's screened-out crystal reached DFT with probability 0.5, so it weighs 2.
    assert cohorts["screen_audited"].tolist() == [1, 0]
    a = results[results["cohort"] == "model=a"].set_index("structure_id")
    stable = (a["status"] == "ok") & (pd.to_numeric(a[hull]) <= 0.0)
    weights = 1 / a["dft_inclusion_probability"]
    assert cohorts.loc["model=a", "stable_weighted_rate"] == pytest.approx((weights * stable).sum() / weights.sum())
    assert cohorts.loc["model=a", "screen_audited_stable"] == int(stable[AUDITED])


def test_summary_has_the_cohorts_section(finished_run: Path):
    summary = json.loads((finished_run / "summary.json").read_text())
    section = summary["cohorts"]
    assert section["n_cohorts"] == 2 and section["baselines"] == ["model=a"]
    assert section["cohorts"]["model=b"]["n"] == 2 and section["cohorts"]["model=b"]["factors"] == {"model": "b"}
    assert section["cohorts"]["model=a"]["screen_audit"]["estimates_from_a_sample"] is True
    verdicts = {c["metric"]: c["verdict"] for c in section["comparisons"]}
    assert verdicts["dft_ready"].startswith("indistinguishable at this sample size")
    details = json.loads((finished_run / section["details"]).read_text())
    assert details["settings"]["screen_audit_fraction"] == AUDIT_FRACTION and "audit_definitions" in details


def test_report_has_the_cohorts_section_and_renders_in_chromium(finished_run: Path, tmp_path: Path):
    index = finished_run / "report" / "index.html"
    assert_report_complete(index, [s for s in SECTIONS if s != "parity"])
    for name in figure_names(cohort_ordered=[]):
        assert (index.parent / name).is_file(), name
    section = index.read_text().split('<section id="cohorts">')[1].split("</section>")[0]
    assert "Differences from the baseline" in section and "ML screen audit" in section
    assert "indistinguishable at this sample size" in section
    assert_renders_in_chromium(index, tmp_path)
