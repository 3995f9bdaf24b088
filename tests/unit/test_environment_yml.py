"""environment.yml (conda users) and pyproject.toml pin the same versions; GPAW's range is the supported one."""

from __future__ import annotations

import re
import tomllib

import yaml

from dftscreen.gpaw_support import GPAW_SUPPORTED_SPEC, GPAW_TESTED_VERSIONS, version_supported

from conftest import REPO


def pyproject_pins(*extras: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = {}
    for requirement in requirements:
        name, version = requirement.split("==")
        pins[name.strip().lower()] = version.strip()
    return pins


def environment_pins() -> tuple[dict[str, str], str]:
    """Every pinned package of environment.yml (conda ``name=version`` and pip ``name==version``), and gpaw's spec."""
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pins, gpaw = {}, ""
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            for line in entry["pip"]:
                if not line.startswith("-"):
                    name, version = line.split("==")
                    pins[name.lower()] = version
        elif entry.startswith("gpaw["):
            gpaw = entry
        elif "=" in entry:
            name, version = entry.split("=", 1)
            pins[name.lower()] = version.lstrip("=")
    return pins, gpaw


def test_every_pin_of_pyproject_has_the_same_version_in_environment_yml():
    pins, _ = environment_pins()
    wanted = pyproject_pins("slurm")
    gpaw_pin = wanted.pop("gpaw")
    assert {name: pins.get(name) for name in wanted} == wanted
    assert "gpaw" not in pins  # a range, below
    assert gpaw_pin == GPAW_TESTED_VERSIONS[-1] and version_supported(gpaw_pin)


def test_gpaw_in_environment_yml_is_the_supported_range_with_mpi():
    _, gpaw = environment_pins()
    version = re.search(r"version='([^']+)'", gpaw).group(1).replace(" ", "")
    assert version == GPAW_SUPPORTED_SPEC
    assert re.search(r"build='\*mpi_(openmpi|mpich)\*'", gpaw), gpaw
