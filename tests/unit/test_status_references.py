"""`dftscreen status` counts the known-materials jobs (compare_known, elemental references, known phases)."""

from __future__ import annotations

import json
from pathlib import Path

from dftscreen.layout import ReferenceLibrary, ResultsLayout
from dftscreen.references import automatic_candidate_keys
from dftscreen.reflib import element_reference_key
from dftscreen.status import format_status, run_status

LIBRARY = "out/reference_library/0123456789abcdef"


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_run(work: Path, compare_known_done: bool = True) -> tuple[Path, ReferenceLibrary]:
    """Two NaCl structures and one TiO2 at DFT; the known set chose NaCl, Na3Cl and an elemental Ti phase."""
    out = work / "out"
    layout = ResultsLayout.of(out)
    checks = [
        {"structure_id": "nacl", "valid": True, "reduced_formula": "NaCl"},
        {"structure_id": "nacl2", "valid": True, "reduced_formula": "NaCl"},
        {"structure_id": "tio2", "valid": True, "reduced_formula": "TiO2"},
        {"structure_id": "bad", "valid": False, "status": "invalid", "reason": "no atoms"},
    ]
    write_json(Path(layout.checks_table), checks)
    library = ReferenceLibrary(*LIBRARY.rsplit("/", 1))
    if compare_known_done:
        ti_key = automatic_candidate_keys("Ti")[0].split("-", 1)[1]
        phases = [
            {"phase_key": "NaCl-aaaa", "chemical_system": "Cl-Na"},
            {"phase_key": "Na3Cl-bbbb", "chemical_system": "Cl-Na"},
            {"phase_key": "TiO2-cccc", "chemical_system": "O-Ti"},
            # The very structure of Ti's own candidate: computed once, as the element.
            {"phase_key": f"Ti-{ti_key}", "chemical_system": "Ti"},
        ]
        write_json(Path(layout.competing_phases), {"library": LIBRARY, "phases": phases})
        write_json(work / library.phase_record("NaCl-aaaa"), {"status": "relaxed"})
        write_json(work / library.phase_record("Na3Cl-bbbb"),
                   {"status": "failed", "reason": "SCF did not converge after 4 strategies"})
    na_auto, na_delta = automatic_candidate_keys("Na")
    write_json(work / library.element_record("Na", na_auto), {"status": "relaxed"})
    write_json(work / library.element_record("Na", na_delta), {"status": "not_converged"})
    cl_key = automatic_candidate_keys("Cl")[0]
    write_json(work / library.element_record("Cl", cl_key), {"status": "failed", "reason": "SCF did not converge"})
    # O: its job started (log) and left no record: crashed. Ti: not started.
    o_key = automatic_candidate_keys("O")[0]
    log = Path(layout.log("references/elements", f"O-{o_key}"))
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Killed\n")
    return out, library


def test_reference_jobs_counted_like_structures(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct, no squeue
    out, _ = make_run(tmp_path)
    status = run_status(out)
    refs = status.to_dict()["references"]
    assert refs["compare_known"]["done"] == 1
    elements = refs["elements"]
    # Na (2 candidates), Cl, O, Ti: one job per candidate.
    assert (elements["done"], elements["failed"], elements["running"], elements["pending"]) == (2, 2, 0, 1)
    assert [name.split("/")[0] for name in elements["failed_ids"]] == ["Cl", "O"]
    assert "SCF did not converge" in elements["failure_reasons"]
    assert any("the job started but wrote no record" in reason for reason in elements["failure_reasons"])
    phases = refs["known_phases"]
    assert (phases["done"], phases["failed"], phases["pending"]) == (1, 1, 1)
    assert phases["failed_ids"] == ["Na3Cl-bbbb"]
    text = format_status(status, show_ids=5)
    assert "compare_known 1 done, 0 failed, 0 running, 0 pending  (of 1)" in text
    assert "elements    2 done, 2 failed, 0 running, 1 pending  (of 5)" in text
    assert "known_phases 1 done, 1 failed, 0 running, 1 pending  (of 3)" in text
    assert "relax       0 done, 0 failed, 0 running, 3 pending  (of 3)" in text


def test_run_config_names_user_cifs_or_turns_elements_off(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out, library = make_run(tmp_path)
    cif = tmp_path / "cl.cif"
    cif.write_text("data_Cl\n")
    config = tmp_path / "config" / "config.yaml"
    config.parent.mkdir()
    config.write_text("output_dir: out\nstability: {elemental_reference_cifs: {Cl: cl.cif}}\n")
    write_json(tmp_path / library.element_record("Cl", element_reference_key(cif)), {"status": "relaxed"})
    elements = run_status(out).references["elements"]
    assert (elements.done, elements.failed) == (3, 1) and elements.failed_ids[0].startswith("O/")
    config.write_text("output_dir: out\nstability: {elemental_references: false}\n")
    refs = run_status(out).references
    assert refs["elements"].total == 0
    # Without elemental references the elemental phase gets its own job.
    assert refs["known_phases"].total == 4


def test_before_compare_known_the_library_is_not_known(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out, _ = make_run(tmp_path, compare_known_done=False)
    status = run_status(out)
    assert status.references["compare_known"].pending == 1
    assert status.references["elements"].total == 0
    assert "elements    not listed until compare_known has run" in format_status(status)
    # compare_known crashed: its log exists, its table does not.
    log = Path(ResultsLayout.of(out).log("compare_known"))
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("ValueError: bad known set\n")
    assert run_status(out).references["compare_known"].failed_ids == ["compare_known"]


def test_ml_screened_structures_are_neither_pending_nor_costed(tmp_path: Path, monkeypatch):
    from dftscreen.status import cost_projection

    monkeypatch.setenv("PATH", str(tmp_path))
    out, _ = make_run(tmp_path)
    write_json(Path(ResultsLayout.of(out).ml_screen), {"screened_out_ids": ["tio2"]})
    status = run_status(out)
    assert status.stages["relax"].total == 2 and status.check_counts["screened_out (ML)"] == 1
    # Ti and O leave the elements to compute with TiO2.
    assert {name.split("/")[0] for name in status.references["elements"].failed_ids} == {"Cl"}
    assert cost_projection(out)["stages"]["relax"]["pending_jobs"] == 2


def test_user_reference_phases_are_counted_and_add_their_elements(tmp_path: Path, monkeypatch):
    """The phases of ``stability.reference_cif_dir`` are jobs of the run; their elements get references."""
    from pymatgen.core import Lattice, Structure

    monkeypatch.setenv("PATH", str(tmp_path))
    out, library = make_run(tmp_path)
    phases = tmp_path / "phases"
    phases.mkdir()
    Structure(Lattice.cubic(4.2), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(phases / "LiCl.cif"))
    (phases / "broken.cif").write_text("data_broken\n")
    config = tmp_path / "config" / "config.yaml"
    config.parent.mkdir()
    config.write_text("output_dir: out\nstability: {reference_cif_dir: phases}\n")
    layout = ResultsLayout.of(out)
    write_json(Path(layout.phase_record("LiCl")), {"status": "relaxed"})
    status = run_status(out)
    user = status.references["user_phases"]
    assert (user.done, user.pending, user.total) == (1, 1, 2)
    # Li comes from the LiCl phase only (no structure at DFT has it): its candidates join the
    # 5 element jobs of make_run, pending. The broken CIF adds no element.
    elements = status.references["elements"]
    assert elements.total == 5 + len(automatic_candidate_keys("Li"))
    assert elements.pending == 1 + len(automatic_candidate_keys("Li"))
    assert "user_phases 1 done, 0 failed, 0 running, 1 pending  (of 2)" in format_status(status)
    # Listed before compare_known has run too: the phases' records are in the results folder.
    Path(layout.competing_phases).unlink()
    assert run_status(out).references["user_phases"].total == 2
