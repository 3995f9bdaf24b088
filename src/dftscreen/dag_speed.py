"""Make Snakemake's per-job evaluation of the workflow's functions cheaper (large dry runs).

Snakemake asks ``inspect.signature`` for the parameters of every input function,
param function and resource function each time it calls one, several times per
job: 26 calls per DFT job, about 18 % of a 100,000-input dry run (cProfile, see
bench/README.md). A function's signature does not change, so it is asked once
here and handed to Snakemake through its own hook for exactly that
(``snakemake.common.overwrite_function_params``: a function carrying the attribute
it sets is not inspected again). Nothing else about the workflow changes: no rule,
param or shell command, so no job reruns because of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, overwrite_function_params


def cache_signature(func: Callable[..., Any]) -> bool:
    """Store ``func``'s parameters where Snakemake looks first; returns False when it cannot.

    A bound method forwards attribute lookups to its function, so the function
    carries the parameters of the *bound* signature (without ``self``); that is
    right only for functions Snakemake always calls bound, as it does
    ``Resource.evaluate``.
    """
    target = getattr(func, "__func__", func)
    if hasattr(target, FUNC_OVERWRITE_PARAMS_ATTR):
        return True
    try:
        parameters = inspect.signature(func).parameters
        overwrite_function_params(target, parameters)
    except (AttributeError, TypeError, ValueError):
        # Builtins and callables without a __dict__ keep being inspected each time.
        return False
    return True


def _callables(value: Any) -> Iterator[Callable[..., Any]]:
    """The function inside an input/param/resource value, as Snakemake unwraps it before calling."""
    inner = getattr(getattr(value, "_file", None), "callable", None)  # _IOFile around a function
    if inner is None:
        inner = getattr(value, "callable", None)  # AnnotatedString (flagged function)
    if callable(inner):
        yield inner
    elif callable(value) and not isinstance(value, type):
        yield value


def rule_functions(rules: Iterable[Any]) -> Iterator[Callable[..., Any]]:
    """Every input, param and resource function of ``rules`` (``workflow.rules``)."""
    for rule in rules:
        for value in [*rule.input, *rule.params]:
            yield from _callables(value)
        for resource in (rule.resources or {}).values():
            evaluator = getattr(resource, "_evaluator", None)
            if evaluator is not None:
                yield from _callables(evaluator)


def cache_function_signatures(workflow: Any) -> int:
    """Cache the signatures of every function the workflow's rules use, and of Snakemake's
    own ``Resource.evaluate``; returns how many were cached. Call after the last rule."""
    from snakemake.resources import Resource

    cached = int(cache_signature(Resource("dftscreen_probe", 1).evaluate))
    for func in rule_functions(workflow.rules):
        cached += cache_signature(func)
    return cached
