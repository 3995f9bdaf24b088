"""Novelty matching at scale: --n-generated structures against --n-known known entries. Not a test.

The known set is synthetic but realistic: prototypes are real structures (the shared
perov_5 perovskites and CrystaLLM outputs when ../shared is present, pymatgen's bundled
structures, ASE's rocksalt / CsCl / zincblende / wurtzite / fluorite / rutile-like
builders), each entry one prototype with its elements substituted (the same number of
distinct elements, drawn from 60), its cell scaled by up to ±3 % and its atoms moved
by up to 0.02 Å. So, as in the Materials Project, most formulas have one or a few
entries and cells range from 1 to ~50 atoms. It is written as a format (a)
ComputedStructureEntry JSON.gz and read back with dftscreen.known (timed: a run reads
it once). Generated structures: half are perturbed, strained copies of known entries
(cell ±3 %, atoms moved up to 0.05 Å, conventional or primitive setting as the
prototype had it), half new substitutions (mostly unknown formulas, some sharing a
formula with a known entry but not its structure).

Each run times two passes in one process with a fresh index folder (dftscreen.known_index):
cold (the JSON parsed, the index built, known entries reduced as needed and saved) and
warm (the index reused: no JSON parsed, the reduced cells loaded), wall and CPU seconds
each, and checks that both give the same verdicts.

    PYTHONPATH=src .venv/bin/python bench/novelty_scale.py --data /tmp/nov --prepare   # build the sets once
    PYTHONPATH=src .venv/bin/python bench/novelty_scale.py --data /tmp/nov --workers 2  # time read + match
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from dftscreen.dedupe import MatchSettings
from dftscreen.known import write_entries_json
from dftscreen.known_index import read_known_set
from dftscreen.novelty import match_against_known

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ELEMENTS = ("Li Na K Rb Cs Be Mg Ca Sr Ba Sc Y Ti Zr Hf V Nb Ta Cr Mo W Mn Fe Co Ni Cu Zn Cd Al Ga In "
            "Si Ge Sn Pb N P As Sb Bi O S Se Te F Cl Br I B C Ag Au Pd Pt Rh Ir Ru La Ce Nd Gd").split()


def prototypes() -> list[Structure]:
    """Real structures to substitute into (deduplicated by formula type and cell)."""
    structures = [AseAtomsAdaptor.get_structure(a) for a in (
        bulk("NaCl", "rocksalt", a=5.6), bulk("CsCl", "cesiumchloride", a=4.1), bulk("ZnS", "zincblende", a=5.4),
        bulk("ZnO", "wurtzite", a=3.25, c=5.2), bulk("CaF2", "fluorite", a=5.46), bulk("Cu", "fcc", a=3.6),
        bulk("Fe", "bcc", a=2.87), bulk("Mg", "hcp", a=3.2, c=5.2), bulk("Si", "diamond", a=5.43),
        bulk("NaCl", "rocksalt", a=5.6, cubic=True),
    )]
    import pymatgen.util

    bundled = Path(pymatgen.util.__file__).parent / "structures"
    for path in sorted(bundled.glob("*.json")):
        structure = Structure.from_file(path)
        if structure.is_ordered and len(structure) <= 60 and "Interface" not in path.name:
            structure.remove_oxidation_states()
            structures.append(structure)
    if SHARED.is_dir():
        from dftscreen.cif_reader import read_structure

        cifs = sorted((SHARED / "reference" / "perov5_sample50").glob("*.cif"))[:20]
        cifs += sorted((SHARED / "generated" / "crystallm").rglob("*.cif"))[::4]
        for cif in cifs:
            try:
                structures.append(read_structure(cif)[0])
            except Exception:
                continue
    return structures


def substituted(proto: dict, mapping: dict[str, str], rng: random.Random, strain: float, move_A: float) -> dict:
    """A prototype's dict with elements renamed, cell scaled and atoms moved (all random, seeded)."""
    item = copy.deepcopy(proto)
    scale = 1 + rng.uniform(-strain, strain)
    matrix = np.array(item["lattice"]["matrix"]) * scale
    item["lattice"] = {"matrix": matrix.tolist(), "pbc": [True, True, True]}
    inverse = np.linalg.inv(matrix)
    for site in item["sites"]:
        site["species"] = [{"element": mapping[s["element"]], "occu": 1} for s in site["species"]]
        site["label"] = site["species"][0]["element"]
        frac = np.array(site["abc"]) + (np.array([rng.uniform(-1, 1) for _ in range(3)]) * move_A) @ inverse
        site["abc"] = frac.tolist()
        site.pop("xyz", None)
        site.pop("properties", None)
    return item


def random_mapping(proto: Structure, rng: random.Random) -> dict[str, str]:
    symbols = sorted({el.symbol for el in proto.composition.elements})
    return dict(zip(symbols, rng.sample(ELEMENTS, len(symbols))))


def build_known(protos: list[Structure], n: int, rng: random.Random) -> list[dict]:
    dicts = [p.as_dict() for p in protos]
    entries = []
    for index in range(n):
        k = rng.randrange(len(protos))
        structure = substituted(dicts[k], random_mapping(protos[k], rng), rng, strain=0.03, move_A=0.02)
        composition: dict[str, float] = {}
        for site in structure["sites"]:
            element = site["species"][0]["element"]
            composition[element] = composition.get(element, 0) + 1
        entries.append({
            "@module": "pymatgen.entries.computed_entries", "@class": "ComputedStructureEntry",
            "energy": -5.0 * len(structure["sites"]), "composition": composition, "entry_id": f"syn-{index}",
            "correction": 0.0, "energy_adjustments": [], "parameters": {}, "data": {}, "structure": structure,
        })
    return entries


def build_generated(protos: list[Structure], known_dicts: list[dict], n: int, rng: random.Random) -> list[dict]:
    generated = []
    for index in range(n):
        if index % 2 == 0:  # a strained, perturbed copy of a known entry
            source = known_dicts[rng.randrange(len(known_dicts))]["structure"]
            identity = {s["species"][0]["element"]: s["species"][0]["element"] for s in source["sites"]}
            generated.append(substituted(source, identity, rng, strain=0.03, move_A=0.05))
        else:  # a new substitution of a prototype
            k = rng.randrange(len(protos))
            generated.append(substituted(protos[k].as_dict(), random_mapping(protos[k], rng), rng, 0.03, 0.05))
    return generated


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the matching workers), s.

    Independent of other load on the machine, unlike the wall time.
    """
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-known", type=int, default=100_000)
    parser.add_argument("--n-generated", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None,
                        help="folder keeping the built sets (built once, reused: --prepare builds only)")
    parser.add_argument("--prepare", action="store_true", help="build the sets into --data and stop")
    parser.add_argument("--first", type=int, default=None, help="match only the first N generated structures")
    parser.add_argument("--index-dir", type=Path, default=None,
                        help="index folder (emptied first; default <data>/known_index)")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="novelty_scale_"))
    known_path = data / f"known_{args.n_known}_seed{args.seed}.json.gz"
    generated_path = data / f"generated_{args.n_generated}_seed{args.seed}.json.gz"
    if not (known_path.is_file() and generated_path.is_file()):
        rng = random.Random(args.seed)
        protos = prototypes()
        print(f"{len(protos)} prototypes, {min(map(len, protos))}-{max(map(len, protos))} atoms")
        known_dicts = build_known(protos, args.n_known, rng)
        write_entries_json(known_dicts, known_path)
        generated_dicts = build_generated(protos, known_dicts, args.n_generated, rng)
        generated_path.write_bytes(gzip.compress(json.dumps(generated_dicts).encode()))
    if args.prepare:
        print(f"sets in {data}")
        return
    generated = [(f"gen{i}", Structure.from_dict(item))
                 for i, item in enumerate(json.loads(gzip.decompress(generated_path.read_bytes())))]
    generated = generated[: args.first]
    index_dir = args.index_dir or data / "known_index"
    shutil.rmtree(index_dir, ignore_errors=True)
    print(f"known set: {known_path.stat().st_size / 1e6:.1f} MB json.gz; index folder {index_dir} (emptied)")
    verdicts = []
    for name in ("cold", "warm"):
        start, cpu_start = time.perf_counter(), cpu_seconds()
        known = read_known_set({"path": str(known_path)}, index_dir=index_dir)
        read_s, read_cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
        start, cpu_start = time.perf_counter(), cpu_seconds()
        result = match_against_known(generated, known, MatchSettings(), workers=args.workers)
        match_s, match_cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
        verdicts.append({sid: (r.novel, r.match_id) for sid, r in result.items()})
        shared = sum(1 for _, s in generated if s.composition.reduced_formula in known.by_formula)
        copies_found = sum(1 for i, (sid, _) in enumerate(generated) if i % 2 == 0 and not result[sid].novel)
        new_matched = sum(1 for i, (sid, _) in enumerate(generated) if i % 2 == 1 and not result[sid].novel)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(index_dir.glob("*.npz")))
        print(f"{name}: known set {len(known)} entries, {len(known.by_formula)} formulas, read in {read_s:.1f} s "
              f"({read_cpu_s:.1f} CPU s); generated {len(generated)}, {shared} share a formula with a known entry")
        print(f"{name}: matched in {match_s:.1f} s with {args.workers} workers ({match_cpu_s:.1f} CPU s); "
              f"read + match {read_s + match_s:.1f} s wall, {read_cpu_s + match_cpu_s:.1f} CPU s")
        print(f"{name}: copies of known entries found not novel: {copies_found} of {(len(generated) + 1) // 2}; "
              f"new substitutions matched to a known entry: {new_matched} of {len(generated) // 2}")
        print(f"{name}: index files after it: {sizes}")
    print(f"cold and warm verdicts and matched ids identical: {verdicts[0] == verdicts[1]}")

if __name__ == "__main__":
    main()
