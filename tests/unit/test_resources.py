import pytest

from dftscreen.resources import ResourcePolicy


def test_ranks_grow_with_atoms_up_to_the_limit():
    policy = ResourcePolicy(max_tasks=8, atoms_per_task=8)
    assert [policy.tasks(n) for n in (1, 8, 9, 16, 40, 1000)] == [1, 1, 2, 2, 5, 8]


def test_retries_get_more_time_and_memory():
    policy = ResourcePolicy(
        runtime_min_base=30, runtime_min_per_atom=5.0, mem_mb_per_task_base=1000, mem_mb_per_task_per_atom=50
    )
    assert policy.runtime_min(10, attempt=1) == 80
    assert policy.runtime_min(10, attempt=2) == 160
    assert policy.runtime_min(20, attempt=1) > policy.runtime_min(10, attempt=1)
    assert policy.mem_mb_per_task(10, attempt=1) == 1500
    assert policy.mem_mb_per_task(10, attempt=3) == 3000


def test_from_config_rejects_unknown_keys():
    assert ResourcePolicy.from_config({"max_tasks": 4}).max_tasks == 4
    with pytest.raises(TypeError):
        ResourcePolicy.from_config({"max_ranks": 4})
