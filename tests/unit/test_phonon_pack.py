"""DFT phonons in packs (``dft.structures_per_pack``, issue 31) without GPAW: which of the phonon
checkpoint's structures share a pack, what each pack asks for, what each member runs, and that a
member's failure loses nothing of the others while the rerun redoes only it.

The GPAW program (``python -m dftscreen.phonons``) is replaced by a fake ``run`` that writes (or,
for a failing member, does not write) the phonon record; the real one runs in
tests/workflow/test_phonon_pack_workflow.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_phonon_results import _gate, _write_si, table_of

from dftscreen import dft_pack
from dftscreen.dft_pack import (
    PHONON_STAGE,
    pack_name,
    pack_size,
    phonon_pack_member,
    plan_phonon_packs,
    read_started_packs,
    run_pack,
)
from dftscreen.layout import ResultsLayout
from dftscreen.phonon_results import plan_dft_phonons
from dftscreen.phonons import PhononSettings
from dftscreen.resources import ResourcePolicy
from dftscreen.size_gate import MARGIN

POLICY = ResourcePolicy.from_config({"max_tasks": 4, "atoms_per_task": 4, "runtime_min_base": 10,
                                     "runtime_min_per_atom": 1.0})


def job(runtime_min: float, n_atoms: int = 8, mem: float = 500.0, too_large: str = "") -> dict:
    """A phonon plan's job entry (dftscreen.phonon_results.supercell_job's keys)."""
    return {"supercell": [1, 1, 1], "n_supercell_atoms": n_atoms, "n_displacements": 2, "too_large": too_large,
            "tasks": POLICY.tasks(n_atoms), "runtime_min": runtime_min, "mem_mb_per_task": mem}


def phonon_plan(jobs: dict[str, dict]) -> dict:
    return {"mode": "all", "jobs": jobs, "not_selected": {},
            "runnable": sorted(sid for sid, entry in jobs.items() if not entry["too_large"])}


def test_packs_hold_the_runnable_structures_n_at_a_time_in_the_order_of_their_estimated_runtime():
    plan = phonon_plan({"a": job(50.0), "b": job(5.0), "c": job(20.0), "d": job(1.0),
                        "e": job(30.0), "big": job(1.0, too_large="supercell of 900 atoms > ...")})
    packs = plan_phonon_packs(plan, 2)
    # Similar runtimes share a pack (its time limit is its longest member's); too_large gets none.
    assert list(packs.values()) == [["d", "b"], ["c", "e"], ["a"]]
    assert list(packs) == [pack_name(["b", "d"]), pack_name(["c", "e"]), pack_name(["a"])]
    assert plan_phonon_packs(phonon_plan({}), 2) == {}
    with pytest.raises(ValueError, match="at least 1"):
        plan_phonon_packs(plan, 0)


def test_started_phonon_packs_keep_their_members_and_the_other_packs_their_names():
    plan = phonon_plan({f"s{i}": job(float(i)) for i in range(6)})
    first = plan_phonon_packs(plan, 2)
    names = list(first)
    # One pack started: the plan is the same (a SLURM job finds its own pack again by name).
    assert plan_phonon_packs(plan, 2, {names[1]: first[names[1]]}) == first
    # A new structure (a later checkpoint) forms a pack of its own; started ones keep theirs.
    later = phonon_plan({**plan["jobs"], "new": job(2.5)})
    started = {name: first[name] for name in names}
    again = plan_phonon_packs(later, 2, started)
    assert {name: again[name] for name in names} == first
    assert [members for name, members in again.items() if name not in first] == [["new"]]


def test_a_member_is_sized_as_its_own_dft_phonons_job_and_a_pack_by_one_run_each():
    """The unpacked rule asks for the gate's ranks and RESOURCES.runtime_min/mem_mb_per_task of the
    supercell's atoms with the estimates times MARGIN (rules/common_late.smk): a member the same."""
    entries = {"a": job(100.0, n_atoms=16, mem=900.0), "b": job(5.0, n_atoms=2, mem=300.0)}
    members = [phonon_pack_member(sid, entry, f"dft/{sid}/relaxed.cif") for sid, entry in entries.items()]
    for member, entry in zip(members, entries.values()):
        assert member.tasks(POLICY) == entry["tasks"]
        for attempt in (1, 2):
            assert member.runtime_min(POLICY, attempt) == POLICY.runtime_min(
                entry["n_supercell_atoms"], attempt, estimate_min=MARGIN * entry["runtime_min"])
            assert member.mem_mb_per_task(POLICY, attempt) == POLICY.mem_mb_per_task(
                entry["n_supercell_atoms"], attempt, estimate_mb=MARGIN * entry["mem_mb_per_task"])
    size = pack_size(members, POLICY, n_stages=1)
    assert size.tasks == 4 + 1
    assert size.runtime_min == members[0].runtime_min(POLICY)  # one GPAW program each, not relax + properties
    assert size.mem_mb_per_task == members[0].mem_mb_per_task(POLICY)
    # The plan's entries are what the real checkpoint writes.
    assert set(job(1.0)) == {"supercell", "n_supercell_atoms", "n_displacements", "too_large", "tasks",
                             "runtime_min", "mem_mb_per_task"}


def test_a_real_checkpoint_plan_packs(tmp_path: Path):
    cifs = {sid: str(_write_si(tmp_path / f"{sid}.cif", a)) for sid, a in (("si1", 5.47), ("si2", 5.40))}
    table = table_of([{"structure_id": sid, "e_above_hull_eV_per_atom": 0.0} for sid in cifs])
    plan = plan_dft_phonons(table, cifs, mode="all", stable_threshold_eV_per_atom=0.1,
                            settings=PhononSettings.from_config({"min_supercell_length_A": 1.0}), gate=_gate())
    plan = json.loads(json.dumps(plan))  # as the workflow reads it back
    packs = plan_phonon_packs(plan, 2)
    assert list(packs.values()) == [sorted(cifs, key=lambda sid: (plan["jobs"][sid]["runtime_min"], sid))]
    member = phonon_pack_member("si1", plan["jobs"]["si1"], cifs["si1"])
    assert member.tasks(POLICY) >= 1 and member.n_sites == plan["jobs"]["si1"]["n_supercell_atoms"]


def test_a_member_runs_the_dft_phonons_rules_program_with_its_own_settings_when_overridden(tmp_path):
    layout = ResultsLayout.of(tmp_path / "out")
    plain = phonon_pack_member("A", job(1.0), layout.relaxed_cif("A"))
    overridden = phonon_pack_member("B", job(1.0), layout.relaxed_cif("B"), settings_json='{"x": 1}')
    command = dft_pack.stage_command(PHONON_STAGE, plain, layout, '{"run": 1}', ["py"], '{"min": 1}')
    assert command[:3] == ["py", "-m", "dftscreen.phonons"]
    options = dict(zip(command[3::2], command[4::2]))
    # Exactly the options of rule dft_phonons (rules/phonons.smk).
    assert options == {"--structure-id": "A", "--relaxed-cif": layout.relaxed_cif("A"),
                       "--relax-json": layout.relax_record("A"), "--settings": '{"run": 1}',
                       "--phonon-settings": '{"min": 1}', "--workdir": layout.structure_dir("A"),
                       "--out-json": layout.phonon_record("A")}
    command = dft_pack.stage_command(PHONON_STAGE, overridden, layout, '{"run": 1}', ["py"], "{}")
    assert dict(zip(command[3::2], command[4::2]))["--settings"] == '{"x": 1}'
    # Its srun step is named as the rule that runs it alone (dftscreen status reads <rule>:<id>).
    step = dft_pack.launcher(PHONON_STAGE, plain, POLICY, 1, environ={"SLURM_JOB_ID": "3"})
    assert step[4] == "--job-name=dft_phonons:A"
    with pytest.raises(ValueError, match="phonon settings"):
        dft_pack.stage_command(PHONON_STAGE, plain, layout, "{}", ["py"])


class FakePhonons:
    """Stands in for ``python -m dftscreen.phonons``: writes the phonon record, except for ``failing``."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.failing = set(failing)
        self.calls: list[tuple[str, str]] = []
        self.logs: list[Path] = []

    def __call__(self, command: list[str], log: Path) -> int:
        sid = command[command.index("--structure-id") + 1]
        self.calls.append((command[command.index("-m", command.index("python")) + 1], sid))
        self.logs.append(log)
        if sid in self.failing:
            return 1
        out = Path(command[command.index("--out-json") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"structure_id": sid, "status": "computed"}))
        return 0


def run(members, layout, fake):
    return run_pack(members, layout, "{}", POLICY, budget=4, python=["py", "-m", "gpaw", "python"], environ={},
                    run=fake, stages=(PHONON_STAGE,), phonon_settings="{}")


def test_a_failing_member_loses_nothing_and_the_rerun_redoes_only_it(tmp_path):
    layout = ResultsLayout.of(tmp_path / "out")
    members = [phonon_pack_member(sid, job(1.0), layout.relaxed_cif(sid)) for sid in ("s0", "s1", "s2")]
    fake = FakePhonons(failing={"s1"})
    outcomes = {o.structure_id: o for o in run(members, layout, fake)}
    assert {sid for sid, o in outcomes.items() if o.finished} == {"s0", "s2"}
    assert sorted(fake.calls) == [("dftscreen.phonons", sid) for sid in ("s0", "s1", "s2")]
    assert sorted(fake.logs) == sorted(Path(layout.phonon_log(sid)) for sid in ("s0", "s1", "s2"))
    again = FakePhonons()
    outcomes = {o.structure_id: o for o in run(members, layout, again)}
    assert again.calls == [("dftscreen.phonons", "s1")]
    assert all(o.finished for o in outcomes.values()) and outcomes["s0"].skipped
    # No relaxation or single point ever runs in a phonon pack, although their records are missing.
    assert not Path(layout.relax_record("s0")).exists()


def test_main_keeps_phonon_packs_apart_from_relax_packs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    layout = ResultsLayout.of(out)
    fake = FakePhonons(failing={"s1"})
    monkeypatch.setattr(dft_pack, "run_logged", fake)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    members = [vars(phonon_pack_member(sid, job(1.0), layout.relaxed_cif(sid))) for sid in ("s0", "s1")]
    name = pack_name(["s0", "s1"])
    record = Path(layout.phonon_pack_record(name))
    args = ["--pack", name, "--plan", json.dumps({"members": members, "resources": {"max_tasks": 2}}),
            "--settings", "{}", "--phonon-settings", "{}", "--out-dir", str(out), "--out-json", str(record),
            "--budget", "2"]
    assert dft_pack.main(args) == 1 and not record.exists()
    assert read_started_packs(layout, phonons=True) == {name: ["s0", "s1"]}
    assert read_started_packs(layout) == {}  # the relax packs' plan never sees it
    assert f"logs: {layout.phonon_log('s1')}" in capsys.readouterr().err
    fake.failing.clear()
    assert dft_pack.main(args) == 0
    written = json.loads(record.read_text())
    assert (written["n_structures"], written["n_finished"]) == (2, 2)
    assert [m["stages"] for m in written["members"]] == [{}, {"phonons": 0}]
    assert layout.pack_records() == {}  # not a relax pack's record (dftscreen status, the table)


def test_the_slurm_profile_asks_one_cpu_per_task_for_every_mpi_rule():
    """Without ``cpus_per_task`` the SLURM plugin asks for ``threads`` CPUs per task: a job of
    ``tasks`` ranks (``threads`` = ``tasks``) would hold tasks x tasks CPUs."""
    import re

    import yaml

    from conftest import REPO

    mpi_rules = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule |checkpoint |use rule )", path.read_text()):
            if re.search(r"^\s+tasks=", block, re.MULTILINE):
                mpi_rules.add(re.match(r"(?:rule|checkpoint|use rule \w+ as) (\w+)", block).group(1))
    assert {"dft_phonons", "dft_phonon_pack", "dft_pack", "relax"} <= mpi_rules
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert {rule: profile["set-resources"].get(rule, {}).get("cpus_per_task") for rule in mpi_rules} == dict.fromkeys(
        mpi_rules, 1)
