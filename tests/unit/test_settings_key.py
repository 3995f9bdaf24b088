"""The settings hash (``dftscreen.reflib.settings_key``) follows the presets (issue 32).

The reference library keys its results by this hash, so a preset whose numbers change
(a cutoff, a k-point density, an optimizer, an SCF criterion, a ladder rung) must give a new
key: the library's references computed with the old preset are then not reused.
"""

from __future__ import annotations

import copy

import pytest

from dftscreen import recovery
from dftscreen.reflib import settings_key
from dftscreen.settings import PRESETS, resolve_settings


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return "FIRE" if value == "BFGS" else value + "x"
    if isinstance(value, dict):
        return {**value, "changed": 1}
    return "changed"


def preset_settings():
    """(preset, section, key) of every setting of every built-in preset."""
    return [(name, section, key) for name, preset in PRESETS.items() for section, values in preset.items()
            for key in values]


@pytest.mark.parametrize(("preset", "section", "key"), preset_settings())
def test_settings_key_changes_when_a_preset_setting_does(monkeypatch, preset, section, key):
    before = settings_key(resolve_settings(preset))
    assert settings_key(resolve_settings(preset)) == before, "the same settings give the same key"
    monkeypatch.setitem(PRESETS[preset][section], key, changed(PRESETS[preset][section][key]))
    assert settings_key(resolve_settings(preset)) != before, f"{preset}.{section}.{key}"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_settings_key_changes_with_the_default_scf_ladder(monkeypatch, preset):
    before = settings_key(resolve_settings(preset))
    ladder = copy.deepcopy(recovery.DEFAULT_SCF_LADDER)
    ladder[0]["gpaw"]["mixer"]["beta"] = 0.03
    monkeypatch.setattr(recovery, "DEFAULT_SCF_LADDER", ladder)
    assert settings_key(resolve_settings(preset)) != before


def test_presets_have_distinct_keys():
    keys = {settings_key(resolve_settings(name)) for name in PRESETS}
    assert len(keys) == len(PRESETS)
