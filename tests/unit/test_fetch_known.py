"""`dftscreen known-phases fetch` without network: systems asked for, format (a) written, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.ase import AseAtomsAdaptor

from dftscreen import cli
from dftscreen.config import read_run_config, with_defaults
from dftscreen.fetch_known import FetchError, fetch_entries, fetch_known_phases, maximal_systems, run_systems
from dftscreen.known_index import read_known_set

from conftest import EXAMPLES


def entry(formula_bulk: tuple, energy: float, entry_id: str) -> ComputedStructureEntry:
    return ComputedStructureEntry(AseAtomsAdaptor.get_structure(bulk(*formula_bulk[:2], a=formula_bulk[2])),
                                  energy, entry_id=entry_id)


class FakeRester:
    """Stands in for mp_api's MPRester: entries per element set, records what was asked."""

    ENTRIES = {
        frozenset({"Na"}): [entry(("Na", "bcc", 4.23), -1.3, "mp-127")],
        frozenset({"Na", "Cl"}): [entry(("NaCl", "rocksalt", 5.64), -6.8, "mp-22862")],
    }

    def __init__(self, api_key: str):
        self.api_key = api_key
        self.asked: list[list[str]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_entries_in_chemsys(self, elements: list[str]):
        self.asked.append(elements)
        return [e for system, found in self.ENTRIES.items() if system <= set(elements) for e in found]


def run_folder(tmp_path: Path, names: list[str]) -> Path:
    (tmp_path / "cifs").mkdir()
    for name in names:
        shutil.copy(EXAMPLES / name, tmp_path / "cifs" / name)
    (tmp_path / "config").mkdir()
    config = {"input": {"cif_dir": "cifs"}, "output_dir": "out"}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_systems_are_the_maximal_ones_of_the_inputs(tmp_path: Path):
    assert maximal_systems([{"Na", "Cl"}, {"Na"}, {"Ti", "O"}, {"O"}]) == [("Cl", "Na"), ("O", "Ti")]
    folder = run_folder(tmp_path, ["NaCl_crystallm_P4nmm.cif", "ScBN2O_perov5_6130.cif", "broken_truncated.cif"])
    assert run_systems(read_run_config(folder / "config" / "config.yaml"), folder) == [
        ("B", "N", "O", "Sc"), ("Cl", "Na")]
    # Once checked, the check table's dft_ready structures decide.
    (folder / "out" / "check").mkdir(parents=True)
    (folder / "out" / "check" / "checks.json").write_text(json.dumps([
        {"structure_id": "a", "reduced_formula": "NaCl", "dft_ready": True},
        {"structure_id": "b", "reduced_formula": "ScBN2O", "dft_ready": False}]))
    assert run_systems(with_defaults({"output_dir": "out"}), folder) == [("Cl", "Na")]


def test_fetch_writes_format_a_with_each_entry_once(tmp_path: Path):
    folder = run_folder(tmp_path, ["NaCl_crystallm_P4nmm.cif"])
    made = []

    def factory(key):
        made.append(FakeRester(key))
        return made[-1]

    systems, count = fetch_known_phases(read_run_config(folder / "config" / "config.yaml"),
                                        folder / "known" / "mp.json.gz", api_key="secret", run_folder=folder,
                                        rester_factory=factory)
    assert systems == [("Cl", "Na")] and count == 2
    assert made[0].api_key == "secret" and made[0].asked == [["Cl", "Na"]]
    known = read_known_set({"path": str(folder / "known" / "mp.json.gz")})
    assert sorted(e.entry_id for e in known.entries) == ["mp-127", "mp-22862"]


def test_clear_errors_without_key_network_or_client(tmp_path: Path, monkeypatch, capsys):
    with pytest.raises(FetchError, match="no Materials Project API key: set MP_API_KEY"):
        fetch_entries([("Cl", "Na")], None, FakeRester)

    class Offline(FakeRester):
        def get_entries_in_chemsys(self, elements):
            raise ConnectionError("Failed to establish a new connection: [Errno -3] name resolution failed")

    with pytest.raises(FetchError, match="ConnectionError.*machine with network access"):
        fetch_entries([("Cl", "Na")], "key", Offline)
    # mp-api not installed: the optional extra is named.
    monkeypatch.setitem(__import__("sys").modules, "mp_api", None)
    monkeypatch.setitem(__import__("sys").modules, "mp_api.client", None)
    with pytest.raises(FetchError, match=r"pip install 'dftscreen\[mp\]'"):
        fetch_entries([("Cl", "Na")], "key")
    # The command prints the reason and exits non-zero, writing nothing.
    folder = run_folder(tmp_path, ["NaCl_crystallm_P4nmm.cif"])
    monkeypatch.delenv("MP_API_KEY", raising=False)
    code = cli.main(["known-phases", "fetch", "--config", str(folder / "config" / "config.yaml"),
                     "--out", str(folder / "mp.json.gz")])
    assert code == 1
    assert "no Materials Project API key" in capsys.readouterr().err
    assert not (folder / "mp.json.gz").exists()
