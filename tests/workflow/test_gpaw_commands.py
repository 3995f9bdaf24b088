"""Every GPAW rule's shell command, as a dry run plans it, is the one stored in tests/data.

Snakemake reruns a finished job whose shell command changed (its ``code`` rerun trigger):
a changed GPAW command reruns every finished DFT job of every existing run. So a refactor
of the rule files, of the input functions or of the paths they use must leave these
commands byte-identical. Here the check runs for real on two bundled CIFs, compare_known's
outputs are written by hand (so its chosen phase gets a job without running it), and two
dry runs print the commands of every GPAW rule: ``relax``, ``properties``,
``element_reference`` (automatic candidates and a user CIF), ``relax_reference_phase``,
``relax_competing_phase``, and, with ``dft.structures_per_pack``, ``dft_pack``.

The run is one whose pack started before this version (a pack's members file, no
``check/size_estimate.txt``): its check keeps the cell-only size estimate that the stored
``dft_pack`` command carries (:func:`dftscreen.size_gate.keeps_cell_only_estimates`); a new
run's packs carry the real-input estimate instead (tests/workflow/test_pack_estimates_workflow.py).

Only what differs between machines is normalised: the run folder and the Python running
Snakemake. To change a command on purpose (finished jobs then rerun), regenerate the stored
copy with ``DFTSCREEN_UPDATE_GPAW_COMMANDS=1`` and say why in the commit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from dftscreen.dft_pack import pack_name
from dftscreen.layout import ReferenceLibrary, ResultsLayout
from dftscreen.reflib import settings_key
from dftscreen.settings import resolve_settings

from conftest import REPO, TEST_DATA, normalised, planned_commands, run_snakemake, write_run_config

DATA = TEST_DATA / "gpaw_commands"
STORED = DATA / "commands.json"
STRUCTURES = ["NaCl_crystallm_P4nmm.cif", "MgGeO3_perov5_16100.cif"]
GPAW_RULES = (
    "relax",
    "properties",
    "element_reference",
    "relax_reference_phase",
    "relax_competing_phase",
    "dft_pack",
)
#: A known phase compare_known "chose" (its start.cif is written where that job writes it).
KNOWN_PHASE = {
    "phase_key": "GeO2-0123456789ab",
    "entry_id": "known-GeO2-rutile",
    "reduced_formula": "GeO2",
    "chemical_system": "Ge-O",
    "n_sites": 6,
    "e_above_known_hull_eV_per_atom": 0.0,
    "energy_source": "known set",
}
def prepared_run(workdir: Path) -> None:
    """A run whose check has run and whose compare_known chose one known phase (written here)."""
    (workdir / "cifs").mkdir()
    for name in STRUCTURES:
        shutil.copy(REPO / "examples" / "cifs" / name, workdir / "cifs" / name)
    shutil.copytree(DATA / "phases", workdir / "phases")
    shutil.copy(DATA / "Mg_hcp.cif", workdir / "Mg_hcp.cif")
    shutil.copy(TEST_DATA / "known" / "known_NaCl_TiO_LiFePO.json.gz", workdir / "known.json.gz")
    config = {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "ml": {"enabled": False},
        "dft": {"preset": "test", "structure_overrides": {"NaCl_crystallm_P4nmm": {"relax": {"max_steps": 3}}}},
        "stability": {"reference_cif_dir": "phases", "elemental_reference_cifs": {"Mg": "Mg_hcp.cif"}},
        "known_materials": {"database": {"path": "known.json.gz"}},
    }
    write_run_config(workdir, config)
    # Planning writes nothing (the input manifest is a job's output, rules/check.smk).
    assert run_snakemake(workdir, "--cores", "2", "-n").returncode == 0
    assert not (workdir / "out").exists()
    # The pack of both structures started in an earlier version (its GPAW runs are not needed here).
    members = workdir / ResultsLayout.of("out").pack_members(pack_name([Path(n).stem for n in STRUCTURES]))
    members.parent.mkdir(parents=True)
    members.write_text("".join(f"{Path(name).stem}\n" for name in sorted(STRUCTURES)))
    check = run_snakemake(workdir, "--cores", "2", "out/check/checks.json")
    assert check.returncode == 0, check.stderr[-3000:]
    # compare_known's outputs, newer than its inputs: Snakemake takes the checkpoint as done.
    layout = ResultsLayout.of("out")
    library = ReferenceLibrary("out/reference_library", settings_key(resolve_settings("test")))
    (workdir / "out" / "known").mkdir()
    (workdir / layout.novelty_table).write_text(json.dumps({"structures": {}}))
    (workdir / layout.competing_phases).write_text(
        json.dumps({"library": library.folder, "phases": [KNOWN_PHASE], "notes": []}))
    start = workdir / library.phase_start_cif(KNOWN_PHASE["phase_key"])
    start.parent.mkdir(parents=True)
    shutil.copy(DATA / "GeO2_known.cif", start)


def dry_run(workdir: Path, *args: str) -> dict[str, list[str]]:
    """Rule -> the normalised shell commands of its planned jobs (GPAW rules), for every planned rule."""
    proc = run_snakemake(workdir, "--cores", "2", "-n", "-p", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return normalised(planned_commands(proc.stdout, GPAW_RULES), workdir)


def test_gpaw_rules_run_the_stored_commands(tmp_path: Path, monkeypatch):
    # The launcher is srun inside a SLURM job (dftscreen.mpi_launch): plan as on a workstation.
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    prepared_run(tmp_path)
    per_structure = dry_run(tmp_path)
    # The inputs did not change since the check: neither it nor the manifest job reruns.
    assert not {"input_manifest", "check"} & set(per_structure), sorted(per_structure)
    (tmp_path / "packs.yaml").write_text(yaml.safe_dump({"dft": {"structures_per_pack": 2}}))
    packed = dry_run(tmp_path, "--configfile", str(tmp_path / "packs.yaml"))
    found = {rule: per_structure[rule] for rule in GPAW_RULES if rule in per_structure}
    found["dft_pack"] = packed.get("dft_pack", [])
    assert sorted(found) == sorted(GPAW_RULES), found.keys()
    if os.environ.get("DFTSCREEN_UPDATE_GPAW_COMMANDS") == "1":
        STORED.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    stored = json.loads(STORED.read_text())
    for rule in GPAW_RULES:
        assert found[rule] == stored[rule], f"the shell command of rule {rule} changed (finished jobs would rerun)"
