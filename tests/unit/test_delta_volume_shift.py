"""bench/delta_volume_shift.py: the Δp -> volume arithmetic and the report's flag, on fake records (no GPAW)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import delta_volume_shift as shift  # noqa: E402
from converge_settings import GPA_PER_EV_PER_A3, point_name  # noqa: E402

VOLUME_A3 = 20.0  # the cell's volume (one atom) in the fake records


def scf(ecut: float, energy: float, diagonal_GPa: float = 0.0, pulay_estimate_GPa: float = 0.0,
        bulk_GPa: float = 100.0) -> dict:
    """A fake single_point record: the stress (with GPAW's estimate) the same on the diagonal, no shear."""
    return {"ecut_eV": ecut, "energy_eV": energy, "volume_A3": VOLUME_A3, "n_atoms": 1,
            "stress_with_estimate_GPa": [diagonal_GPa] * 3 + [0.0] * 3, "pulay_estimate_GPa": pulay_estimate_GPa,
            "wien2k_B_GPa": bulk_GPa}


def element_records(old_GPa: float, new_raw_GPa: float, dedecut: float, bulk_GPa: float = 100.0) -> dict[str, dict]:
    """Records by point name: old stress ``old_GPa``, new raw stress ``new_raw_GPa`` (estimate -0.5 GPa
    added and taken off again), and coarse energies ``dedecut`` eV/eV apart per eV of cutoff."""
    old, new, low, high = shift.all_points()
    return {
        point_name(*old): scf(old[0], -10.0, old_GPa, -0.3, bulk_GPa),
        point_name(*new): scf(new[0], -10.0, new_raw_GPa - 0.5, -0.5, bulk_GPa),
        point_name(*low): scf(low[0], -9.0, bulk_GPa=bulk_GPa),
        point_name(*high): scf(high[0], -9.0 + dedecut * (high[0] - low[0]), bulk_GPa=bulk_GPa),
    }


def test_pressure_and_first_order_volume():
    assert shift.pressure_GPa([-1.0, -2.0, -3.0, 5.0, 5.0, 5.0]) == pytest.approx(2.0)
    # 1 GPa more pressure at V_old with B = 100 GPa: the relaxation expands the cell by 1 %.
    assert shift.volume_shift(20.0, 1.0, 100.0) == pytest.approx(20.2)
    assert shift.volume_shift(20.0, -2.0, 50.0) == pytest.approx(19.2)
    assert shift.percent_off(20.2, 20.0) == pytest.approx(1.0)


def test_element_estimate_adds_the_computed_pulay_stress_to_the_raw_one():
    dedecut = -1e-4  # eV per eV of cutoff, the whole cell
    estimate = shift.element_estimate(element_records(old_GPa=0.1, new_raw_GPa=0.2, dedecut=dedecut))
    pulay = 2 / 3 * 700.0 * dedecut / VOLUME_A3 * GPA_PER_EV_PER_A3  # GPa, on the diagonal
    assert estimate["dedecut_eV_per_eV"] == pytest.approx(dedecut)
    assert estimate["p_old_GPa"] == pytest.approx(-0.1)
    assert estimate["p_new_GPa"] == pytest.approx(-(0.2 + pulay))
    assert estimate["delta_p_GPa"] == pytest.approx(-(0.2 + pulay) + 0.1)


def test_element_estimate_waits_for_every_scf():
    records = element_records(0.0, 0.0, 0.0)
    records.pop(point_name(*shift.coarse_points()[1]))
    assert shift.element_estimate(records) is None


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def reference(element: str, volume: float | None, v0: float, kind: str = "crystal") -> dict:
    candidate = {"key": f"auto-{element}", "candidate": "auto", "kind": kind,
                 "description": f"bcc {element} (ASE reference state)"}
    return {"element": element, "used": candidate["key"], "used_kind": kind, "candidates": [candidate],
            "volume_per_atom_A3": volume, "wien2k_V0_A3_per_atom": v0}


def test_report_flags_an_estimate_beyond_the_tolerance(tmp_path):
    references, records = tmp_path / "references", tmp_path / "records"
    # Aa: 1.0 % above V0 at the old settings; Δp = +1 GPa at B = 100 GPa adds 1 %: 2.01 % off, flagged.
    write(references / "Aa.json", reference("Aa", 20.2, 20.0))
    # Bb: 1.0 % above V0; Δp = -1 GPa takes 1 % of V_old off: 20.2 x 0.99 = 19.998, -0.01 %, within.
    write(references / "Bb.json", reference("Bb", 20.2, 20.0))
    write(references / "Cc.json", reference("Cc", None, 20.0, kind="molecule"))
    write(references / "Dd.json", reference("Dd", 20.0, 20.0))  # no SCF yet: pending
    for element, new_raw in (("Aa", -1.0), ("Bb", 1.0)):
        for name, record in element_records(old_GPa=0.0, new_raw_GPa=new_raw, dedecut=0.0).items():
            write(records / element / f"{name}.json", record)

    text = shift.report(records, references)
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert "+2.01" in lines["Aa"] and "FLAG" in lines["Aa"]
    assert "19.998   -0.01" in lines["Bb"]
    assert "FLAG" not in lines["Bb"]
    assert "pending" in lines["Dd"]
    assert "Cc (molecule)" in text
    assert "beyond 1.6 % at the new settings: Aa" in text
    assert "2 of 3 elements estimated; pending: Dd" in text
    assert "new estimate: 2.01 % (Aa)" in text
