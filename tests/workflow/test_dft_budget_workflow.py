"""End to end: a DFT budget of one structure per cohort (dft.max_structures_per_cohort, issue 30, item 4).

Cohort model=a has three NaCl crystals (rocksalt, CsCl-type, zincblende), cohort model=b a copy of
the rocksalt one (a duplicate: no DFT of its own). With a budget of 1 and a seed that draws
rocksalt, one relaxation runs; the other two crystals of a get status not_sampled, cohorts.csv
counts them, and the weighted rate stands the sample for all of a. A rerun plans nothing, and
raising the budget to 2 plans exactly one more structure, keeping rocksalt's results.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.dft_budget import budget_draw
from dftscreen.inputs import make_id

from conftest import run_snakemake, write_run_config

pytestmark = pytest.mark.e2e

NAMES = ("NaCl_rocksalt", "NaCl_cscl", "NaCl_zincblende")
IDS = {name: make_id(f"a/{name}.cif")[0] for name in NAMES}
#: The first seed whose draw puts rocksalt (the quickest relaxation) first of the three.
SEED = next(s for s in range(100) if min(IDS.values(), key=lambda sid: budget_draw(sid, s)) == IDS["NaCl_rocksalt"])


def write_inputs(cifs: Path) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    for folder in ("a", "b"):
        (cifs / folder).mkdir(parents=True)
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    zincblende = Structure.from_spacegroup("F-43m", Lattice.cubic(6.0), ["Na", "Cl"], [[0, 0, 0], [0.25] * 3])
    for name, structure in zip(NAMES, (rocksalt, cscl, zincblende)):
        CifWriter(structure.get_primitive_structure()).write_file(cifs / "a" / f"{name}.cif")
    shutil.copy(cifs / "a" / "NaCl_rocksalt.cif", cifs / "b" / "NaCl_rocksalt.cif")


def config(budget: int) -> dict:
    return {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "dft": {"preset": "test", "max_structures_per_cohort": budget, "budget_seed": SEED,
                "resources": {"atoms_per_task": 1}, "overrides": {"properties": {"band_path_npoints": 0}}},
        "ml": {"enabled": False},
        "cohorts": {"source": "folders", "folder_levels": ["model"], "baseline": {"model": "a"}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("budget")
    write_inputs(workdir / "cifs")
    write_run_config(workdir, config(1))
    proc = run_snakemake(workdir, profile="local", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return workdir


def test_one_structure_per_cohort_reaches_dft_and_the_rest_say_why(finished_run: Path):
    results = pd.read_csv(finished_run / "out" / "results.csv").set_index("structure_id")
    rocksalt = results.loc[IDS["NaCl_rocksalt"]]
    assert rocksalt["status"] in ("ok", "not_converged") and bool(rocksalt["dft_sampled"])
    assert rocksalt["dft_inclusion_probability"] == pytest.approx(1 / 3)
    for name in ("NaCl_cscl", "NaCl_zincblende"):
        row = results.loc[IDS[name]]
        assert row["status"] == "not_sampled" and not bool(row["dft_sampled"])
        assert "1 of the 3 candidates of cohort 'model=a'" in row["reason"]
        assert "random sample" in row["verdict"]
    assert not any((finished_run / "out" / "dft").glob(f"{IDS['NaCl_cscl']}*"))
    twin = results[results["cohort"] == "model=b"].iloc[0]
    assert twin["status"] == "duplicate" and twin["duplicate_of"] == IDS["NaCl_rocksalt"]


def test_cohorts_csv_counts_the_sample_and_weights_it_back(finished_run: Path):
    out = finished_run / "out"
    results = pd.read_csv(out / "results.csv")
    cohorts = pd.read_csv(out / "cohorts.csv").set_index("cohort")
    assert cohorts.loc["model=a", "dft_not_sampled_count"] == 2 and cohorts.loc["model=a", "dft_done_count"] == 1
    assert cohorts.loc["model=a", "dft_pending_count"] == 0
    a = results[results["cohort"] == "model=a"]
    hull = "e_above_hull_vs_generated_only_eV_per_atom"
    in_sample = a[a["status"] != "not_sampled"]
    stable = (in_sample["status"] == "ok") & (pd.to_numeric(in_sample[hull]) <= 0.0)
    weights = 1 / in_sample["dft_inclusion_probability"]
    assert cohorts.loc["model=a", "stable_weighted_rate"] == pytest.approx((weights * stable).sum() / weights.sum())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cohorts"]["dft_budget"]["max_structures_per_cohort"] == 1
    assert "estimates from a seeded random sample" in summary["cohorts"]["dft_budget"]["note"]


def test_a_rerun_plans_nothing_and_a_larger_budget_one_more_structure(finished_run: Path):
    from dftscreen.status import run_status

    proc = run_snakemake(finished_run, "-n", "--cores", "1")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    status = run_status(finished_run / "out", workdir=finished_run, query_scheduler=False)
    assert status.to_dict()["check"]["statuses"]["not_sampled (DFT budget)"] == 2
    write_run_config(finished_run, config(2))
    try:
        proc = run_snakemake(finished_run, "-n", "--cores", "1")
    finally:
        write_run_config(finished_run, config(1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = proc.stdout + proc.stderr
    # Job stats: one relaxation, and nothing of rocksalt's (its DFT finished) is planned again.
    assert re.search(r"^relax\s+1$", planned, re.MULTILINE), planned[-3000:]
    assert f"sid={IDS['NaCl_rocksalt']}" not in planned
