"""A nonsense DFT setting stops `snakemake -n` at start-up with one sentence, before any job (issue 28).

Before, ``ecut_eV: -400`` made every structure ``invalid`` with "math domain error" and
``kpt_density_per_A: abc`` crashed the check job; now the run does not start.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_snakemake, write_run_config

STRUCTURE = "NaCl_crystallm_P4nmm.cif"


def tiny_run(workdir: Path, dft: dict) -> None:
    """A run folder with one input CIF and the given ``dft`` section."""
    (workdir / "cifs").mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, workdir / "cifs" / STRUCTURE)
    write_run_config(workdir, {"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": dft})


@pytest.mark.parametrize(
    "dft, sentence",
    [
        ({"overrides": {"gpaw": {"ecut_eV": -400}}},
         "dft.overrides.gpaw.ecut_eV must be a number above 0 (the plane-wave cutoff in eV), not -400"),
        ({"structure_overrides": {"NaCl_crystallm_P4nmm": {"gpaw": {"kpt_density_per_A": "abc"}}}},
         "dft.structure_overrides.NaCl_crystallm_P4nmm.gpaw.kpt_density_per_A must be a number above 0"),
    ],
)
def test_dry_run_with_a_nonsense_dft_setting_fails_at_once(tmp_path: Path, dft: dict, sentence: str):
    tiny_run(tmp_path, dft)
    proc = run_snakemake(tmp_path, "-n")
    # Snakemake 9 prints a workflow error to stdout when it is not a terminal: both are read.
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert sentence in output, output[-3000:]
    assert "ConfigError in file" in output and "math domain error" not in output
    assert "rule check" not in output and "Job stats" not in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cifs", "config"]  # no out/, no .snakemake/
