"""End to end: DFT phonons in packs (issue 31, ``dft.structures_per_pack``).

Two 2-atom structures (diamond Si, rock-salt NaCl) at the ``test`` preset with
``structures_per_pack: 2`` and ``phonons.dft: all``, 1x1x1 supercells: their relaxations run in
one ``dft_pack`` job and their phonons in one ``dft_phonon_pack`` job (no ``dft_phonons`` job),
which writes the records ``dft_phonons`` would, and the table reads them as it reads those. The
same command then plans nothing; switching packs off plans no GPAW job either. A killed phonon
pack (one record and one displacement gone, no pack record) reruns one displacement of one
structure and skips the other structure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dftscreen.inputs import make_id
from dftscreen.layout import ResultsLayout

from conftest import assert_stored_phonon_commands, run_snakemake, write_run_config

pytestmark = pytest.mark.e2e

SI, NACL = make_id("Si_diamond.cif")[0], make_id("NaCl_rocksalt.cif")[0]
CONFIG = {
    "input": {"cif_dir": "cifs"},
    "output_dir": "out",
    "dft": {"preset": "test", "structures_per_pack": 2, "overrides": {"properties": {"band_path_npoints": 0}}},
    "stability": {"elemental_references": False},
    "ml": {"enabled": False},
    "phonons": {"ml": False, "dft": "all", "min_supercell_length_A": 1.0},
}
GPAW_RULES = ("relax", "properties", "dft_phonons", "dft_pack", "dft_phonon_pack")
#: What the phonon program writes for a computed structure (dftscreen.phonons.run_dft_phonons).
RECORD_KEYS = {"structure_id", "status", "preset", "phonon_settings", "mpi_ranks", "n_atoms", "prerelaxed",
               "min_frequency_THz", "dynamically_stable", "n_force_calculations", "n_computed", "n_reused",
               "wall_time_s", "core_hours", "supercell_kpts"}


def write_inputs(cifs: Path) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    cifs.mkdir(parents=True)
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]).get_primitive_structure()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    CifWriter(si).write_file(cifs / "Si_diamond.cif")
    CifWriter(nacl).write_file(cifs / "NaCl_rocksalt.cif")


def jobs_of(output: str) -> dict[str, int]:
    """Rule -> jobs a Snakemake run or dry run listed in its job-count table."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit() and words[0] in GPAW_RULES:
            counts[words[0]] = int(words[1])
    return counts


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("phonon_packs")
    write_inputs(workdir / "cifs")
    write_run_config(workdir, CONFIG)
    proc = run_snakemake(workdir, profile="local", timeout=2400)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return workdir, proc.stdout + proc.stderr


def test_the_dft_phonon_pack_command_is_the_stored_one(packed_run):
    assert_stored_phonon_commands(packed_run[0], "dft_phonon_pack")


def test_one_pack_job_runs_both_structures_phonons_and_writes_the_per_structure_records(packed_run):
    workdir, output = packed_run
    layout = ResultsLayout.of(workdir / "out")
    assert "rule dft_phonon_pack:" in output and "rule dft_phonons:" not in output
    (pack,) = sorted((workdir / "out" / "packs" / "phonons").glob("pack_*.json"))
    record = json.loads(pack.read_text())
    assert sorted(m["structure_id"] for m in record["members"]) == sorted([SI, NACL])
    assert record["n_finished"] == 2 and all(m["stages"] == {"phonons": 0} for m in record["members"])
    records = {sid: json.loads(Path(layout.phonon_record(sid)).read_text()) for sid in (SI, NACL)}
    for sid, phonons in records.items():
        assert phonons["status"] == "computed", phonons.get("reason")
        assert RECORD_KEYS <= set(phonons), RECORD_KEYS - set(phonons)
        assert phonons["n_reused"] == 0 and phonons["n_computed"] == phonons["n_force_calculations"]
        # One file per supercell (the undisplaced one and each displacement), as the unpacked job.
        assert len(list(Path(layout.phonon_dir(sid)).glob("displacement-*.json"))) == phonons["n_force_calculations"]
        assert Path(layout.phonon_log(sid)).is_file()
    assert set(records[SI]) == set(records[NACL])
    table = pd.read_csv(workdir / "out" / "results.csv").set_index("structure_id")
    assert list(table.loc[[SI, NACL], "phonon_status"]) == ["computed", "computed"]
    assert (table.loc[[SI, NACL], "phonon_core_hours"] > 0).all()


def test_the_same_command_plans_nothing_and_switching_packs_off_plans_no_gpaw_job(packed_run):
    workdir, _ = packed_run
    again = run_snakemake(workdir, "-n", profile="local")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    unpacked = workdir / "unpacked.yaml"
    unpacked.write_text(yaml.safe_dump({"dft": {"structures_per_pack": 0}}))
    off = run_snakemake(workdir, "-n", "--configfile", str(unpacked), profile="local")
    assert off.returncode == 0, off.stderr[-3000:]
    assert jobs_of(off.stdout + off.stderr) == {}, (off.stdout + off.stderr)[-3000:]


def test_a_killed_phonon_pack_reruns_only_the_missing_displacement(packed_run):
    workdir, _ = packed_run
    layout = ResultsLayout.of(workdir / "out")
    first = json.loads(Path(layout.phonon_record(NACL)).read_text())
    assert first["n_force_calculations"] >= 3  # the undisplaced supercell, Na's and Cl's displacements
    # What a kill of the pack leaves: whole displacement files, the other member's record, no pack record.
    (pack,) = sorted((workdir / "out" / "packs" / "phonons").glob("pack_*.json"))
    pack.unlink()
    Path(layout.phonon_record(NACL)).unlink()
    Path(layout.phonon_displacement_record(NACL, first["n_force_calculations"] - 1)).unlink()
    si_record = Path(layout.phonon_record(SI)).read_text()
    proc = run_snakemake(workdir, profile="local", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert jobs_of(proc.stdout + proc.stderr).get("dft_phonon_pack") == 1
    again = json.loads(Path(layout.phonon_record(NACL)).read_text())
    assert again["n_computed"] == 1 and again["n_reused"] == first["n_force_calculations"] - 1
    assert again["min_frequency_THz"] == pytest.approx(first["min_frequency_THz"], abs=1e-6)
    assert Path(layout.phonon_record(SI)).read_text() == si_record
    members = {m["structure_id"]: m for m in json.loads(pack.read_text())["members"]}
    assert members[SI]["skipped"] and members[NACL]["stages"] == {"phonons": 0}
