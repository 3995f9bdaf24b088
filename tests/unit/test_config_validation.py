"""Start-up validation of the DFT settings, the check's bounds and the ML model and device (issue 28).

Each wrong value stops the run with one sentence (a :class:`dftscreen.guards.ConfigError`)
naming the setting, its place in the config and, for a misspelt key, the closest known
one; every valid config resolves to exactly the settings it resolved to before.
"""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dftscreen import guards
from dftscreen.config import read_run_config, with_defaults
from dftscreen.guards import (
    SEVENNET_DOWNLOADED,
    SEVENNET_MODELS,
    SEVENNET_SHIPPED,
    ConfigError,
    check_bounds,
    check_dft_settings,
    check_ml_settings,
    check_run_config,
    downloaded_sevennet_checkpoint,
)
from dftscreen.recovery import DEFAULT_SCF_LADDER
from dftscreen.settings import (
    GPAW_KEYWORDS,
    OWN_GPAW_SETTING_KEYS,
    PRESETS,
    check_dft_config,
    deep_merge,
    resolve_settings,
)

from conftest import REPO

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


def dft(**given: Any) -> dict[str, Any]:
    """Config section ``dft`` with the schema's defaults and the ``given`` keys."""
    return with_defaults({"dft": given})["dft"]


def refused(section: dict[str, Any]) -> str:
    """The one-sentence message :func:`check_dft_settings` refuses ``section`` with."""
    with pytest.raises(ConfigError) as caught:
        check_dft_settings(section)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# --- valid configs: nothing refused, nothing changed --------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"preset": "fast"},
        {"preset": "standard"},
        {"overrides": {"gpaw": {"ecut_eV": 600, "smearing_eV": 0, "convergence": {"energy": 1e-7}, "nbands": -10,
                                "eigensolver": "rmm-diis", "parallel": {"domain": 1}, "dedecut": None}}},
        {"overrides": {"relax": {"max_steps": 0, "fmax_eV_per_A": 0.0, "stress_threshold_GPa": None},
                       "properties": {"kpt_density_per_A": None, "band_path_npoints": 0}}},
        {"preset": "mine", "presets": {"mine": {"gpaw": {"ecut_eV": 700, "dedecut": -0.01}}}},
        {"structure_overrides": {"X": {"relax": {"fmax_eV_per_A": 0.0, "max_steps": 1000}, "gpaw": {"maxiter": 2}}}},
        {"scf_ladder": []},
        {"scf_ladder": [{"name": "g", "description": "mixer", "gpaw": {"maxiter": 3, "mixer": {"beta": 0.02}}}]},
    ],
)
def test_valid_dft_sections_pass_and_resolve_as_before(given):
    section = dft(**given)
    check_dft_settings(section)
    settings = check_dft_config(section)
    expected = resolve_settings(section["preset"], section["overrides"], section["presets"], section["scf_ladder"])
    assert settings == expected


def test_built_in_presets_and_ladder_pass():
    for name in PRESETS:
        check_dft_settings(dft(preset=name))
    check_dft_settings(dft(scf_ladder=copy.deepcopy(DEFAULT_SCF_LADDER)))


def test_the_repository_config_and_the_defaults_pass():
    check_run_config(read_run_config(REPO / "config" / "config.yaml"))
    check_run_config(with_defaults({}))


# --- numbers that must be positive (or not negative), of the right type ------------------


def test_negative_cutoff_is_named_with_its_place_and_value():
    message = refused(dft(overrides={"gpaw": {"ecut_eV": -400}}))
    assert message == "dft.overrides.gpaw.ecut_eV must be a number above 0 (the plane-wave cutoff in eV), not -400"


def test_text_k_point_density_of_one_structure_is_refused():
    message = refused(dft(structure_overrides={"NaCl_x": {"gpaw": {"kpt_density_per_A": "abc"}}}))
    assert message == ("dft.structure_overrides.NaCl_x.gpaw.kpt_density_per_A must be a number above 0 "
                       "(k-points per Å⁻¹), not 'abc'")


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"overrides": {"gpaw": {"ecut_eV": 0}}}, "dft.overrides.gpaw.ecut_eV must be a number above 0"),
        ({"overrides": {"gpaw": {"ecut_eV": True}}}, "dft.overrides.gpaw.ecut_eV must be a number above 0"),
        ({"overrides": {"gpaw": {"ecut_eV": float("nan")}}}, "dft.overrides.gpaw.ecut_eV must be a number"),
        ({"overrides": {"gpaw": {"ecut_eV": None}}}, "dft.overrides.gpaw.ecut_eV must be a number above 0"),
        ({"overrides": {"gpaw": {"smearing_eV": -0.1}}}, "gpaw.smearing_eV must be a number of at least 0"),
        ({"overrides": {"gpaw": {"maxiter": 0}}}, "gpaw.maxiter must be a whole number of at least 1"),
        ({"overrides": {"gpaw": {"maxiter": 2.5}}}, "gpaw.maxiter must be a whole number"),
        ({"overrides": {"gpaw": {"h": 0}}}, "gpaw.h must be a number above 0 or null"),
        ({"overrides": {"gpaw": {"dedecut": "auto"}}}, "gpaw.dedecut must be 'estimate', 'computed', a number"),
        ({"overrides": {"gpaw": {"convergence": "tight"}}}, "gpaw.convergence must be a mapping"),
        ({"overrides": {"gpaw": {"convergence": {"energy": -1e-6}}}},
         "dft.overrides.gpaw.convergence.energy must be a number above 0 or null"),
        ({"preset": "mine", "presets": {"mine": {"gpaw": {"kpt_density_per_A": -2}}}},
         "dft.presets.mine.gpaw.kpt_density_per_A must be a number above 0"),
        ({"preset": "mine", "presets": {"mine": {"relax": {"fmax_eV_per_A": -0.05}}}},
         "dft.presets.mine.relax.fmax_eV_per_A must be a number of at least 0"),
        ({"overrides": {"relax": {"max_steps": "10"}}}, "relax.max_steps must be a whole number of at least 0"),
        ({"overrides": {"relax": {"symprec": 0}}}, "relax.symprec must be a number above 0"),
        ({"overrides": {"relax": {"fix_symmetry": "yes"}}}, "relax.fix_symmetry must be true or false"),
        ({"overrides": {"properties": {"band_path_npoints": -1}}}, "properties.band_path_npoints must be a whole"),
        ({"structure_overrides": {"X": {"gpaw": {"smearing_eV": -1}}}},
         "dft.structure_overrides.X.gpaw.smearing_eV must be a number of at least 0"),
        ({"structure_overrides": {"X": {"relax": {"optimizer": "Newton"}}}},
         "dft.structure_overrides.X.relax.optimizer is 'Newton', not an optimizer dftscreen knows"),
        ({"scf_ladder": [{"name": "g", "description": "d", "gpaw": {"maxiter": 0}}]},
         "dft.scf_ladder[0].gpaw.maxiter must be a whole number of at least 1"),
        ({"preset": "nope"}, "unknown DFT preset 'nope'; known presets: fast, standard, test"),
    ],
)
def test_nonsense_values_are_refused_in_one_sentence(given, expected):
    assert expected in refused(dft(**given))


# --- unknown keys: the closest known one is named --------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"overrides": {"gpaw": {"ecutt_eV": 500}}},
         "unknown key 'ecutt_eV' in dft.overrides.gpaw (did you mean 'ecut_eV'?)"),
        ({"overrides": {"gpaw": {"mixr": {"beta": 0.05}}}},
         "unknown key 'mixr' in dft.overrides.gpaw (did you mean 'mixer'?)"),
        ({"structure_overrides": {"X": {"gpaw": {"kpt_density": 3}}}},
         "unknown key 'kpt_density' in dft.structure_overrides.X.gpaw (did you mean 'kpt_density_per_A'?)"),
        ({"structure_overrides": {"X": {"relax": {"fmax": 0.1}}}},
         "unknown key 'fmax' in dft.structure_overrides.X.relax"),
        ({"presets": {"mine": {"gpaw": {"spinpoll": True}}}},
         "unknown key 'spinpoll' in dft.presets.mine.gpaw (did you mean 'spinpol'?)"),
        ({"scf_ladder": [{"name": "g", "description": "d", "gpaw": {"max_iter": 600}}]},
         "unknown key 'max_iter' in dft.scf_ladder[0].gpaw (did you mean 'maxiter'?)"),
    ],
)
def test_misspelt_keys_are_refused_naming_the_closest(given, expected):
    assert expected in refused(dft(**given))


def test_gpaw_keywords_are_the_installed_gpaws():
    """GPAW_KEYWORDS (spelt out: importing GPAW at start-up costs seconds) is GPAW's own list."""
    import gpaw.dft

    from dftscreen.dft import OWN_GPAW_KEYS

    parameters = inspect.signature(gpaw.dft.GPAW).parameters
    keywords = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert GPAW_KEYWORDS == keywords - {"communicator", "object_hooks"}
    assert OWN_GPAW_SETTING_KEYS == set(OWN_GPAW_KEYS)


def filled(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA_PATH))
    return config


def test_schema_refuses_unknown_relax_keys_but_not_unknown_gpaw_keys():
    """Why the start-up check is needed: the schema's gpaw section is open (any GPAW keyword)."""
    for dft_section in ({"overrides": {"relax": {"fmax": 0.1}}},
                        {"structure_overrides": {"X": {"properties": {"kpts": 2}}}}):
        with pytest.raises(WorkflowError):
            filled({"dft": dft_section})
    config = filled({"dft": {"overrides": {"gpaw": {"ecutt_eV": 500, "ecut_eV": -400}}}})
    with pytest.raises(ConfigError, match="unknown key 'ecutt_eV'"):
        check_run_config(config)


# --- the check's bounds ----------------------------------------------------------------


def check_section(**given: Any) -> dict[str, Any]:
    return with_defaults({"check": given})["check"]


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"cell_length_min_A": 50.0, "cell_length_max_A": 2.0},
         "check.cell_length_min_A (50 Å) must be below check.cell_length_max_A (2 Å), or every structure is rejected"),
        ({"cell_angle_min_deg": 90, "cell_angle_max_deg": 90},
         "check.cell_angle_min_deg (90°) must be below check.cell_angle_max_deg (90°)"),
        ({"cell_angle_min_deg": 190, "cell_angle_max_deg": 200}, "must overlap 0-180°"),
        ({"cell_length_min_A": -5, "cell_length_max_A": -1}, "check.cell_length_max_A be above 0 Å"),
    ],
)
def test_bounds_that_reject_everything_are_refused(given, expected):
    with pytest.raises(ConfigError) as caught:
        check_bounds(check_section(**given))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_default_bounds_pass():
    check_bounds(check_section())


# --- the ML model and device ---------------------------------------------------------


def ml_section(**given: Any) -> dict[str, Any]:
    return with_defaults({"ml": given})["ml"]


def test_ml_model_and_device_vocabulary(tmp_path: Path, monkeypatch):
    for model in ("7net-0", "SevenNet-0", "7net-l3i5", "7net-mf-0"):
        check_ml_settings(ml_section(model=model))
    for device in ("cpu", "cuda", "cuda:1", "mps", "auto"):
        check_ml_settings(ml_section(device=device))
    with pytest.raises(ConfigError, match=r"^ml.model '7net-O' is neither a SevenNet pretrained model .* "
                                          r"nor an existing checkpoint file \(did you mean '7net-0'\?\)") as caught:
        check_ml_settings(ml_section(model="7net-O"))
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"^ml.device 'gpu' is not a torch device dftscreen knows"):
        check_ml_settings(ml_section(device="gpu"))
    with pytest.raises(ConfigError, match=r"did you mean 'cuda'"):
        check_ml_settings(ml_section(device="cdua"))
    # A checkpoint file, relative to the run folder (the folder Snakemake runs in), is a model.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.pth").write_bytes(b"")
    check_ml_settings(ml_section(model="mine.pth"))
    with pytest.raises(ConfigError, match="nor an existing checkpoint file"):
        check_ml_settings(ml_section(model="missing.pth"))
    # With the ML stage off, its model and device are not used and not checked.
    check_ml_settings(ml_section(enabled=False, model="nonsense", device="gpu"))


def test_sevennet_model_names_are_the_ones_sevenn_resolves(monkeypatch):
    import sevenn._const
    import sevenn.util

    # No download: the names that sevenn fetches on first use resolve to their path.
    monkeypatch.setattr(sevenn.util, "download_checkpoint", lambda path, url: f"downloaded {path}")
    for name in sorted(SEVENNET_MODELS):
        path = sevenn.util.pretrained_name_to_path(name)
        suffix = name.split("-", 1)[1]
        if suffix in SEVENNET_SHIPPED:
            assert Path(path).is_file(), name  # in the wheel
        else:
            assert path == f"downloaded {sevenn._const._prefix}/{SEVENNET_DOWNLOADED[suffix]}", name
    with pytest.raises(ValueError):
        sevenn.util.pretrained_name_to_path("7net-1")


def test_a_sevennet_model_that_needs_a_download_passes_only_once_downloaded(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    if downloaded_sevennet_checkpoint("7net-omat") is not None:
        pytest.skip("the installed sevenn carries 7net-omat's weights")
    with pytest.raises(ConfigError, match=r"^ml.model '7net-omat' is a SevenNet model whose weights sevenn "
                                          r"downloads on first use and they are not downloaded here") as caught:
        check_ml_settings(ml_section(model="7net-omat"))
    assert "\n" not in str(caught.value)
    cached = tmp_path / ".cache" / "sevennet" / SEVENNET_DOWNLOADED["omat"]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    check_ml_settings(ml_section(model="7net-omat"))
    assert downloaded_sevennet_checkpoint("SevenNet-omat") == cached


def test_start_up_checks_import_neither_gpaw_nor_torch():
    code = "import sys, dftscreen.guards; print(sorted({'gpaw', 'torch', 'sevenn'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_run_config_check_covers_every_section():
    config = with_defaults({})
    for path, value, expected in [
        (("output_dir",), " ", "output_dir is empty"),
        (("dft", "overrides"), {"gpaw": {"ecut_eV": -400}}, "ecut_eV must be a number above 0"),
        (("check", "cell_length_min_A"), 2000.0, "check.cell_length_min_A"),
        (("ml", "device"), "gpu", "ml.device 'gpu'"),
    ]:
        broken = copy.deepcopy(config)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(ConfigError, match=expected):
            guards.check_run_config(broken)


def test_a_structure_override_is_checked_merged_over_the_run_settings():
    section = dft(structure_overrides={"X": {"gpaw": {"ecut_eV": 500}}})
    settings = check_dft_config(section)
    assert deep_merge(settings, {"gpaw": {"ecut_eV": 500}})["gpaw"]["ecut_eV"] == 500
