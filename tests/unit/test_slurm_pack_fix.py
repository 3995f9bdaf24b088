"""dftscreen.slurm_pack without a cluster: launcher choice, the pack's command and its sbatch line.

The sbatch line is built by the installed (pinned) SLURM plugin's own code, through
the fix; the real-SLURM run is tests/test_slurm_pack.py.
"""

from __future__ import annotations

import pytest

from dftscreen import slurm_pack

MPIEXEC = "mpiexec --bind-to none"
PLUGIN_COMMAND = (
    "/venv/bin/python -m snakemake --snakefile wf/Snakefile --target-jobs 'relax:sid=A' --cores all "
    "--force --target-files-omit-workdir-adjustment --nolock --executor slurm-jobstep --jobs 1 --mode remote"
)


def test_launcher_is_mpiexec_outside_slurm_srun_inside_and_a_named_limited_step_in_a_pack():
    assert slurm_pack.mpi_launcher(MPIEXEC, "relax:A", environ={}) == MPIEXEC
    assert slurm_pack.mpi_launcher(MPIEXEC, "relax:A", environ={"SLURM_JOB_ID": "7"}) == "srun"
    pack = {"SLURM_JOB_ID": "7", slurm_pack.PACK_ENV: "dft",
            slurm_pack.PACK_RUNTIMES_ENV: "relax:A=1,properties:A=30,relax:B=45"}
    assert slurm_pack.mpi_launcher(MPIEXEC, "relax:A", environ=pack) == "srun --exact --job-name=relax:A --time=1"
    assert slurm_pack.mpi_launcher(MPIEXEC, "relax:B", environ=pack) == "srun --exact --job-name=relax:B --time=45"
    # A job the pack has no limit for keeps the pack's.
    assert slurm_pack.mpi_launcher(MPIEXEC, "relax:C", environ=pack) == "srun --exact --job-name=relax:C"


def test_runtimes_round_trip_and_refuse_unsafe_names():
    runtimes = {"relax:NaCl_1": 30, "properties:Fe2O3.x": 12}
    assert slurm_pack.parse_runtimes(slurm_pack.format_runtimes(runtimes)) == runtimes
    with pytest.raises(ValueError):
        slurm_pack.format_runtimes({"relax:a b": 1})
    assert slurm_pack.step_name("relax", ["NaCl"]) == "relax:NaCl"


def test_pack_command_runs_members_side_by_side_keeps_going_and_forces_only_the_first_attempt():
    first = slurm_pack.pack_exec_command(PLUGIN_COMMAND, 3, 1, "dft", {"relax:A": 30})
    assert first.startswith(f"export {slurm_pack.PACK_ENV}=dft {slurm_pack.PACK_RUNTIMES_ENV}=relax:A=30 && ")
    assert "--executor local --cores 3 --keep-going" in first
    assert "slurm-jobstep" not in first and "--jobs 1" not in first
    assert " --force " in first
    retry = slurm_pack.pack_exec_command(PLUGIN_COMMAND, 3, 2, "dft", {"relax:A": 60})
    assert "--force " not in retry and "--force-" not in retry.replace("--force-use-threads", "")
    with pytest.raises(RuntimeError, match="2.8.0"):
        slurm_pack.pack_exec_command("python -m snakemake --executor other", 3, 1, "dft", {})


def test_pack_resources_sum_ranks_but_not_per_cpu_values_and_drop_mpi():
    group = {"tasks": 3, "runtime": 70, "cpus_per_task": 3, "mem_mb_per_cpu": 3300, "mpi": MPIEXEC, "_nodes": 1}
    members = [{"tasks": 1, "runtime": 40, "cpus_per_task": 1, "mem_mb_per_cpu": 1100, "mpi": MPIEXEC},
               {"tasks": 2, "runtime": 30, "cpus_per_task": 1, "mem_mb_per_cpu": 1200, "mpi": MPIEXEC}]
    resources = slurm_pack.pack_resources(group, members)
    assert resources == {"tasks": 3, "runtime": 70, "cpus_per_task": 1, "mem_mb_per_cpu": 1200, "_nodes": 1}


class FakeJob:
    """What the plugin's sbatch line reads of a (group) job."""

    def __init__(self, resources, members=(), threads=1):
        from snakemake.iocontainers import ResourceList

        self.resources = ResourceList(fromdict=resources)
        self.jobs = list(members)
        self.threads = threads

    def is_group(self):
        return bool(self.jobs)


def test_installed_fix_gives_the_plugins_sbatch_line_the_pack_size():
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    assert slurm_pack.install() is True
    assert slurm_pack.install() is True  # idempotent
    members = [FakeJob({"tasks": 1, "runtime": 30, "cpus_per_task": 1, "mem_mb_per_cpu": 1100, "mpi": MPIEXEC})
               for _ in range(3)]
    # Snakemake's own group totals for three 1-rank relaxations then their properties.
    group = FakeJob({"tasks": 3, "runtime": 60, "cpus_per_task": 3, "mem_mb_per_cpu": 3300, "mpi": MPIEXEC},
                    members, threads=3)
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "rule_dft", "account": "",
              "partition": "", "workdir": "/w"}
    line = plugin.get_submit_command(group, params)
    words = line.split()
    assert "--ntasks=3" in words and "--cpus-per-task=1" in words, line
    assert words[words.index("--mem-per-cpu") + 1] == "1100", line
    assert words[words.index("-t") + 1] == "60", line
    # A job of its own is submitted exactly as the plugin does.
    single = FakeJob({"tasks": 2, "runtime": 30, "cpus_per_task": 1, "mem_mb_per_cpu": 1100, "mpi": "srun"})
    assert "--ntasks=2" in plugin.get_submit_command(single, params).split()


def test_install_profile_with_pack_writes_the_group_settings(tmp_path):
    import yaml

    from dftscreen import cli

    path = cli.install_profile("slurm", account=None, partition=None, qos=None, target_root=tmp_path, pack=8)
    profile = yaml.safe_load(path.read_text())
    assert profile["groups"] == ["relax=dft", "properties=dft"]
    assert profile["group-components"] == ["dft=8"]
    assert profile["keep-incomplete"] is True
    unpacked = yaml.safe_load(cli.installed_profile_text(None, None, None))
    assert "groups" not in unpacked
    with pytest.raises(ValueError):
        slurm_pack.pack_profile_settings(0)


def test_another_plugin_version_is_left_alone_with_a_warning(monkeypatch, capsys):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    monkeypatch.setattr("importlib.metadata.version", lambda name: "9.9.9")
    assert slurm_pack.install() is False
    assert "9.9.9" in capsys.readouterr().err
