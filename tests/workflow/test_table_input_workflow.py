"""An input table through the real workflow: the check job for real, then a dry run of the DFT it schedules."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import crystallm_pi_rows as _rows
from conftest import run_snakemake, write_run_config


def test_dry_run_schedules_dft_for_table_rows(shared_dir, tmp_path: Path):
    """Runs only the check job for real (no DFT), then a dry run must list relax jobs reading the rows' CIFs."""
    frame = _rows(shared_dir)
    frame.to_parquet(tmp_path / "generated.parquet", index=False)
    config = {"input": {"cif_dir": None, "table": "generated.parquet", "table_id_column": "Material ID"},
              "output_dir": "out", "check": {"workers": 1},
              # Without the ML checkpoint between them, the dry run shows the relax jobs reading the rows' CIFs.
              "ml": {"enabled": False}}
    write_run_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "--cores", "1", "out/check/valid_ids.txt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    valid = (tmp_path / "out" / "check" / "valid_ids.txt").read_text().split()
    assert "twin" not in valid and "broken" not in valid and "mp-1__a" in valid
    proc = run_snakemake(tmp_path, "--cores", "1", "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    relax_ids = set(re.findall(r"rule relax:.*?wildcards: sid=(\S+)", out, flags=re.DOTALL))
    for sid in valid:
        assert f"sid={sid}" in out
        assert f"out/inputs/{sid}.cif" in out  # the relax job reads the row's own CIF file
        assert (tmp_path / "out" / "inputs" / f"{sid}.cif").is_file()
    assert relax_ids and relax_ids <= set(valid)
    assert not (tmp_path / "out" / "inputs" / "twin.cif").exists()
