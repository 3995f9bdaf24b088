"""Issue 29 item 2: a reference for every element GPAW has a PAW dataset for, ground states
from published data (references.PUBLISHED_CRYSTALS), and the stand-in where the size gate
refuses one."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dftscreen import references
from dftscreen.references import (
    NO_AUTOMATIC_REFERENCE,
    PUBLISHED_CRYSTALS,
    NoElementalReference,
    automatic_candidate_keys,
    elemental_reference,
    published_crystal,
)
from dftscreen.size_gate import GateSettings, gate_params

#: Space group (spglib, 1e-3 Å) and atoms of the primitive cell of each published ground state.
EXPECTED = {
    "S": ("Fddd", 32),
    "Mn": ("I-43m", 29),
    "La": ("P6_3/mmc", 4),
    "Pr": ("P6_3/mmc", 4),
    "Nd": ("P6_3/mmc", 4),
    "Pm": ("P6_3/mmc", 4),
}


def test_every_published_ground_state_is_tested():
    assert set(EXPECTED) == set(PUBLISHED_CRYSTALS)


@pytest.mark.parametrize("element", sorted(EXPECTED))
def test_published_ground_state_builds_with_its_space_group_size_and_density(element):
    crystal = PUBLISHED_CRYSTALS[element]
    atoms = published_crystal(element)
    structure = AseAtomsAdaptor.get_structure(atoms)
    symbol, n_atoms = EXPECTED[element]
    assert set(atoms.get_chemical_symbols()) == {element}
    assert len(atoms) == n_atoms == crystal.n_primitive
    assert SpacegroupAnalyzer(structure, symprec=1e-3).get_space_group_symbol() == symbol
    # The source's density (Pm's is for 147Pm, ASE's mass is 145: 1.4 % lower).
    assert structure.density == pytest.approx(crystal.density_g_cm3, rel=0.02)
    assert crystal.source and crystal.cite
    reference = elemental_reference(element)
    assert reference.kind == "crystal" and crystal.cite in reference.description and not reference.note


def test_alpha_sulfur_is_made_of_s8_rings():
    structure = AseAtomsAdaptor.get_structure(published_crystal("S"))
    distances = structure.distance_matrix + np.eye(len(structure)) * 10
    bonded = distances < 2.3
    # Every atom has two neighbours at the S-S bond length (2.05 Å) and none closer than 3.2 Å beyond them.
    assert (bonded.sum(axis=1) == 2).all()
    assert distances[bonded] == pytest.approx(2.05, abs=0.02)
    assert distances[~bonded].min() > 3.2


def test_alpha_manganese_starts_from_its_collinear_moments_per_wyckoff_site():
    atoms = published_crystal("Mn")
    moments = Counter(np.round(atoms.get_initial_magnetic_moments(), 3))
    # 29-atom primitive cell: MnI (2a) 1 atom, MnII (8c) 4, MnIII and MnIV (24g) 12 each.
    assert moments == {3.0: 1, -2.5: 4, 1.0: 12, 0.0: 12}
    assert "Hobbs" in PUBLISHED_CRYSTALS["Mn"].magnetic_source
    structure = AseAtomsAdaptor.get_structure(atoms)
    structure.add_site_property("magmom", list(atoms.get_initial_magnetic_moments()))
    # The moments keep the cubic symmetry: each Wyckoff orbit has one moment.
    analyzer = SpacegroupAnalyzer(structure, symprec=1e-3)
    equivalent = analyzer.get_symmetrized_structure().equivalent_indices
    assert len(equivalent) == 4
    assert all(len({round(structure[i].properties["magmom"], 3) for i in orbit}) == 1 for orbit in equivalent)


def _gate(max_mem_mb: float) -> GateSettings:
    """The gate at the ``standard`` preset's settings with ``max_mem_mb_per_task`` as the memory limit."""
    from dftscreen.settings import resolve_settings

    resources = {"max_tasks": 2, "atoms_per_task": 8, "runtime_min_base": 30, "runtime_min_per_atom": 5.0,
                 "mem_mb_per_task_base": 1000, "mem_mb_per_task_per_atom": 50,
                 "max_mem_mb_per_task": max_mem_mb, "max_runtime_min": 100000}
    params = gate_params(resolve_settings("standard"), resources)
    return GateSettings.from_dft_settings(params["settings"], params["resources"])


def test_a_ground_state_the_size_gate_refuses_gives_way_to_its_named_stand_in():
    small, large = _gate(2000), _gate(10**7)
    assert references.ground_state_too_large("Mn", large) == ""
    reason = references.ground_state_too_large("Mn", small)
    assert "too large for DFT here" in reason
    fits = elemental_reference("Mn", gate=large)
    stand_in = elemental_reference("Mn", gate=small)
    assert len(fits.atoms) == 29 and not fits.note
    # The Δ-test's antiferromagnetic fcc Mn, and a note that says what it stands for and why.
    assert len(stand_in.atoms) == 2 and sorted(stand_in.atoms.get_initial_magnetic_moments()) == [-2.0, 2.0]
    assert "stand-in" in stand_in.note and "α-Mn" in stand_in.note and reason in stand_in.note
    # Its library key says so, and the key of a ground state that fits is the gate-free one.
    assert automatic_candidate_keys("Mn", small)[0].startswith("standin-")
    assert automatic_candidate_keys("Mn", large) == automatic_candidate_keys("Mn")
    assert automatic_candidate_keys("Mn")[0].startswith("auto-")
    # Elements that are not published ground states do not depend on the gate.
    assert automatic_candidate_keys("Na", small) == automatic_candidate_keys("Na")
    # Alpha-S and alpha-Mn are not second candidates: their Δ-test structures are the stand-ins.
    assert references.delta_test_candidate("S") is None and references.delta_test_candidate("Mn") is None


def test_existing_automatic_references_keep_their_library_keys():
    """Keys of references that existed before the published ground states (fingerprints of the
    start structures): unchanged, so reference libraries computed before are reused."""
    assert automatic_candidate_keys("Na") == ["auto-05041dd8cfba", "delta-d75ce71080f6"]
    assert automatic_candidate_keys("Sn") == ["auto-3b018beae2a8", "delta-5d737bcf90bd"]
    assert automatic_candidate_keys("Cr") == ["auto-0809a2859f80"]
    assert automatic_candidate_keys("O") == ["auto-7e6353257cb6"]


def test_every_element_with_a_paw_dataset_has_a_reference_or_a_documented_reason():
    """A new gap (an element GPAW can compute with no reference) fails here until it gets one or
    is listed, with its reason, in NO_AUTOMATIC_REFERENCE (and config/README.md)."""
    from dftscreen.settings import paw_elements

    elements = paw_elements()
    assert len(elements) > 50  # gpaw-data is installed
    missing = {}
    for element in sorted(elements):
        try:
            elemental_reference(element)
        except NoElementalReference as exc:
            missing[element] = str(exc)
    assert set(missing) == set(NO_AUTOMATIC_REFERENCE), missing
    for element in NO_AUTOMATIC_REFERENCE:
        assert NO_AUTOMATIC_REFERENCE[element] in missing[element]


def test_a_stand_in_reference_says_so_in_every_row_it_serves():
    """The job's ``reference_note`` (references.main, --candidate standin) reaches ``stability_note``
    of each row whose formation energy uses it, and of no other row."""
    from dftscreen.aggregate import add_stability

    relaxed = {"status": "relaxed"}
    note = elemental_reference("Mn", gate=_gate(2000)).note
    elements = [dict(relaxed, element="Mn", formula="Mn2", energy_eV=-18.0, reference_note=note),
                dict(relaxed, element="O", formula="O2", energy_eV=-9.8),
                dict(relaxed, element="Na", formula="Na1", energy_eV=-1.3)]
    rows = [{"structure_id": "mno", "_relax": dict(relaxed, formula="Mn1O1", energy_eV=-9.0 - 4.9 - 2.0)},
            {"structure_id": "na2o", "_relax": dict(relaxed, formula="Na2O1", energy_eV=-2.6 - 4.9 - 3.0)}]
    add_stability(rows, elements, [])
    mno, na2o = rows
    assert mno["formation_energy_eV_per_atom"] == pytest.approx(-1.0)
    assert note in mno["stability_note"] and "α-Mn" in mno["stability_note"]
    assert "stand-in" not in (na2o.get("stability_note") or "")


def test_config_readme_names_every_element_without_a_paw_dataset():
    """config/README.md's list of elements without a reference names each element GPAW has no dataset
    for (up to Np; "the actinides from Pu on" covers the rest)."""
    import re

    from ase.data import atomic_numbers, chemical_symbols

    from dftscreen.settings import paw_elements

    from conftest import REPO

    text = (REPO / "config" / "README.md").read_text()
    section = text[text.index("Elements without a reference, and why:"):text.index("Any element's reference can be")]
    named = set(re.findall(r"\b([A-Z][a-z]?)\b", section))
    without = {el for el in chemical_symbols[1:atomic_numbers["Np"] + 1] if el not in paw_elements()}
    assert without and without <= named, without - named
    assert "from Pu on" in section


def test_the_ml_record_of_an_element_is_keyed_by_its_reference_structure():
    """ml.relax_references keys an element's record by its structure's fingerprint, so a results
    folder's record of hcp La (or of S's failed job) from before is computed again, not reused."""
    from ase.build import bulk

    assert references.reference_fingerprint("La") == references._candidate_fingerprint("La", published_crystal("La"))
    assert references.reference_fingerprint("La") != references._candidate_fingerprint("La", bulk("La"))
    assert references.reference_fingerprint("S") and references.reference_fingerprint("At") == ""


def test_the_plan_gives_a_refused_ground_state_its_stand_in_job_and_says_so_once(tmp_path):
    """At ``standard`` with the shipped resources α-Mn is too large (about 27 GB per rank): the plan's job
    for Mn is the stand-in's (2 atoms, ``--candidate standin``), start-up warns once; at ``test`` α-Mn fits."""
    import io

    from dftscreen.config import with_defaults
    from dftscreen.layout import ResultsLayout
    from dftscreen.plan import RunPlan

    def plan(preset: str, said: io.StringIO) -> RunPlan:
        config = with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": {"preset": preset}})
        return RunPlan(config, folder=tmp_path, layout=ResultsLayout.of(tmp_path / "out"), warnings=said)

    said = io.StringIO()
    standard = plan("standard", said)
    ((element, key),) = standard.element_jobs(["Mn"])
    assert element == "Mn" and key.startswith("standin-") and standard.element_n_atoms("Mn", key) == 2
    standard.element_jobs(["Mn", "O"])  # asked again: said once
    warning = said.getvalue()
    assert warning.count("WARNING") == 1 and "stand-in" in warning and "α-Mn" in warning
    assert "too large for DFT here" in warning
    # What the rule passes to `python -m dftscreen.references` (workflow/rules/common.smk).
    assert "--candidate standin" in _candidate_option(key) and _candidate_option("auto-abc") == ""
    quiet = io.StringIO()
    test = plan("test", quiet)
    ((_, key),) = test.element_jobs(["Mn"])
    assert key.startswith("auto-") and test.element_n_atoms("Mn", key) == 29 and quiet.getvalue() == ""


def _candidate_option(ekey: str) -> str:
    """``element_candidate_option`` of workflow/rules/common.smk, run on a wildcard with ``ekey``."""
    import ast
    from types import SimpleNamespace

    from conftest import REPO

    source = (REPO / "workflow" / "rules" / "common.smk").read_text()
    tree = ast.parse(source[source.index("def element_candidate_option"):].split("\n\n\n")[0])
    namespace: dict = {}
    exec(compile(tree, "common.smk", "exec"), namespace)
    return namespace["element_candidate_option"](SimpleNamespace(ekey=ekey))


def test_a_stand_in_job_writes_its_note_into_its_record(tmp_path, monkeypatch):
    """``python -m dftscreen.references --candidate standin``: the stand-in is built (not α-Mn) and
    its note goes into the record (relax.run's ``extra``), from where it reaches the rows."""
    import json

    from dftscreen import relax

    seen = {}

    def fake_run(**kwargs):
        atoms = kwargs["load_atoms"]()
        seen.update(n_atoms=len(atoms), extra=kwargs["extra"])
        return {"status": "relaxed"}

    monkeypatch.setattr(relax, "run", fake_run)
    from dftscreen.settings import resolve_settings

    code = references.main(["--element", "Mn", "--candidate", "standin", "--structure-id", "element_Mn",
                            "--settings", json.dumps(resolve_settings("test")), "--out-json", str(tmp_path / "r.json"),
                            "--out-cif", str(tmp_path / "r.cif"), "--workdir", str(tmp_path / "w")])
    assert code == 0 and seen["n_atoms"] == 2
    assert "stand-in" in seen["extra"]["reference_note"] and "α-Mn" in seen["extra"]["reference_note"]


def test_a_large_reference_job_gets_the_size_gates_resources(tmp_path):
    """α-Mn at ``fast``: the per-atom rule gives 29 atoms 175 min and 2450 MB per rank; the size gate
    estimates more (x1.5 margin), and the job asks for that, as a generated structure's does."""
    from types import SimpleNamespace

    from dftscreen.config import with_defaults
    from dftscreen.layout import ResultsLayout
    from dftscreen.plan import RunPlan
    from dftscreen.resources import ResourcePolicy

    from conftest import REPO

    config = with_defaults({"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": {"preset": "fast"}})
    plan = RunPlan(config, folder=tmp_path, layout=ResultsLayout.of(tmp_path / "out"))
    policy = ResourcePolicy.from_config(dict(config["dft"]["resources"]))
    (mn_key,) = plan.element_keys("Mn")
    (o_key,) = plan.element_keys("O")
    functions = _smk_functions(["element_n_atoms", "_estimate", "runtime_for", "mem_for"], PLAN=plan, RESOURCES=policy)
    # As workflow/rules/references.smk asks for them.
    runtime = functions["runtime_for"](functions["element_n_atoms"], estimated=True)
    memory = functions["mem_for"](functions["element_n_atoms"], estimated=True)
    mn = SimpleNamespace(element="Mn", ekey=mn_key)
    assert runtime(mn, 1) > 2 * policy.runtime_min(29) == 2 * 175
    assert memory(mn, 1) > 1.5 * policy.mem_mb_per_task(29)
    assert runtime(mn, 1) == math.ceil(plan.element_estimate("Mn", mn_key, "dft_estimate_runtime_min"))
    # A molecule (Γ point only) keeps the per-atom rule.
    o2 = SimpleNamespace(element="O", ekey=o_key)
    assert plan.element_estimate("O", o_key, "dft_estimate_runtime_min") is None
    assert runtime(o2, 1) == policy.runtime_min(2)
    rule = (REPO / "workflow" / "rules" / "references.smk").read_text()
    assert "runtime_for(element_n_atoms, estimated=True)" in rule


def _smk_functions(names: list[str], **globals_) -> dict:
    """Top-level functions of workflow/rules/common.smk, run with ``globals_`` as the module's globals."""
    import ast

    from conftest import REPO

    tree = ast.parse((REPO / "workflow" / "rules" / "common.smk").read_text().split("\nrule ")[0])
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    namespace: dict = dict(globals_)
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "common.smk", "exec"), namespace)
    return namespace


# --- DFT from the ML-relaxed cell (α-S, α-Mn) ---------------------------------------------------


def test_s_and_mn_start_their_dft_from_the_ml_cell_under_a_key_of_their_own():
    """α-S and α-Mn start their DFT from the ML-relaxed cell (their published cells are 34 % and
    9 % off PBE's volume); the library key says so, so a record from the published start is not
    reused. The ML stage's fingerprint, and every other element's key, stay as they were."""
    assert {el for el, crystal in PUBLISHED_CRYSTALS.items() if crystal.ml_start} == {"S", "Mn"}
    for element in ("S", "Mn"):
        assert elemental_reference(element).ml_start
        assert automatic_candidate_keys(element) != [f"auto-{references.reference_fingerprint(element)}"]
    assert automatic_candidate_keys("La") == [f"auto-{references.reference_fingerprint('La')}"]
    assert not elemental_reference("Zn").ml_start


def lennard_jones_factory(calls: list[int]):
    """A cheap stand-in for the ML potential (ASE's Lennard-Jones, σ near Mn's bond length), counting its loads."""
    from ase.calculators.lj import LennardJones

    def load() -> LennardJones:
        calls.append(1)
        return LennardJones(sigma=2.3, epsilon=0.1, rc=6.0, smooth=True)

    return load


def test_the_ml_start_is_computed_once_and_keeps_the_start_moments(tmp_path):
    atoms = published_crystal("Mn")
    calls: list[int] = []
    start, note = references.ml_relaxed_start(atoms, tmp_path, lennard_jones_factory(calls))
    assert calls == [1] and (tmp_path / references.ML_START_FILE).is_file()
    assert not np.allclose(start.cell[:], atoms.cell[:])  # the potential moved the cell
    assert start.get_initial_magnetic_moments().tolist() == atoms.get_initial_magnetic_moments().tolist()
    assert start.get_chemical_symbols() == atoms.get_chemical_symbols()
    assert note.startswith("DFT started from the cell") and "Å³" in note
    # A resumed job reads the same cell and loads no potential.
    again, _ = references.ml_relaxed_start(atoms, tmp_path, lennard_jones_factory(calls))
    assert calls == [1]
    assert np.array_equal(again.cell[:], start.cell[:]) and np.array_equal(again.positions, start.positions)


def test_a_failing_ml_start_falls_back_to_the_published_cell_and_says_why(tmp_path):
    def broken():
        raise RuntimeError("no checkpoint here")

    atoms = published_crystal("S")
    start, note = references.ml_relaxed_start(atoms, tmp_path, broken)
    assert start is atoms
    assert "published cell" in note and "no checkpoint here" in note
