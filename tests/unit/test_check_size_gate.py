"""The check gates generated structures with the real-input estimate, per structure's own settings (issue 28, item 4).

The estimate is :func:`dftscreen.size_gate.estimate_structure` (the k-points and mode the DFT uses, spin,
valence electrons), with a structure's ``dft.structure_overrides`` merged in; the ``too_large`` reason and
the ``dft_estimate_*`` columns carry the same number. A results folder whose DFT packs started with the
cell-only estimate keeps it (their commands carry it; tests/workflow/test_pack_estimates_workflow.py).
"""

from __future__ import annotations

from pathlib import Path

from dftscreen.check import CheckSettings, check_text, check_text_and_structure, with_size_gate
from dftscreen.config import with_defaults
from dftscreen.layout import ResultsLayout
from dftscreen.plan import RunPlan
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import resolve_settings
from dftscreen.size_gate import (
    MARGIN,
    GateSettings,
    cell_only_estimate,
    estimate_structure,
    gate_params,
    keeps_cell_only_estimates,
    structure_gate_params,
)

from conftest import TEST_DATA

RUTILE = (TEST_DATA / "bad_cifs" / "good_rutile.cif").read_bytes()
RESOURCES = {"max_mem_mb_per_task": 12000, "max_runtime_min": 2880, "max_tasks": 2}
#: A raw GPAW mesh, which wins over the k-point density in the DFT: 16,000 irreducible k-points.
DENSE = {"gpaw": {"kpts": [40, 40, 40]}}


def rutile_structure():
    """The structure the check builds from the file."""
    return check_text_and_structure(RUTILE, "rutile", "rutile.cif")[1]


def test_a_generated_structure_is_refused_on_its_real_inputs_with_one_number():
    params = gate_params(resolve_settings("test", DENSE), RESOURCES)
    gate = GateSettings.from_dft_settings(params["settings"], params["resources"])
    structure = rutile_structure()
    real = estimate_structure([site.specie.symbol for site in structure], structure.lattice.matrix, gate)
    old = cell_only_estimate(len(structure), structure.lattice.matrix, gate)
    # The cell-only estimate ignored the mesh, bands and spin: it let the structure through.
    assert MARGIN * old.mem_mb_per_task < RESOURCES["max_mem_mb_per_task"] < MARGIN * real.mem_mb_per_task

    refused = check_text(RUTILE, "rutile", "rutile.cif", settings=with_size_gate(CheckSettings(), params))
    assert refused.dft_ready and not refused.valid and refused.status == "too_large"
    assert refused.dft_estimate_mem_MB_per_rank == round(real.mem_mb_per_task, 1)
    assert refused.dft_estimate_runtime_min == round(real.runtime_min, 1)
    # One number: the column's, in the reason (not the margin's product).
    assert f"estimated {refused.dft_estimate_mem_MB_per_rank / 1000:.1f} GB per rank" in refused.reason
    assert f"{MARGIN * refused.dft_estimate_mem_MB_per_rank / 1000:.1f} GB per rank" not in refused.reason
    assert f"{real.kpoints_irreducible} k-points" in refused.reason and real.kpoints_irreducible == 16000

    kept = check_text(RUTILE, "rutile", "rutile.cif",
                      settings=with_size_gate(CheckSettings(), params, cell_only=True))
    assert kept.valid and kept.dft_estimate_mem_MB_per_rank == round(old.mem_mb_per_task, 1)


def test_structure_overrides_reach_the_checks_gate():
    settings = resolve_settings("test")
    overrides = {"rutile_dense": DENSE, "rutile_steps": {"relax": {"max_steps": 3}}}
    own = structure_gate_params(settings, overrides, RESOURCES)
    assert sorted(own) == ["rutile_dense"]  # relax.max_steps changes nothing the gate reads
    params = {**gate_params(settings, RESOURCES), "structure_overrides": own}
    check = with_size_gate(CheckSettings(), params)
    dense = check_text(RUTILE, "rutile_dense", "rutile_dense.cif", settings=check)
    plain = check_text(RUTILE, "rutile", "rutile.cif", settings=check)
    steps = check_text(RUTILE, "rutile_steps", "rutile_steps.cif", settings=check)
    assert dense.status == "too_large" and "16000 k-points" in dense.reason
    assert plain.valid and steps.valid
    assert plain.dft_estimate_mem_MB_per_rank == steps.dft_estimate_mem_MB_per_rank < dense.dft_estimate_mem_MB_per_rank
    # A folder that keeps the cell-only estimate keeps the run's settings for every structure, as then.
    kept = check_text(RUTILE, "rutile_dense", "rutile_dense.cif",
                      settings=with_size_gate(CheckSettings(), params, cell_only=True))
    assert kept.valid


def test_the_plan_gives_the_check_each_overridden_structures_gate_and_no_key_without_one(tmp_path: Path):
    def plan(dft):
        config = with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": dft})
        return RunPlan(config, folder=tmp_path, layout=ResultsLayout.of(tmp_path / "out"))

    plain = plan({"preset": "test", "structure_overrides": {"a": {"relax": {"max_steps": 3}}}})
    assert plain.check_size_gate_params == plain.size_gate_params  # the check's params of before
    dense = plan({"preset": "test", "structure_overrides": {"a": DENSE}})
    own = dense.check_size_gate_params["structure_overrides"]
    assert list(own) == ["a"] and own["a"]["settings"]["gpaw"]["kpts"] == [40, 40, 40]
    gate = with_size_gate(CheckSettings(), dense.check_size_gate_params).structure_size_gates["a"]
    assert gate.kpts == (40, 40, 40) and gate.policy == ResourcePolicy.from_config(dense.config["dft"]["resources"])


def test_a_folder_whose_packs_started_before_the_real_input_estimate_keeps_the_cell_only_one(tmp_path: Path):
    layout = ResultsLayout.of(tmp_path / "out")
    assert not keeps_cell_only_estimates(layout)  # a new run
    members = Path(layout.pack_members("0123456789ab"))
    members.parent.mkdir(parents=True)
    members.write_text("a\nb\n")
    assert keeps_cell_only_estimates(layout)  # packs started with the numbers of before
    Path(layout.size_estimate_note).parent.mkdir(parents=True)
    Path(layout.size_estimate_note).write_text("x")
    assert not keeps_cell_only_estimates(layout)  # its check gated with the real inputs before they started


def test_a_byte_identical_twin_with_its_own_overrides_gets_its_own_estimate(tmp_path: Path):
    from dftscreen.check_batch import check_all
    from dftscreen.inputs import discover_cifs

    for name in ("a.cif", "b.cif"):
        (tmp_path / name).write_bytes(RUTILE)
    settings = resolve_settings("test")
    params = {**gate_params(settings, RESOURCES), "structure_overrides": structure_gate_params(
        settings, {"b": DENSE}, RESOURCES)}
    results = {r.structure_id: r for r in check_all(
        discover_cifs(tmp_path), settings=with_size_gate(CheckSettings(), params), workers=1)}
    assert results["a"].valid and results["b"].status == "too_large"
