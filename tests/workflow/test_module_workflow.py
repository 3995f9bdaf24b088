"""dftscreen as a Snakemake module (issue 33): a user's own Snakefile in another folder imports the
workflow with the snippet of README section "dftscreen as a Snakemake module" (read from the README
here, so the two cannot drift apart), with its own config file name; the dry run plans the run, a
test-preset run of one structure holds the lock of output_dir while it runs and writes the table, a
run is refused while another folder's live run holds output_dir, and a failed job leaves
results_partial.csv (the workflow's onstart/onsuccess/onerror, called from the user's handlers).
Nothing resolves against the repository root or needs config/config.yaml. And a deployment with
``snakedeploy deploy-workflow`` of a tagged clone (offline, see its test) dry-runs and runs the check."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import EXAMPLES, PHONONS_OFF, REPO, mpi_env, write_run_config

pytestmark = pytest.mark.e2e

STRUCTURE = "NaCl_crystallm_P4nmm.cif"
README_SECTION = "### dftscreen as a Snakemake module"
SNAKEFILE_PLACEHOLDER = "/path/to/dftscreen/workflow/Snakefile"


def readme_module_snakefile() -> str:
    """The user's Snakefile of the README (its first ``python`` block after the section's heading)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index(README_SECTION) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def user_snakefile() -> str:
    text = readme_module_snakefile()
    assert text.count(SNAKEFILE_PLACEHOLDER) == 1
    return text.replace(SNAKEFILE_PLACEHOLDER, str(REPO / "workflow" / "Snakefile"))


def config_file_name(snakefile: str) -> str:
    return re.search(r'^configfile: "([^"]+)"', snakefile, re.M).group(1)


def make_user_folder(folder: Path) -> Path:
    """A folder outside the checkout: the README's Snakefile, its config and one CIF (no config/ folder)."""
    (folder / "generated").mkdir(parents=True)
    shutil.copy(EXAMPLES / STRUCTURE, folder / "generated" / STRUCTURE)
    snakefile = user_snakefile()
    (folder / "Snakefile").write_text(snakefile)
    # The config the other workflow tests write (write_run_config), under the README's file name.
    (folder / "scratch").mkdir()
    write_run_config(
        folder / "scratch",
        {
            "input": {"cif_dir": "generated"},
            "output_dir": "screen",
            "ml": {"enabled": False},
            "stability": {"elemental_references": False},
            "dft": {"preset": "test", "overrides": {"relax": {"max_steps": 2}, "properties": {"band_path_npoints": 0}}},
        },
    )
    shutil.move(folder / "scratch" / "config" / "config.yaml", folder / config_file_name(snakefile))
    shutil.rmtree(folder / "scratch")
    return folder


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    return make_user_folder(tmp_path_factory.mktemp("my_project"))


def snakemake_command(*args: str) -> list[str]:
    """``snakemake`` with the local profile, started in the user's folder with its own Snakefile."""
    return [sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles" / "local"), *args]


def snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(*args), cwd=folder, env=mpi_env(), capture_output=True, text=True, timeout=1200
    )


def test_readme_snippet_calls_the_workflow_handlers():
    snakefile = readme_module_snakefile()
    for handler in ("onstart", "onsuccess", "onerror"):
        assert re.search(rf"^{handler}:\n    dftscreen\.{handler}\(\)$", snakefile, re.M), handler


def test_dry_run_of_the_module_from_another_folder(user_folder: Path):
    proc = snakemake(user_folder, "-n")
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "check" in proc.stdout and "all" in proc.stdout
    assert not (user_folder / "config").exists()
    assert not (user_folder / "screen" / ".dftscreen.lock").exists()  # a dry run takes no lock


def test_module_run_of_one_structure_holds_the_lock_and_writes_the_table(user_folder: Path, tmp_path: Path):
    lock = user_folder / "screen" / ".dftscreen.lock"
    holders = []
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(snakemake_command(), cwd=user_folder, env=mpi_env(), stdout=out, stderr=err)
        deadline = time.monotonic() + 1200
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                holders.append(json.loads(lock.read_text()))
            except (FileNotFoundError, ValueError):  # not taken yet (or being written), or released
                pass
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        returncode = proc.wait()
    assert returncode == 0, (tmp_path / "stderr").read_text()[-5000:]
    # The workflow's onstart took the lock for this folder's Snakemake, its onsuccess released it.
    assert holders, "the lock of output_dir was never seen during the run"
    assert {(h["run_folder"], h["pid"]) for h in holders} == {(os.path.realpath(user_folder), proc.pid)}
    assert not lock.exists()
    table = pd.read_csv(user_folder / "screen" / "results.csv")
    assert list(table["structure_id"]) == ["NaCl_crystallm_P4nmm"]
    assert table.loc[0, "status"] in ("relaxed", "not_converged"), table.loc[0, "reason"]
    assert (user_folder / "screen" / "summary.json").is_file()
    # Nothing was written into the checkout.
    assert not (REPO / "screen").exists() and not (REPO / "generated").exists()


def test_module_run_refused_while_held_and_a_failed_job_leaves_the_partial_table(tmp_path: Path):
    folder = make_user_folder(tmp_path / "my_project")
    lock = folder / "screen" / ".dftscreen.lock"
    lock.parent.mkdir()
    # A live process (this test's) of another run folder holds output_dir.
    holder = {"run_folder": str(tmp_path / "other_project"), "host": socket.gethostname(), "pid": os.getpid()}
    lock.write_text(json.dumps(holder))
    refused = snakemake(folder)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output[-3000:]
    sentence = f"output_dir {folder / 'screen'} is in use by the run in {tmp_path / 'other_project'}"
    assert sentence in output, output[-3000:]
    assert "Finished job" not in output and not (folder / "screen" / "check").exists()
    assert json.loads(lock.read_text()) == holder  # the other run's lock is left alone

    lock.unlink()  # the other run ended; this one's DFT job crashes (the MPI launcher is `false`)
    failed = snakemake(folder, "--set-resources", "relax:mpi=false")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    assert "partial table with every row written to" in output, output[-3000:]
    assert not (folder / "screen" / "results.csv").exists()
    table = pd.read_csv(folder / "screen" / "results_partial.csv")
    assert list(table["structure_id"]) == ["NaCl_crystallm_P4nmm"]
    assert table.loc[0, "status"] == "not_finished" and "rerun" in table.loc[0, "reason"]
    assert not lock.exists()


# --- snakedeploy -----------------------------------------------------------------------
#: What snakedeploy is asked for: a release tag of the repository, published as owner/dftscreen.
TAG, OWNER_REPO = "v0.0.0-test", "dftscreen/dftscreen"


def git(*args: str | Path) -> None:
    subprocess.run(["git", *map(str, args)], check=True, capture_output=True, text=True)


def test_snakedeploy_deployment_of_a_tagged_release_plans_and_runs(tmp_path: Path):
    """``snakedeploy deploy-workflow <URL> <folder> --tag <tag> --name dftscreen`` (README), offline.

    snakedeploy picks its provider by the URL ("github" in it) and writes
    ``github("owner/dftscreen", path="workflow/Snakefile", tag=...)``; Snakemake reads that from its
    git source cache, which its first run fills by cloning github.com. Here the URL is a file:// URL of a
    bare clone under a folder named github.com, and the cache is filled beforehand with a clone of the
    same repository: everything but the network clone is what a user's deployment does.
    """
    source = tmp_path / "source"
    git("clone", "-q", REPO, source)  # the committed state of this checkout
    git("-C", source, "tag", TAG)
    published = tmp_path / "origin" / "github.com" / OWNER_REPO
    git("clone", "-q", "--bare", source, published)
    cache_home = tmp_path / "cache"
    # Snakemake's source cache: platformdirs' user cache dir ($XDG_CACHE_HOME/snakemake on Linux)
    # + snakemake/source-cache (snakemake.workflow.Workflow.source_cache_path), its git clones under
    # snakemake-git-cache/<host>/<owner>/<repo> (snakemake.sourcecache.HostedGitRepo).
    git_cache = cache_home / "snakemake" / "snakemake" / "source-cache" / "snakemake-git-cache" / "github.com"
    git("clone", "-q", "--bare", source, git_cache / OWNER_REPO)

    deployed = tmp_path / "my_deployment"
    snakedeploy = Path(sys.executable).with_name("snakedeploy")
    proc = subprocess.run(
        [snakedeploy, "deploy-workflow", f"file://{published}.git", deployed, "--tag", TAG, "--name", "dftscreen"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    snakefile = deployed / "workflow" / "Snakefile"
    assert f'github("{OWNER_REPO}", path="workflow/Snakefile", tag="{TAG}")' in snakefile.read_text()
    assert (deployed / "config" / "config.yaml").is_file() and (deployed / "profiles" / "local").is_dir()
    # The workflow's handlers, as README says to add them (the last blocks of its module snippet).
    snippet = readme_module_snakefile()
    snakefile.write_text(snakefile.read_text() + "\n\n" + snippet[snippet.index("# The workflow's own handlers") :])
    # The deployed template config, edited for one structure without ML, references or phonons.
    config = yaml.safe_load((deployed / "config" / "config.yaml").read_text())
    config["input"]["cif_dir"] = "cifs"
    config["ml"]["enabled"] = False
    config["stability"]["elemental_references"] = False
    config["phonons"].update(PHONONS_OFF["phonons"])
    (deployed / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (deployed / "cifs").mkdir()
    shutil.copy(EXAMPLES / STRUCTURE, deployed / "cifs" / STRUCTURE)

    env = {**mpi_env(), "XDG_CACHE_HOME": str(cache_home)}
    command = [sys.executable, "-m", "snakemake", "--profile", "profiles/local"]
    dry = subprocess.run([*command, "-n"], cwd=deployed, env=env, capture_output=True, text=True, timeout=600)
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-5000:]
    assert "check" in dry.stdout and "Cloning" not in output
    # A real run up to the check: its job runs a script of the workflow read from the git cache.
    real = subprocess.run(
        [*command, "--until", "check"], cwd=deployed, env=env, capture_output=True, text=True, timeout=600
    )
    assert real.returncode == 0, (real.stdout + real.stderr)[-5000:]
    assert (deployed / config["output_dir"] / "check" / "checks.json").is_file()
    assert not (deployed / config["output_dir"] / ".dftscreen.lock").exists()
