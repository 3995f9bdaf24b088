"""The size gate at planning: a reference phase DFT cannot afford gets no job, and one warning (issue 28, N4)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pymatgen.core import Lattice, Structure

from dftscreen.config import with_defaults
from dftscreen.layout import ResultsLayout
from dftscreen.plan import RunPlan
from dftscreen.references import automatic_candidate_keys


def write_cif(path: Path, species: list[str], a: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    coords = [[i / (2 * len(species))] * 3 for i in range(len(species))]
    Structure(Lattice.cubic(a), species, coords).to(filename=str(path))
    return path


def run_plan(folder: Path, warnings: io.StringIO | None = None, **sections) -> RunPlan:
    config = with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out", **sections})
    return RunPlan(config, folder=folder, layout=ResultsLayout.of(folder / "out"), warnings=warnings)


def test_a_two_atom_phase_in_a_200_A_box_gets_no_job(tmp_path: Path):
    """It was planned with 1 rank, 1.1 GB and 40 minutes; the gate estimates hundreds of GB."""
    write_cif(tmp_path / "phases" / "NaCl_box.cif", ["Na", "Cl"], 200.0)
    write_cif(tmp_path / "phases" / "LiCl.cif", ["Li", "Cl"], 4.2)
    said = io.StringIO()
    plan = run_plan(tmp_path, said, stability={"reference_cif_dir": "phases"})
    assert sorted(plan.reference_phases) == ["LiCl"]  # no relax_reference_phase job, no ML reference
    assert plan.elements_needed([]) == ["Cl", "Li"]
    warning = said.getvalue()
    assert warning.count("\n") == 1 and warning.startswith("dftscreen: WARNING: reference phase NaCl_box (")
    assert "gets no DFT job, left out of the hull: too large for DFT here: estimated" in warning
    assert "for 2 atoms" in warning and "GB per rank" in warning
    assert list(plan.too_large_phases) == [f"reference phase NaCl_box ({tmp_path / 'phases' / 'NaCl_box.cif'}, "
                                           "stability.reference_cif_dir)"]
    plan.reference_phases, plan.element_jobs(["Na"])  # asked again: said once
    assert said.getvalue() == warning
    assert run_plan(tmp_path, stability={"reference_cif_dir": "phases"}).reference_phases.keys() == {"LiCl"}


def test_an_elemental_reference_cif_in_a_box_gets_no_job(tmp_path: Path):
    write_cif(tmp_path / "refs" / "na_box.cif", ["Na", "Na"], 200.0)
    said = io.StringIO()
    plan = run_plan(tmp_path, said, stability={"elemental_reference_cifs": {"Na": "refs/na_box.cif"}})
    assert plan.element_jobs(["Na", "Cl"]) == [("Cl", key) for key in automatic_candidate_keys("Cl")]
    assert "WARNING: elemental reference Na (refs/na_box.cif) gets no DFT job" in said.getvalue()


def test_a_chosen_known_phase_in_a_box_gets_no_job(tmp_path: Path):
    plan = run_plan(tmp_path)
    chosen = {"phases": [{"phase_key": key, "chemical_system": "Cl-Na", "n_sites": 2} for key in ("kp-box", "kp-ok")]}
    write_cif(Path(plan.library.phase_start_cif("kp-box")), ["Na", "Cl"], 200.0)
    write_cif(Path(plan.library.phase_start_cif("kp-ok")), ["Na", "Cl"], 4.0)
    assert plan.competing_phase_keys(json.loads(json.dumps(chosen))) == ["kp-ok"]
    assert list(plan.too_large_phases) == ["known phase kp-box"]


def test_the_rows_a_refused_phase_would_bound_say_their_hull_lacks_it(tmp_path: Path):
    """Issue 28, N4: the table notes the phase the hull goes without, in the rows of its chemical systems."""
    import pandas as pd

    from dftscreen.table import add_left_out_phase_notes

    write_cif(tmp_path / "phases" / "NaCl_box.cif", ["Na", "Cl"], 200.0)
    plan = run_plan(tmp_path, stability={"reference_cif_dir": "phases"})
    assert plan.reference_phases == {}
    (label, phase), = plan.too_large_phases.items()
    assert phase["elements"] == ["Cl", "Na"] and phase["reason"].startswith("too large for DFT here")
    table = pd.DataFrame({"reduced_formula": ["NaCl", "Na2ClO", "LiCl", None],
                          "stability_note": [None, "mixed settings", None, None]})
    noted = add_left_out_phase_notes(table, plan.too_large_phases)["stability_note"].tolist()
    assert noted[0] == f"hull without {label}: too large for DFT here (dftscreen.size_gate)"
    assert noted[1] == f"mixed settings; hull without {label}: too large for DFT here (dftscreen.size_gate)"
    assert noted[2] is None and noted[3] is None  # no Na: the phase bounds nothing there
