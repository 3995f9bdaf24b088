"""Formation energies and band gaps of CMR perovskites, ours beside the reference (not run in CI).

Runs the real workflow (local profile) with a preset (default ``standard``) on
perovskites of ../shared/data/reference/perov5_sample50 whose elements all
have an automatic elemental reference, then prints our PBE formation energy
and band gaps beside the CMR values, with the mean absolute differences.

Reference (shared/.../properties.csv): the CMR ABX3 database (Castelli et al.,
Energy Environ. Sci. 5, 5814 (2012)), via the perov_5 split of the CDVAE
repository: ``heat_all`` is CMR's heat of formation (eV/atom, RPBE, against
its own elemental references), ``ind_gap``/``dir_gap`` are GLLB-SC gaps (eV),
which include the derivative discontinuity and are much larger than PBE gaps.
So only the trends are comparable: metals should be metals, insulators
insulators, and formation energies should correlate.

Usage: python bench/validate_properties.py [--preset standard] [--n 10] [--workdir DIR]
(rerunning with the same --workdir continues where it stopped).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from dftscreen.aggregate import table_from_results
from dftscreen.references import NoElementalReference, elemental_reference
from pymatgen.core import Composition

REPO = Path(__file__).resolve().parents[1]
PEROV5 = REPO.parent / "shared" / "data" / "reference" / "perov5_sample50"


def has_all_references(formula: str) -> bool:
    for element in Composition(formula).elements:
        try:
            elemental_reference(element.symbol)
        except NoElementalReference:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/validate_properties"))
    parser.add_argument("--report-only", action="store_true",
                        help="print what has finished so far without running anything")
    args = parser.parse_args()

    reference = pd.read_csv(PEROV5 / "properties.csv")
    usable = reference[reference["formula"].map(has_all_references)].head(args.n)
    workdir = args.workdir
    (workdir / "cifs").mkdir(parents=True, exist_ok=True)
    (workdir / "config").mkdir(exist_ok=True)
    for name in usable["file"]:
        shutil.copy(PEROV5 / name, workdir / "cifs" / name)
    config = {"input": {"cif_dir": "cifs"}, "output_dir": "out", "dft": {"preset": args.preset}}
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--profile", str(REPO / "profiles" / "local")]
    if not args.report_only:
        subprocess.run(command, env=env, check=False)

    ours = table_from_results(workdir / "out")
    ours["file"] = ours["source_file"]
    merged = usable.merge(ours, on="file")
    columns = {
        "formula": "formula",
        "status": "status",
        "formation_energy_eV_per_atom": "Ef ours",
        "heat_all": "Ef CMR",
        "band_gap_eV": "gap PBE",
        "ind_gap": "gap GLLB-SC",
        "direct_band_gap_eV": "dgap PBE",
        "dir_gap": "dgap GLLB-SC",
    }
    shown = merged[list(columns)].rename(columns=columns)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(shown.to_string(index=False))
    ok = merged[merged["status"] == "ok"]
    print(f"\n{len(ok)} of {len(merged)} relaxed; preset {args.preset}")
    if len(ok):
        print(f"mean |Ef ours - Ef CMR| = {(ok['formation_energy_eV_per_atom'] - ok['heat_all']).abs().mean():.3f} eV/atom")
        print(f"mean |gap PBE - gap GLLB-SC| = {(ok['band_gap_eV'] - ok['ind_gap']).abs().mean():.3f} eV")
        metal_agreement = ((ok["band_gap_eV"] == 0) == (ok["ind_gap"] == 0)).mean()
        print(f"metal/insulator verdict agrees for {100 * metal_agreement:.0f} %")


if __name__ == "__main__":
    main()
