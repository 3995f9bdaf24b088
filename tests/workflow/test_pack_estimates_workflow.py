"""A results folder whose DFT packs finished keeps their size estimates: nothing reruns (issue 28, item 4).

A ``dft_pack`` job's shell command carries each member's size estimate (``--plan``, rules/pack.smk),
and Snakemake reruns a finished job whose params changed. The check now estimates from the real
inputs (:func:`dftscreen.size_gate.estimate_structure`), but a folder whose packs started before it
did keeps the cell-only estimate (:func:`dftscreen.size_gate.keeps_cell_only_estimates`). Here a pack
finishes (its members' records are written by hand, so the real ``dftscreen.dft_pack`` runs no
GPAW and Snakemake records its params), the check reruns on a new input file, and a dry run plans no
DFT job. The control: the same folder with ``check/size_estimate.txt`` (real-input numbers) would rerun
the finished pack, so the kept estimate is what spares it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from dftscreen.check import CheckSettings, check_text, with_size_gate
from dftscreen.config import with_defaults
from dftscreen.dft_pack import pack_name
from dftscreen.layout import DFT_STAGES, ResultsLayout
from dftscreen.settings import resolve_settings
from dftscreen.size_gate import gate_params

from conftest import REPO, run_snakemake, write_run_config

STRUCTURES = ["NaCl_crystallm_P4nmm.cif", "MgGeO3_perov5_16100.cif"]
IDS = sorted(Path(name).stem for name in STRUCTURES)
DFT_RULES = {"dft_pack", "relax", "properties"}
ESTIMATES = ("dft_estimate_mem_MB_per_rank", "dft_estimate_runtime_min")
_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$", re.MULTILINE)


def estimates(workdir: Path) -> dict[str, tuple[float, float]]:
    rows = json.loads((workdir / "out" / "check" / "checks.json").read_text())
    return {row["structure_id"]: tuple(row[key] for key in ESTIMATES) for row in rows if row["valid"]}


def run(workdir: Path, *args: str) -> str:
    proc = run_snakemake(workdir, "--cores", "2", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def planned_rules(workdir: Path) -> set[str]:
    return set(_RULE.findall(run(workdir, "-n")))


def test_a_finished_pack_is_not_rerun_when_the_check_reruns_after_the_estimate_changed(tmp_path: Path):
    (tmp_path / "cifs").mkdir()
    for name in STRUCTURES:
        shutil.copy(REPO / "examples" / "cifs" / name, tmp_path / "cifs" / name)
    config = {"input": {"cif_dir": "cifs"}, "output_dir": "out", "ml": {"enabled": False},
              "stability": {"elemental_references": False}, "dft": {"preset": "test", "structures_per_pack": 2}}
    write_run_config(tmp_path, config)
    layout = ResultsLayout.of(tmp_path / "out")
    pack = pack_name(IDS)
    # The pack started before this version: its members file, and no check/size_estimate.txt.
    Path(layout.pack_members(pack)).parent.mkdir(parents=True)
    Path(layout.pack_members(pack)).write_text("".join(f"{sid}\n" for sid in IDS))
    run(tmp_path, "out/check/checks.json")
    kept = estimates(tmp_path)
    assert sorted(kept) == IDS and not Path(layout.size_estimate_note).exists()

    # The real-input estimate differs: a check that used it would change the pack's --plan.
    params = gate_params(resolve_settings("test"), with_defaults(config)["dft"]["resources"])
    real = {}
    for name in STRUCTURES:
        row = check_text((tmp_path / "cifs" / name).read_bytes(), Path(name).stem, name,
                         settings=with_size_gate(CheckSettings(), params))
        real[row.structure_id] = tuple(getattr(row, key) for key in ESTIMATES)
    assert real != kept

    # The pack finishes: every member's records exist, so dftscreen.dft_pack runs no GPAW and writes its record.
    for sid in IDS:
        for stage in DFT_STAGES:
            record = Path(layout.stage_record(sid, stage))
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text("{}")
    run(tmp_path, ResultsLayout.of("out").pack_record(pack))
    assert json.loads(Path(layout.pack_record(pack)).read_text())["n_finished"] == 2
    assert not planned_rules(tmp_path) & DFT_RULES

    # A new (unreadable) input: the check reruns, and keeps the estimates the finished pack carries.
    (tmp_path / "cifs" / "broken.cif").write_text("data_broken\n_cell_length_a 4.0\n")
    run(tmp_path, "out/check/checks.json")
    assert estimates(tmp_path) == kept and not Path(layout.size_estimate_note).exists()
    assert not planned_rules(tmp_path) & DFT_RULES

    # Control: had the check gated with the real inputs, the finished pack would rerun.
    Path(layout.size_estimate_note).write_text("real-input estimate\n")
    (tmp_path / "cifs" / "broken.cif").unlink()
    run(tmp_path, "out/check/checks.json")
    assert estimates(tmp_path) == real
    assert "dft_pack" in planned_rules(tmp_path)
