"""Issue 28, N3 through Snakemake: a known table with one unreadable row still gives novelty and competing phases.

Before, one unreadable CIF in a known set refused the whole set: ``compare_known`` failed after the
check (its log empty, the message under a traceback) and no structure got any DFT. Here the check and
``compare_known`` run for real (``--until compare_known``: no DFT) on two generated NaCl polymorphs
against the repository's known fixture as a CSV table with one broken row.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter

from dftscreen.layout import ResultsLayout

from conftest import TEST_DATA, run_snakemake, write_run_config

pytestmark = pytest.mark.workflow


def known_table(path: Path) -> None:
    """The fixture's entries as a table (id, CIF text, energy per atom) and one row whose CIF is unreadable."""
    with gzip.open(TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz", "rt") as handle:
        entries = json.load(handle)
    rows = [{"material_id": e["entry_id"], "cif": str(CifWriter(Structure.from_dict(e["structure"]))),
             "e_per_atom": (e["energy"] + (e.get("correction") or 0.0)) / len(e["structure"]["sites"])}
            for e in entries if e["energy"] is not None]
    rows.append({"material_id": "broken-1", "cif": "data_broken\n_cell_length_a 1\n", "e_per_atom": -1.0})
    pd.DataFrame(rows).to_csv(path, index=False)


def test_a_known_table_with_one_broken_row_gives_novelty_and_competing_phases(tmp_path: Path):
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    (tmp_path / "cifs").mkdir()
    for sid, structure, a in (("rs", "rocksalt", 5.5), ("cscl", "cesiumchloride", 3.3)):
        cif = CifWriter(AseAtomsAdaptor.get_structure(bulk("NaCl", structure, a=a)))
        cif.write_file(tmp_path / "cifs" / f"{sid}.cif")
    known_table(tmp_path / "known.csv")
    write_run_config(tmp_path, {
        "input": {"cif_dir": "cifs"}, "output_dir": "out", "ml": {"enabled": False},
        "dft": {"preset": "test"},
        "known_materials": {"database": {"path": "known.csv", "cif_column": "cif", "id_column": "material_id",
                                         "energy_per_atom_column": "e_per_atom"}},
    })  # fmt: skip
    proc = run_snakemake(tmp_path, "--cores", "2", "--until", "compare_known")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    layout = ResultsLayout.of(tmp_path / "out")
    novelty = json.loads(Path(layout.novelty_table).read_text())
    rows = novelty["structures"]
    assert (rows["rs"]["novel"], rows["rs"]["matches_known_id"]) == (False, "known-NaCl-rocksalt")
    assert rows["cscl"]["novel"]
    phases = json.loads(Path(layout.competing_phases).read_text())
    chosen = {phase["entry_id"] for phase in phases["phases"]}
    assert "known-NaCl-rocksalt" in chosen and "broken-1" not in chosen
    assert any("1 unreadable entry skipped (broken-1)" in note for note in novelty["notes"])
    assert "1 unreadable entry skipped (broken-1)" in Path(layout.log("compare_known")).read_text()
    # Both structures still go to DFT.
    assert sorted(Path(layout.valid_ids).read_text().split()) == ["cscl", "rs"]
