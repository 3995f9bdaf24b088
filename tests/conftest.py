"""Shared fixtures: repository paths, an MPI launcher for GPAW entry points, and a Snakemake runner."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "examples" / "cifs"
#: Data the tests carry with them (tests/data), whichever folder a test file lives in.
TEST_DATA = REPO / "tests" / "data"
GENERATED = SHARED / "data" / "generated" / "crystallm"
PEROV5 = SHARED / "data" / "reference" / "perov5_sample50"


#: Test folders and the marker each gives its tests: tests/unit starts no GPAW, mpiexec or
#: Snakemake; tests/dft runs GPAW (under mpiexec); tests/workflow starts Snakemake (dry runs
#: included) or the MPI launcher. Real workflow runs carry ``e2e`` as well.
FOLDER_MARKERS = {"dft": "dft", "workflow": "workflow"}


#: Modules in the order they are handed out, the slowest first (measured with --durations
#: on a fresh clone); any module not named follows in collection order. The test command
#: runs two pytest workers (tools/test.sh: ``-n 2 --dist loadscope --no-loadscope-reorder``),
#: each taking whole modules, so a module's module-scoped workflow runs are built once.
#: xdist gives each worker two modules to start with (the 1st and 3rd to one, the 2nd and
#: 4th to the other), so the two SLURM modules, first and third, run one after the other on
#: one worker (they also hold a lock, :func:`test_slurm.one_cluster_user`), and their
#: waiting (a job killed at SLURM's one-minute minimum time limit, sacct polls) overlaps
#: the other worker's GPAW runs.
SLOWEST_MODULES_FIRST = (
    "test_slurm.py",
    "test_workflow.py",
    "test_slurm_pack.py",
    # Issue 33: a GPAW build and two environments as an unprivileged user, then a workflow run.
    "test_cluster_install.py",
    "test_known_workflow.py",
    "test_dft.py",
    "test_ml_workflow.py",
    "test_cohorts_workflow.py",
    "test_module_workflow.py",
    "test_fast_paths.py",
    "test_resume.py",
    # Issue 32: a relaxation and nine single points from its GPAW state or afresh (about 2 min).
    "test_properties_restart.py",
    "test_table_input_workflow.py",
    "test_ml.py",
)

# Local runs must not talk to a SLURM controller. The SLURM executor plugin, which every
# Snakemake start imports with the other installed plugins, runs `scontrol show config` at
# import; with SLURM's client tools installed and no controller answering (before a SLURM
# test brings its cluster up, or after it takes it down) that waits ~9 s, at every
# Snakemake start. An empty config makes scontrol fail in milliseconds. The SLURM tests put
# the environment's own config back for their module (:func:`real_slurm_config`).
# The environment's own value is kept in a variable of its own: pytest-xdist's workers
# inherit the controller's environment, where SLURM_CONF is already the empty config.
os.environ.setdefault("DFTSCREEN_TESTS_OWN_SLURM_CONF", os.environ.get("SLURM_CONF", ""))
os.environ["SLURM_CONF"] = os.devnull


@contextmanager
def real_slurm_config():
    """The environment's own SLURM config, for the tests that run on the one-node cluster."""
    with pytest.MonkeyPatch.context() as patch:
        own = os.environ["DFTSCREEN_TESTS_OWN_SLURM_CONF"]
        if own:
            patch.setenv("SLURM_CONF", own)
        else:
            patch.delenv("SLURM_CONF", raising=False)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = FOLDER_MARKERS.get(Path(str(item.fspath)).parent.name)
        if marker is not None:
            item.add_marker(marker)

    def rank(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).name
        return SLOWEST_MODULES_FIRST.index(name) if name in SLOWEST_MODULES_FIRST else len(SLOWEST_MODULES_FIRST)

    items.sort(key=rank)  # stable: tests keep their order inside a module


def mpi_env() -> dict[str, str]:
    """Environment for mpiexec: one OpenMP thread per rank; root allowed only when we are root."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def run_gpaw_module(module: str, args: list[str], ranks: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module>`` under ``mpiexec -n ranks gpaw python``."""
    command = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "gpaw", "python", "-m", module, *args]
    return subprocess.run(command, env=mpi_env(), capture_output=True, text=True, timeout=timeout)


#: Phonons are off in the workflow tests that do not test them (a config without a ``phonons`` section):
#: DFT phonons of every candidate would multiply those tests' GPAW time (tests/workflow/test_phonon_workflow.py
#: runs them).
PHONONS_OFF = {"phonons": {"ml": False, "dft": "none"}}


def write_run_config(workdir: Path, config: dict) -> None:
    """Write ``config/config.yaml`` of a run folder, as a user would (phonons off unless it says, see PHONONS_OFF)."""
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump({**PHONONS_OFF, **config}))


def run_snakemake(
    workdir: Path, *args: str, profile: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the workflow in the run folder ``workdir``, with ``profiles/<profile>`` when one is named."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    if profile is not None:
        command += ["--profile", str(REPO / "profiles" / profile)]
    return subprocess.run([*command, *args], env=mpi_env(), capture_output=True, text=True, timeout=timeout)


def settings_json(preset: str = "test", overrides: dict | None = None, ladder: list | None = None) -> str:
    from dftscreen.settings import resolve_settings

    return json.dumps(resolve_settings(preset, overrides, scf_ladder=ladder))


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (reference data beside the checkout) is not present")
    return SHARED


# --------------------------------------------------------------------------- the HTML report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _ReportParser(HTMLParser):
    """Section ids, image sources, link targets and the title of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.section_ids: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("id"):
            self.section_ids.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def assert_report_complete(index: Path, sections: list[str]) -> _ReportParser:
    """Every named section is there, every image is a PNG that decodes, every link points to an existing file.

    Links inside the page (#section) must name a section; nothing may come from the network.
    """
    from matplotlib.image import imread

    text = index.read_text()
    page = _ReportParser()
    page.feed(text)
    assert page.title.strip(), "the page has no title"
    missing = [s for s in sections if s not in page.section_ids]
    assert not missing, f"sections missing: {missing} (have {page.section_ids})"
    assert page.images, "the report has no figures"
    for src in page.images:
        assert "://" not in src and not src.startswith("//"), src
        path = index.parent / unquote(src)
        assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{src} is not a PNG"
        image = imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100, (src, image.shape)
        assert float(image.std()) > 0.0, f"{src} is blank"
    for href in page.links:
        assert "://" not in href, f"external link {href}"
        if href.startswith("#"):
            assert href[1:] in page.section_ids, href
            continue
        assert (index.parent / unquote(href)).is_file(), f"link to a missing file: {href}"
    assert "http://" not in text and "https://" not in text, "the page refers to the network"
    return page


def chromium_binary() -> str | None:
    """Debian's headless-capable Chromium, when installed (tools/test.sh installs it)."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(binary: str, profile_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a throw-away profile, no GPU, sandbox or background network."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def assert_renders_in_chromium(index: Path, tmp_path: Path) -> Path:
    """Open the report in headless Chromium: the DOM has the title and the screenshot is not blank.

    Returns the screenshot's path (look at it).
    """
    from matplotlib.image import imread

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (tools/test.sh installs it)")
    url = index.resolve().as_uri()
    dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _ReportParser()
    page.feed(dom.stdout)
    assert page.title.startswith("dftscreen report"), page.title
    # The sorting script ran without breaking the table: its rows are in the rendered DOM.
    assert 'id="structures-table"' in dom.stdout
    screenshot = tmp_path / "report_screenshot.png"
    shot = chromium(binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,2000", url)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = imread(screenshot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000, pixels.shape
    # Not blank: many distinct colours (text, the warning banner, figures), not one uniform page.
    flat = (pixels[..., :3] * 255).astype(int).reshape(-1, 3)
    assert len({tuple(p) for p in flat[:: max(1, len(flat) // 200_000)]}) > 50
    assert float(pixels[..., :3].std()) > 0.05
    return screenshot


# --------------------------------------------------------------------------- the column dictionary

COLUMNS_DOC = REPO / "docs" / "columns.md"
#: Placeholders of docs/columns.md that stand for a table input's own column names.
INPUT_COLUMN_PLACEHOLDER = "<input column>"


def documented_columns() -> list[str]:
    """Column names (and patterns with <placeholders>) of docs/columns.md's tables, in order."""
    import re

    names = []
    for line in COLUMNS_DOC.read_text().splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if match:
            names.append(match.group(1))
    return names


def documented_rows() -> list[list[str]]:
    """The cells of every column row of docs/columns.md (column, unit, how computed, computed by), stripped.

    Cells are split at ``|`` but not at an escaped ``\\|`` (as in ``\\|error\\|``).
    """
    import re

    rows = []
    for line in COLUMNS_DOC.read_text().splitlines():
        if line.startswith("| `"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def undocumented(columns, input_columns=()) -> list[str]:
    """Columns not described in docs/columns.md, by name or by a pattern (<name>, <unit> stand for words).

    A table input's own columns (``input_columns``) are covered by the copied-columns entries.
    """
    import re

    literal, patterns = set(), []
    for name in documented_columns():
        if INPUT_COLUMN_PLACEHOLDER in name:
            continue
        if "<" in name:
            patterns.append(
                re.compile(
                    "^"
                    + re.sub(r"<[^>]+>", "[A-Za-z0-9_]+", re.escape(name).replace(r"\<", "<").replace(r"\>", ">"))
                    + "$"
                )
            )
        else:
            literal.add(name)
    copied = set(input_columns) | {f"input_{c}" for c in input_columns}
    return [c for c in columns if c not in literal and c not in copied and not any(p.match(c) for p in patterns)]


def crystallm_pi_rows(shared: Path) -> pd.DataFrame:
    """CrystaLLM-pi's output columns, CIF texts from the shared real files (one of them twice, one broken)."""
    texts = [p.read_text() for p in sorted(GENERATED.rglob("*.cif"))[:3]] + [
        next(iter(sorted(PEROV5.glob("*.cif")))).read_text()
    ]
    texts.append(texts[0])  # a byte-identical twin, as generators produce
    texts.append("data_broken\n_cell_length_a 4.0\n")  # truncated output
    return pd.DataFrame(
        {
            "Material ID": ["mp-1/a", "mp-1/a", "../../etc/x y", None, "twin", "broken"],
            "Prompt": ["<prompt>"] * 6,
            "Generated CIF": texts,
            "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        }
    )


_PLANNED_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")


def planned_commands(stdout: str, rules: tuple[str, ...]) -> dict[str, list[str]]:
    """Rule -> the sorted shell commands a ``snakemake -n -p`` printed for the jobs of ``rules``
    (every planned rule is a key; the others' commands are not kept)."""
    commands: dict[str, list[str]] = {}
    rule = None
    for line in stdout.splitlines():
        match = _PLANNED_RULE.match(line.strip())
        if match:
            rule = match.group(1)
            commands.setdefault(rule, [])
        elif line.startswith("Shell command: ") and rule in rules:
            commands[rule].append(line[len("Shell command: "):])
    return {name: sorted(found) for name, found in sorted(commands.items())}


def normalised(commands: dict[str, list[str]], workdir: Path) -> dict[str, list[str]]:
    """The commands with this machine's run folder and Python named by placeholders."""
    python = shlex.quote(sys.executable)

    def one(command: str) -> str:
        return command.replace(str(workdir), "<workdir>").replace(python, "<python>")

    return {rule: sorted(one(command) for command in found) for rule, found in commands.items()}


_LONG_FLOAT = re.compile(r"\d+\.\d{5,}(?:e-?\d+)?")

#: The stored shell commands of the phonon GPAW rules (tests/workflow/test_gpaw_commands.py keeps the others').
PHONON_COMMANDS = TEST_DATA / "gpaw_commands" / "phonon_commands.json"


def assert_stored_phonon_commands(workdir: Path, rule: str) -> None:
    """The shell commands a finished run's ``rule`` jobs would run again (``--forcerun``, dry run) are the
    stored ones: a changed command reruns every finished phonon job of every existing run. Regenerate
    with ``DFTSCREEN_UPDATE_GPAW_COMMANDS=1`` (and say why in the commit)."""
    env_job = os.environ.pop("SLURM_JOB_ID", None)  # plan as on a workstation (dftscreen.mpi_launch)
    try:
        proc = run_snakemake(workdir, "-n", "-p", "--forcerun", rule, profile="local")
    finally:
        if env_job is not None:
            os.environ["SLURM_JOB_ID"] = env_job
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = normalised(planned_commands(proc.stdout, (rule,)), workdir).get(rule)
    assert found, f"the dry run planned no {rule} job"
    # A pack's plan carries size estimates of the DFT-relaxed cell, whose last digits may differ
    # between machines: compared to 4 significant digits (the command's form is what is kept).
    found = [_LONG_FLOAT.sub(lambda number: f"{float(number.group()):.4g}", command) for command in found]
    stored = json.loads(PHONON_COMMANDS.read_text()) if PHONON_COMMANDS.is_file() else {}
    if os.environ.get("DFTSCREEN_UPDATE_GPAW_COMMANDS") == "1":
        PHONON_COMMANDS.write_text(json.dumps({**stored, rule: found}, indent=1, sort_keys=True) + "\n")
        stored[rule] = found
    assert found == stored.get(rule), f"the shell command of rule {rule} changed (finished jobs would rerun)"
