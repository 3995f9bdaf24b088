"""End to end: the ML stage inside the real workflow (SevenNet-0 on the CPU, GPAW test preset).

Two NaCl polymorphs: rocksalt (on the ML hull) and CsCl-type (above it). The
screening threshold is set between their ML energies above the hull: CsCl-type
NaCl is screened out and only rocksalt gets DFT, which starts from its
ML-relaxed geometry. Raising the threshold admits CsCl-type NaCl: the next run
plans DFT for it alone and reruns no ML job and no finished DFT job (Snakemake
dry-run job counts, so the second DFT never runs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_snakemake, write_run_config

pytestmark = pytest.mark.e2e
pytest.importorskip("sevenn", reason="the ML stage needs the sevenn package (pyproject dependency)")


def snakemake(workdir: Path, *args: str):
    return run_snakemake(workdir, *args, profile="local", timeout=1200)


def job_counts(output: str) -> dict[str, int]:
    """Rule -> number of jobs Snakemake ran (or, with -n, planned), from the job blocks it prints.

    Counted from the blocks, not from the 'Job stats' table: that one is printed
    before checkpoints are evaluated and lacks the jobs they add.
    """
    counts: dict[str, int] = {}
    for rule in re.findall(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$", output, flags=re.MULTILINE):
        counts[rule] = counts.get(rule, 0) + 1
    counts.pop("all", None)
    return counts


def write_polymorphs(folder: Path) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    folder.mkdir()
    # Lattice constants near the PBE ones, so the test-preset DFT relaxation is short.
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(rocksalt.get_primitive_structure()).write_file(folder / "NaCl_rocksalt.cif")
    CifWriter(cscl).write_file(folder / "NaCl_cscl.cif")


def configure(workdir: Path, threshold) -> None:
    write_run_config(workdir, {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "dft": {"preset": "test", "resources": {"atoms_per_task": 1}},
        # DFT references are tested elsewhere; the ML ones (Na, Cl2) are computed here.
        "stability": {"elemental_references": False},
        "ml": {"screen_e_above_hull_eV_per_atom": threshold, "relax": {"fmax_eV_per_A": 0.05}},
    })


def test_threshold_moves_a_structure_between_screened_out_and_dft_and_reruns_nothing_else(tmp_path: Path):
    write_polymorphs(tmp_path / "cifs")
    out = tmp_path / "out"

    # 1. The ML stage alone, screening off: both polymorphs go on, with ML energies above the hull.
    configure(tmp_path, None)
    proc = snakemake(tmp_path, "out/ml/dft_ids.txt")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert job_counts(proc.stderr)["ml_batch"] == 1  # two structures, one job, the model loaded once
    screen = json.loads((out / "ml" / "screen.json").read_text())
    column = screen["hull_column"]
    e_hull = {sid: v[column] for sid, v in screen["structures"].items()}
    assert e_hull["NaCl_rocksalt"] == pytest.approx(0.0, abs=1e-6)
    assert e_hull["NaCl_cscl"] > 0.005
    # The DFT rule reads the ML-relaxed geometry: the planned relax command names it.
    plan = snakemake(tmp_path, "-n", "-p")
    assert plan.returncode == 0, plan.stderr[-5000:]
    assert "--cif out/ml/structures/NaCl_rocksalt/relaxed.cif" in plan.stdout + plan.stderr

    # 2. Threshold between the two: CsCl-type NaCl is screened out, rocksalt gets DFT.
    configure(tmp_path, e_hull["NaCl_cscl"] / 2)
    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    counts = job_counts(proc.stderr)
    assert counts.get("relax") == 1 and counts.get("properties") == 1
    assert "ml_batch" not in counts and "ml_references" not in counts
    table = pd.read_csv(out / "results.csv").set_index("structure_id")
    assert table.loc["NaCl_cscl", "status"] == "screened_out"
    assert table.loc["NaCl_cscl", column] == pytest.approx(e_hull["NaCl_cscl"], rel=1e-6)
    assert pd.isna(table.loc["NaCl_cscl", "energy_eV"])
    assert table.loc["NaCl_rocksalt", "status"] == "ok"
    assert table.loc["NaCl_rocksalt", "dft_start_geometry"] == "ml_relaxed"
    for name in ("NaCl_rocksalt", "NaCl_cscl"):  # provenance in every ML row
        assert table.loc[name, "ml_model"] == "7net-0"
        assert re.fullmatch(r"[0-9a-f]{64}", table.loc[name, "ml_checkpoint_sha256"])
        assert isinstance(table.loc[name, "ml_package_version"], str)
    relax = json.loads((out / "dft" / "NaCl_rocksalt" / "relax.json").read_text())
    assert relax["start_cif"] == "out/ml/structures/NaCl_rocksalt/relaxed.cif"
    assert relax["compared_with_cif"] == "out/ml/structures/NaCl_rocksalt/generated.cif"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ml_vs_dft"]["n_screened_out"] == 1

    # 3. Threshold raised above CsCl-type NaCl: only the screen reruns, then DFT is planned for it alone.
    configure(tmp_path, e_hull["NaCl_cscl"] * 2)
    proc = snakemake(tmp_path, "out/ml/dft_ids.txt")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert job_counts(proc.stderr) == {"ml_screen": 1}  # no ML relaxation, no DFT
    plan = snakemake(tmp_path, "-n")
    assert plan.returncode == 0, plan.stderr[-5000:]
    counts = job_counts(plan.stdout + plan.stderr)
    assert counts.get("relax") == 1 and counts.get("properties") == 1
    assert not {"ml_batch", "ml_references", "ml_screen", "check"} & set(counts)
    planned = plan.stdout + plan.stderr
    assert "output: out/dft/NaCl_cscl/relax.json" in planned
    assert "output: out/dft/NaCl_rocksalt/relax.json" not in planned
