"""One file must not hold the check job for minutes (issue 28, N5).

Before: one malformed symmetry-operator line ('x,y,z+0.5.5') made the atom count
use the listed sites only, while pymatgen dropped the loop and built the full
cell from the space-group symbol (a 7.5 kB file became 38,304 atoms in 202 s),
and no file's check had a time limit. Now such a file is refused naming the
line, the atoms are counted with the operators pymatgen will apply, and a check
over ``check.max_seconds_per_file`` is stopped and gets a row saying so.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pymatgen.symmetry
import pytest
from pymatgen.io.cif import CifParser

import dftscreen.check_batch as check_batch
from dftscreen.check import CheckSettings, check_structure_file, check_text
from dftscreen.check_batch import WORKER_DIED_REASON, check_all, check_and_deduplicate, timed_out_reason
from dftscreen.cif_reader import (
    TooManyAtomsError,
    expanded_site_count,
    operator_strings,
    parse_cif_block,
    parse_operator,
    read_cif_text,
    space_group_from_number,
)
from dftscreen.inputs import discover_cifs

from conftest import EXAMPLES, TEST_DATA

CORPUS = TEST_DATA / "bad_cifs"
MALFORMED = CORPUS / "malformed_operator.cif"
COLUMNS = ("status", "reason", "dft_ready", "crystallm_valid", "n_sites", "bond_length_score", "duplicate_of")


def _columns(results) -> dict[str, tuple]:
    return {r.source_file: tuple(getattr(r, c) for c in COLUMNS) for r in results}


def fm3m_cif(n_sites: int, operator_tag: str, operators: list[str]) -> str:
    """A CIF declaring F m -3 m (192 operators), ``n_sites`` Si sites at general positions, the given operator loop."""
    rng = np.random.default_rng(5)
    lines = [
        "data_Si",
        "_symmetry_space_group_name_H-M 'F m -3 m'",
        "_symmetry_Int_Tables_number 225",
        *(f"_cell_length_{x} 30.0" for x in "abc"),
        *(f"_cell_angle_{x} 90" for x in ("alpha", "beta", "gamma")),
        "loop_",
        operator_tag,
        *(f"'{op}'" for op in operators),
        "loop_",
        "_atom_site_type_symbol",
        "_atom_site_label",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_occupancy",
    ]
    for i, (x, y, z) in enumerate(rng.uniform(0.02, 0.23, size=(n_sites, 3))):
        lines.append(f"Si Si{i} {x:.5f} {y:.5f} {z:.5f} 1")
    return "\n".join(lines) + "\n"


# --- The malformed operator ------------------------------------------------------------------------


def test_pymatgen_would_build_the_malformed_file_with_the_symbols_192_operators():
    """The premise: pymatgen drops the unreadable loop and applies F m -3 m's 192 operators to the 200 sites."""
    text = MALFORMED.read_text()
    assert len(text.encode()) < 8000
    with pytest.warns(UserWarning):
        block = parse_cif_block(text)
        operators = CifParser.from_str(text).get_symops(block)
    assert len(operators) == 192
    assert expanded_site_count(block, operators) > 30_000


def test_a_malformed_operator_is_refused_naming_it_in_seconds_beside_a_normal_file(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(MALFORMED, folder)
    shutil.copy(CORPUS / "good_rutile.cif", folder)
    items = discover_cifs(folder)
    started = time.monotonic()
    results = {r.source_file: r for r in check_and_deduplicate(items, workers=1, isolate=True)}
    assert time.monotonic() - started < 10
    refused = results["malformed_operator.cif"]
    assert refused.status == "invalid" and not refused.valid and not refused.dft_ready
    assert "symmetry operator 'x,y,z+0.5.5' (line 2 of 2 of the operator loop) is malformed" in refused.reason
    assert refused.n_sites is None  # nothing was built
    good = results["good_rutile.cif"]
    alone = check_structure_file(next(i for i in items if i.relative_path == "good_rutile.cif"))
    assert good.dft_ready and good.valid and good.n_sites == 6
    for column in COLUMNS:
        assert getattr(good, column) == getattr(alone, column), column


@pytest.mark.parametrize("tag", ["_Symmetry_Equiv_Pos_As_XYZ", "_space_group_symop.operation_xyz"])
def test_atoms_are_counted_with_the_operators_pymatgen_applies(tag: str):
    """A loop under a tag pymatgen does not read (other case, CIF2's dotted name): pymatgen builds with the
    symbol's 192 operators, so the count does too, and refuses before building; before, the count used
    the loop's 2 operators and pymatgen built the whole cell."""
    text = fm3m_cif(3, tag, ["x, y, z", "-x, -y, -z"])
    built = len(read_cif_text(text).structure)
    assert built == 3 * 192
    started = time.monotonic()
    with pytest.raises(TooManyAtomsError, match="refused before building it") as refused:
        read_cif_text(text, max_atoms=500)
    assert time.monotonic() - started < 1.0
    assert refused.value.n_atoms == built
    assert f"the full cell has {built} atoms (192 symmetry operator(s) applied to the listed sites)" in str(
        refused.value
    )


def test_sites_near_a_mirror_are_counted_as_pymatgen_builds_them():
    """A raw asymmetric unit rebuilt with F m -3 m: one site lies 0.0007 from the y = z mirror, so its images
    pair up 0.0007 apart, two atoms each for pymatgen (tolerance 1e-4). The count merged them on its 1e-3
    grid (480 atoms), so this 576-atom cell passed a limit of 500 and was built before being refused."""
    text = fm3m_cif(3, "_symmetry_equiv_pos_as_xyz", ["x, y, z"])
    assert "Si Si2 0.10578 0.02951 0.03024 1" in text
    assert len(read_cif_text(text).structure) == 576
    block = parse_cif_block(text)
    assert expanded_site_count(block, list(space_group_from_number(225).symmetry_ops)) == 576
    with pytest.raises(TooManyAtomsError, match="refused before building it") as refused:
        read_cif_text(text, max_atoms=500)
    assert refused.value.n_atoms == 576


def test_a_read_loop_is_counted_with_its_own_operators():
    """The same file with the loop pymatgen reads: its 2 operators are applied, 6 atoms, nothing refused."""
    text = fm3m_cif(3, "_symmetry_equiv_pos_as_xyz", ["x, y, z", "-x, -y, -z"])
    assert len(read_cif_text(text, max_atoms=500).structure) == 6


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x,y,z+0.5.5", "could not convert string to float: '0.5.5'"),
        ("x,y", "2 comma-separated part(s), not 3"),
        ("x,y,z,w", "4 comma-separated part(s), not 3"),
        ("x,x,z", "determinant 0, not ±1"),
        ("a,b,c", "determinant 0, not ±1"),
        ("1/0+x,y,z", "division by zero"),
    ],
)
def test_a_malformed_operator_says_why(text: str, why: str):
    with pytest.raises(ValueError) as error:
        parse_operator(text)
    assert why in str(error.value)
    cif = fm3m_cif(2, "_symmetry_equiv_pos_as_xyz", ["x, y, z", text])
    result = check_text(cif.encode(), "s", "s.cif")
    assert f"symmetry operator '{text}' (line 2 of 2 of the operator loop) is malformed: " in result.reason
    assert why in result.reason


def test_every_operator_of_every_setting_and_as_pymatgen_writes_them_is_read():
    """No sound file is refused: the 1,504 operators of the 752 settings in pymatgen's table (COD's
    spellings), those of pymatgen's CifWriter and common variants all read as operators."""
    table = json.loads((Path(pymatgen.symmetry.__file__).parent / "symm_ops.json").read_text())
    spellings = {op for setting in table for op in setting["symops"]}
    assert len(spellings) > 1000
    for number in (1, 2, 14, 62, 148, 166, 167, 191, 194, 221, 225, 227, 229, 230):
        spellings.update(operator_strings(space_group_from_number(number)))
    spellings.update(("1/2+x, -y, z", "-x+1/2,y,-z", "x-y,x,z+1/6", "X,Y,Z", " -y , x-y , z+2/3 ", "x, y, z+0.5"))
    for text in spellings:
        parse_operator(text)


# --- The time limit --------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="the slow check is injected through forked workers")
def test_a_check_over_the_time_limit_gets_a_row_saying_so(tmp_path: Path, monkeypatch):
    """One file's check never ends: with check.max_seconds_per_file its worker is stopped and replaced, the
    file gets a row saying so and every other file its normal row; before, the job waited for it."""
    folder = tmp_path / "few"
    folder.mkdir()
    for path in EXAMPLES.glob("*.cif"):
        shutil.copy(path, folder / path.name)
    items = discover_cifs(folder)
    expected = _columns(check_all(items))
    real_check = check_batch.check_item

    def slow_check(item, settings, available_elements):
        if item.relative_path == "MgGeO3_perov5_16100.cif":
            time.sleep(300)
        return real_check(item, settings, available_elements)

    monkeypatch.setattr(check_batch, "check_item", slow_check)
    settings = replace(CheckSettings(), max_seconds_per_file=2.0)
    started = time.monotonic()
    results = check_all(items, settings=settings, workers=1, isolate=True)
    assert time.monotonic() - started < 30
    got = _columns(results)
    assert got.keys() == expected.keys()
    stopped = next(r for r in results if r.source_file == "MgGeO3_perov5_16100.cif")
    assert stopped.status == "invalid" and not stopped.valid and not stopped.dft_ready
    assert stopped.reason == timed_out_reason(2.0)
    assert "took longer than check.max_seconds_per_file = 2 s and was stopped" in stopped.reason
    for name in expected:
        if name != "MgGeO3_perov5_16100.cif":
            assert got[name] == expected[name], name
    assert not multiprocessing.active_children()  # the stopped worker and the others are gone


@pytest.mark.skipif(sys.platform != "linux", reason="the slow and killing checks are injected through forked workers")
def test_a_slow_file_and_a_killing_file_cost_their_own_rows_only(tmp_path: Path, monkeypatch):
    """Two workers, 20+ files: one check never ends, another kills its worker; each gets its own row,
    the slow one is not tried again, every other file gets the row of a run without them."""
    folder = tmp_path / "in"
    shutil.copytree(CORPUS, folder)
    for path in EXAMPLES.glob("*.cif"):
        shutil.copy(path, folder / path.name)
    items = discover_cifs(folder)
    assert len(items) >= 16  # two workers are used from 16 files up
    expected = _columns(check_and_deduplicate(items, workers=1))
    real_check = check_batch.check_item
    calls = tmp_path / "slow_calls"

    def slow_or_killing_check(item, settings, available_elements):
        if item.relative_path == "vacuum_slab.cif":
            with open(calls, "a") as handle:
                handle.write("x")
            time.sleep(300)
        if item.relative_path == "NaCl_crystallm_P4nmm.cif":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_check(item, settings, available_elements)

    monkeypatch.setattr(check_batch, "check_item", slow_or_killing_check)
    settings = replace(CheckSettings(), max_seconds_per_file=3.0)
    started = time.monotonic()
    results = check_and_deduplicate(items, settings=settings, workers=2)
    assert time.monotonic() - started < 60
    got = _columns(results)
    assert got.keys() == expected.keys()
    by_name = {r.source_file: r for r in results}
    assert by_name["vacuum_slab.cif"].reason == timed_out_reason(3.0)
    assert by_name["NaCl_crystallm_P4nmm.cif"].reason == WORKER_DIED_REASON
    assert calls.read_text() == "x"  # stopped once, not tried again
    for name in expected:
        if name not in ("vacuum_slab.cif", "NaCl_crystallm_P4nmm.cif"):
            assert got[name] == expected[name], name
    assert not multiprocessing.active_children()
