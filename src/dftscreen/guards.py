"""Start-up checks of a run's configuration: fail in a few clear lines before any job starts.

Each function raises :class:`ConfigError` (a ``ValueError``) with one sentence
saying what is wrong and what to do, instead of a traceback, a schema dump or
a run that silently ignores a setting.
"""

from __future__ import annotations

import atexit
import difflib
import importlib.util
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dftscreen.inputs import SNAKEMAKE_UNSAFE_PATH
from dftscreen.settings import check_dft_config


class ConfigError(ValueError):
    """A configuration a run cannot start with; the message says why and how to fix it."""


def short_schema_error(error: Exception) -> str:
    """A few lines for a JSON-schema validation error (instead of the ~730 lines of schema it prints).

    ``error`` is Snakemake's WorkflowError raised while handling jsonschema's
    ValidationError (found as its context), or that ValidationError itself;
    anything else is returned as text.
    """
    candidates = [error, error.__cause__, error.__context__, *getattr(error, "args", ())]
    validation = next((c for c in candidates if hasattr(c, "absolute_path") and hasattr(c, "message")), None)
    if validation is None:
        return str(error)
    where = ".".join(str(p) for p in validation.absolute_path) or "(top level)"
    lines = [f"config error at {where}: {validation.message}"]
    description = validation.schema.get("description") if isinstance(validation.schema, dict) else None
    if description:
        lines.append(f"  {where}: {description}")
    lines.append("  every key and its default: workflow/schemas/config.schema.yaml and config/config.yaml")
    return "\n".join(lines)


def check_output_dir(output_dir: str) -> None:
    """Refuse an empty output folder (it would write at the file-system root or the run folder's top).

    Raises:
        ConfigError: ``output_dir`` is empty or only spaces.
    """
    if not str(output_dir).strip():
        raise ConfigError(
            "output_dir is empty: give the folder all results go under, e.g. output_dir: results"
        )


def configured_paths(config: Mapping[str, Any]) -> dict[str, str]:
    """Config key -> path of every folder and file the workflow writes or tracks as a rule's input or output."""
    stability, known = config["stability"], config["known_materials"]
    paths = {
        "output_dir": config["output_dir"],
        "stability.reference_library_dir": stability["reference_library_dir"],
        "stability.reference_cif_dir": stability["reference_cif_dir"],
        "known_materials.database.path": known["database"]["path"],
        "known_materials.training.path": known["training"]["path"],
        "targets.file": config["targets"]["file"],
        "cohorts.manifest": config["cohorts"]["manifest"],
        **{f"stability.elemental_reference_cifs.{e}": cif for e, cif in stability["elemental_reference_cifs"].items()},
    }
    return {key: str(path) for key, path in paths.items() if path}


def check_snakemake_paths(config: Mapping[str, Any]) -> None:
    """Refuse a configured path holding ``{``, ``}``, ``<`` or ``>``: Snakemake reads them as a wildcard or
    a path variable and would stop the run at its first job. (Input CIFs may have such names: the jobs
    read a copy, :func:`dftscreen.inputs.needs_workflow_copy`.)

    Raises:
        ConfigError: naming the key, the path and the characters.
    """
    for key, path in configured_paths(config).items():
        found = sorted(set(SNAKEMAKE_UNSAFE_PATH.findall(path)))
        if found:
            raise ConfigError(
                f"{key} '{path}' holds {' '.join(found)}, which Snakemake reads as a wildcard or path variable in "
                "every path of a rule: rename the folder or file (input CIF files may have such names)"
            )


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_structure_overrides(overrides: dict[str, Any], known_ids: Iterable[str]) -> None:
    """Every ``dft.structure_overrides`` key must be the id of an input structure.

    Raises:
        ConfigError: naming the unknown ids, with the closest existing id.
    """
    known = set(known_ids)
    unknown = [sid for sid in overrides if sid not in known]
    if unknown:
        named = ", ".join(f"'{sid}'{_suggest(sid, known)}" for sid in unknown[:5])
        raise ConfigError(
            f"dft.structure_overrides names {len(unknown)} structure id(s) no input has: {named}; "
            "ids are the results table's structure_id column (a dry run, snakemake -n, lists them)"
        )


def check_target_names(properties: dict[str, Any], known_names: Iterable[str]) -> None:
    """Every ``targets.properties`` key must be a target the workflow knows.

    Raises:
        ConfigError: naming the unknown target and the known ones.
    """
    known = sorted(known_names)
    unknown = [name for name in properties if name not in known]
    if unknown:
        named = ", ".join(f"'{name}'{_suggest(name, known)}" for name in unknown)
        raise ConfigError(f"targets.properties: unknown target {named}; known targets: {', '.join(known)}")


def check_run_config(config: Mapping[str, Any]) -> None:
    """The start-up checks that need the validated config alone (run before any input is listed).

    ``output_dir`` not empty (:func:`check_output_dir`), the DFT settings
    (:func:`check_dft_settings`), the check's bounds (:func:`check_bounds`) and the ML
    model and device (:func:`check_ml_settings`).

    Raises:
        ConfigError: one sentence saying what is wrong.
    """
    check_output_dir(config["output_dir"])
    check_snakemake_paths(config)
    check_dft_settings(config["dft"])
    check_bounds(config["check"])
    check_ml_settings(config["ml"])


def check_dft_settings(dft: Mapping[str, Any]) -> None:
    """The run's merged DFT settings and every ``dft.structure_overrides`` entry are usable.

    Positive cutoff, k-point density, SCF criteria and iteration counts, a smearing
    width that is not negative, known keys in every ``gpaw``/``relax``/``properties``
    section (the closest known key named) and a known preset
    (:func:`dftscreen.settings.check_dft_config`).

    Raises:
        ConfigError: one sentence naming the setting and its place in the config.
    """
    try:
        check_dft_config(dft)
    except (KeyError, ValueError) as exc:
        raise ConfigError(str(exc.args[0]) if exc.args else str(exc)) from None


#: Lower and upper bounds of config section ``check`` a structure must lie between, and their unit.
CHECK_BOUNDS = (
    ("cell_length_min_A", "cell_length_max_A", " Å"),
    ("cell_angle_min_deg", "cell_angle_max_deg", "°"),
)


def check_bounds(check: Mapping[str, Any]) -> None:
    """Each lower bound of the check (cell lengths, cell angles) is below its upper bound.

    Also refuses an angle window outside (0°, 180°) and a longest cell length of 0 Å or
    less: with any of these every structure would be rejected.

    Raises:
        ConfigError: naming both bounds and their values.
    """
    for low, high, unit in CHECK_BOUNDS:
        lower, upper = check[low], check[high]
        if lower >= upper:
            raise ConfigError(
                f"check.{low} ({lower:g}{unit}) must be below check.{high} ({upper:g}{unit}), "
                "or every structure is rejected"
            )
    if check["cell_angle_min_deg"] >= 180 or check["cell_angle_max_deg"] <= 0 or check["cell_length_max_A"] <= 0:
        raise ConfigError(
            "check.cell_angle_min_deg/max_deg must overlap 0-180° and check.cell_length_max_A be above 0 Å, "
            "or every structure is rejected"
        )


#: SevenNet pretrained models whose weights ship in the sevenn wheel (name after ``7net-`` or ``sevennet-``).
SEVENNET_SHIPPED = ("0", "0_11july2024", "0_11jul2024", "0_22may2024", "l3i5", "mf-0")
#: SevenNet pretrained models whose weights sevenn downloads on first use: name -> the checkpoint's
#: path under sevenn's ``pretrained_potentials`` folder (or ``~/.cache/sevennet``, where sevenn also looks).
SEVENNET_DOWNLOADED = {
    "mf-ompa": "SevenNet_MF_ompa/checkpoint_sevennet_mf_ompa.pth",
    "omat": "SevenNet_omat/checkpoint_sevennet_omat.pth",
    "omni": "SevenNet_omni/checkpoint_sevennet_omni.pth",
    "omni-i8": "SevenNet_omni_i8/checkpoint_sevennet_omni_i8.pth",
    "omni-i12": "SevenNet_omni_i12/checkpoint_sevennet_omni_i12.pth",
}
#: Every pretrained model name (any case) ``sevenn.util.pretrained_name_to_path`` resolves;
#: tests/unit/test_config_validation.py holds the two equal. Checked here without importing
#: sevenn (and torch: six seconds) at every Snakemake start.
SEVENNET_MODELS = frozenset(
    f"{head}-{suffix}" for head in ("sevennet", "7net") for suffix in (*SEVENNET_SHIPPED, *SEVENNET_DOWNLOADED)
)
#: torch devices an ML job may name: ``cpu``, ``cuda`` or ``cuda:N``, ``mps``, or SevenNet's ``auto``.
ML_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|mps|auto)$")


def downloaded_sevennet_checkpoint(name: str) -> Path | None:
    """The checkpoint of a SevenNet model sevenn downloads on first use, if it is on disk already.

    Looked for where sevenn itself looks (its package folder, then ``~/.cache/sevennet``);
    the package folder is found without importing sevenn.
    """
    relative = SEVENNET_DOWNLOADED.get(name.lower().split("-", 1)[-1])
    if relative is None:
        return None
    spec = importlib.util.find_spec("sevenn")
    folders = [Path(loc) / "pretrained_potentials" for loc in (spec.submodule_search_locations or [])] if spec else []
    folders.append(Path("~/.cache/sevennet").expanduser())
    return next((folder / relative for folder in folders if (folder / relative).is_file()), None)


def check_ml_settings(ml: Mapping[str, Any]) -> None:
    """With the ML stage on, ``ml.model`` is a usable SevenNet model and ``ml.device`` a torch device.

    The model: a checkpoint file (a relative path is taken from the run folder, as
    the ML job does), a model whose weights ship in the sevenn wheel, or one sevenn
    downloads on first use that is downloaded already (the workflow runs offline). The
    device: a name from a vocabulary (cpu, cuda, cuda:N, mps, auto). Whether the checkpoint
    loads and whether a CUDA device is there needs sevenn and torch (seconds), so the ML
    job finds that out, not the start-up.

    Raises:
        ConfigError: naming the value and the closest known one.
    """
    if not ml.get("enabled", True):
        return
    model = str(ml.get("model", ""))
    if not Path(model).expanduser().is_file():
        _check_sevennet_name(model)
    device = str(ml.get("device", "cpu"))
    if not ML_DEVICE.match(device):
        raise ConfigError(
            f"ml.device '{device}' is not a torch device dftscreen knows{_suggest(device, ('cpu', 'cuda', 'mps'))}: "
            "use cpu, cuda, cuda:N (GPU number N), mps or auto (whether the GPU exists is checked by the ML job)"
        )


def _check_sevennet_name(model: str) -> None:
    """``model`` (not a file) is a SevenNet model name whose weights are on disk (see :func:`check_ml_settings`)."""
    if model.lower() not in SEVENNET_MODELS:
        raise ConfigError(
            f"ml.model '{model}' is neither a SevenNet pretrained model such as 7net-0, 7net-l3i5 or 7net-mf-0 "
            f"nor an existing checkpoint file{_suggest(model.lower(), SEVENNET_MODELS)}; fix it, "
            "or set ml.enabled: false"
        )
    if model.lower().split("-", 1)[1] in SEVENNET_DOWNLOADED and downloaded_sevennet_checkpoint(model) is None:
        raise ConfigError(
            f"ml.model '{model}' is a SevenNet model whose weights sevenn downloads on first use and they are "
            f"not downloaded here (the workflow does not rely on the network): fetch them once with python -c "
            f"\"from sevenn.util import pretrained_name_to_path as p; print(p('{model}'))\" or name a checkpoint file"
        )


def input_manifest(paths: Iterable[str | Path]) -> str:
    """One line per input file: size in bytes, modification time (ns) and path (tab-separated).

    The check job depends on this text written to a file instead of on every
    input file: a changed, added or removed input changes it (and reruns the
    check), while Snakemake no longer lists thousands of inputs in its output.
    """
    lines = []
    for path in sorted({str(p) for p in paths}):
        try:
            stat = os.stat(path)
            lines.append(f"{stat.st_size}\t{stat.st_mtime_ns}\t{path}")
        except OSError:
            lines.append(f"-\t-\t{path}")
    return "".join(f"{line}\n" for line in lines)


# --- the lock of a results folder (issue 28) -------------------------------------------
#: The lock file a running workflow holds in its resolved ``output_dir``.
OUTPUT_LOCK_NAME = ".dftscreen.lock"


def output_lock_path(output_dir: str | Path) -> Path:
    """The lock file of a results folder (``<output_dir>/.dftscreen.lock``, output_dir resolved)."""
    return Path(output_dir).resolve() / OUTPUT_LOCK_NAME


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_output_lock(output_dir: str | Path) -> dict[str, Any] | None:
    """The holder of a results folder's lock (run folder, host, pid); None when there is no lock file.

    A lock file that cannot be read as such (empty, half-written) reads as ``{}``: no live holder.
    """
    try:
        text = output_lock_path(output_dir).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_is_stale(holder: Mapping[str, Any], run_folder: str | Path) -> bool:
    """Whether a lock's holder no longer counts: our own run folder (Snakemake locks that one itself),
    a dead process on this host, or a lock file without a holder. A holder on another host counts as live."""
    if not holder.get("pid") or not holder.get("run_folder"):
        return True
    if os.path.realpath(str(holder["run_folder"])) == os.path.realpath(str(run_folder)):
        return True
    if holder.get("host") == socket.gethostname():
        return not _pid_alive(int(holder["pid"]))
    return False


def live_lock_holder(output_dir: str | Path, run_folder: str | Path) -> dict[str, Any] | None:
    """The lock's holder when another live run folder holds the results folder, else None."""
    holder = read_output_lock(output_dir)
    if holder is None or lock_is_stale(holder, run_folder):
        return None
    return holder


def output_lock_message(output_dir: str | Path, holder: Mapping[str, Any]) -> str:
    """One sentence: which run holds the results folder and what to do."""
    path = output_lock_path(output_dir)
    return (
        f"output_dir {path.parent} is in use by the run in {holder.get('run_folder')} "
        f"(process {holder.get('pid')} on {holder.get('host')}, lock file {path}): wait for it to end or give "
        f"this run another output_dir, and delete the lock file only if that run is no longer going"
    )


def acquire_output_lock(output_dir: str | Path, run_folder: str | Path, pid: int | None = None) -> Path:
    """Take the lock of a results folder for this run folder (released by :func:`release_output_lock`,
    and at the latest when this process exits); a stale lock (:func:`lock_is_stale`) is replaced.

    Raises:
        ConfigError: another live run folder holds it (:func:`output_lock_message`).
    """
    path = output_lock_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_folder": os.path.realpath(str(run_folder)), "host": socket.gethostname(), "pid": pid or os.getpid()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = live_lock_holder(output_dir, run_folder)
            if holder is not None:
                raise ConfigError(output_lock_message(output_dir, holder)) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        atexit.register(release_output_lock, output_dir, run_folder)
        return path
    raise ConfigError(f"could not take the lock {path}: another run keeps replacing it")


def release_output_lock(output_dir: str | Path, run_folder: str | Path) -> None:
    """Remove the results folder's lock if this process of this run folder holds it (else leave it)."""
    holder = read_output_lock(output_dir)
    if not holder:
        return
    ours = os.path.realpath(str(holder.get("run_folder"))) == os.path.realpath(str(run_folder))
    if ours and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        output_lock_path(output_dir).unlink(missing_ok=True)


def warn_if_output_locked(output_dir: str | Path, run_folder: str | Path) -> str | None:
    """The sentence of :func:`output_lock_message` when another live run holds the results folder, else None
    (a dry run only warns, as Snakemake does for its own locked working folder)."""
    holder = live_lock_holder(output_dir, run_folder)
    return None if holder is None else output_lock_message(output_dir, holder)
