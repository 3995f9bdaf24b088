import pytest

from dftscreen.settings import (
    PRESETS,
    PROPERTIES_KEYS,
    RELAX_KEYS,
    check_vocabulary,
    deep_merge,
    initial_magmoms,
    paw_elements,
    resolve_settings,
)


def test_every_preset_is_complete():
    for name in ("test", "fast", "standard"):
        settings = resolve_settings(name)
        assert settings["preset"] == name
        assert settings["gpaw"]["xc"] == "PBE"
        assert {"ecut_eV", "kpt_density_per_A", "smearing_eV"} <= set(settings["gpaw"])
        assert {"optimizer", "fmax_eV_per_A", "max_steps"} <= set(settings["relax"])


def test_standard_is_production_grade():
    gpaw = PRESETS["standard"]["gpaw"]
    assert gpaw["ecut_eV"] >= 700  # converged stress with the computed derivative (bench/README.md)
    assert gpaw["dedecut"] == "computed"  # Pulay stress for cell relaxation: the cell's own dE/dE_cut
    assert gpaw["kpt_density_per_A"] >= 5  # metals
    assert gpaw["kpt_density_insulator_per_A"] >= 3 and gpaw["insulator_min_gap_eV"] >= 0.5
    assert PRESETS["standard"]["relax"]["fmax_eV_per_A"] <= 0.02


def test_overrides_merge_deeply_without_touching_the_preset():
    settings = resolve_settings("test", {"gpaw": {"ecut_eV": 600, "convergence": {"energy": 1e-7}, "nbands": -10}})
    assert settings["gpaw"]["ecut_eV"] == 600
    assert settings["gpaw"]["convergence"]["energy"] == 1e-7
    assert settings["gpaw"]["convergence"]["density"] == PRESETS["test"]["gpaw"]["convergence"]["density"]
    assert PRESETS["test"]["gpaw"]["ecut_eV"] != 600


def test_extra_presets_and_errors():
    settings = resolve_settings("mine", extra_presets={"mine": {"gpaw": {"ecut_eV": 700}}})
    assert settings["gpaw"]["ecut_eV"] == 700
    assert settings["gpaw"]["kpt_density_per_A"] == PRESETS["standard"]["gpaw"]["kpt_density_per_A"]
    with pytest.raises(KeyError, match="known presets: fast, standard, test"):
        resolve_settings("nope")
    with pytest.raises(ValueError, match="unknown optimizer"):
        resolve_settings("test", {"relax": {"optimizer": "Newton"}})


def test_deep_merge_does_not_alias():
    base = {"a": {"b": [1]}}
    merged = deep_merge(base, {"a": {"c": 2}})
    merged["a"]["b"].append(2)
    assert base == {"a": {"b": [1]}}


def test_magnetic_elements_start_spin_polarized():
    assert initial_magmoms(["Na", "Cl"]) is None
    assert initial_magmoms(["Fe", "O", "O"]) == [5.0, 0.0, 0.0]
    assert initial_magmoms(["Gd"]) == [7.0]


def test_installed_paw_datasets_are_found():
    elements = paw_elements("PBE")
    assert {"H", "O", "Na", "Cl", "Fe", "Si"} <= elements
    assert len(elements) > 70


@pytest.mark.parametrize(
    "overrides, extra, message",
    [
        ({"relax": {"fmax_ev_per_A": 0.01}}, None,
         r"unknown key 'fmax_ev_per_A' in dft.overrides.relax \(did you mean 'fmax_eV_per_A'\?\); "
         r"allowed keys: fix_symmetry, fmax_eV_per_A, max_steps, optimizer, relax_cell, stress_threshold_GPa, symprec"),
        ({"properties": {"gllbsc": True, "band_path": 3, "kpts": 2}}, None,
         r"unknown keys 'band_path', 'kpts' in dft.overrides.properties; "
         r"allowed keys: band_path_npoints, gllbsc, keep_restart_file, kpt_density_per_A"),
        ({"relx": {}}, None, r"unknown section 'relx' in dft.overrides \(did you mean 'relax'\?\)"),
        (None, {"mine": {"relax": {"max_step": 5}}}, r"unknown key 'max_step' in dft.presets.mine.relax"),
        ({"relax": 0.1}, None, r"dft.overrides.relax must be a mapping"),
    ],
)
def test_unknown_preset_keys_are_errors_naming_the_allowed_keys(overrides, extra, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings("mine" if extra else "test", overrides, extra)


def test_gpaw_section_takes_any_gpaw_keyword():
    settings = resolve_settings("test", {"gpaw": {"eigensolver": "rmm-diis", "parallel": {"domain": 1}}})
    assert settings["gpaw"]["eigensolver"] == "rmm-diis"


def test_built_in_presets_use_only_known_keys():
    for name, preset in PRESETS.items():
        check_vocabulary(preset, f"PRESETS[{name!r}]")
        assert set(preset["relax"]) == RELAX_KEYS - {"relax_cell"}, name  # relax_cell: references only
        assert set(preset["properties"]) == PROPERTIES_KEYS - {"keep_restart_file"}, name  # absent: false
