"""Reference verdicts: run CrystaLLM's own metric functions on every shared CrystaLLM file; print CSV.

Not part of the package and not run by the tests; it produced
shared_generated_verdicts.csv beside it. Needs a CrystaLLM checkout
(github.com/lantunes/CrystaLLM, commit 8e81a86f9e06) whose crystallm/_metrics.py
and crystallm/_utils.py are importable as package ``crystallm`` from the folder
given as CRYSTALLM_PATH (the rest of the package needs torch, so only those two
files plus an __init__ importing them were used). The calls per file follow
bin/evaluate_cifs.py: is_sensible, then replace_symmetry_operators unless the
symbol is 'P 1', then the individual checks and is_valid(cutoff 1.0); any
exception counts as not valid.

    CRYSTALLM_PATH=/path/to/crystallm_parent python make_reference.py ../shared/data/generated/crystallm
"""

import glob
import os
import sys
import warnings

warnings.filterwarnings("ignore")
sys.path.insert(0, os.environ["CRYSTALLM_PATH"])
# CrystaLLM pins pymatgen 2023; two methods were renamed since. Alias them, change nothing else.
from pymatgen.core.operations import SymmOp
from pymatgen.io.cif import CifParser

SymmOp.as_xyz_string = SymmOp.as_xyz_str
CifParser.from_string = CifParser.from_str
from crystallm import (
    bond_length_reasonableness_score,
    extract_space_group_symbol,
    is_atom_site_multiplicity_consistent,
    is_formula_consistent,
    is_sensible,
    is_space_group_consistent,
    is_valid,
    replace_symmetry_operators,
)

root = sys.argv[1]
print(
    "file,crystallm_evaluated,sensible,multiplicity_consistent,space_group_consistent,formula_consistent,bond_score,valid,error"
)
for f in sorted(glob.glob(os.path.join(root, "**/*.cif"), recursive=True)):
    rel = os.path.relpath(f, root)
    cif = open(f).read()
    row = {"sensible": "", "mult": "", "sg": "", "formula": "", "score": "", "valid": "", "err": ""}
    evaluated = False
    try:
        if not is_sensible(cif):
            raise Exception("CIF not sensible")
        sg = extract_space_group_symbol(cif)
        if sg is not None and sg != "P 1":
            cif = replace_symmetry_operators(cif, sg)
        row["mult"] = is_atom_site_multiplicity_consistent(cif)
        row["sg"] = is_space_group_consistent(cif)
        try:
            row["formula"] = is_formula_consistent(cif)
        except Exception:
            row["formula"] = "error"
        row["score"] = f"{bond_length_reasonableness_score(cif):.4f}"
        row["valid"] = is_valid(cif, bond_length_acceptability_cutoff=1.0)
        evaluated = True
    except Exception as e:
        row["err"] = (type(e).__name__ + ": " + str(e).splitlines()[0] if str(e) else type(e).__name__).replace(
            ",", ";"
        )
        row["valid"] = False
    print(
        f"{rel},{evaluated},{row['sensible']},{row['mult']},{row['sg']},{row['formula']},{row['score']},{row['valid']},{row['err']}"
    )
