"""What ML pre-relaxation saves in DFT, and how well the ML verdicts agree with DFT (not run in CI).

One run, on unique small real structures from ``../shared/data/`` (perov_5
perovskites and CrystaLLM outputs), with the ``fast`` DFT preset (``--preset``):

1. the workflow's own check + dedupe and ML stage (``snakemake <out>/ml/dft_ids.txt``:
   SevenNet-0 relaxes every unique structure and the elemental references);
2. per structure, two GPAW relaxations through the workflow's entry point
   (``mpiexec -n RANKS gpaw python -m dftscreen.relax``): from the generated CIF and
   from the ML-relaxed CIF, one after the other, so an interrupted run has pairs;
3. the elemental references with the same preset (``dftscreen.references``), then
   DFT formation energies and energies above the hull of the DFT relaxations started
   from the ML geometry, compared with the ML ones (:func:`dftscreen.summary.ml_agreement`),
   both hulls over the same structures (elements + these generated structures).

Results accumulate in the repository, across sessions and machines: every finished
DFT relaxation (each mode of each structure, each elemental reference) and the ML
values the agreement needs are stored as small JSON records under
``bench/records/ml_savings/`` (:class:`Store`; commit them). A run skips every
relaxation whose stored record has the same structure content hash (SHA-256 of the
generated CIF, or the element), mode and settings hash (DFT settings; for the
ML-started mode also the ML settings and model checkpoint), and recomputes it when
any of them changed. The report (``--report``, and the end of every run) is built
from the stored records only, so it works on a fresh clone without a work folder.
Within a session the work folder keeps the GPAW checkpoints: a killed relaxation
resumes where it stopped. The selection is deterministic (sorted files, the
workflow's deterministic dedupe, a fixed interleaving), so every session relaxes the
same structures in the same order and pairs accumulate.

Usage (in the background, on idle CPU only; rerun the same command to go on):

    nohup nice -n 19 flock /tmp/dftscreen-cpu.lock .venv/bin/python bench/ml_savings.py \\
        --workdir /work/bench_runs/ml_savings > /work/bench_runs/ml_savings.log 2>&1 &
    .venv/bin/python bench/ml_savings.py --report
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PEROVSKITES = SHARED / "reference" / "perov5_sample50"
CRYSTALLM = SHARED / "generated" / "crystallm"
#: Where the records accumulate (committed with the repository).
STORE = REPO / "bench" / "records" / "ml_savings"
#: Version of the record layout; a record of another version is recomputed.
SCHEMA = 1
#: Relaxation modes: DFT from the generated CIF, from the ML-relaxed CIF, and the elemental references.
MODES = ("generated", "ml", "element")
#: Elements left out of the selection: no automatic elemental reference (S, Mn), or started
#: spin-polarised (costly, and the ML model knows nothing of magnetism).
SKIP_ELEMENTS = {"S", "Mn", "V", "Cr", "Fe", "Co", "Ni", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy",
                 "Ho", "Er", "Tm", "Yb"}

if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(data: Any) -> str:
    """SHA-256 (first 16 hex digits) of ``data`` as canonical JSON (key order ignored)."""
    return sha256_bytes(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode())[:16]


#: ``fast`` as it was when the stored records were computed (2026-12-03), before issue 32 gave it the
#: computed cutoff derivative and a coarser mesh for compounds with a gap: keys to set, keys to drop.
#: The bench keeps those settings, so its report finds its records (their settings hash) and new
#: structures are computed like them.
RECORDED_SETTINGS = {
    "fast": ({"gpaw": {"dedecut": "estimate"}}, ("kpt_density_insulator_per_A", "insulator_min_gap_eV")),
}


def dft_settings(preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved DFT settings of ``preset`` as the bench's records were computed with them (what the
    workflow of that day passed to dftscreen.relax; :data:`RECORDED_SETTINGS`)."""
    from dftscreen.settings import deep_merge, resolve_settings

    recorded, dropped = RECORDED_SETTINGS.get(preset, ({}, ()))
    settings = resolve_settings(preset, deep_merge(recorded, overrides or {}))
    for key in dropped:
        if (overrides or {}).get("gpaw", {}).get(key) is None:
            settings["gpaw"].pop(key, None)
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    """The workflow's settings hash (the ``settings_sha256`` column of the results table)."""
    from dftscreen.provenance import settings_hash as workflow_settings_hash

    return workflow_settings_hash(settings)


# --- the store ---------------------------------------------------------------------------------


class Store:
    """The bench's records in the repository: ``<root>/<preset>/dft_<mode>/<id>.json`` per DFT
    relaxation, ``<root>/ml/<id>.json`` and ``<root>/ml_element/<element>.json`` per ML value.

    Every write is atomic (temporary file in the same folder, then ``os.replace``). Units are in the
    field names: seconds, eV, eV/atom, Å³.
    """

    def __init__(self, root: Path, preset: str):
        self.root = Path(root)
        self.preset = preset

    def dft_path(self, mode: str, key: str) -> Path:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (one of {MODES})")
        return self.root / self.preset / f"dft_{mode}" / f"{key}.json"

    def ml_path(self, structure_id: str) -> Path:
        return self.root / "ml" / f"{structure_id}.json"

    def ml_element_path(self, element: str) -> Path:
        return self.root / "ml_element" / f"{element}.json"

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def write(path: Path, record: dict[str, Any]) -> None:
        from dftscreen.io import atomic_write_json

        atomic_write_json(path, record)

    def dft_records(self, mode: str) -> dict[str, dict[str, Any]]:
        """Every stored record of ``mode`` (any settings), by structure id or element."""
        folder = self.root / self.preset / f"dft_{mode}"
        records = {p.stem: self.read(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
        return {k: r for k, r in records.items() if r}

    def records(self, folder: str) -> dict[str, dict[str, Any]]:
        path = self.root / folder
        records = {p.stem: self.read(p) for p in sorted(path.glob("*.json"))} if path.is_dir() else {}
        return {k: r for k, r in records.items() if r}


def record_key(content_sha256: str, mode: str, settings_sha256: str) -> dict[str, Any]:
    """What a stored record must match to be reused."""
    return {"schema": SCHEMA, "content_sha256": content_sha256, "mode": mode, "settings_sha256": settings_sha256}


def matches(record: dict[str, Any] | None, key: dict[str, Any]) -> bool:
    """Whether ``record`` was computed for ``key``; a failed relaxation is never reused (it may
    have failed for a reason of that machine), a finished one (relaxed or not converged) is."""
    from dftscreen import status_codes

    return (record is not None and all(record.get(k) == v for k, v in key.items())
            and record.get("status") != status_codes.FAILED)


def dft_record(key: dict[str, Any], relax_json: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The small record stored for one finished DFT relaxation (``relax_json``: dftscreen.relax's record)."""
    from dftscreen.provenance import dftscreen_version

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    n_atoms = relax_json.get("n_atoms")
    energy = relax_json.get("energy_eV")
    wall_all = relax_json.get("wall_time_all_starts_s")
    return {
        **key,
        **extra,
        "preset": relax_json.get("preset") or extra.get("preset"),
        "dftscreen_version": dftscreen_version(),
        "gpaw_version": relax_json.get("gpaw_version"),
        "status": relax_json.get("status"),
        "reason": relax_json.get("reason", ""),
        "converged": bool(relax_json.get("converged")),
        "formula": relax_json.get("formula"),
        "n_atoms": n_atoms,
        "n_ionic_steps": relax_json.get("n_ionic_steps"),
        "n_starts": relax_json.get("n_starts"),
        # All starts of a resumed relaxation; the last start alone is wall_time_last_start_s.
        "wall_time_s": wall_all if wall_all is not None else relax_json.get("wall_time_s"),
        "wall_time_last_start_s": relax_json.get("wall_time_s"),
        "core_seconds": relax_json.get("core_seconds_all_starts"),
        "mpi_ranks": relax_json.get("mpi_ranks"),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": load,
        "energy_eV": energy,
        "energy_per_atom_eV": relax_json.get("energy_per_atom_eV"),
        "initial_volume_A3": relax_json.get("initial_volume_A3"),
        "final_volume_A3": relax_json.get("final_volume_A3"),
        "max_force_eV_per_A": relax_json.get("max_force_eV_per_A"),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def relax_or_reuse(
    store: Store,
    mode: str,
    key_name: str,
    key: dict[str, Any],
    extra: dict[str, Any],
    run: Callable[[], dict[str, Any] | None],
) -> dict[str, Any] | None:
    """The stored record of this relaxation when it matches ``key``; else ``run()`` it (it returns
    dftscreen.relax's record, or ``None`` when it did not finish) and store what it returned."""
    path = store.dft_path(mode, key_name)
    stored = store.read(path)
    if matches(stored, key):
        return stored
    if stored is not None:
        changed = [k for k, v in key.items() if stored.get(k) != v] or ["status"]
        log(f"stored {mode} record of {key_name} is stale ({', '.join(changed)} changed): recomputing")
    result = run()
    if result is None:
        return None
    record = dft_record(key, result, extra)
    store.write(path, record)
    log(f"stored {path.relative_to(store.root)}")
    return record


# --- selection and the ML stage ------------------------------------------------------------


def candidates(max_sites: int, max_sites_generated: int = 8, n_perovskites: int = 10) -> list[tuple[str, Path]]:
    """(name, CIF) of small real structures: the first perovskites and every small CrystaLLM output
    (most are duplicates of each other, which the check stage's dedupe removes)."""
    from dftscreen.cif_reader import read_structure

    def small(path: Path, max_sites: int = max_sites) -> bool:
        try:
            # The workflow's reader: raw CrystaLLM output is rebuilt from its declared space group.
            structure, _ = read_structure(path)
        except Exception:
            return False
        return len(structure) <= max_sites and not {el.symbol for el in structure.composition} & SKIP_ELEMENTS

    perovskites = [(f"perov5__{p.stem}", p) for p in sorted(PEROVSKITES.glob("*.cif")) if small(p)][:n_perovskites]
    generated = [(f"crystallm__{'__'.join(p.relative_to(CRYSTALLM).with_suffix('').parts)}", p)
                 for p in sorted(CRYSTALLM.rglob("*.cif")) if small(p, max_sites_generated)]
    return perovskites + generated


def prepare(workdir: Path, max_sites: int, ranks: int, preset: str) -> None:
    cifs = workdir / "cifs"
    if not cifs.is_dir():
        cifs.mkdir(parents=True)
        for name, path in candidates(max_sites):
            shutil.copy(path, cifs / f"{name}.cif")
    config = {
        "input": {"cif_dir": "cifs"},
        "output_dir": "out",
        "dft": {"preset": preset, "resources": {"max_tasks": ranks}},
        "ml": {"screen_e_above_hull_eV_per_atom": None},
    }
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def run_ml_stage(workdir: Path) -> None:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--cores", "1", "--keep-going", "--rerun-incomplete",
               "out/ml/dft_ids.txt"]
    log("check + ML stage: " + " ".join(command[2:]))
    subprocess.run(command, check=True, env=mpi_env())


def mpi_env() -> dict[str, str]:
    paths = f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=paths)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def selected_ids(valid_ids: list[str], n: int) -> list[str]:
    """The first ``n`` of the unique structures, perovskites and CrystaLLM outputs alternating, each
    source sorted by id: the same ids in the same order on every machine (a larger ``n`` only appends)."""
    perov = sorted(s for s in valid_ids if s.startswith("perov5"))
    crystallm = sorted(s for s in valid_ids if s.startswith("crystallm"))
    mixed = []
    for i in range(max(len(crystallm), len(perov))):
        mixed += [x[i] for x in (perov, crystallm) if i < len(x)]
    return mixed[:n]


def source_cif(workdir: Path, structure_id: str) -> Path:
    """The input CIF of ``structure_id`` (ids are not always file names: the check appends a hash of the
    relative path to a name it cannot use as written, e.g. one with a double underscore)."""
    return workdir / "cifs" / _source_files(workdir)[structure_id]


@functools.lru_cache(maxsize=4)
def _source_files(workdir: Path) -> dict[str, str]:
    from dftscreen.layout import ResultsLayout

    checks = json.loads(Path(ResultsLayout.of(workdir / "out").checks_table).read_text())
    return {row["structure_id"]: row["source_file"] for row in checks}


def store_ml_values(store: Store, workdir: Path, ids: list[str]) -> dict[str, Any]:
    """Store the ML values of ``ids`` and of their elements from this run's ML stage, unless a record of
    the same input, ML settings and model is stored (it is kept). Returns how the fresh ML values compare
    with the stored ones (whether the ML stage is deterministic across sessions)."""
    from dftscreen.columns import ML_E_HULL_COLUMN_NO_PHASES, ML_FORMATION_COLUMN
    from dftscreen.io import read_json
    from dftscreen.layout import ResultsLayout

    layout = ResultsLayout.of(workdir / "out")
    screen_path = Path(layout.ml_screen)
    verdicts = read_json(screen_path)["structures"] if screen_path.is_file() else {}
    comparison: dict[str, Any] = {"structures": {}, "elements": {}}

    def keep_or_store(path: Path, fresh: dict[str, Any], name: str, group: str) -> None:
        stored = store.read(path)
        if stored is not None and stored.get("fingerprint") == fresh["fingerprint"]:
            comparison[group][name] = {
                "energy_per_atom_fresh_minus_stored_meV": None if None in (
                    fresh.get("energy_per_atom_eV"), stored.get("energy_per_atom_eV"))
                else 1000 * (fresh["energy_per_atom_eV"] - stored["energy_per_atom_eV"]),
                "final_volume_fresh_minus_stored_A3": None if None in (
                    fresh.get("final_volume_A3"), stored.get("final_volume_A3"))
                else fresh["final_volume_A3"] - stored["final_volume_A3"],
                "n_steps_fresh_stored": [fresh.get("n_steps"), stored.get("n_steps")],
                "same_relaxed_cif": fresh.get("relaxed_cif_sha256") == stored.get("relaxed_cif_sha256"),
            }
            return
        store.write(path, fresh)

    fields = ("structure_id", "element", "fingerprint", "ml_model", "ml_package", "ml_package_version",
              "ml_checkpoint_file", "ml_checkpoint_sha256", "ml_settings", "status", "reason", "converged",
              "formula", "n_atoms", "n_steps", "energy_eV", "energy_per_atom_eV", "initial_energy_per_atom_eV",
              "initial_volume_A3", "final_volume_A3", "wall_time_s", "usable_as_dft_start", "geometry_note")
    for sid in ids:
        path = Path(layout.ml_record(sid))
        if not path.is_file():
            continue
        record = read_json(path)
        fresh = {k: record.get(k) for k in fields if k in record}
        relaxed = Path(layout.ml_relaxed_cif(sid))
        fresh["relaxed_cif_sha256"] = sha256_bytes(relaxed.read_bytes()) if relaxed.is_file() else None
        fresh["source_cif_sha256"] = sha256_bytes(source_cif(workdir, sid).read_bytes())
        verdict = verdicts.get(sid, {})
        # The workflow's values: hull over the elements and every unique structure of this run.
        for column in (ML_FORMATION_COLUMN, ML_E_HULL_COLUMN_NO_PHASES):
            fresh[column] = verdict.get(column)
        fresh["dftscreen_version"] = _version()
        keep_or_store(store.ml_path(sid), fresh, sid, "structures")
    references_path = Path(layout.ml_references)
    references = read_json(references_path)["elements"] if references_path.is_file() else []
    needed = {el for sid in ids for el in _elements(store.read(store.ml_path(sid)) or {})}
    for record in references:
        if record.get("element") in needed:
            fresh = {k: record.get(k) for k in fields if k in record}
            fresh["dftscreen_version"] = _version()
            keep_or_store(store.ml_element_path(record["element"]), fresh, record["element"], "elements")
    diffs = [abs(c["energy_per_atom_fresh_minus_stored_meV"]) for group in comparison.values()
             for c in group.values() if c["energy_per_atom_fresh_minus_stored_meV"] is not None]
    comparison["n_compared"] = len(diffs)
    comparison["max_abs_energy_difference_meV_per_atom"] = max(diffs) if diffs else None
    comparison["n_same_relaxed_cif"] = sum(c["same_relaxed_cif"] for c in comparison["structures"].values())
    return comparison


def _version() -> str:
    from dftscreen.provenance import dftscreen_version

    return dftscreen_version()


def _elements(record: dict[str, Any]) -> list[str]:
    from pymatgen.core import Composition

    return [el.symbol for el in Composition(record["formula"]).elements] if record.get("formula") else []


# --- the DFT relaxations -------------------------------------------------------------------------


def gpaw(module: str, args: list[str], ranks: int, logfile: Path) -> float:
    """Run one GPAW entry point under MPI; returns the process wall time (s)."""
    command = ["mpiexec", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m", "gpaw", "python",
               "-m", module, *args]
    logfile.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(logfile, "a") as handle:
        subprocess.run(command, env=mpi_env(), stdout=handle, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - start


def gpaw_relax(folder: Path, module: str, args: list[str], ranks: int, label: str) -> dict[str, Any] | None:
    """dftscreen.relax's record in ``folder`` (work folder of this session): run it unless it exists.
    A killed run leaves no record but its GPAW checkpoint, from which the next call resumes."""
    from dftscreen.io import atomic_write_json

    record = folder / "relax.json"
    if not record.is_file():
        log(f"DFT {label}")
        seconds = gpaw(module, [*args, "--out-json", str(record), "--out-cif", str(folder / "relaxed.cif"),
                                "--workdir", str(folder)], ranks, folder / "job.log")
        if record.is_file():
            data = json.loads(record.read_text())
            data["process_wall_time_s"] = seconds
            atomic_write_json(record, data)
    return json.loads(record.read_text()) if record.is_file() else None


class Bench:
    """One session of the bench: the store, the work folder, the DFT settings and the MPI ranks."""

    def __init__(self, store: Store, workdir: Path, preset: str, ranks: int,
                 relax_function: Callable[..., dict[str, Any] | None] = gpaw_relax,
                 overrides: dict[str, Any] | None = None):
        self.store, self.workdir, self.preset, self.ranks = store, workdir, preset, ranks
        self.settings = dft_settings(preset, overrides)
        self.settings_json = json.dumps(self.settings, sort_keys=True)
        self.dft_settings_sha256 = settings_hash(self.settings)
        self.relax_function = relax_function

    def structure(self, mode: str, sid: str, source_cif: Path, start_cif: Path,
                  ml_record: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """DFT relaxation of ``sid`` from ``start_cif`` (the generated ``source_cif`` or its ML-relaxed
        geometry): the stored record, or a new relaxation. The ML-started one is keyed also on the ML
        settings and model that made its start (``ml_record``)."""
        settings_sha256 = self.dft_settings_sha256
        extra: dict[str, Any] = {"structure_id": sid, "source_cif": source_cif.name, "preset": self.preset,
                                 "dft_settings_sha256": self.dft_settings_sha256}
        if mode == "ml":
            ml_record = ml_record or {}
            ml_part = {"ml_settings": ml_record.get("ml_settings"),
                       "ml_checkpoint_sha256": ml_record.get("ml_checkpoint_sha256")}
            settings_sha256 = sha256_json({"dft": self.settings, **ml_part})
            extra.update(ml_part, ml_model=ml_record.get("ml_model"),
                         start_cif_sha256=sha256_bytes(start_cif.read_bytes()))
        key = record_key(sha256_bytes(source_cif.read_bytes()), mode, settings_sha256)
        # One folder per settings: a GPAW checkpoint of other settings is never resumed.
        folder = self.workdir / "dft" / settings_sha256 / mode / sid
        return relax_or_reuse(self.store, mode, sid, key, extra, lambda: self.relax_function(
            folder, "dftscreen.relax", ["--structure-id", sid, "--cif", str(start_cif),
                                        "--settings", self.settings_json],
            self.ranks, f"relax {sid} from the {mode} geometry"))

    def element(self, element: str) -> dict[str, Any] | None:
        """DFT elemental reference (``dftscreen.references``, its automatic structure): stored or new."""
        key = record_key(sha256_bytes(f"element:{element}".encode()), "element", self.dft_settings_sha256)
        extra = {"structure_id": f"element_{element}", "element": element, "preset": self.preset,
                 "dft_settings_sha256": self.dft_settings_sha256}
        folder = self.workdir / "dft" / self.dft_settings_sha256 / "element" / element
        return relax_or_reuse(self.store, "element", element, key, extra, lambda: self.relax_function(
            folder, "dftscreen.references", ["--element", element, "--structure-id", f"element_{element}",
                                             "--settings", self.settings_json],
            self.ranks, f"elemental reference {element}"))

    def run(self, ids: list[str], source_cif: Callable[[str], Path], ml_cif: Callable[[str], Path],
            references: bool = True, on_progress: Callable[[], None] = lambda: None) -> None:
        """Both relaxations of every id in order, then the elemental references of the ML-started ones."""
        for sid in ids:
            self.structure("generated", sid, source_cif(sid), source_cif(sid))
            start = ml_cif(sid)
            if start.is_file():
                self.structure("ml", sid, source_cif(sid), start, self.store.read(self.store.ml_path(sid)))
            else:
                log(f"{sid}: no usable ML geometry, no ML-started DFT")
            on_progress()
        if references:
            for element in self.elements_needed(ids):
                self.element(element)
                on_progress()

    def elements_needed(self, ids: list[str]) -> list[str]:
        """Elements of the stored ML-started relaxations of ``ids``, in order of first need."""
        records = self.store.dft_records("ml")
        return list(dict.fromkeys(el for sid in ids if sid in records for el in _elements(records[sid])))


# --- the report (stored records only) -------------------------------------------------------------


def report(store: Store, dft_settings_sha256: str) -> dict[str, Any]:
    """Savings over the finished pairs, final-energy differences and ML-vs-DFT agreement, from the
    stored records of ``store``'s preset with these DFT settings (records of other settings are counted
    as stale and left out)."""
    import pandas as pd
    from pymatgen.core import Composition

    from dftscreen import ml_hull, status_codes
    from dftscreen.columns import ML_E_HULL_COLUMN_NO_PHASES, ML_FORMATION_COLUMN
    from dftscreen.stability import EnergyRecord, chemical_potentials, formation_energy_per_atom, hull_analysis
    from dftscreen.summary import ml_agreement

    def current(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in records.items()
                if r.get("dft_settings_sha256") == dft_settings_sha256 and r.get("schema") == SCHEMA}

    all_records = {mode: store.dft_records(mode) for mode in MODES}
    dft = {mode: current(records) for mode, records in all_records.items()}
    ml_records = store.records("ml")
    ml_elements = store.records("ml_element")
    rows = []
    for sid in sorted(set(dft["generated"]) | set(dft["ml"])):
        ml_record = ml_records.get(sid, {})
        row: dict[str, Any] = {"structure_id": sid, "formula": ml_record.get("formula"),
                               "ml_optimizer_steps": ml_record.get("n_steps"),
                               "ml_wall_time_s": ml_record.get("wall_time_s")}
        if ml_record.get("initial_volume_A3"):
            row["ml_volume_change_pct"] = 100 * (ml_record["final_volume_A3"] / ml_record["initial_volume_A3"] - 1)
        if ml_record.get("initial_energy_per_atom_eV") is not None and ml_record.get("energy_per_atom_eV") is not None:
            row["ml_energy_drop_meV_per_atom"] = 1000 * (ml_record["initial_energy_per_atom_eV"]
                                                         - ml_record["energy_per_atom_eV"])
        for mode in ("generated", "ml"):
            record = dft[mode].get(sid, {})
            prefix = f"dft_from_{mode}"
            row["formula"] = row["formula"] or record.get("formula")
            row[f"{prefix}_status"] = record.get("status")
            row[f"{prefix}_ionic_steps"] = record.get("n_ionic_steps")
            row[f"{prefix}_wall_time_s"] = record.get("wall_time_s")
            row[f"{prefix}_energy_per_atom_eV"] = record.get("energy_per_atom_eV")
            row[f"{prefix}_volume_A3"] = record.get("final_volume_A3")
            row[f"{prefix}_load_average_1min"] = record.get("load_average_1min_at_end")
            row[f"{prefix}_cpu_count"] = record.get("cpu_count")
        if sid in dft["ml"]:
            # False when the ML-started DFT ran in another session than the stored ML record and the ML
            # stage gave another geometry (the report's ML values are then not those of its start).
            row["dft_started_from_stored_ml_geometry"] = (
                dft["ml"][sid].get("start_cif_sha256") == ml_record.get("relaxed_cif_sha256"))
        e_generated, e_ml = row["dft_from_generated_energy_per_atom_eV"], row["dft_from_ml_energy_per_atom_eV"]
        if e_generated is not None and e_ml is not None:
            row["final_energy_ml_start_minus_generated_start_meV_per_atom"] = 1000 * (e_ml - e_generated)
        rows.append(row)
    columns = ["structure_id", "dft_from_generated_wall_time_s", "dft_from_ml_wall_time_s"]
    table = pd.DataFrame(rows, columns=None if rows else columns)
    pairs = table.dropna(subset=columns[1:])
    result: dict[str, Any] = {
        "store": str(store.root), "preset": store.preset, "dft_settings_sha256": dft_settings_sha256,
        "n_structures_with_a_record": len(table), "n_pairs_finished": int(len(pairs)),
        "n_stale_records": sum(len(all_records[m]) - len(dft[m]) for m in MODES),
    }
    if len(pairs):
        result.update(
            dft_wall_time_s_without_ml=float(pairs["dft_from_generated_wall_time_s"].sum()),
            dft_wall_time_s_with_ml=float(pairs["dft_from_ml_wall_time_s"].sum()),
            ml_wall_time_s=float(pairs["ml_wall_time_s"].sum()),
            wall_time_ratio_with_over_without=float(
                pairs["dft_from_ml_wall_time_s"].sum() / pairs["dft_from_generated_wall_time_s"].sum()),
            ionic_steps_ratio_with_over_without=float(
                pairs["dft_from_ml_ionic_steps"].sum() / pairs["dft_from_generated_ionic_steps"].sum()),
            max_abs_final_energy_difference_meV_per_atom=float(
                pairs["final_energy_ml_start_minus_generated_start_meV_per_atom"].abs().max()),
        )
        result["n_pairs_ml_start_not_the_stored_ml_geometry"] = int(
            (~pairs["dft_started_from_stored_ml_geometry"].astype(bool)).sum())
        # Wall times are only comparable when nothing else ran: the bench's own ranks make a load of
        # about cpu_count; a pair counts as quiet when both halves ended below cpu_count + 0.5.
        quiet = pairs[pairs.apply(quiet_pair, axis=1)]
        result["n_quiet_pairs"] = int(len(quiet))
        if len(quiet):
            result["wall_time_ratio_with_over_without_quiet_pairs"] = float(
                quiet["dft_from_ml_wall_time_s"].sum() / quiet["dft_from_generated_wall_time_s"].sum())
            result["ionic_steps_ratio_with_over_without_quiet_pairs"] = float(
                quiet["dft_from_ml_ionic_steps"].sum() / quiet["dft_from_generated_ionic_steps"].sum())
    result["pairs"] = pairs.to_dict(orient="records")
    result["start_geometry_rules"] = start_geometry_rules(result["pairs"])

    # Agreement: DFT (started from the ML geometry) and ML hulls over the same structures and elements.
    dft_ok = {sid: r for sid, r in dft["ml"].items() if r.get("status") == status_codes.RELAXED}
    elements = sorted({el for r in dft_ok.values() for el in _elements(r)})
    dft_elements = [EnergyRecord(el, Composition(r["formula"]), r["energy_eV"])
                    for el, r in dft["element"].items() if el in elements and r.get("status") == status_codes.RELAXED]
    covered = {e.name for e in dft_elements} & set(ml_elements)
    compared = {sid: r for sid, r in dft_ok.items() if set(_elements(r)) <= covered and sid in ml_records}
    energies = [EnergyRecord(sid, Composition(r["formula"]), r["energy_eV"]) for sid, r in compared.items()]
    hull = hull_analysis(energies, [e for e in dft_elements if e.name in covered])
    mu = chemical_potentials([e for e in dft_elements if e.name in covered])
    ml_refs = {"elements": [ml_elements[el] for el in sorted(covered)], "phases": []}
    ml_screen = ml_hull.screen(list(compared), {sid: ml_records[sid] for sid in compared}, ml_refs, None)
    agreement_rows = []
    for energy in energies:
        verdict = ml_screen["structures"][energy.name]
        agreement_rows.append({
            "structure_id": energy.name, "status": status_codes.OK,
            "ml_model": ml_records[energy.name].get("ml_model"),
            "formation_energy_eV_per_atom": formation_energy_per_atom(energy, mu),
            "e_above_hull_vs_generated_only_eV_per_atom": hull[energy.name].get("e_above_hull_eV_per_atom"),
            ML_FORMATION_COLUMN: verdict.get(ML_FORMATION_COLUMN),
            ML_E_HULL_COLUMN_NO_PHASES: verdict.get(ML_E_HULL_COLUMN_NO_PHASES),
        })
    result["agreement_rows"] = agreement_rows
    result["agreement"] = (
        ml_agreement(pd.DataFrame(agreement_rows), stable_threshold_eV_per_atom=0.1) if agreement_rows else None
    )
    result["elements_needed"] = elements
    result["elements_done"] = sorted(covered)
    return result


#: Thresholds of the start-geometry rules :func:`start_geometry_rules` compares: ML energy drop (meV/atom)
#: and |ML volume change| (%).
START_RULE_THRESHOLDS = {"ml_energy_drop_meV_per_atom": (0, 5, 10, 20, 50, 100, 200),
                         "ml_volume_change_pct": (0, 1, 2, 3, 5, 7)}
START_RULE_LABELS = {"ml_energy_drop_meV_per_atom": "ML energy drop (meV/atom)",
                     "ml_volume_change_pct": "ML volume change, either sign (%)"}


def start_geometry_rules(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DFT ionic steps and wall time over the pairs if DFT started from the ML geometry only when the ML
    relaxation moved the structure beyond a threshold (its energy drop, or |volume change|), else from
    the generated one (issue 32, item 3): both halves of every pair are measured, so each rule's total
    is a sum of measured relaxations. ``never`` and ``always`` are the two ends."""
    def total(uses_ml: Any) -> dict[str, float]:
        chosen = ["ml" if uses_ml(p) else "generated" for p in pairs]
        return {"dft_ionic_steps": float(sum(p[f"dft_from_{c}_ionic_steps"] for p, c in zip(pairs, chosen))),
                "dft_wall_time_s": float(sum(p[f"dft_from_{c}_wall_time_s"] for p, c in zip(pairs, chosen))),
                "n_from_ml": chosen.count("ml")}

    rules = [{"rule": "never (generated geometry)", **total(lambda p: False)},
             {"rule": "always (ML geometry)", **total(lambda p: True)}]
    for column, thresholds in START_RULE_THRESHOLDS.items():
        for threshold in thresholds:
            def beyond(p: dict[str, Any], column: str = column, threshold: float = threshold) -> bool:
                value = p.get(column)
                return value is not None and value == value and abs(value) > threshold
            rules.append({"rule": f"{START_RULE_LABELS[column]} > {threshold:g}", **total(beyond)})
    return rules


def quiet_pair(pair: Any) -> bool:
    """True when both DFT relaxations of a pair ended with a 1-minute load below cores + 0.5
    (nothing but the bench's own ranks ran then; the load is sampled at the end only)."""
    for mode in ("generated", "ml"):
        load, cores = pair.get(f"dft_from_{mode}_load_average_1min"), pair.get(f"dft_from_{mode}_cpu_count")
        if load is None or cores is None or load != load or cores != cores or load >= cores + 0.5:
            return False
    return True


def markdown(result: dict[str, Any]) -> str:
    """The per-structure table of finished pairs, for bench/README.md."""
    def number(value: Any, spec: str) -> str:
        return "–" if value is None or value != value else format(value, spec)

    lines = ["| structure | formula | ML steps | ML s | ML ΔV % | DFT steps without / with | DFT s without / with "
             "| ΔE with - without (meV/atom) | load at end without / with |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in result["pairs"]:
        lines.append(
            f"| {p['structure_id']} | {p['formula']} | {number(p.get('ml_optimizer_steps'), '.0f')} "
            f"| {number(p.get('ml_wall_time_s'), '.1f')} | {number(p.get('ml_volume_change_pct'), '+.1f')} "
            f"| {p['dft_from_generated_ionic_steps']:.0f} / {p['dft_from_ml_ionic_steps']:.0f} "
            f"| {p['dft_from_generated_wall_time_s']:.0f} / {p['dft_from_ml_wall_time_s']:.0f} "
            f"| {number(p.get('final_energy_ml_start_minus_generated_start_meV_per_atom'), '+.2f')} "
            f"| {number(p.get('dft_from_generated_load_average_1min'), '.1f')} / "
            f"{number(p.get('dft_from_ml_load_average_1min'), '.1f')} |")
    return "\n".join(lines)


def write_report(store: Store, dft_settings_sha256: str, workdir: Path | None) -> dict[str, Any]:
    """Build the report from the store; write it to ``<workdir>/report.json`` when there is a work folder."""
    from dftscreen.io import atomic_write_text

    result = report(store, dft_settings_sha256)
    if workdir is not None:
        atomic_write_text(workdir / "report.json", json.dumps(result, indent=1, default=str) + "\n")
    log(f"report: {result['n_pairs_finished']} pairs finished ({result['n_structures_with_a_record']} structures "
        f"with a record, {result['n_stale_records']} stale records left out)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench_runs/ml_savings"),
                        help="work folder of this session (GPAW checkpoints, ML stage); not needed by --report")
    parser.add_argument("--store", type=Path, default=STORE, help="where the records accumulate (default: %(default)s)")
    parser.add_argument("--preset", default="fast", help="DFT preset (default fast; test only for a smoke run)")
    parser.add_argument("--n", type=int, default=12, help="unique structures to relax (at least 10)")
    parser.add_argument("--max-sites", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks per GPAW job")
    parser.add_argument("--report", action="store_true", help="only print the report of the stored records")
    parser.add_argument("--references-only", action="store_true",
                        help="only the DFT elemental references of the stored ML-started relaxations of the "
                        "selected structures (in order of first need), e.g. in a second process beside a running "
                        "bench; stored ones are skipped")
    args = parser.parse_args(argv)

    store = Store(args.store.resolve(), args.preset)
    if args.report:
        result = write_report(store, settings_hash(dft_settings(args.preset)), None)
    else:
        from dftscreen.layout import ResultsLayout

        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        bench = Bench(store, workdir, args.preset, args.ranks)
        if not args.references_only:
            prepare(workdir, args.max_sites, args.ranks, args.preset)
            run_ml_stage(workdir)
        layout = ResultsLayout.of(workdir / "out")
        ids = selected_ids(Path(layout.valid_ids).read_text().split(), args.n)
        log(f"{len(ids)} unique structures: {', '.join(ids)}")
        if not args.references_only:
            comparison = store_ml_values(store, workdir, ids)
            (workdir / "ml_fresh_vs_stored.json").write_text(json.dumps(comparison, indent=1))
            log(f"ML stage of this session vs the stored ML records: {comparison['n_compared']} compared, "
                f"max |ΔE| {comparison['max_abs_energy_difference_meV_per_atom']} meV/atom, "
                f"{comparison['n_same_relaxed_cif']} identical relaxed CIFs")
        done = {mode: sum(sid in bench.store.dft_records(mode) for sid in ids) for mode in ("generated", "ml")}
        log(f"stored before this session (any settings): {done}")
        if args.references_only:
            for element in bench.elements_needed(ids):
                bench.element(element)
        else:
            bench.run(ids, lambda sid: source_cif(workdir, sid),
                      lambda sid: Path(layout.ml_relaxed_cif(sid)),
                      on_progress=lambda: write_report(store, bench.dft_settings_sha256, workdir))
        result = write_report(store, bench.dft_settings_sha256, workdir)
    hidden = ("pairs", "agreement_rows", "start_geometry_rules")
    print(json.dumps({k: v for k, v in result.items() if k not in hidden}, indent=1))
    print(markdown(result))
    print("\n| DFT starts from the ML geometry when | from ML | DFT ionic steps | DFT wall time s |\n|---|---|---|---|")
    for rule in result.get("start_geometry_rules", []):
        print(f"| {rule['rule']} | {rule['n_from_ml']} | {rule['dft_ionic_steps']:.0f} "
              f"| {rule['dft_wall_time_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
