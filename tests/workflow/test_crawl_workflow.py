"""Issue 28, N2 and N6 through Snakemake's check job: the crawl skips exactly the workflow's own folders.

N2: ``cif_dir`` inside ``output_dir`` (``run07/cifs`` with results in ``run07``): every input was
excluded and the run ended with an empty table. N6: a reference library kept inside ``cif_dir``
came back as generated rows on the next run. Only the check stage runs (seconds): it is the job
that crawls, and ``valid_ids.txt`` is what every later job is planned from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_snakemake, write_run_config

pytestmark = pytest.mark.workflow

TWO = ("MgGeO3_perov5_16100.cif", "ScBN2O_perov5_6130.cif")


def checked_sources(results: Path) -> list[str]:
    return sorted(row["source_file"] for row in json.loads((results / "check" / "checks.json").read_text()))


def test_cif_dir_inside_output_dir_checks_both_structures(tmp_path: Path):
    cifs = tmp_path / "run07" / "cifs"
    cifs.mkdir(parents=True)
    for name in TWO:
        shutil.copy(EXAMPLES / name, cifs / name)
    write_run_config(tmp_path, {"input": {"cif_dir": "run07/cifs"}, "output_dir": "run07", "ml": {"enabled": False}})
    proc = run_snakemake(tmp_path, "--cores", "1", "--until", "check")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert checked_sources(tmp_path / "run07") == list(TWO)
    assert (tmp_path / "run07" / "check" / "valid_ids.txt").read_text().split() == [n[:-4] for n in TWO]


def test_a_library_inside_cif_dir_adds_no_row_on_the_second_run(tmp_path: Path):
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for name in TWO:
        shutil.copy(EXAMPLES / name, cifs / name)
    config = {
        "input": {"cif_dir": "cifs"}, "output_dir": "out", "ml": {"enabled": False},
        "stability": {"reference_library_dir": "cifs/library"},
    }  # fmt: skip
    write_run_config(tmp_path, config)
    assert run_snakemake(tmp_path, "--cores", "1", "--until", "check").returncode == 0
    # What a run leaves in the library: relaxed CIFs of references and phases.
    relaxed = tmp_path / "cifs" / "library" / "abc123" / "elements" / "Mg" / "auto-0" / "relaxed.cif"
    relaxed.parent.mkdir(parents=True)
    shutil.copy(EXAMPLES / TWO[0], relaxed)
    shutil.copy(EXAMPLES / TWO[0], tmp_path / "cifs" / "new.cif")  # a real new input, which must be read
    proc = run_snakemake(tmp_path, "--cores", "1", "--until", "check")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert checked_sources(tmp_path / "out") == sorted([*TWO, "new.cif"])
