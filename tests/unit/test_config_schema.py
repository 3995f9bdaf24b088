"""The config schema is the one source of defaults: config.yaml and the library's defaults agree with it.

Also: the closed vocabularies of the preset sections are the same in the schema and in
dftscreen.settings. No workflow run: the schema is loaded and applied with Snakemake's
own ``validate``, as workflow/rules/common.smk does at start-up.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dftscreen import changes, cohort_table, competing, config, inputs, report, summary, targets, verdict
from dftscreen import table as table_module
from dftscreen.check import CheckSettings
from dftscreen.dedupe import MatchSettings
from dftscreen.ml import MLSettings
from dftscreen.resources import ResourcePolicy
from dftscreen.settings import OPTIMIZERS, PRESETS, PROPERTIES_KEYS, RELAX_KEYS, SECTION_KEYS

from conftest import REPO

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``default`` of every property of an object schema, recursing into objects that have properties."""
    defaults = {}
    for name, sub in schema.get("properties", {}).items():
        if "properties" in sub and "$ref" not in sub:
            defaults[name] = schema_defaults(sub)
        elif "default" in sub:
            defaults[name] = sub["default"]
    return defaults


def filled(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the schema's defaults filled in, as at workflow start-up."""
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA_PATH))
    return config


DEFAULTS = schema_defaults(SCHEMA)


def field_defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def parameter_default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def test_an_empty_config_gets_every_schema_default():
    assert filled({}) == DEFAULTS


def test_config_yaml_states_the_schema_defaults():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config == DEFAULTS
    assert filled(config) == config


def test_check_settings_defaults_are_the_schema_defaults():
    check = dict(DEFAULTS["check"])
    # Not thresholds of a check: the job's process count, its log's verbosity and the
    # dedupe section (below).
    for key in ("workers", "log_each_file", "dedupe"):
        check.pop(key)
    fields = field_defaults(CheckSettings)
    assert not fields.pop("reference_algorithms")  # a test switch, not a config key
    # Built by the workflow from dft.resources and the preset (dftscreen.size_gate), not a check key.
    assert fields.pop("size_gate") is None
    fields.pop("structure_size_gates")  # per structure, from dft.structure_overrides
    assert CheckSettings().structure_size_gates == {}
    assert fields.pop("size_gate_cell_only") is False  # from the results folder's history
    assert fields == check


def test_matcher_defaults_are_the_schema_defaults():
    dedupe = {k: v for k, v in DEFAULTS["check"]["dedupe"].items() if k != "enabled"}
    assert field_defaults(MatchSettings) == dedupe
    # The generated-vs-relaxed comparison uses the same StructureMatcher tolerances
    # and reports space groups at the check's tolerance.
    assert changes.DEFAULT_MATCHER == dedupe
    assert parameter_default(changes.relaxation_change, "symprec") == DEFAULTS["check"]["symprec_A"]


def test_resource_policy_defaults_are_the_schema_defaults():
    assert field_defaults(ResourcePolicy) == DEFAULTS["dft"]["resources"]
    assert ResourcePolicy.from_config(DEFAULTS["dft"]["resources"]) == ResourcePolicy()


def test_other_library_defaults_are_the_schema_defaults():
    assert inputs.DEFAULT_TABLE_CIF_COLUMN == DEFAULTS["input"]["table_cif_column"]
    assert parameter_default(targets.add_target_columns, "id_column") == DEFAULTS["targets"]["id_column"]
    assert DEFAULTS["dft"]["preset"] in PRESETS


def test_ml_settings_defaults_are_the_schema_defaults():
    ml = DEFAULTS["ml"]
    assert field_defaults(MLSettings) == {"model": ml["model"], **ml["relax"]}
    # The workflow's ML jobs build their settings from the validated section: every key is there.
    assert MLSettings.from_config(ml) == MLSettings()


# Functions the workflow always calls with a configured value take it by keyword, with no default
# of their own that could drift from the schema's.
CONFIGURED_PARAMETERS = [
    (function, name)
    for function, names in {
        summary.summarize: ["stable_threshold_eV_per_atom"],
        summary.funnel: ["stable_threshold_eV_per_atom"],
        summary.ml_agreement: ["stable_threshold_eV_per_atom"],
        verdict.verdict: ["stable_threshold_eV_per_atom"],
        verdict.verdicts: ["stable_threshold_eV_per_atom"],
        table_module.add_verdicts: ["stable_threshold_eV_per_atom"],
        table_module.assemble_table: ["stable_threshold_eV_per_atom"],
        table_module.table_from_results: ["stable_threshold_eV_per_atom"],
        report.build_report: ["stable_threshold_eV_per_atom"],
        cohort_table.cohort_rates: ["stable_threshold_eV_per_atom", "metastable_threshold_eV_per_atom", "alpha"],
        cohort_table.compare_with_baseline: ["alpha"],
        competing.choose_competing_phases: [
            "max_above_hull_eV_per_atom", "max_per_system", "max_sites", "include_elements"
        ],
    }.items()
    for name in names
]


@pytest.mark.parametrize(("function", "name"), CONFIGURED_PARAMETERS, ids=lambda x: getattr(x, "__name__", x))
def test_configured_parameters_are_keyword_only_without_a_default(function, name):
    parameter = inspect.signature(function).parameters[name]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty


def test_commands_read_the_run_config_with_the_schema_defaults(tmp_path):
    """dftscreen status and known-phases fetch read a run's config as the workflow does (dftscreen.config)."""
    assert config.schema_defaults() == DEFAULTS
    assert config.with_defaults({}) == filled({})
    given = {"output_dir": "run07", "ml": {"relax": {"max_steps": 9}}, "dft": {"overrides": {"gpaw": {"ecut_eV": 300}}}}
    assert config.with_defaults(given) == filled(given)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(given))
    assert config.read_run_config(path)["ml"]["relax"] == {**DEFAULTS["ml"]["relax"], "max_steps": 9}
    path.write_text("- a list\n")
    with pytest.raises(config.ConfigError, match="not a mapping"):
        config.read_run_config(path)
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.read_run_config(tmp_path / "missing.yaml")


# --- Closed vocabularies of the preset sections ----------------------------------------------------


def test_schema_and_library_list_the_same_preset_keys():
    definitions = SCHEMA["$defs"]
    assert set(definitions["relax_settings"]["properties"]) == RELAX_KEYS
    assert set(definitions["properties_settings"]["properties"]) == PROPERTIES_KEYS
    assert definitions["relax_settings"]["additionalProperties"] is False
    assert definitions["properties_settings"]["additionalProperties"] is False
    assert "additionalProperties" not in definitions["gpaw_settings"]  # any GPAW keyword
    assert set(definitions["preset_sections"]["properties"]) == set(SECTION_KEYS)
    assert tuple(definitions["relax_settings"]["properties"]["optimizer"]["enum"]) == OPTIMIZERS


def test_built_in_presets_are_valid_overrides():
    for name, preset in PRESETS.items():
        assert filled({"dft": {"overrides": preset}})["dft"]["overrides"] == preset, name


@pytest.mark.parametrize(
    "dft",
    [
        {"overrides": {"relax": {"fmax_ev_per_A": 0.01}}},
        {"overrides": {"properties": {"band_path_points": 30}}},
        {"overrides": {"relx": {"max_steps": 3}}},
        {"presets": {"mine": {"relax": {"max_step": 3}}}},
        {"structure_overrides": {"NaCl": {"properties": {"gllb_sc": True}}}},
    ],
)
def test_schema_rejects_unknown_keys_of_closed_sections(dft):
    with pytest.raises(WorkflowError, match="Additional properties are not allowed"):
        filled({"dft": dft})


def test_gpaw_sections_stay_open():
    config = filled({"dft": {"overrides": {"gpaw": {"nbands": "150%", "mixer": {"beta": 0.05}}},
                             "structure_overrides": {"x": {"gpaw": {"eigensolver": "rmm-diis"}}}}})
    assert config["dft"]["overrides"]["gpaw"]["nbands"] == "150%"


def test_target_source_column_may_name_an_element_of_a_list_column():
    """condition_vector[0] (CrystaLLM-pi's conditioning property) passes; a malformed index fails at start-up."""
    for source in ("condition_vector[0]", "cv[12]", "gap_target"):
        filled({"targets": {"properties": {"band_gap": {"source_column": source}}}})
        assert targets.SOURCE_ELEMENT.match(source) or "[" not in source
    for source in ("condition_vector[x]", "condition_vector[-1]", "condition_vector[]"):
        with pytest.raises(WorkflowError, match="does not match"):
            filled({"targets": {"properties": {"band_gap": {"source_column": source}}}})
