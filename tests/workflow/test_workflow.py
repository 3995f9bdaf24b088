"""End to end: the real Snakemake workflow with real GPAW under mpiexec -n 2 (test preset)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dftscreen.inputs import make_id

from conftest import (
    EXAMPLES,
    TEST_DATA,
    assert_renders_in_chromium,
    assert_report_complete,
    run_snakemake,
    undocumented,
    write_run_config,
)

pytestmark = pytest.mark.e2e

# The id of "broken overlapping atoms.cif": a name with spaces gets a readable prefix and a hash of its path.
BROKEN_ID = make_id("broken overlapping atoms.cif")[0]

STRUCTURES = ["NaCl_crystallm_P4nmm.cif", "MgGeO3_perov5_16100.cif", "broken overlapping atoms.cif"]
# The ML stage is on by default and `finished_run` runs it; the other runs here test other things,
# and loading torch and SevenNet-0 with its elemental references costs each of them ~1 min.
ML_OFF = {"ml": {"enabled": False}}
# For runs that test rows and reasons, not physics: two ionic steps (the row may say
# not_converged) and the band gap from the SCF mesh only (the band path is ~25 s a structure).
ROWS_NOT_PHYSICS = {"relax": {"max_steps": 2}, "properties": {"band_path_npoints": 0}}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The documented local command, run in ``workdir``."""
    return run_snakemake(workdir, *args, profile="local", timeout=1200)


def prepare_run(workdir: Path, cif_names: list[str], config: dict) -> Path:
    """A run folder as a user would have it: cifs/ with copies of bundled examples, config/config.yaml."""
    cifs = workdir / "cifs"
    cifs.mkdir()
    for name in cif_names:
        shutil.copy(EXAMPLES / name, cifs / name)
    write_run_config(workdir, {"input": {"cif_dir": "cifs"}, "output_dir": "out", **config})
    return workdir


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    config = {"dft": {"preset": "test", "resources": {"atoms_per_task": 1}},
              # Elemental references (O2 in a box among them) are tested on NaCl below.
              "stability": {"elemental_references": False},
              # Targets only add columns and the report's parity plot (no extra DFT).
              "targets": {"file": "targets.csv", "properties": {"band_gap": {"tolerance": 1.0}}}}
    workdir = prepare_run(tmp_path_factory.mktemp("run"), STRUCTURES, config)
    pd.DataFrame({"structure_id": ["NaCl_crystallm_P4nmm", "MgGeO3_perov5_16100"], "band_gap": [5.0, 0.5]}).to_csv(
        workdir / "targets.csv", index=False)
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return workdir


def test_table_has_one_row_per_input_with_reasons_and_energies(finished_run: Path):
    table = pd.read_parquet(finished_run / "out" / "results.parquet")
    csv = pd.read_csv(finished_run / "out" / "results.csv")
    assert len(table) == len(csv) == len(STRUCTURES)
    rows = table.set_index("structure_id")
    broken = rows.loc[BROKEN_ID]
    assert broken["status"] == "invalid"
    assert "closer than the 0.5 Å allowed" in broken["reason"]
    for sid in ("NaCl_crystallm_P4nmm", "MgGeO3_perov5_16100"):
        row = rows.loc[sid]
        assert row["status"] == "ok", row["reason"]
        assert math.isfinite(row["energy_per_atom_eV"]) and math.isfinite(row["energy_eV"])
        assert row["band_gap_eV"] > 1.0  # both are insulators
        assert row["mpi_ranks"] == 2
        assert Path(finished_run / row["relaxed_cif"]).is_file()
        assert "cores:  2" in (finished_run / "out" / "dft" / sid / "relax_gpaw_attempt1.txt").read_text()


def test_report_of_the_finished_run_is_complete(finished_run: Path):
    """The report rule ran: every section, every image a PNG, every link to a file that exists."""
    out = finished_run / "out"
    index = out / "report" / "index.html"
    page = assert_report_complete(index, ["funnel", "parity", "distributions", "spacegroups", "structures",
                                          "failures", "cost", "provenance"])
    text = index.read_text()
    for sid in ("NaCl_crystallm_P4nmm", "MgGeO3_perov5_16100"):
        assert f"../dft/{sid}/relaxed.cif" in page.links and f"../logs/relax/{sid}.log" in page.links
    assert "NOT CONVERGED" in text  # test preset
    assert BROKEN_ID in text and "closer than the # Å allowed" in text


def test_verdict_provenance_and_cost_of_the_finished_run(finished_run: Path):
    out = finished_run / "out"
    table = pd.read_csv(out / "results.csv").set_index("structure_id")
    assert undocumented(list(table.reset_index().columns)) == []  # docs/columns.md covers the real table
    broken = table.loc[BROKEN_ID]
    assert broken["verdict"].startswith("invalid: " + broken["reason"][:40])
    for sid in ("NaCl_crystallm_P4nmm", "MgGeO3_perov5_16100"):
        row = table.loc[sid]
        assert "band gap" in row["verdict"] and "target" in row["verdict"], row["verdict"]
        # Two ranks: core-hours are twice the wall time in hours.
        assert row["relax_core_hours"] == pytest.approx(2 * row["relax_wall_time_all_starts_s"] / 3600)
        assert row["relax_wall_time_all_starts_s"] >= row["relax_wall_time_s"] > 0
        assert row["total_core_hours"] == pytest.approx(row["relax_core_hours"] + row["properties_core_hours"])
        # The job log shows each ionic step.
        log = (out / "logs" / "relax" / f"{sid}.log").read_text()
        steps = re.findall(r"^ionic step +(\d+) +energy (-?\d+\.\d+) eV +fmax (\d+\.\d+) eV/Å +max stress "
                           r"(\d+\.\d+) GPa +step time (\d+\.\d+) s$", log, flags=re.MULTILINE)
        assert len(steps) == row["n_ionic_steps"] + 1, log[-2000:]  # the starting geometry is step 0
        assert float(steps[-1][2]) == pytest.approx(row["max_force_eV_per_A"], abs=1e-4)
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["numbers_converged"] is False and summary["warning"].startswith("NOT CONVERGED")
    provenance = summary["provenance"]
    assert provenance["dft_preset"] == "test" and provenance["xc_functional"] == "PBE"
    assert provenance["gpaw_data_version"] and provenance["gpaw_version"]
    assert set(table["settings_sha256"]) == {provenance["settings_sha256"]}
    assert set(table["gpaw_data_version"].astype(str)) == {provenance["gpaw_data_version"]}
    assert summary["cost"]["stages"]["relax"]["core_hours"] == pytest.approx(table["relax_core_hours"].sum())
    assert summary["cost"]["failure_taxonomy"] == {"SCF not converged": 0, "time limit": 0, "memory": 0, "other": 0}
    # The ML stage is on by default, so its screen is a stage of the funnel.
    stages = [s["stage"] for s in summary["funnel"]][:6]
    assert stages == ["inputs", "parsed", "dft_ready", "unique", "passed ML screen", "relaxed"]


def test_report_renders_in_headless_chromium(finished_run: Path, tmp_path: Path):
    assert_renders_in_chromium(finished_run / "out" / "report" / "index.html", tmp_path)


def test_snakemake_report_zip_of_the_finished_run(finished_run: Path):
    proc = snakemake(finished_run, "--report", "report.zip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(finished_run / "report.zip") as archive:
        names = archive.namelist()
    for name in ("results.csv", "summary.json", "index.html", "funnel.png", "parity_band_gap.png"):
        assert any(n.endswith(name) for n in names), (name, names[:50])


def test_rerun_schedules_nothing(finished_run: Path):
    proc = snakemake(finished_run, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleting_one_structure_reruns_only_that_structure(finished_run: Path):
    shutil.rmtree(finished_run / "out" / "dft" / "NaCl_crystallm_P4nmm")
    proc = snakemake(finished_run, "--dry-run")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = re.findall(r"^rule (\w+):", proc.stdout, flags=re.MULTILINE)
    assert sorted(jobs) == ["aggregate", "all", "properties", "relax", "report"], out[-3000:]
    assert "wildcards: sid=NaCl_crystallm_P4nmm" in out
    assert "sid=MgGeO3_perov5_16100" not in out
    # And the real rerun restores the row.
    proc = snakemake(finished_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(finished_run / "out" / "results.csv").set_index("structure_id")
    assert table.loc["NaCl_crystallm_P4nmm", "status"] == "ok"


def test_failed_jobs_leave_a_partial_table_and_keep_the_others(tmp_path: Path):
    """A job that crashes (here: the MPI launcher is `false`) must not lose the other rows."""
    prepare_run(tmp_path, STRUCTURES, {"stability": {"elemental_references": False}, **ML_OFF})
    proc = snakemake(tmp_path, "--set-resources", "relax:mpi=false")
    assert proc.returncode != 0
    assert not (tmp_path / "out" / "results.csv").exists()
    table = pd.read_csv(tmp_path / "out" / "results_partial.csv").set_index("structure_id")
    assert len(table) == len(STRUCTURES)
    assert table.loc[BROKEN_ID, "status"] == "invalid"
    assert set(table.drop(BROKEN_ID)["status"]) == {"not_finished"}
    assert "rerun" in table.loc["NaCl_crystallm_P4nmm", "reason"]
    # Nothing that looks finished was left by the failed jobs.
    assert not list((tmp_path / "out").glob("dft/*/relax.json"))


def test_scf_failure_of_one_structure_does_not_stop_the_others(tmp_path: Path):
    config = {
        **ML_OFF,
        "stability": {"elemental_references": False},
        "dft": {
            "preset": "test",
            # Only ScBN2O gets an SCF that cannot converge, on every rung.
            "structure_overrides": {"ScBN2O_perov5_6130": {"gpaw": {"maxiter": 2}}},
            "scf_ladder": [{"name": "gentle_mixer", "description": "mixer beta 0.02, maxiter 3",
                            "gpaw": {"maxiter": 3, "mixer": {"beta": 0.02, "nmaxold": 5, "weight": 100.0}}}],
        },
    }
    prepare_run(tmp_path, ["NaCl_crystallm_P4nmm.cif", "ScBN2O_perov5_6130.cif"], config)
    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "results.csv").set_index("structure_id")
    failed = table.loc["ScBN2O_perov5_6130"]
    assert failed["status"] == "failed"
    assert "SCF did not converge after 2 strategies: preset" in failed["reason"]
    assert "gentle_mixer (mixer beta 0.02, maxiter 3)" in failed["reason"]
    assert table.loc["NaCl_crystallm_P4nmm", "status"] == "ok"
    assert math.isfinite(table.loc["NaCl_crystallm_P4nmm", "energy_eV"])


def test_formation_energy_and_hull_from_workflow_computed_references(tmp_path: Path):
    """NaCl: formation energy from Na (bcc, from a CIF the user supplies) and Cl2 (automatic)
    references the workflow relaxes itself; the generated tetragonal polymorph lies above the
    supplied rocksalt ground state, and a composition that cannot exist (fluorite NaCl2, Na2+)
    lies above the hull of rocksalt NaCl and Cl2."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    prepare_run(tmp_path, [], {"dft": {"preset": "test"}, **ML_OFF,
                               "stability": {"reference_cif_dir": "known_phases",
                                             "elemental_reference_cifs": {"Na": "elements/Na_bcc.cif"}},
                               "targets": {"file": "targets.csv", "properties": {"band_gap": {"tolerance": 0.5}}}})
    (tmp_path / "elements").mkdir()
    CifWriter(AseAtomsAdaptor.get_structure(bulk("Na", "bcc", a=4.23))).write_file(tmp_path / "elements" / "Na_bcc.cif")
    shutil.copy(EXAMPLES / "NaCl_crystallm_P4nmm.cif", tmp_path / "cifs" / "NaCl_generated.cif")
    CifWriter(AseAtomsAdaptor.get_structure(bulk("NaCl2", "fluorite", a=6.2))).write_file(
        tmp_path / "cifs" / "NaCl2_fluorite.cif")
    phases = tmp_path / "known_phases"
    phases.mkdir()
    # Rocksalt NaCl, the experimental ground state (a = 5.64 Å).
    CifWriter(AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64))).write_file(phases / "NaCl_rocksalt.cif")
    # The band gap the structure was "generated for": far from NaCl's, so a miss.
    pd.DataFrame({"structure_id": ["NaCl_generated"], "band_gap": [1.5]}).to_csv(tmp_path / "targets.csv", index=False)
    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    records = {}
    for element in ("Na", "Cl"):
        # In the reference library: <settings hash>/elements/<El>/<auto or cif-hash>/relax.json.
        (path,) = (tmp_path / "out" / "reference_library").glob(f"*/elements/{element}/*/relax.json")
        record = yaml.safe_load(path.read_text())
        assert record["status"] == "relaxed" and record["element"] == element
        records[element] = record
    assert records["Na"]["reference_description"] == "Na from the supplied CIF Na_bcc.cif"
    assert records["Cl"]["reference_kind"] == "molecule"
    table = pd.read_csv(tmp_path / "out" / "results.csv").set_index("structure_id")
    row = table.loc["NaCl_generated"]
    assert row["status"] == "ok", row["reason"]
    # Strongly bound: experiment -2.13 eV/atom (NIST-JANAF ΔHf -411 kJ/mol); PBE with Cl2 gas
    # underbinds somewhat. At the test preset we only require clearly negative.
    assert row["formation_energy_eV_per_atom"] < -1.0
    assert row["e_above_hull_eV_per_atom"] > 0.0
    assert "1 reference phases" in row["hull_reference"]
    assert row["decomposition_products"].startswith("NaCl")
    # NaCl2 would need Na2+: it decomposes into the supplied rocksalt NaCl and Cl2.
    unstable = table.loc["NaCl2_fluorite"]
    assert unstable["status"] == "ok", unstable["reason"]
    assert unstable["e_above_hull_eV_per_atom"] > 0.1
    products = {part.split(" (")[0] for part in unstable["decomposition_products"].split(" + ")}
    assert products == {"NaCl", "Cl2"}, unstable["decomposition_products"]
    assert row["target_band_gap_eV"] == 1.5
    assert row["band_gap_error_eV"] == pytest.approx(row["band_gap_eV"] - 1.5)
    assert not row["band_gap_hit"]
    summary = yaml.safe_load((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_inputs"] == 2 and summary["relaxed_ok"]["count"] == 2
    assert summary["stable"]["count"] == (1 if row["e_above_hull_eV_per_atom"] <= 0.1 else 0)
    assert summary["targets"]["band_gap"]["hit_rate"] == 0.0


def test_workflow_finishes_on_the_bad_input_corpus(tmp_path: Path):
    """Every file of tests/data/bad_cifs gets a row with a reason; the one distinct good
    crystal (rutile) is computed once; nothing is written outside the run folder."""
    corpus = TEST_DATA / "bad_cifs"
    prepare_run(tmp_path, [], {"dft": {"preset": "test", "overrides": ROWS_NOT_PHYSICS},
                               "stability": {"elemental_references": False}, **ML_OFF})
    # The slab and the molecule in a box are sound structures of their own (their notes are
    # tested in test_bad_cifs.py); here they would only add two DFT runs.
    for path in corpus.iterdir():
        if path.name not in ("vacuum_slab.cif", "molecule_in_box.cif"):
            shutil.copy(path, tmp_path / "cifs" / path.name)
    good = (corpus / "good_rutile.cif").read_text()
    (tmp_path / "cifs" / "one_megabyte.cif").write_text(good + "#" + "x" * 1_000_000 + "\n")
    outside_before = sorted(p.name for p in tmp_path.parent.iterdir())

    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(table["source_file"]) == sorted(p.name for p in (tmp_path / "cifs").iterdir())
    assert table["reason"].fillna("").str.len().gt(0).sum() == (table["status"] != "ok").sum()
    assert (table["status"] == "ok").sum() + (table["status"] == "not_converged").sum() == 1
    assert set(table["status"]) <= {"ok", "not_converged", "invalid", "duplicate"}
    # CIF text and file names are data: the shell-metacharacter name ran nothing.
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == outside_before


def test_hostile_names_and_output_folder_keep_every_row(tmp_path: Path):
    """Whole-run killers of before, in one small run: an output folder with a space and shell
    characters (every DFT job failed, a stray file appeared), a file name of 25 non-ASCII
    characters in folders 600 bytes deep (PeriodicWildcardError, "File name too long"), and a
    CIF expanding to 7,584 atoms (minutes and gigabytes in the check), and the input folder
    inside the output folder (every input skipped). Every row is intact."""
    out = "run 07 $(touch PWNED) `touch PWNED2`; x"
    prepare_run(tmp_path, ["broken_truncated.cif"],
                {"output_dir": out, "dft": {"preset": "test", "overrides": ROWS_NOT_PHYSICS},
                 "stability": {"elemental_references": False}, **ML_OFF})
    deep = tmp_path / "cifs" / ("ä" * 100) / ("ö" * 100)
    deep.mkdir(parents=True)
    shutil.copy(EXAMPLES / "NaCl_crystallm_P4nmm.cif", deep / ("ñ" * 25 + " NaCl (copy).cif"))
    shutil.copy(TEST_DATA / "bad_cifs" / "huge_expansion.cif", tmp_path / "cifs")
    # Issue 28, N1: `<unk>` (CrystaLLM's unknown token) and `{y}` are a path variable and a wildcard
    # to Snakemake 9, which stopped the whole run after the check; the DFT reads the workflow's copy.
    from pymatgen.core import Lattice, Structure

    # LiF (rocksalt): no crystal of the NaCl file above, so both go to DFT.
    lif = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.03), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lif.get_primitive_structure().to(filename=str(tmp_path / "cifs" / "x_<unk>_{y}.cif"))
    # Issue 28, N2: the inputs inside the results folder (`run07/cifs` with results in `run07`), where
    # the crawl once skipped every file as the workflow's own.
    (tmp_path / out).mkdir()
    shutil.move(tmp_path / "cifs", tmp_path / out / "cifs")
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    config["input"]["cif_dir"] = f"{out}/cifs"
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    outside_before = sorted(p.name for p in tmp_path.parent.iterdir())

    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / out / "results.csv").set_index("source_file")
    assert len(table) == 4
    unk = table.loc["x_<unk>_{y}.cif"]
    assert unk["status"] in ("ok", "not_converged"), unk["reason"]
    assert (tmp_path / out / "inputs" / f"{unk['structure_id']}.cif").read_bytes() == (
        tmp_path / out / "cifs" / "x_<unk>_{y}.cif"
    ).read_bytes()
    nacl = table.loc[f"{'ä' * 100}/{'ö' * 100}/{'ñ' * 25} NaCl (copy).cif"]
    assert nacl["status"] in ("ok", "not_converged"), nacl["reason"]
    assert math.isfinite(nacl["energy_eV"])
    assert len(nacl["structure_id"]) <= 75 and "hash of the path" in nacl["id_note"]
    assert table.loc["huge_expansion.cif", "status"] == "invalid"
    assert "7584 atoms" in table.loc["huge_expansion.cif", "reason"]
    assert table.loc["broken_truncated.cif", "status"] == "invalid"
    # The folder name was data to every shell command: nothing ran, nothing was written beside it.
    assert not list(tmp_path.rglob("PWNED*")) and not Path("PWNED").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == outside_before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".snakemake", "config", out])
