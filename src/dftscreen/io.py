"""Atomic writes of result files.

Every result is written to a temporary file in the destination folder and then
renamed over the destination, so a killed job never leaves a file that looks
finished: the rename is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``destination``; rename it over it on success.

    On any exception the temporary file is removed and ``destination`` is left
    untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file 0600; give results the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(destination: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``destination`` atomically."""
    with atomic_path(destination) as tmp:
        tmp.write_text(text)


def _to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_json(destination: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN/inf become ``null``)."""
    atomic_write_text(destination, json.dumps(_to_jsonable(data), indent=2) + "\n")


def atomic_write_with(
    destination: str | os.PathLike[str], writer: Callable[[Path], None]
) -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``destination``."""
    with atomic_path(destination) as tmp:
        writer(tmp)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)


def read_json_if_exists(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; ``None`` when there is none (a stage that has not run, or was switched off)."""
    return read_json(path) if Path(path).is_file() else None
