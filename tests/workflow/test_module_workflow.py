"""dftscreen as a Snakemake module (issue 33): a user's own Snakefile in another folder imports the
workflow (``module dftscreen: snakefile: ...; config: config`` and ``use rule * from dftscreen``),
with its own config file name; the dry run plans the run and a test-preset run of one structure
writes the table. Nothing resolves against the repository root or needs config/config.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import EXAMPLES, REPO, mpi_env, write_run_config

pytestmark = pytest.mark.e2e

STRUCTURE = "NaCl_crystallm_P4nmm.cif"

USER_SNAKEFILE = f"""\
configfile: "my_screen.yaml"


module dftscreen:
    snakefile:
        "{REPO / 'workflow' / 'Snakefile'}"
    config:
        config


use rule * from dftscreen
"""


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """A folder outside the checkout: the user's Snakefile, its config and one CIF (no config/ folder)."""
    folder = tmp_path_factory.mktemp("my_project")
    (folder / "generated").mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, folder / "generated" / STRUCTURE)
    (folder / "Snakefile").write_text(USER_SNAKEFILE)
    # The config the other workflow tests write (write_run_config), under the user's own file name.
    (folder / "scratch").mkdir()
    write_run_config(folder / "scratch", {
        "input": {"cif_dir": "generated"}, "output_dir": "screen",
        "ml": {"enabled": False}, "stability": {"elemental_references": False},
        "dft": {"preset": "test", "overrides": {"relax": {"max_steps": 2}, "properties": {"band_path_npoints": 0}}},
    })
    shutil.move(folder / "scratch" / "config" / "config.yaml", folder / "my_screen.yaml")
    shutil.rmtree(folder / "scratch")
    return folder


def snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake`` started in ``folder`` with its own Snakefile, as the user would."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles" / "local"), *args],
                          cwd=folder, env=mpi_env(), capture_output=True, text=True, timeout=1200)


def test_dry_run_of_the_module_from_another_folder(user_folder: Path):
    proc = snakemake(user_folder, "-n")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "check" in proc.stdout and "all" in proc.stdout
    assert not (user_folder / "config").exists()


def test_module_run_of_one_structure_writes_the_table(user_folder: Path):
    proc = snakemake(user_folder)
    assert proc.returncode == 0, proc.stderr[-5000:]
    table = pd.read_csv(user_folder / "screen" / "results.csv")
    assert list(table["structure_id"]) == ["NaCl_crystallm_P4nmm"]
    assert table.loc[0, "status"] in ("relaxed", "not_converged"), table.loc[0, "reason"]
    assert (user_folder / "screen" / "summary.json").is_file()
    # Nothing was written into the checkout.
    assert not (REPO / "screen").exists() and not (REPO / "generated").exists()
