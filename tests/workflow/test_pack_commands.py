"""Packs as Snakemake plans them (dry runs after a real check: no DFT).

1. A pack runs exactly the GPAW programs the per-structure rules run.
2. Structures added to a run whose packs have started form a pack of their own; the
   started packs are not re-formed or rerun.

On 1:
dftscreen.dft_pack builds each member's relax and properties command itself
(:func:`dftscreen.dft_pack.stage_command`). If a rule's shell command gained an
argument and the pack's did not, packed structures would silently be computed
differently. Here the check runs for real on two bundled CIFs; then one dry run
prints the relax and properties commands of the per-structure rules, another (with
``dft.structures_per_pack``) the pack job's plan, from which the pack's commands are built.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import yaml

from dftscreen.dft_pack import PackMember, pack_name, stage_command
from dftscreen.layout import DFT_STAGES, ResultsLayout

from conftest import REPO, run_snakemake, write_run_config

STRUCTURES = ["NaCl_crystallm_P4nmm.cif", "MgGeO3_perov5_16100.cif"]
OVERRIDDEN = "NaCl_crystallm_P4nmm"


def printed_commands(proc) -> list[list[str]]:
    """The shell commands a ``snakemake -n -p`` printed, each split into words."""
    prefix = "Shell command: "
    return [shlex.split(line[len(prefix):]) for line in proc.stdout.splitlines() if line.startswith(prefix)]


def program_arguments(words: list[str]) -> tuple[str | None, dict[str, str]]:
    """``(module, {option: value})`` of a ``... python -m dftscreen.<program> --opt value ...`` command.

    Launcher, interpreter and the log redirection are left out: the pack starts its
    members with its own launcher and writes the same log files itself. Commands that
    run no dftscreen program give ``(None, {})``.
    """
    starts = [i for i, word in enumerate(words[:-1]) if word == "-m" and words[i + 1].startswith("dftscreen.")]
    if not starts:
        return None, {}
    module, rest = words[starts[0] + 1], words[starts[0] + 2:]
    if ">" in rest:
        rest = rest[: rest.index(">")]
    assert len(rest) % 2 == 0 and all(word.startswith("--") for word in rest[::2]), rest
    return module, dict(zip(rest[::2], rest[1::2]))


def checked_run(workdir: Path, dft: dict) -> None:
    """A run folder with the bundled STRUCTURES whose check has run (ML stage and references off)."""
    (workdir / "cifs").mkdir()
    for name in STRUCTURES:
        shutil.copy(REPO / "examples" / "cifs" / name, workdir / "cifs" / name)
    write_run_config(workdir, {"input": {"cif_dir": "cifs"}, "output_dir": "out", "ml": {"enabled": False},
                               "stability": {"elemental_references": False}, "dft": dft})
    run_check(workdir)


def run_check(workdir: Path) -> None:
    check = run_snakemake(workdir, "--cores", "2", "out/check/checks.json")
    assert check.returncode == 0, check.stderr[-3000:]


def test_pack_members_run_the_commands_of_the_per_structure_rules(tmp_path: Path):
    # One structure with settings of its own: the pack must pass those, not the run's.
    checked_run(tmp_path, {"preset": "test", "structure_overrides": {OVERRIDDEN: {"relax": {"max_steps": 3}}}})

    per_structure = run_snakemake(tmp_path, "--cores", "2", "-n", "-p")
    assert per_structure.returncode == 0, per_structure.stderr[-3000:]
    rule_commands = {}
    for words in printed_commands(per_structure):
        module, options = program_arguments(words)
        if module in ("dftscreen.relax", "dftscreen.properties"):
            rule_commands[(module, options["--structure-id"])] = options
    ids = sorted(Path(name).stem for name in STRUCTURES)
    assert sorted(rule_commands) == sorted((f"dftscreen.{stage}", sid) for stage in DFT_STAGES for sid in ids)

    (tmp_path / "packs.yaml").write_text(yaml.safe_dump({"dft": {"structures_per_pack": 2}}))
    packed = run_snakemake(tmp_path, "--cores", "2", "-n", "-p", "--configfile", str(tmp_path / "packs.yaml"))
    assert packed.returncode == 0, packed.stderr[-3000:]
    packs = [program_arguments(words)[1] for words in printed_commands(packed)
             if program_arguments(words)[0] == "dftscreen.dft_pack"]
    assert len(packs) == 1, packed.stdout[-3000:]
    pack = packs[0]
    layout = ResultsLayout.of(pack["--out-dir"])
    members = [PackMember(**member) for member in json.loads(pack["--plan"])["members"]]
    assert sorted(member.structure_id for member in members) == ids
    for member in members:
        for stage in DFT_STAGES:
            module, options = program_arguments(
                stage_command(stage, member, layout, pack["--settings"], python=["python"]))
            assert options == rule_commands[(module, member.structure_id)], (stage, member.structure_id)
    # The override reached the pack (and differs from the run's settings), so the test can tell them apart.
    overridden = rule_commands[("dftscreen.relax", OVERRIDDEN)]["--settings"]
    assert json.loads(overridden)["relax"]["max_steps"] == 3 != json.loads(pack["--settings"])["relax"]["max_steps"]


def planned_packs(workdir: Path) -> dict[str, list[str]]:
    """Pack name -> member ids of every dft_pack job a dry run plans."""
    proc = run_snakemake(workdir, "--cores", "2", "-n", "-p")
    assert proc.returncode == 0, proc.stderr[-3000:]
    packs = {}
    for words in printed_commands(proc):
        module, options = program_arguments(words)
        if module == "dftscreen.dft_pack":
            packs[options["--pack"]] = [m["structure_id"] for m in json.loads(options["--plan"])["members"]]
    return packs


def test_added_structures_form_their_own_pack_and_started_packs_stay(tmp_path: Path):
    checked_run(tmp_path, {"preset": "test", "structures_per_pack": 3})
    first = planned_packs(tmp_path)
    ids = sorted(Path(name).stem for name in STRUCTURES)
    assert first == {pack_name(ids): ids}

    # The pack ran: dftscreen.dft_pack wrote its members before the GPAW runs, its record after.
    layout = ResultsLayout.of(tmp_path / "out")
    (name,) = first
    Path(layout.pack_members(name)).parent.mkdir(parents=True)
    Path(layout.pack_members(name)).write_text("".join(f"{sid}\n" for sid in ids))
    Path(layout.pack_record(name)).write_text(json.dumps({"pack": name, "members": []}))

    # A third structure: with packs of 3 it would have joined the first pack and rerun it.
    shutil.copy(REPO / "examples" / "cifs" / "ScBN2O_perov5_6130.cif", tmp_path / "cifs")
    run_check(tmp_path)
    assert "ScBN2O_perov5_6130" in (tmp_path / "out" / "check" / "valid_ids.txt").read_text().split()
    assert planned_packs(tmp_path) == {pack_name(["ScBN2O_perov5_6130"]): ["ScBN2O_perov5_6130"]}
