"""bench/ml_savings.py keeps its finished relaxations in the repository: reuse, recompute, report.

A fake relaxation (no GPAW) stands for dftscreen.relax; what is tested is which relaxations a
session runs given the stored records, and that the report needs nothing but the store.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("ml_savings", REPO / "bench" / "ml_savings.py")
ml_savings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ml_savings)

#: Fake DFT results: energy per atom (eV) and ionic steps per start geometry.
ENERGY_PER_ATOM = {"NaCl": -3.40, "KCl": -3.30, "Na2": -1.30, "K2": -1.00, "Cl2": -1.80}
STEPS = {"generated": 8, "ml": 3, "element": 5}


class FakeRelax:
    """Stands for gpaw_relax: counts its calls and returns a relax.json-like record (or None: killed)."""

    def __init__(self, killed: set[str] = frozenset()):
        self.calls: list[tuple[str, str]] = []
        self.killed = killed

    def __call__(self, folder: Path, module: str, args: list[str], ranks: int, label: str) -> dict | None:
        mode, name = folder.parent.name, folder.name
        self.calls.append((mode, name))
        if name in self.killed:
            return None
        # Two atoms in every cell, elements too (bcc cells, the Cl2 molecule).
        formula = {"sid_nacl": "ClNa", "sid_kcl": "ClK"}.get(name) or f"{name}2"
        n_atoms = 2
        key = {"ClNa": "NaCl", "ClK": "KCl"}.get(formula, formula)
        return {"status": "relaxed", "converged": True, "formula": formula, "n_atoms": n_atoms,
                "n_ionic_steps": STEPS[mode], "n_starts": 1, "preset": "test", "mpi_ranks": ranks,
                "energy_eV": n_atoms * ENERGY_PER_ATOM[key], "energy_per_atom_eV": ENERGY_PER_ATOM[key],
                "wall_time_s": 10.0 * STEPS[mode], "wall_time_all_starts_s": 10.0 * STEPS[mode],
                "initial_volume_A3": 40.0, "final_volume_A3": 42.0}


def ml_record(sid: str, formula: str, energy_per_atom: float, checkpoint: str = "abc") -> dict:
    return {"structure_id": sid, "fingerprint": f"fp-{sid}-{checkpoint}", "ml_model": "7net-0",
            "ml_checkpoint_sha256": checkpoint, "ml_settings": {"fmax_eV_per_A": 0.05}, "status": "relaxed",
            "formula": formula, "n_atoms": 2, "n_steps": 20, "energy_eV": 2 * energy_per_atom,
            "energy_per_atom_eV": energy_per_atom, "initial_volume_A3": 40.0, "final_volume_A3": 41.0,
            "wall_time_s": 2.0}


@pytest.fixture
def session(tmp_path: Path):
    """A store with the ML values of two structures, and a factory of sessions with fresh work folders."""
    store = ml_savings.Store(tmp_path / "store", "test")
    # NaCl's stored ML geometry is the one its ML-started DFT starts from, KCl's is another.
    store.write(store.ml_path("sid_nacl"), {**ml_record("sid_nacl", "ClNa", -3.35),
                                            "relaxed_cif_sha256": ml_savings.sha256_bytes(b"data_sid_nacl_ml\n")})
    store.write(store.ml_path("sid_kcl"), {**ml_record("sid_kcl", "ClK", -3.32), "relaxed_cif_sha256": "0" * 64})
    for element, e in (("Na", -1.28), ("K", -1.02), ("Cl", -1.78)):
        store.write(store.ml_element_path(element), {**ml_record(element, f"{element}2", e),
                                                     "element": element})
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for sid in ("sid_nacl", "sid_kcl"):
        (cifs / f"{sid}.cif").write_text(f"data_{sid}\n")
        (cifs / f"{sid}.ml.cif").write_text(f"data_{sid}_ml\n")
    counter = iter(range(100))

    def new_session(relax: FakeRelax, **kwargs) -> ml_savings.Bench:
        bench = ml_savings.Bench(store, tmp_path / f"work{next(counter)}", "test", 1, relax, **kwargs)
        bench.run(["sid_nacl", "sid_kcl"], lambda sid: cifs / f"{sid}.cif", lambda sid: cifs / f"{sid}.ml.cif")
        return bench

    return store, cifs, new_session


def test_a_second_session_reuses_every_stored_relaxation_and_reports_from_the_store_alone(session):
    store, _, new_session = session
    first = FakeRelax()
    bench = new_session(first)
    assert sorted(first.calls) == sorted([("generated", "sid_nacl"), ("ml", "sid_nacl"), ("generated", "sid_kcl"),
                                          ("ml", "sid_kcl"), ("element", "Cl"), ("element", "Na"), ("element", "K")])
    second = FakeRelax()
    new_session(second)
    assert second.calls == []
    # Every write was atomic: no temporary file left beside the records.
    assert not [p for p in store.root.rglob("*") if p.name.startswith(".")]

    # A fresh clone: nothing but the store's folder.
    result = ml_savings.report(ml_savings.Store(store.root, "test"), bench.dft_settings_sha256)
    assert result["n_pairs_finished"] == 2
    assert result["ionic_steps_ratio_with_over_without"] == pytest.approx(3 / 8)
    assert result["wall_time_ratio_with_over_without"] == pytest.approx(3 / 8)
    assert result["max_abs_final_energy_difference_meV_per_atom"] == pytest.approx(0)
    assert result["n_pairs_ml_start_not_the_stored_ml_geometry"] == 1
    assert result["elements_done"] == ["Cl", "K", "Na"]
    rows = {r["structure_id"]: r for r in result["agreement_rows"]}
    # DFT: NaCl -3.40 - (-1.30 - 1.80) / 2 = -1.85 eV/atom; ML: -3.35 - (-1.28 - 1.78) / 2 = -1.82.
    assert rows["sid_nacl"]["formation_energy_eV_per_atom"] == pytest.approx(-1.85)
    assert rows["sid_nacl"]["ml_formation_energy_eV_per_atom"] == pytest.approx(-1.82)
    # KCl: DFT -3.30 + 1.40 = -1.90, ML -3.32 + 1.40 = -1.92; mean of 0.03 and 0.02.
    assert result["agreement"]["formation_energy_mae_eV_per_atom"] == pytest.approx(0.025)
    record = json.loads(store.dft_path("ml", "sid_nacl").read_text())
    for field in ("content_sha256", "source_cif", "start_cif_sha256", "dft_settings_sha256", "dftscreen_version",
                  "ml_checkpoint_sha256", "cpu_count", "mpi_ranks", "wall_time_s", "n_ionic_steps",
                  "energy_per_atom_eV", "converged", "final_volume_A3", "formula"):
        assert record[field] is not None, field


def test_changed_settings_input_or_model_recompute_only_what_they_touch(session):
    store, cifs, new_session = session
    new_session(FakeRelax())

    (cifs / "sid_kcl.cif").write_text("data_sid_kcl\n# edited\n")
    edited = FakeRelax()
    new_session(edited)
    assert sorted(edited.calls) == [("generated", "sid_kcl"), ("ml", "sid_kcl")]

    # Another ML model made the ML start: only the ML-started relaxation of that structure reruns.
    store.write(store.ml_path("sid_nacl"), ml_record("sid_nacl", "ClNa", -3.35, checkpoint="other"))
    new_model = FakeRelax()
    new_session(new_model)
    assert new_model.calls == [("ml", "sid_nacl")]

    tighter = FakeRelax()
    bench = new_session(tighter, overrides={"relax": {"fmax_eV_per_A": 0.01}})
    assert len(tighter.calls) == 7
    assert ml_savings.report(store, bench.dft_settings_sha256)["n_pairs_finished"] == 2
    # The records of the earlier settings were replaced: nothing left for them.
    assert ml_savings.report(store, ml_savings.settings_hash(ml_savings.dft_settings("test")))["n_pairs_finished"] == 0


def test_an_unfinished_or_failed_relaxation_is_run_again(session):
    store, _, new_session = session
    killed = FakeRelax(killed={"sid_kcl"})
    new_session(killed)
    assert not store.dft_path("generated", "sid_kcl").exists()
    store.write(store.dft_path("generated", "sid_nacl"),
                {**json.loads(store.dft_path("generated", "sid_nacl").read_text()), "status": "failed"})
    again = FakeRelax()
    new_session(again)
    assert sorted(again.calls) == [("element", "K"), ("generated", "sid_kcl"), ("generated", "sid_nacl"),
                                   ("ml", "sid_kcl")]


def test_the_selection_is_the_same_whatever_the_order_of_the_ids():
    ids = ["crystallm__b", "perov5__2", "crystallm__a", "perov5__1", "perov5__3"]
    assert ml_savings.selected_ids(ids, 10) == ["perov5__1", "crystallm__a", "perov5__2", "crystallm__b", "perov5__3"]
    assert ml_savings.selected_ids(list(reversed(ids)), 10) == ml_savings.selected_ids(ids, 10)
    assert ml_savings.selected_ids(ids, 3) == ml_savings.selected_ids(ids, 10)[:3]


def test_ml_values_are_stored_once_and_a_fresh_ml_stage_is_compared_with_them(tmp_path: Path):
    from dftscreen.io import atomic_write_json
    from dftscreen.layout import ResultsLayout

    store = ml_savings.Store(tmp_path / "store", "test")

    def ml_stage(workdir: Path, energy_per_atom: float) -> None:
        """What the workflow's ML stage leaves in a work folder, for one NaCl structure."""
        layout = ResultsLayout.of(workdir / "out")
        (workdir / "cifs").mkdir(parents=True)
        # The id is not the file name (the check appends a path hash to names it cannot use as written).
        (workdir / "cifs" / "nacl__1.cif").write_text("data_sid_nacl\n")
        atomic_write_json(layout.checks_table, [{"structure_id": "sid_nacl", "source_file": "nacl__1.cif"}])
        atomic_write_json(layout.ml_record("sid_nacl"), ml_record("sid_nacl", "ClNa", energy_per_atom))
        Path(layout.ml_relaxed_cif("sid_nacl")).write_text("data_relaxed\n")
        atomic_write_json(layout.ml_screen, {"structures": {"sid_nacl": {
            "ml_formation_energy_eV_per_atom": -1.8, "ml_e_above_hull_vs_generated_only_eV_per_atom": 0.0}}})
        atomic_write_json(layout.ml_references, {"phases": [], "elements": [
            {**ml_record(el, f"{el}2", -1.5), "element": el} for el in ("Na", "Cl", "K")]})

    ml_stage(tmp_path / "work1", -3.35)
    first = ml_savings.store_ml_values(store, tmp_path / "work1", ["sid_nacl"])
    assert first["n_compared"] == 0
    stored = json.loads(store.ml_path("sid_nacl").read_text())
    assert stored["ml_formation_energy_eV_per_atom"] == -1.8 and stored["ml_checkpoint_sha256"] == "abc"
    assert stored["source_cif_sha256"] and stored["relaxed_cif_sha256"]
    assert sorted(p.stem for p in (store.root / "ml_element").glob("*.json")) == ["Cl", "Na"]  # K is not needed

    ml_stage(tmp_path / "work2", -3.349)
    second = ml_savings.store_ml_values(store, tmp_path / "work2", ["sid_nacl"])
    assert second["structures"]["sid_nacl"]["energy_per_atom_fresh_minus_stored_meV"] == pytest.approx(1.0)
    assert second["n_compared"] == 3 and second["n_same_relaxed_cif"] == 1
    # The first session's record is kept.
    assert json.loads(store.ml_path("sid_nacl").read_text())["energy_per_atom_eV"] == -3.35


def test_start_geometry_rules_sum_the_measured_half_each_rule_picks():
    pairs = [
        {"ml_energy_drop_meV_per_atom": 2.0, "ml_volume_change_pct": -0.5,
         "dft_from_generated_ionic_steps": 4, "dft_from_ml_ionic_steps": 5,
         "dft_from_generated_wall_time_s": 40.0, "dft_from_ml_wall_time_s": 50.0},
        {"ml_energy_drop_meV_per_atom": 300.0, "ml_volume_change_pct": -9.0,
         "dft_from_generated_ionic_steps": 30, "dft_from_ml_ionic_steps": 10,
         "dft_from_generated_wall_time_s": 300.0, "dft_from_ml_wall_time_s": 100.0},
    ]
    rules = {rule["rule"]: rule for rule in ml_savings.start_geometry_rules(pairs)}
    assert rules["never (generated geometry)"]["dft_ionic_steps"] == 34
    assert rules["always (ML geometry)"]["dft_ionic_steps"] == 15
    # Above 5 meV/atom only the second pair starts from ML: 4 + 10 steps, 40 + 100 s.
    picked = rules["ML energy drop (meV/atom) > 5"]
    assert (picked["n_from_ml"], picked["dft_ionic_steps"], picked["dft_wall_time_s"]) == (1, 14, 140.0)
    # A volume change counts either sign: -9 % is beyond 7 %.
    assert rules["ML volume change, either sign (%) > 7"]["n_from_ml"] == 1
