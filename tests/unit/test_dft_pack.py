"""dftscreen.dft_pack without GPAW: how packs are formed and sized, what each member runs, and
that one member's failure loses nothing of the others while the rerun redoes only it.

The GPAW programs are replaced by a fake ``run`` that writes (or, for a failing member,
does not write) the stage's record, as the real ones do; the real-GPAW pack runs on the
one-node SLURM in tests/workflow/test_slurm_pack.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from dftscreen import dft_pack
from dftscreen.dft_pack import PackMember, pack_name, pack_size, plan_packs, read_started_packs, run_pack
from dftscreen.layout import ResultsLayout
from dftscreen.resources import ResourcePolicy

POLICY = ResourcePolicy.from_config({"max_tasks": 2, "atoms_per_task": 4, "runtime_min_base": 10,
                                     "runtime_min_per_atom": 1.0})


def members(*n_sites: int) -> list[PackMember]:
    return [PackMember(f"s{i}", f"cifs/s{i}.cif", n) for i, n in enumerate(n_sites)]


def test_packs_are_runs_of_sorted_ids_all_full_but_the_last_named_by_their_members():
    packs = plan_packs(["e", "a", "d", "b", "c", "a"], 2)
    assert list(packs.values()) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(packs) == [pack_name(["a", "b"]), pack_name(["d", "c"]), pack_name(["e"])]
    assert all(re.fullmatch(r"[0-9a-f]{12}", name) for name in packs)
    assert plan_packs([], 3) == {}
    with pytest.raises(ValueError, match="at least 1"):
        plan_packs(["a"], 0)


def test_added_structures_form_new_packs_and_started_packs_keep_theirs():
    first = plan_packs(["b", "d", "f", "h"], 2)
    started = {name: members for name, members in first.items()}
    # "a", "c", "e" sort among the old ids: without the started packs every pack would re-form.
    later = plan_packs(["a", "b", "c", "d", "e", "f", "h"], 2, started)
    assert {name: later[name] for name in first} == first
    assert sorted(members for name, members in later.items() if name not in first) == [["a", "c"], ["e"]]
    # A structure that left the run leaves its pack; a pack left with none is not planned.
    fewer = plan_packs(["b", "d", "h"], 2, started)
    assert sorted(fewer.values()) == [["b", "d"], ["h"]]


def test_a_new_pack_keeps_its_name_while_other_new_packs_start_or_finish():
    """Inside its SLURM allocation a pack is planned again and must find itself by name."""
    ids = [f"s{i:02d}" for i in range(10)]
    at_submission = plan_packs(ids, 3)
    names = list(at_submission)
    for one in names:
        later = plan_packs(ids, 3, {one: at_submission[one]})
        assert later == at_submission, one
    later = plan_packs(ids, 3, {names[0]: at_submission[names[0]], names[2]: at_submission[names[2]]})
    assert later == at_submission


def test_read_started_packs_reads_what_main_writes_and_skips_unreadable(tmp_path):
    layout = ResultsLayout.of(tmp_path / "out")
    assert read_started_packs(layout) == {}
    members_dir = Path(layout.pack_members_dir)
    members_dir.mkdir(parents=True)
    (members_dir / "pack_0123456789ab.txt").write_text("s1\ns2\n")
    (members_dir / "pack_ba9876543210.txt").write_bytes(b"\xff\xfe")
    (members_dir / "pack_0.txt").write_text("s3\n")  # not a name the workflow gives
    assert read_started_packs(layout) == {"0123456789ab": ["s1", "s2"]}


def test_a_pack_asks_for_the_sum_of_ranks_the_longest_relax_plus_properties_and_grows_with_the_attempt():
    group = members(2, 8, 3)  # 1, 2 and 1 ranks; 12, 18 and 13 minutes per GPAW run
    size = pack_size(group, POLICY)
    assert size.tasks == 4
    assert size.runtime_min == 2 * 18
    assert pack_size(group, POLICY, attempt=2).runtime_min == 2 * 36
    assert size.mem_mb_per_task == max(m.mem_mb_per_task(POLICY) for m in group)
    # The size gate's estimate counts, as it does for a structure's own job.
    estimated = PackMember("big", "big.cif", 2, runtime_estimate_min=100.0)
    assert pack_size([estimated], POLICY).runtime_min == 2 * estimated.runtime_min(POLICY) >= 200
    with pytest.raises(ValueError):
        pack_size([], POLICY)


def test_launch_is_mpiexec_outside_slurm_and_a_named_time_limited_exact_srun_step_inside():
    member = members(8)[0]
    assert dft_pack.launcher("relax", member, POLICY, 1, environ={}) == ["mpiexec", "--bind-to", "none", "-n", "2"]
    inside = dft_pack.launcher("properties", member, POLICY, 2, environ={"SLURM_JOB_ID": "42"})
    assert inside == ["srun", "--exact", "--ntasks=2", "--cpus-per-task=1", "--job-name=properties:s0",
                      f"--time={2 * 18}"]


def test_each_stage_runs_the_per_structure_rules_program_and_a_member_override_keeps_its_settings(tmp_path):
    layout = ResultsLayout.of(tmp_path / "out")
    plain, overridden = PackMember("A", "in/A.cif", 2), PackMember("B", "in/B.cif", 2, settings_json='{"x": 1}')
    relax = dft_pack.stage_command("relax", plain, layout, '{"run": 1}', ["py"])
    assert relax[:3] == ["py", "-m", "dftscreen.relax"]
    options = dict(zip(relax[3::2], relax[4::2]))
    assert options == {"--cif": "in/A.cif", "--out-cif": layout.relaxed_cif("A"), "--structure-id": "A",
                       "--settings": '{"run": 1}', "--out-json": layout.relax_record("A"),
                       "--workdir": layout.structure_dir("A")}
    properties = dft_pack.stage_command("properties", overridden, layout, '{"run": 1}', ["py"])
    options = dict(zip(properties[3::2], properties[4::2]))
    assert properties[:3] == ["py", "-m", "dftscreen.properties"]
    assert options["--relax-json"] == layout.relax_record("B") and options["--settings"] == '{"x": 1}'
    with pytest.raises(ValueError):
        dft_pack.stage_command("phonons", plain, layout, "{}", ["py"])


class FakeGPAW:
    """Stands in for the GPAW programs: writes the stage's record after ``seconds``, except for
    ``failing`` structures' relaxations, which exit 1 with no record (a crash or a time limit)."""

    def __init__(self, layout: ResultsLayout, failing: set[str] = frozenset(), seconds: float = 0.0) -> None:
        self.layout, self.failing, self.seconds = layout, set(failing), seconds
        self.calls: list[tuple[str, str]] = []
        self.running = self.most_running = 0
        self.lock = threading.Lock()

    def __call__(self, command: list[str], log: Path) -> int:
        stage = next(word for word in command if word.startswith("dftscreen.")).split(".")[-1]
        sid = command[command.index("--structure-id") + 1]
        with self.lock:
            self.calls.append((stage, sid))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        if stage == "relax" and sid in self.failing:
            return 1
        out = Path(command[command.index("--out-json") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"structure_id": sid, "stage": stage}))
        return 0


def run(group, layout, gpaw, budget=8, environ=None):
    return run_pack(group, layout, "{}", POLICY, budget=budget, python=["py", "-m", "gpaw", "python"],
                    environ=environ or {}, run=gpaw)


def test_a_failing_member_loses_nothing_of_the_others_and_the_rerun_redoes_only_it(tmp_path):
    layout = ResultsLayout.of(tmp_path / "out")
    group = members(2, 2, 2)
    gpaw = FakeGPAW(layout, failing={"s1"})
    outcomes = {o.structure_id: o for o in run(group, layout, gpaw)}
    assert {sid for sid, o in outcomes.items() if o.finished} == {"s0", "s2"}
    assert outcomes["s1"].stages == {"relax": 1}  # its single point never started
    assert sorted(gpaw.calls) == [("properties", "s0"), ("properties", "s2"), ("relax", "s0"), ("relax", "s1"),
                                  ("relax", "s2")]
    # Rerun (the structure now gets through): only s1 runs, both its stages; the others are skipped.
    again = FakeGPAW(layout)
    outcomes = {o.structure_id: o for o in run(group, layout, again)}
    assert again.calls == [("relax", "s1"), ("properties", "s1")]
    assert all(o.finished for o in outcomes.values())
    assert outcomes["s0"].skipped and not outcomes["s1"].skipped
    # A structure whose single point is missing runs only that.
    Path(layout.properties_record("s2")).unlink()
    third = FakeGPAW(layout)
    run(group, layout, third)
    assert third.calls == [("properties", "s2")]


def test_members_run_side_by_side_within_the_budget(tmp_path):
    layout = ResultsLayout.of(tmp_path / "out")
    side_by_side = FakeGPAW(layout, seconds=0.3)
    run(members(2, 2, 2), layout, side_by_side, budget=3)
    assert side_by_side.most_running == 3
    # Two slots: never more than two 1-rank runs at once; a 2-rank member waits for both.
    layout = ResultsLayout.of(tmp_path / "out2")
    narrow = FakeGPAW(layout, seconds=0.2)
    outcomes = run(members(2, 2, 8, 2), layout, narrow, budget=2)
    assert narrow.most_running == 2 and all(o.finished for o in outcomes)
    # Inside SLURM all start at once: the allocation holds their ranks, SLURM places the steps.
    layout = ResultsLayout.of(tmp_path / "slurm")
    in_slurm = FakeGPAW(layout, seconds=0.3)
    run(members(2, 2, 2), layout, in_slurm, budget=1, environ={"SLURM_JOB_ID": "7"})
    assert in_slurm.most_running == 3
    # A member larger than the whole budget still runs (alone), rather than waiting forever.
    layout = ResultsLayout.of(tmp_path / "out3")
    assert run(members(8), layout, FakeGPAW(layout), budget=1)[0].finished


def test_main_writes_the_pack_record_only_when_every_member_finished(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    layout = ResultsLayout.of(out)
    gpaw = FakeGPAW(layout, failing={"s1"})
    monkeypatch.setattr(dft_pack, "run_logged", gpaw)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    plan = json.dumps({"members": [vars(m) for m in members(2, 2)], "resources": {"max_tasks": 2}})
    name = pack_name(["s0", "s1"])
    record = Path(layout.pack_record(name))
    args = ["--pack", name, "--plan", plan, "--settings", "{}", "--out-dir", str(out), "--out-json", str(record),
            "--budget", "2"]
    assert dft_pack.main(args) == 1
    assert not record.exists()
    # Its structures stay in this pack for the rerun, although it failed.
    assert read_started_packs(layout) == {name: ["s0", "s1"]}
    assert "1 of 2 structures did not finish (s1" in capsys.readouterr().err
    gpaw.failing.clear()
    assert dft_pack.main(args) == 0
    written = json.loads(record.read_text())
    assert (written["n_structures"], written["n_finished"]) == (2, 2)
    assert [m["skipped"] for m in written["members"]] == [True, False]
