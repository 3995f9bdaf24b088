"""The package's map of its modules (``dftscreen.__doc__``) and README's architecture table name every module."""

from __future__ import annotations

import pkgutil
import re

import dftscreen

from conftest import REPO


def package_modules() -> set[str]:
    return {info.name for info in pkgutil.iter_modules(dftscreen.__path__)}


def test_package_docstring_names_every_module_and_no_other():
    named = set(re.findall(r":mod:`(\w+)`", dftscreen.__doc__ or ""))
    assert named == package_modules()


def test_readme_architecture_table_names_every_module():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| inputs and checks | `check.smk`"):]
    table = table[: table.index("\n\n")]
    named = set(re.findall(r"`(\w+)`", table))
    assert package_modules() <= named, sorted(package_modules() - named)
