"""The check batch survives what one file can do to it: a huge cell, a worker that dies, a parent that dies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dftscreen.check_batch as check_batch
from dftscreen.check_batch import WORKER_DIED_REASON, check_all, check_and_deduplicate
from dftscreen.inputs import discover_cifs

from conftest import EXAMPLES, TEST_DATA

CORPUS = TEST_DATA / "bad_cifs"
COLUMNS = ("status", "reason", "dft_ready", "crystallm_valid", "n_sites", "bond_length_score", "duplicate_of")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Normal files (the examples and the bad-CIF corpus, 20+ files so two workers are used) and the huge cell."""
    folder = tmp_path / "in"
    shutil.copytree(CORPUS, folder)
    for path in EXAMPLES.glob("*.cif"):
        shutil.copy(path, folder / path.name)
    return folder


def _columns(results) -> dict[str, tuple]:
    return {r.source_file: tuple(getattr(r, c) for c in COLUMNS) for r in results}


@pytest.mark.skipif(sys.platform != "linux", reason="the killed worker is injected through a forked pool")
def test_a_worker_killed_by_one_file_costs_that_file_only(mixed: Path, monkeypatch):
    """One file's check kills its worker (as the kernel's OOM killer would): it gets a row saying so,
    every other file the same row as in a run without it; before, the whole check job failed with no row."""
    items = discover_cifs(mixed)
    assert len(items) >= 16  # two workers are used from 16 files up
    expected = _columns(check_and_deduplicate(items, workers=1))
    real_check = check_batch.check_item

    def check_or_die(item, settings, available_elements):
        if item.relative_path == "NaCl_crystallm_P4nmm.cif":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_check(item, settings, available_elements)

    # The pool forks, so the workers run this patched function.
    monkeypatch.setattr(check_batch, "check_item", check_or_die)
    results = check_and_deduplicate(items, workers=2)
    got = _columns(results)
    assert got.keys() == expected.keys()
    killed = next(r for r in results if r.source_file == "NaCl_crystallm_P4nmm.cif")
    assert killed.status == "invalid" and killed.reason == WORKER_DIED_REASON and not killed.valid
    for name in expected:
        if name != "NaCl_crystallm_P4nmm.cif":
            assert got[name] == expected[name], name
    # The huge cell among them was refused before building, with its count.
    assert "7584 atoms" in next(r.reason for r in results if r.source_file == "huge_expansion.cif")


@pytest.mark.skipif(sys.platform != "linux", reason="the killed worker is injected through a forked pool")
def test_isolated_with_one_worker_a_killed_check_costs_one_row(tmp_path: Path, monkeypatch):
    """A small batch (one worker, as the workflow's check job of a few files) is isolated too."""
    folder = tmp_path / "few"
    folder.mkdir()
    for path in EXAMPLES.glob("*.cif"):
        shutil.copy(path, folder / path.name)
    items = discover_cifs(folder)
    real_check = check_batch.check_item

    def check_or_die(item, settings, available_elements):
        if item.relative_path == "MgGeO3_perov5_16100.cif":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_check(item, settings, available_elements)

    monkeypatch.setattr(check_batch, "check_item", check_or_die)
    results = {r.source_file: r for r in check_all(items, workers=1, isolate=True)}
    assert results["MgGeO3_perov5_16100.cif"].reason == WORKER_DIED_REASON
    assert results["NaCl_crystallm_P4nmm.cif"].dft_ready
    assert len(results) == len(items)


def test_check_all_gives_the_same_rows_in_one_and_two_processes(mixed: Path):
    items = discover_cifs(mixed)
    assert _columns(check_all(items, workers=2)) == _columns(check_all(items, workers=1))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_no_worker_outlives_a_killed_parent(mixed: Path, tmp_path: Path):
    """Python's pool workers wait forever when their parent is killed; ours exit with it."""
    pids_file = tmp_path / "worker_pids"
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        import dftscreen.check_batch as cb
        from dftscreen.inputs import discover_cifs

        def stuck(item, settings, elements):
            with open({str(pids_file)!r}, "a") as handle:
                handle.write(f"{{os.getpid()}}\\n")
            time.sleep(600)

        cb.check_item = stuck
        cb.check_all(discover_cifs({str(mixed)!r}), workers=2)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(_pids(pids_file)) < 2:
            time.sleep(0.2)
        workers = _pids(pids_file)
        assert len(workers) >= 2, "the workers never started"
        parent.kill()
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        parent.kill()
        for pid in _pids(pids_file):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _pids(path: Path) -> set[int]:
    return {int(line) for line in path.read_text().split()} if path.is_file() else set()


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
