"""`dftscreen status` prints what the run cost and what the pending structures will cost (hand-made records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dftscreen import cli
from dftscreen.status import cost_projection


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """Two relaxations done (one resumed: 2 starts), one failed, two structures (4 and 8 atoms) pending."""
    out = tmp_path / "out"
    write_json(
        out / "check" / "checks.json",
        [
            {"structure_id": "a", "valid": True, "n_sites": 2},
            {"structure_id": "b", "valid": True, "n_sites": 6},
            {"structure_id": "failed", "valid": True, "n_sites": 4},
            {"structure_id": "p1", "valid": True, "n_sites": 4},
            {"structure_id": "p2", "valid": True, "n_sites": 8},
            {"structure_id": "bad", "valid": False, "status": "invalid", "n_sites": 100},
        ],
    )
    write_json(out / "dft" / "a" / "relax.json", {"status": "relaxed", "wall_time_s": 1800, "mpi_ranks": 2})
    write_json(out / "dft" / "a" / "properties.json", {"status": "done", "wall_time_s": 360, "mpi_ranks": 2})
    # Resumed: the last start took 900 s, all starts 7200 core-seconds.
    write_json(
        out / "dft" / "b" / "relax.json",
        {"status": "relaxed", "wall_time_s": 900, "mpi_ranks": 2, "core_seconds_all_starts": 7200},
    )
    write_json(
        out / "dft" / "failed" / "relax.json",
        {"status": "failed", "wall_time_all_starts_s": 900, "core_seconds_all_starts": 1800, "mpi_ranks": 2},
    )
    return out


def test_projection_from_measured_cost_per_atom(run: Path):
    cost = cost_projection(run)
    relax = cost["stages"]["relax"]
    # (1 + 2 + 0.5) core-hours over 2 + 6 + 4 atoms; pending p1 and p2 (12 atoms).
    assert relax["measured_core_hours"] == pytest.approx(3.5)
    assert relax["core_hours_per_atom"] == pytest.approx(3.5 / 12)
    assert (relax["pending_jobs"], relax["pending_atoms"]) == (2, 12)
    assert relax["projected_core_hours"] == pytest.approx(3.5)
    properties = cost["stages"]["properties"]
    # b, p1, p2 wait for properties; the failed relaxation's will only be skipped.
    assert (properties["pending_jobs"], properties["pending_atoms"]) == (3, 18)
    assert properties["projected_core_hours"] == pytest.approx(0.2 / 2 * 18)
    assert cost["pending_core_hours"] == pytest.approx(3.5 + 1.8)


def test_status_prints_the_projection(run: Path, capsys):
    assert cli.main(["status", "--no-scheduler", str(run)]) == 0
    text = capsys.readouterr().out
    assert (
        "cost relax       3.5 core-hours spent (0.292 per atom); 2 pending (12 atoms): about 3.5 core-hours more"
        in text
    )
    assert "about 5.3 core-hours in all" in text
    assert cli.main(["status", "--no-scheduler", "--json", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["cost"]["pending_core_hours"] == pytest.approx(5.3)


def test_no_projection_before_the_checks(tmp_path: Path):
    assert cost_projection(tmp_path) is None
