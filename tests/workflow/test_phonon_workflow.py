"""End to end: phonons through Snakemake (issue 31), one structure dynamically stable, one not.

Diamond Si (all modes real) and cubic BaTiO3 at a = 4.00 Å (its ferroelectric Ti mode at Γ
is imaginary in first-principles calculations: Ghosez et al., Phys. Rev. B 60, 836 (1999); the symmetry-constrained
relaxation keeps it cubic). GPAW at the ``test`` preset, ML (SevenNet-0) and DFT phonons for
both (``phonons.dft: all``, no hull without elemental references), 1x1x1 supercells
(``min_supercell_length_A: 1``): Γ's frequencies are exact in any supercell, and the test
stays at minutes. Then a killed DFT phonon job is simulated the way a kill leaves it (every
displacement file is written atomically, so a kill leaves whole files and no record): the
rerun computes exactly the missing displacement and reuses the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.inputs import make_id
from dftscreen.layout import ResultsLayout

from conftest import assert_report_complete, assert_stored_phonon_commands, run_snakemake, write_run_config

pytestmark = pytest.mark.e2e

SI, BTO = make_id("Si_diamond.cif")[0], make_id("BaTiO3_cubic.cif")[0]
CONFIG = {
    "input": {"cif_dir": "cifs"},
    "output_dir": "out",
    "dft": {"preset": "test", "overrides": {"properties": {"band_path_npoints": 0}}},
    "stability": {"elemental_references": False},
    "ml": {"enabled": True, "prerelax": False},
    "phonons": {"ml": True, "dft": "all", "min_supercell_length_A": 1.0},
}


def write_inputs(cifs: Path) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    cifs.mkdir(parents=True)
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    bto = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.00), ["Ba", "Ti", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    CifWriter(si).write_file(cifs / "Si_diamond.cif")
    CifWriter(bto).write_file(cifs / "BaTiO3_cubic.cif")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("phonons")
    write_inputs(workdir / "cifs")
    write_run_config(workdir, CONFIG)
    proc = run_snakemake(workdir, profile="local", timeout=2400)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return workdir


def test_the_dft_phonons_command_is_the_stored_one(finished_run):
    assert_stored_phonon_commands(finished_run, "dft_phonons")


def test_columns_and_verdicts_say_which_structure_is_dynamically_stable(finished_run: Path):
    table = pd.read_csv(finished_run / "out" / "results.csv").set_index("structure_id")
    si, bto = table.loc[SI], table.loc[BTO]
    assert si["phonon_status"] == "computed" and si["dynamically_stable"] == True  # noqa: E712
    assert si["n_imaginary_phonon_modes"] == 0 and si["phonon_supercell"] == "1x1x1"
    assert bto["phonon_status"] == "computed" and bto["dynamically_stable"] == False  # noqa: E712
    assert bto["min_phonon_qpoint_label"] == "Γ" and bto["min_phonon_frequency_THz"] < -1.0
    assert bto["n_imaginary_phonon_modes"] >= 1 and bto["phonon_core_hours"] > 0
    assert "dynamically unstable (imaginary mode at Γ" in bto["verdict"], bto["verdict"]
    assert "dynamically stable" in si["verdict"] and "unstable" not in si["verdict"], si["verdict"]
    # The ML potential's phonons, on its own minimum, for both.
    assert si["ml_phonon_status"] == "computed" and si["ml_dynamically_stable"] == True  # noqa: E712
    assert bto["ml_phonon_status"] == "computed" and pd.notna(bto["ml_min_phonon_frequency_THz"])


def test_funnel_summary_and_report_count_dynamical_stability(finished_run: Path):
    out = finished_run / "out"
    summary = json.loads((out / "summary.json").read_text())
    stages = {stage["stage"]: stage["count"] for stage in summary["funnel"]}
    assert stages["relaxed"] == 2 and stages["dynamically stable"] == 1
    assert summary["dynamically_stable"] == {"count": 1, "rate": 0.5, "n_checked": 2}
    agreement = summary["ml_vs_dft"]["dynamical_stability"]
    assert agreement is None or agreement["n_compared"] == 2  # None only without an ML hull column
    assert summary["cost"]["stages"]["phonons"]["jobs"] == 2
    page = assert_report_complete(out / "report" / "index.html", ["funnel", "structures", "phonons"])
    for sid in (SI, BTO):
        assert f"phonons_{sid}.png" in page.images


def test_a_killed_phonon_job_reruns_only_the_missing_displacements(finished_run: Path):
    layout = ResultsLayout.of(finished_run / "out")
    first = json.loads(Path(layout.phonon_record(BTO)).read_text())
    assert first["n_force_calculations"] >= 3  # the undisplaced supercell and at least two displacements
    # What a kill after all but the last displacement leaves: the finished files, no record.
    Path(layout.phonon_record(BTO)).unlink()
    Path(layout.phonon_displacement_record(BTO, first["n_force_calculations"] - 1)).unlink()
    proc = run_snakemake(finished_run, profile="local", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    again = json.loads(Path(layout.phonon_record(BTO)).read_text())
    assert again["n_computed"] == 1 and again["n_reused"] == first["n_force_calculations"] - 1
    assert again["min_frequency_THz"] == pytest.approx(first["min_frequency_THz"], abs=1e-6)
    # Only BaTiO3's phonon job (and the table) ran: Si's record is untouched.
    assert "dft_phonons" in proc.stderr and f"sid={SI}" not in proc.stderr
