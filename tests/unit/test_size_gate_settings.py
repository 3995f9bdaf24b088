"""The size gate estimates with the settings the DFT uses, and its reason quotes the table's number (issue 28)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dftscreen.check import CheckSettings, check_text
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import resolve_settings
from dftscreen.size_gate import (
    MARGIN,
    GateSettings,
    estimate_structure,
    gate_params,
    route,
    setup_band_counts,
)

from conftest import TEST_DATA

POLICY = ResourcePolicy()
HA, BOHR = 27.211386245988, 0.529177210903


def hand_plane_waves(volume_A3: float, ecut_eV: float) -> float:
    """N_pw = V k_c³ / (6 π²), V in bohr³, k_c = sqrt(2 E / Ha)."""
    return volume_A3 / BOHR**3 * (2 * ecut_eV / HA) ** 1.5 / (6 * math.pi**2)


def hand_mem_mb(n_k: int, bands: int, n_pw: float, spins: int = 1) -> float:
    """150 MB + 3 wave-function copies (16 B) + 10 fine-grid arrays of 15 N_pw points (8 B), one rank."""
    return 150 + 3 * 16 * spins * n_k * bands * n_pw / 1e6 + 10 * 8 * 15 * n_pw / 1e6


def hand_runtime_min(n_k: int, n_k_prop: int, bands: int, n_pw: float, spins: int = 1) -> float:
    """30 relaxation single points at n_k, 2 property single points at n_k_prop: 3e-6 s x k x bands x N_pw ln N_pw."""
    unit = 3e-6 * bands * n_pw * math.log(n_pw)
    return (30 * spins * n_k * unit + 2 * spins * n_k_prop * unit) / 60


def test_setup_headers_give_gpaws_valence_electrons_and_bound_waves():
    # Fe.PBE: valence="8", bound states 4s 4p 3d (1 + 3 + 5); Si: 3s 3p; O: 2s 2p (6 electrons).
    assert setup_band_counts("Fe") == (8.0, 9)
    assert setup_band_counts("Si") == (4.0, 4)
    assert setup_band_counts("O") == (6.0, 4)
    assert setup_band_counts("Xx") is None


def test_si2_uses_its_bands_and_the_property_k_points():
    # a = 5 Å cube: relaxation density 2 -> ceil(2π·2/5) = 3 per axis, 27/4 -> 7 irreducible;
    # properties density 4 -> 6 per axis, 216/4 = 54. Si: 4 electrons, 4 bound waves each:
    # occupied 4, GPAW's 1.2·4 + 4 = 9 capped at 8 (4 left empty): 8 bands, not 5 per atom.
    gate = GateSettings(400.0, 2.0, POLICY, property_kpt_density_per_A=4.0)
    estimate = estimate_structure(["Si", "Si"], np.eye(3) * 5.0, gate)
    n_pw = hand_plane_waves(125.0, 400.0)
    assert (estimate.kpoints_irreducible, estimate.kpoints_properties, estimate.bands, estimate.spins) == (7, 54, 8, 1)
    assert estimate.plane_waves == round(n_pw)
    assert estimate.mem_mb_per_task == pytest.approx(hand_mem_mb(54, 8, n_pw))
    assert estimate.runtime_min == pytest.approx(hand_runtime_min(7, 54, 8, n_pw))


def test_iron_starts_spin_polarised_as_the_dft_and_spinpol_false_turns_it_off():
    # Fe starts at 5 µB each: occupied (16 + 10) / 2 = 13, 1.2·13 + 4 = 20 capped at 2·9 = 18 (5 empty).
    lattice, n_pw = np.eye(3) * 2.87, hand_plane_waves(2.87**3, 400.0)
    gate = GateSettings(400.0, 2.0, POLICY)  # ceil(2π·2/2.87) = 5 per axis: 125/4 -> 32 k-points
    magnetic = estimate_structure(["Fe", "Fe"], lattice, gate)
    assert (magnetic.spins, magnetic.bands, magnetic.kpoints_irreducible) == (2, 18, 32)
    assert magnetic.mem_mb_per_task == pytest.approx(hand_mem_mb(32, 18, n_pw, spins=2))
    assert magnetic.runtime_min == pytest.approx(hand_runtime_min(32, 32, 18, n_pw, spins=2))
    # spinpol False: occupied 8, 1.2·8 + 4 = 14 bands, one spin.
    plain = estimate_structure(["Fe", "Fe"], lattice, GateSettings(400.0, 2.0, POLICY, spinpol=False))
    assert (plain.spins, plain.bands) == (1, 14)
    assert plain.mem_mb_per_task == pytest.approx(hand_mem_mb(32, 14, n_pw))
    # initial_magmoms_muB {Fe: 0}: not magnetic either.
    zero = GateSettings.from_dft_settings({**resolve_settings("test"), "initial_magmoms_muB": {"Fe": 0.0}}, {})
    assert estimate_structure(["Fe", "Fe"], lattice, zero).spins == 1


def test_dft_overrides_reach_the_estimate_through_the_check_params():
    # dft.overrides: a denser mesh by density, then a raw GPAW mesh (which wins in the DFT too).
    settings = resolve_settings("test", {"gpaw": {"kpt_density_per_A": 4.0}, "properties": {"kpt_density_per_A": 6.0}})
    params = gate_params(settings, {})
    gate = GateSettings.from_dft_settings(params["settings"], params["resources"])
    assert (gate.kpt_density_per_A, gate.property_kpt_density_per_A) == (4.0, 6.0)
    estimate = estimate_structure(["Si", "Si"], np.eye(3) * 5.0, gate)
    assert (estimate.kpoints_irreducible, estimate.kpoints_properties) == (ceil_quarter(6**3), ceil_quarter(8**3))
    raw = resolve_settings("test", {"gpaw": {"kpts": [2, 2, 2]}})
    gate = GateSettings.from_dft_settings(gate_params(raw, {})["settings"], {})
    estimate = estimate_structure(["Si", "Si"], np.eye(3) * 5.0, gate)
    assert (estimate.kpoints_irreducible, estimate.kpoints_properties) == (2, 0)


def ceil_quarter(n: int) -> int:
    return math.ceil(n / 4)


def test_reason_and_column_carry_one_number():
    """The reason said 366 GB (the estimate x 1.5) while the column held 244 GB: now both say the estimate."""
    box = GateSettings(400.0, 2.0, POLICY)
    decision = route(estimate_structure(["Si", "Si"], np.eye(3) * 200.0, box), POLICY)
    mem = decision.estimate.mem_mb_per_task
    assert decision.resources == "refused" and MARGIN * mem > POLICY.max_mem_mb_per_task
    assert f"estimated {mem / 1000:.1f} GB per rank (x 1.5 margin > dft.resources.max_mem_mb_per_task 12 GB)" in (
        decision.reason
    )
    assert f"{MARGIN * mem / 1000:.1f} GB" not in decision.reason
    rutile = (TEST_DATA / "bad_cifs" / "good_rutile.cif").read_bytes()
    tiny = GateSettings(400.0, 2.0, ResourcePolicy(max_mem_mb_per_task=100))
    refused = check_text(rutile, "rutile", "rutile.cif", settings=CheckSettings(size_gate=tiny))
    assert refused.status == "too_large"
    assert f"estimated {refused.dft_estimate_mem_MB_per_rank / 1000:.1f} GB per rank" in refused.reason
