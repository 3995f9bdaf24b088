"""The preset's ``gpaw`` dictionary translated into GPAW keyword arguments (dftscreen.dft; no SCF runs)."""

import pytest

from dftscreen.dft import OWN_GPAW_KEYS, gpaw_calculator_kwargs
from dftscreen.references import reference_settings
from dftscreen.settings import PRESETS, resolve_settings


def test_gpaw_kwargs_translate_units_and_pass_extra_keys():
    gpaw = dict(PRESETS["standard"]["gpaw"], nbands="120%", dedecut=-0.01)
    kwargs = gpaw_calculator_kwargs(gpaw, txt="out.txt")
    assert kwargs["mode"].ecut == pytest.approx(gpaw["ecut_eV"] / 27.211386245988)  # GPAW stores Hartree
    assert kwargs["legacy_gpaw"] is True  # the new PW code ignores dedecut
    assert kwargs["kpts"] == {"density": 5.0, "gamma": True}
    assert kwargs["nbands"] == "120%"
    assert kwargs["txt"] == "out.txt"
    assert "ecut_eV" not in kwargs and "smearing_eV" not in kwargs
    # The relaxation's choice of mesh (dftscreen.relax) is not a GPAW keyword.
    assert "kpt_density_insulator_per_A" not in kwargs and "insulator_min_gap_eV" not in kwargs


@pytest.mark.parametrize(
    "raw_key, raw_value",
    [
        ("kpts", {"size": [4, 4, 4], "gamma": True}),  # beats kpt_density_per_A
        ("mode", "lcao"),  # beats ecut_eV and dedecut
        ("occupations", {"name": "fermi-dirac", "width": 0.01}),  # beats smearing_eV
        ("legacy_gpaw", False),  # beats the legacy calculator dedecut asks for
        ("txt", "-"),  # beats the txt argument
    ],
)
def test_a_raw_gpaw_keyword_beats_the_translation_of_our_keys(raw_key, raw_value):
    gpaw = dict(PRESETS["test"]["gpaw"])
    translated = gpaw_calculator_kwargs(gpaw, txt="out.txt")
    assert translated[raw_key] != raw_value
    assert gpaw_calculator_kwargs({**gpaw, raw_key: raw_value}, txt="out.txt")[raw_key] == raw_value
    # The same whatever the order the keys were given in (config files, merges).
    reordered = {raw_key: raw_value, **gpaw}
    assert gpaw_calculator_kwargs(reordered, txt="out.txt")[raw_key] == raw_value


def test_every_translation_target_can_be_given_raw():
    targets = {target for keywords in OWN_GPAW_KEYS.values() for target in keywords}
    translated = gpaw_calculator_kwargs(dict(PRESETS["standard"]["gpaw"]))
    assert targets <= set(translated)
    assert not set(OWN_GPAW_KEYS) & set(translated)


def test_molecule_references_use_the_gamma_point_not_the_kpoint_density():
    molecule = reference_settings(resolve_settings("test"), "molecule")
    kwargs = gpaw_calculator_kwargs(molecule["gpaw"])
    assert kwargs["kpts"] == {"size": [1, 1, 1], "gamma": True}
    assert kwargs["mode"].ecut == pytest.approx(400.0 / 27.211386245988)



def test_systems_gpaw_would_leave_without_empty_bands_get_them(tmp_path):
    """GPAW caps its default band count at the setups' bound partial waves: bcc Ba (5 bands,
    10 electrons) would have no empty band and no Fermi surface. Those get GPAW's uncapped
    default; everything else keeps GPAW's own choice, and a user's nbands or setups win."""
    from ase.build import bulk

    from dftscreen.dft import attach_gpaw, bands_beyond_gpaw_default

    barium = bulk("Ba", "bcc", a=5.02)
    assert bands_beyond_gpaw_default(barium) == 10  # ceil(1.2 x 5 occupied) + 4
    assert bands_beyond_gpaw_default(bulk("Ca", "fcc", a=5.5)) == 10
    assert bands_beyond_gpaw_default(bulk("NaCl", "rocksalt", a=5.6)) is None
    assert bands_beyond_gpaw_default(bulk("Cu", "fcc", a=3.6)) is None
    assert bands_beyond_gpaw_default(bulk("Al", "fcc", a=4.05)) is None
    gpaw = resolve_settings("test")["gpaw"]
    assert attach_gpaw(barium, gpaw, tmp_path / "ba.txt").parameters["nbands"] == 10
    assert attach_gpaw(barium, dict(gpaw, nbands=7), tmp_path / "ba7.txt").parameters["nbands"] == 7
    assert attach_gpaw(bulk("Cu", "fcc", a=3.6), gpaw, tmp_path / "cu.txt").parameters.get("nbands") is None


def test_the_elements_given_more_bands_are_those_gpaws_setups_say():
    """references.MORE_BANDS_ELEMENTS (it changes their library keys) equals what GPAW's setups give."""
    from ase.data import chemical_symbols

    from dftscreen.dft import bands_beyond_gpaw_default
    from dftscreen.references import (
        MORE_BANDS_ELEMENTS,
        NoElementalReference,
        delta_test_candidate,
        elemental_reference,
    )

    found = set()
    for element in chemical_symbols[1:87]:
        try:
            candidates = [elemental_reference(element), delta_test_candidate(element)]
        except NoElementalReference:
            continue
        if any(c is not None and bands_beyond_gpaw_default(c.atoms) is not None for c in candidates):
            found.add(element)
    assert found == MORE_BANDS_ELEMENTS
