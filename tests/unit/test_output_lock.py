"""The lock of a results folder against other run folders (issue 28, dftscreen.guards)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dftscreen.guards import (
    ConfigError,
    acquire_output_lock,
    lock_is_stale,
    output_lock_path,
    read_output_lock,
    release_output_lock,
    warn_if_output_locked,
)


def fake_lock(out: Path, run_folder: Path, pid: int, host: str | None = None) -> None:
    """A lock file as another run would have written it."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"run_folder": str(run_folder), "host": host or socket.gethostname(), "pid": pid}
    (out / ".dftscreen.lock").write_text(json.dumps(record))


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_acquire_writes_holder_and_release_removes_it(tmp_path: Path):
    out, run = tmp_path / "shared" / "results", tmp_path / "run_a"
    path = acquire_output_lock(out, run)
    assert path == output_lock_path(out) == out.resolve() / ".dftscreen.lock"
    holder = read_output_lock(out)
    assert holder == {"run_folder": os.path.realpath(run), "host": socket.gethostname(), "pid": os.getpid()}
    release_output_lock(out, run)
    assert not path.exists()


def test_another_live_run_folder_is_refused_in_one_sentence(tmp_path: Path):
    out = tmp_path / "results"
    fake_lock(out, tmp_path / "run_a", os.getpid())  # a live process (this one), another run folder
    with pytest.raises(ConfigError) as info:
        acquire_output_lock(out, tmp_path / "run_b")
    message = str(info.value)
    assert message.count(". ") == 0 and "\n" not in message
    assert f"is in use by the run in {tmp_path / 'run_a'}" in message and str(out / ".dftscreen.lock") in message
    assert warn_if_output_locked(out, tmp_path / "run_b") == message
    release_output_lock(out, tmp_path / "run_b")  # not ours: left in place
    assert read_output_lock(out)["run_folder"] == str(tmp_path / "run_a")


@pytest.mark.parametrize("case", ["dead pid", "same run folder", "garbage"])
def test_stale_lock_is_replaced(tmp_path: Path, case: str):
    out, run = tmp_path / "results", tmp_path / "run_b"
    if case == "dead pid":
        fake_lock(out, tmp_path / "run_a", dead_pid())
    elif case == "same run folder":
        fake_lock(out, run, os.getpid() + 100000)
    else:
        out.mkdir()
        (out / ".dftscreen.lock").write_text("{half")
    assert warn_if_output_locked(out, run) is None
    acquire_output_lock(out, run)
    assert read_output_lock(out)["run_folder"] == os.path.realpath(run)


def test_holder_on_another_host_counts_as_live(tmp_path: Path):
    holder = {"run_folder": str(tmp_path / "run_a"), "host": "some-other-node", "pid": dead_pid()}
    assert not lock_is_stale(holder, tmp_path / "run_b")
    assert lock_is_stale({**holder, "host": socket.gethostname()}, tmp_path / "run_b")
