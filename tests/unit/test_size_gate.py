"""The DFT size gate: estimates from atoms, cell and cutoff; routes to DFT, to larger resources, or to a reason."""

from __future__ import annotations

import numpy as np
import pytest

from dftscreen.check import CheckSettings, check_text
from dftscreen.resources import ResourcePolicy
from dftscreen.size_gate import GateSettings, estimate_cost, kpoint_mesh, plane_waves, route

from conftest import TEST_DATA

POLICY = ResourcePolicy()


def test_plane_waves_and_kpoints_follow_the_textbook_counts():
    # N_pw = V k_c^3 / (6 pi^2): 1000 bohr^3 at 1 Ha (k_c = sqrt 2) gives 47.8.
    assert plane_waves(1000 * 0.529177210903**3, 27.211386245988) == pytest.approx(1000 * 2**1.5 / (6 * np.pi**2))
    # ASE's kptdensity: n = ceil(2 pi density / d) per axis.
    assert kpoint_mesh(np.diag([4.0, 4.0, 20.0]), 2.0) == (4, 4, 1)


def test_a_two_atom_cell_in_a_200_A_box_is_refused_with_numbers():
    """It was sent with 1 rank, 1.1 GB and 40 min; it needs hundreds of GB."""
    estimate = estimate_cost(2, np.eye(3) * 200.0, 400.0, 2.0, POLICY.tasks(2))
    decision = route(estimate, POLICY)
    assert decision.resources == "refused"
    assert estimate.mem_mb_per_task > 100_000
    assert "too large for DFT here" in decision.reason and "GB per rank" in decision.reason


def test_small_cells_keep_the_policy_and_the_calibration_points_are_met():
    """Calibration (size_gate docstring): Si16 at 400 eV took 38 s and 260 MiB on one rank;
    5-atom perovskites at the standard preset 74-95 min of relaxation (bench/README.md)."""
    si16 = estimate_cost(16, np.diag([5.47, 5.47, 10.94]), 400.0, 2.0, 1)
    assert 150 < si16.mem_mb_per_task < 600
    perovskite = estimate_cost(5, np.eye(3) * 3.9, 800.0, 5.0, 1)
    assert 60 < perovskite.runtime_min < 300
    nacl = estimate_cost(4, np.diag([4.0, 4.0, 5.6]), 400.0, 2.0, 1)
    assert route(nacl, POLICY).resources == "policy"
    # The policy gives 5 atoms 55 min, less than the bench's 74-95 min: the gate enlarges it.
    assert route(perovskite, POLICY).resources == "enlarged"


def test_resources_follow_an_enlarging_estimate_within_the_limits():
    assert POLICY.mem_mb_per_task(320) == 17_000  # the per-atom rule alone
    assert POLICY.mem_mb_per_task(320, estimate_mb=5_000) == POLICY.max_mem_mb_per_task  # capped
    assert POLICY.mem_mb_per_task(4, estimate_mb=5_000) == 5_000  # enlarged
    assert POLICY.mem_mb_per_task(4, estimate_mb=10) == POLICY.mem_mb_per_task(4)  # never below the rule
    assert POLICY.runtime_min(5, estimate_min=270) == 270 and POLICY.runtime_min(5, 2, estimate_min=270) == 540


RUTILE = (TEST_DATA / "bad_cifs" / "good_rutile.cif").read_bytes()


def test_the_check_routes_and_a_refused_structure_says_why():
    gate = GateSettings(400.0, 2.0, POLICY)
    ok = check_text(RUTILE, "rutile", "rutile.cif", settings=CheckSettings(size_gate=gate))
    assert ok.valid and ok.dft_resources == "policy" and ok.dft_estimate_mem_MB_per_rank > 0
    tiny = GateSettings(400.0, 2.0, ResourcePolicy(max_mem_mb_per_task=100))
    refused = check_text(RUTILE, "rutile", "rutile.cif", settings=CheckSettings(size_gate=tiny))
    assert refused.dft_ready and not refused.valid and refused.status == "too_large"
    assert "max_mem_mb_per_task" in refused.reason
