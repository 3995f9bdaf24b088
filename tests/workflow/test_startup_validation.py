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


def run_folder(workdir: Path, **sections) -> None:
    """A run folder with one input CIF and the given config sections over the minimal ones."""
    (workdir / "cifs").mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, workdir / "cifs" / STRUCTURE)
    write_run_config(workdir, {"input": {"cif_dir": "cifs"}, "output_dir": "out", **sections})


@pytest.mark.parametrize(
    "sections, sentence",
    [
        ({"ml": {"device": "gpu"}}, "ml.device 'gpu' is not a torch device dftscreen knows (did you mean 'cpu'?)"),
        ({"ml": {"model": "7net-O"}},
         "ml.model '7net-O' is neither a SevenNet pretrained model such as 7net-0"),
        ({"check": {"cell_length_min_A": 50, "cell_length_max_A": 2}},
         "check.cell_length_min_A (50 Å) must be below check.cell_length_max_A (2 Å), or every structure is rejected"),
        ({"dft": {"overrides": {"gpaw": {"ecutt": 400}}}},
         "unknown key 'ecutt' in dft.overrides.gpaw (did you mean 'ecut_eV'?)"),
        ({"output_dir": "run_<unk>"},
         "output_dir 'run_<unk>' holds < >, which Snakemake reads as a wildcard or path variable"),
        ({"output_dir": "/"}, "output_dir '/' is the file system's root: give the run a folder of its own"),
        ({"known_materials": {"database": {"path": "nowhere.json"}}},
         "known_materials.database.path 'nowhere.json' does not exist"),
    ],
    ids=["ml-device", "ml-model", "check-bounds", "gpaw-keyword", "output-dir-path", "output-dir-root", "known-set"],
)
def test_every_start_up_validation_stops_a_dry_run_in_one_sentence(tmp_path: Path, sections: dict, sentence: str):
    """Issue 28, item 6 (and items 1-3 at start-up): each refusal in one sentence, no traceback, nothing written."""
    run_folder(tmp_path, **sections)
    proc = run_snakemake(tmp_path, "-n")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert sentence in output, output[-3000:]
    line = next(line for line in output.splitlines() if sentence in line)
    assert line.startswith(sentence) and "Traceback" not in output
    assert "rule check" not in output and "Job stats" not in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cifs", "config"]  # no out/, no .snakemake/
