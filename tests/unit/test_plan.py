"""dftscreen.plan: the jobs of a run as the rule files and `dftscreen status` both plan them (no Snakemake)."""

from __future__ import annotations

import json
from pathlib import Path

from pymatgen.core import Lattice, Structure

from dftscreen.config import with_defaults
from dftscreen.dft_pack import plan_packs
from dftscreen.layout import ResultsLayout
from dftscreen.plan import RunPlan, element_keys, formula_elements, ml_batches
from dftscreen.references import automatic_candidate_keys
from dftscreen.reflib import element_reference_key, settings_key


def run_plan(folder: Path | None, **sections) -> RunPlan:
    """The plan of a run in ``folder`` (None: the current folder, as Snakemake plans it)."""
    config = with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out", **sections})
    if folder is None:
        return RunPlan(config)
    return RunPlan(config, folder=folder, layout=ResultsLayout.of(folder / "out"))


def write_cif(path: Path, species: list[str], a: float = 4.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    coords = [[i / len(species)] * 3 for i in range(len(species))]
    Structure(Lattice.cubic(a), species, coords).to(filename=str(path))
    return path


def test_elements_of_formulas_by_composition():
    assert formula_elements(["NaCl", None, "", "Ba(NO3)2", "TiO2"]) == {"Na", "Cl", "Ba", "N", "O", "Ti"}


def test_element_keys_name_the_user_cif_or_the_automatic_candidates(tmp_path: Path):
    cif = write_cif(tmp_path / "refs" / "na.cif", ["Na", "Na"])
    # Relative paths are read from the run folder; the key is the CIF's hash.
    assert element_keys("Na", {"Na": "refs/na.cif"}, tmp_path) == [element_reference_key(cif)]
    assert element_keys("Cl", {"Na": "refs/na.cif"}, tmp_path) == automatic_candidate_keys("Cl")
    # A CIF that cannot be read counts as not given.
    assert element_keys("Na", {"Na": "missing.cif"}, tmp_path) == automatic_candidate_keys("Na")


def test_elements_needed_add_the_reference_phases_and_their_sizes(tmp_path: Path):
    write_cif(tmp_path / "phases" / "LiCl.cif", ["Li", "Cl"])
    (tmp_path / "phases" / "broken.cif").write_text("data_broken\n")
    plan = run_plan(tmp_path, stability={"reference_cif_dir": "phases"})
    assert sorted(plan.reference_phases) == ["LiCl", "broken"]
    assert plan.elements_needed(["NaCl"]) == ["Cl", "Li", "Na"]
    assert plan.phase_structure(plan.reference_phases["LiCl"].path) == (frozenset({"Li", "Cl"}), 2)
    # An unreadable phase adds no element and sizes its job as one atom (its relaxation says why).
    assert plan.phase_structure(plan.reference_phases["broken"].path) == (frozenset(), 1)
    assert plan.elements_needed(["NaCl"], phases={}) == ["Cl", "Na"]
    jobs = plan.element_jobs(["Na"])
    assert jobs == [("Na", key) for key in automatic_candidate_keys("Na")]
    off = run_plan(tmp_path, stability={"elemental_references": False})
    assert off.element_jobs(["Na"]) == [] and off.reference_phases == {}


def test_an_elemental_known_phase_with_a_candidates_structure_is_computed_as_the_element(tmp_path: Path):
    fingerprint = automatic_candidate_keys("Ti")[0].split("-", 1)[1]
    chosen = {"phases": [{"phase_key": "TiO2-cccc", "chemical_system": "O-Ti"},
                         {"phase_key": f"Ti-{fingerprint}", "chemical_system": "Ti"}]}
    assert run_plan(tmp_path).competing_phase_keys(chosen) == ["TiO2-cccc"]
    without_elements = run_plan(tmp_path, stability={"elemental_references": False})
    assert without_elements.competing_phase_keys(chosen) == ["TiO2-cccc", f"Ti-{fingerprint}"]


def test_competing_phases_are_wanted_with_a_database_and_elements(tmp_path: Path):
    assert not run_plan(tmp_path).competing_phases_wanted
    database = {"database": {"path": "known.json.gz"}}
    assert run_plan(tmp_path, known_materials=database).competing_phases_wanted
    assert not run_plan(tmp_path, known_materials=database,
                        stability={"elemental_references": False}).competing_phases_wanted


def test_packs_are_planned_once_per_id_list_and_started_packs(tmp_path: Path):
    plan = run_plan(tmp_path, dft={"structures_per_pack": 2})
    ids = ["a", "b", "c"]
    packs = plan.packs(ids)
    assert packs == plan_packs(ids, 2)
    assert plan.packs(ids) is packs  # the same list object: not planned again
    # A pack that started keeps its members (dftscreen.dft_pack.read_started_packs).
    members = Path(plan.layout.pack_members("0123456789ab"))
    members.parent.mkdir(parents=True)
    members.write_text("c\n")
    assert plan.packs(ids) == plan_packs(ids, 2, {"0123456789ab": ["c"]}) != packs
    made = []
    member = lambda sid: made.append(sid) or sid  # noqa: E731
    assert plan.pack_members(ids, "0123456789ab", member) == ["c"]
    assert plan.pack_members(ids, "0123456789ab", member) == ["c"] and made == ["c"]


def test_ml_batches_split_as_the_ml_stage_in_the_order_given():
    ids = [f"s{i}" for i in range(25)][::-1]
    batches = ml_batches(ids, 10)
    assert {n: sorted(members) for n, members in batches.items()} == ml_batches(sorted(ids), 10)
    assert all(members == [sid for sid in ids if sid in members] for members in batches.values())


def test_the_manifest_is_outdated_until_written_and_again_when_an_input_is_added(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Snakemake plans from the run folder
    write_cif(tmp_path / "cifs" / "NaCl.cif", ["Na", "Cl"])
    plan = run_plan(None)
    assert plan.input_manifest_outdated and not Path(plan.layout.input_manifest).exists()  # nothing written
    # Its job has not run here: it declares the flag the default target asks for.
    assert plan.input_manifest_flag == plan.layout.input_manifest_flag
    plan.write_input_manifest(plan.layout.input_manifest, plan.input_manifest_flag, plan.layout.input_manifest_log)
    assert Path(plan.layout.input_manifest_flag).is_file()
    unchanged = run_plan(None)
    assert not unchanged.input_manifest_outdated and unchanged.input_manifest_flag is None
    assert unchanged.input_manifest_digest == plan.input_manifest_digest
    write_cif(tmp_path / "cifs" / "KCl.cif", ["K", "Cl"])
    added = run_plan(None)
    assert added.input_manifest_outdated and added.input_manifest_digest != plan.input_manifest_digest
    # The job has run here (its log): Snakemake's record of the digest reruns it, no flag.
    assert added.input_manifest_flag is None
    added.write_input_manifest(added.layout.input_manifest, None, added.layout.input_manifest_log)
    assert not Path(plan.layout.input_manifest_flag).exists()


def test_ids_files_are_read_once_per_version(tmp_path: Path):
    for name in ("a", "b", "c"):
        write_cif(tmp_path / "cifs" / f"{name}.cif", ["Na", "Cl"])
    plan = run_plan(tmp_path)
    path = tmp_path / "ids.txt"
    path.write_text("a\nb\n\n")
    ids = plan.read_ids(path)
    assert ids == ["a", "b"] and plan.read_ids(path) is ids
    path.write_text("a\nb\nc\n")
    assert plan.read_ids(path) == ["a", "b", "c"]
    # An id whose input has gone (removed from cif_dir since the check wrote the file) cannot be planned:
    # left out, not a KeyError that Snakemake swallows into "Nothing to be done".
    path.write_text("a\ngone\nc\n")
    assert plan.read_ids(path) == ["a", "c"]


def test_settings_of_a_structure_with_an_override(tmp_path: Path):
    plan = run_plan(tmp_path, dft={"preset": "test", "structure_overrides": {"x": {"relax": {"max_steps": 3}}}})
    assert plan.structure_settings_json("y") is plan.settings_json
    assert json.loads(plan.structure_settings_json("x"))["relax"]["max_steps"] == 3
    assert plan.library.root == plan.layout.default_reference_library
    assert plan.library.settings_key == settings_key(plan.settings)
