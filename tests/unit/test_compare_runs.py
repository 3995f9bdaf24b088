"""dftscreen compare refuses runs whose numbers are not comparable, naming the difference."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dftscreen.compare_runs import RunNotComparable, combined_table, mismatches, read_fingerprint
from dftscreen.io import atomic_write_json


def finished_run(folder: Path, *, settings: str = "abc", gpaw: str = "26.7.0", cohorts: list | None = None) -> Path:
    """A results folder as a finished run leaves it: summary.json and results.parquet."""
    provenance = {"settings_sha256": settings, "gpaw_version": gpaw, "gpaw_data_version": "1.2.1"}
    novel = {"known_set": "mp.json.gz (12 ComputedStructureEntry objects)"}
    summary = {"provenance": provenance, "stable_threshold_eV_per_atom": 0.1, "novel": novel}
    atomic_write_json(folder / "summary.json", summary)
    table = pd.DataFrame({"structure_id": ["a", "b"], "ml_checkpoint_sha256": ["f00d", "f00d"]})
    if cohorts:
        table["cohort"] = cohorts
    table.to_parquet(folder / "results.parquet")
    return folder


def test_runs_with_the_same_settings_are_comparable(tmp_path: Path):
    runs = {"base": finished_run(tmp_path / "base"), "pi": finished_run(tmp_path / "pi")}
    assert mismatches({name: read_fingerprint(path) for name, path in runs.items()}) == []


def test_a_different_preset_or_gpaw_is_named_with_each_runs_value(tmp_path: Path):
    runs = {"base": finished_run(tmp_path / "base"), "pi": finished_run(tmp_path / "pi", settings="xyz", gpaw="25.7.0")}
    found = mismatches({name: read_fingerprint(path) for name, path in runs.items()})
    assert found == [
        "the runs differ in resolved DFT settings (hash) (base: abc; pi: xyz)",
        "the runs differ in GPAW version (base: 26.7.0; pi: 25.7.0)",
    ]


def test_a_folder_that_is_no_finished_run_is_refused_with_its_name(tmp_path: Path):
    with pytest.raises(RunNotComparable, match="neither a results folder"):
        read_fingerprint(tmp_path)


def test_each_run_is_a_cohort_or_keeps_its_own_cohorts(tmp_path: Path):
    runs = {"base": finished_run(tmp_path / "base"), "pi": finished_run(tmp_path / "pi", cohorts=["gap=1", "gap=2"])}
    table = combined_table(runs)
    assert list(table["cohort"]) == ["base", "base", "pi: gap=1", "pi: gap=2"]
    assert list(table["run"]) == ["base", "base", "pi", "pi"]


def test_compare_refuses_mismatched_runs_in_one_sentence_and_writes_nothing(tmp_path: Path, capsys):
    from dftscreen.cli import main

    base, pi = finished_run(tmp_path / "base"), finished_run(tmp_path / "pi", gpaw="25.7.0")
    assert main(["compare", str(base), str(pi), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "GPAW version (base: 26.7.0; pi: 25.7.0)" in message and "Traceback" not in message
    assert not (tmp_path / "out").exists()


def test_compare_writes_the_cohort_table_and_a_page_and_says_when_it_compared_mismatched_runs(tmp_path: Path):
    from dftscreen.cli import main

    base, pi = finished_run(tmp_path / "base"), finished_run(tmp_path / "pi", gpaw="25.7.0")
    for run, statuses in ((base, ["ok", "invalid"]), (pi, ["ok", "ok"])):
        table = pd.read_parquet(run / "results.parquet").assign(status=statuses, dft_ready=[True, statuses[1] == "ok"])
        table.to_parquet(run / "results.parquet")
    out = tmp_path / "out"
    assert main(["compare", str(base), str(pi), "--out", str(out), "--allow-mismatch"]) == 0
    rates = pd.read_csv(out / "cohorts.csv").set_index("cohort")
    assert rates.loc["base", "dft_ready_count"] == 1 and rates.loc["pi", "dft_ready_count"] == 2
    page = (out / "index.html").read_text()
    assert "--allow-mismatch" in page and "GPAW version" in page


# --- the same crystal found by several runs (issue 30, item 5 across runs) ------------------------------------


def _rocksalt(formula: tuple[str, str], a: float):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(formula), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _nacl_perturbed():
    """The rocksalt NaCl of another generator: primitive cell, 1 % larger, one atom moved 0.05 Å."""
    structure = _rocksalt(("Na", "Cl"), 5.69).get_primitive_structure()
    structure.translate_sites([1], [0.05, 0.0, 0.0], frac_coords=False)
    return structure


def _nacl_cscl_type():
    """NaCl in the CsCl structure: same formula, same number of sites per primitive cell, another crystal."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def finished_run_with_cifs(folder: Path, structures: dict, *, duplicates: dict | None = None) -> Path:
    """A run folder as Snakemake leaves it: config/config.yaml (output_dir, input.cif_dir), the generated CIFs
    and a results folder whose every structure is S.U.N. (DFT ok, on the hull, novel); ``duplicates``: id ->
    its representative's id (a row of the run's dedupe, with the representative's values)."""
    from pymatgen.io.cif import CifWriter

    duplicates = duplicates or {}
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "config.yaml").write_text("output_dir: results\ninput:\n  cif_dir: generated\n")
    (folder / "generated").mkdir()
    for sid, structure in structures.items():
        if isinstance(structure, str):
            (folder / "generated" / f"{sid}.cif").write_text(structure)
        else:
            CifWriter(structure).write_file(folder / "generated" / f"{sid}.cif")
    results = folder / "results"
    results.mkdir()
    finished_run(results)
    ids = sorted(structures)
    table = pd.DataFrame({
        "structure_id": ids,
        "source_file": [f"{sid}.cif" for sid in ids],
        "status": ["duplicate" if sid in duplicates else "ok" for sid in ids],
        "duplicate_of": [duplicates.get(sid) for sid in ids],
        "dft_ready": True,
        "e_above_hull_eV_per_atom": -0.01,
        "novel": True,
        "total_core_hours": [None if sid in duplicates else 1.0 for sid in ids],
        "ml_checkpoint_sha256": "f00d",
    })  # fmt: skip
    table.to_parquet(results / "results.parquet")
    return folder


def _compared(tmp_path: Path, base: Path, pi: Path) -> tuple[pd.DataFrame, str]:
    from dftscreen.compare_runs import compare

    page = compare([base, pi], tmp_path / "out")
    return pd.read_csv(tmp_path / "out" / "cohorts.csv").set_index("cohort"), page.read_text()


def test_a_crystal_found_by_two_runs_counts_once_in_the_union_and_is_only_here_for_neither(tmp_path: Path):
    """Both runs found rocksalt NaCl (different files: a conventional and a perturbed primitive cell, and
    the same ids as the other run's other crystals); each found one crystal of its own. In run pi a
    duplicate of its NaCl comes first in the table, so the cross-run group reaches it through duplicate_of."""
    base = finished_run_with_cifs(
        tmp_path / "base", {"rank01": _rocksalt(("Na", "Cl"), 5.64), "rank02": _rocksalt(("K", "Br"), 6.6)}
    )
    pi = finished_run_with_cifs(
        tmp_path / "pi",
        {"rank00": _nacl_perturbed(), "rank01": _rocksalt(("Li", "F"), 4.03), "rank02": _nacl_perturbed()},
        duplicates={"rank00": "rank02"},
    )
    rates, page = _compared(tmp_path, base, pi)
    assert rates.loc["base", "sun_count"] == 2 and rates.loc["pi", "sun_count"] == 2
    assert rates.loc["base", "sun_only_here"] == 1 and rates.loc["pi", "sun_only_here"] == 1  # KBr, LiF
    # Four S.U.N. crystals found, NaCl twice: three unique, in 4 core-hours of DFT.
    assert "3 unique S.U.N. crystals in 4 DFT core-hours (0.75 per core-hour)" in page
    assert "StructureMatcher" in page and "ltol 0.2, stol 0.3, angle_tol 5°" in page
    settings = json.loads((tmp_path / "out" / "cohorts.json").read_text())["settings"]
    assert settings["cross_run_matching"] == {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0, "check_dedupe_of": "base"}


def test_another_polymorph_of_the_same_formula_is_another_crystal(tmp_path: Path):
    base = finished_run_with_cifs(tmp_path / "base", {"rank01": _rocksalt(("Na", "Cl"), 5.64)})
    pi = finished_run_with_cifs(tmp_path / "pi", {"rank01": _nacl_cscl_type()})
    rates, page = _compared(tmp_path, base, pi)
    assert rates.loc["base", "sun_only_here"] == 1 and rates.loc["pi", "sun_only_here"] == 1
    assert "2 unique S.U.N. crystals" in page


def test_an_unreadable_cif_keeps_its_own_crystal_with_a_warning_naming_it(tmp_path: Path, caplog):
    base = finished_run_with_cifs(tmp_path / "base", {"rank01": _rocksalt(("Na", "Cl"), 5.64)})
    pi = finished_run_with_cifs(tmp_path / "pi", {"rank01": _nacl_perturbed(), "rank02": "data_broken\n_cell_length_a"})
    rates, page = _compared(tmp_path, base, pi)
    assert rates.loc["base", "sun_only_here"] == 0 and rates.loc["pi", "sun_only_here"] == 1
    assert "2 unique S.U.N. crystals" in page
    assert "pi: rank02: cannot read" in page and "pi: rank02: cannot read" in caplog.text


def test_the_generated_cif_is_the_table_rows_the_ml_copy_or_the_input_file(tmp_path: Path):
    from dftscreen.compare_runs import RunInputs
    from dftscreen.inputs import table_row_cif_path
    from dftscreen.layout import ResultsLayout

    run = finished_run_with_cifs(tmp_path / "run", {"rank01": _rocksalt(("Na", "Cl"), 5.64)})
    inputs = RunInputs.of(run)
    assert inputs.generated_cif("rank01", "rank01.cif") == run / "generated" / "rank01.cif"
    assert inputs.generated_cif("row0", "table.parquet row 0") is None
    row = table_row_cif_path(ResultsLayout.of(run / "results").inputs_dir, "row0")
    row.parent.mkdir()
    row.write_text("data_x\n")
    assert inputs.generated_cif("row0", "table.parquet row 0") == row
    # Given the results folder itself (no config, no cif_dir): the ML stage's copy.
    ml_copy = Path(ResultsLayout.of(run / "results").ml_generated_cif("rank01"))
    ml_copy.parent.mkdir(parents=True)
    ml_copy.write_text("data_x\n")
    assert RunInputs.of(run / "results").generated_cif("rank01", "rank01.cif") == ml_copy


def test_groups_of_one_source_never_merge_when_matching_across_sources():
    """Each run's own dedupe decides its groups: cross-run matching joins a group only across runs."""
    from dftscreen.dedupe import Candidate, find_duplicates

    def candidate(sid: str, a: float) -> Candidate:
        structure = _rocksalt(("Na", "Cl"), a)
        return Candidate(sid, "NaCl", structure.volume / 4, structure)

    candidates = [candidate("a1", 5.60), candidate("a2", 5.64), candidate("b1", 5.66)]
    assert find_duplicates(candidates) == {"a2": "a1", "b1": "a1"}
    assert find_duplicates(candidates, source_of={"a1": "a", "a2": "a", "b1": "b"}) == {"b1": "a1"}


def test_runs_with_different_duplicate_matching_are_named(tmp_path: Path):
    runs = {}
    for name, ltol in (("base", 0.2), ("pi", 0.3)):
        run = finished_run_with_cifs(tmp_path / name, {"rank01": _rocksalt(("Na", "Cl"), 5.64)})
        config = run / "config" / "config.yaml"
        config.write_text(config.read_text() + f"check:\n  dedupe:\n    ltol: {ltol}\n")
        runs[name] = run
    found = mismatches({name: read_fingerprint(path) for name, path in runs.items()})
    assert found == [
        "the runs differ in duplicate matching (check.dedupe) "
        "(base: ltol 0.2, stol 0.3, angle_tol 5°; pi: ltol 0.3, stol 0.3, angle_tol 5°)"
    ]
