import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from dftscreen.io import atomic_path, atomic_write_json, atomic_write_text, read_json


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "deep" / "out.json"
    atomic_write_json(target, {"e": np.float64(-1.5), "v": np.arange(3), "bad": math.nan})
    assert read_json(target) == {"e": -1.5, "v": [0, 1, 2], "bad": None}
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_failed_write_leaves_destination_untouched(tmp_path: Path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_written_files_are_world_readable(tmp_path: Path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "x.txt"
        atomic_write_text(target, "x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
    json.loads('"ok"')
