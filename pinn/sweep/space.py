"""The search space of a study, written in Hydra's override syntax.

``choice(a, b, c)`` is a categorical parameter; ``range(start, stop, step=s)`` the integers (or
numbers) of Python's ``range`` (``stop`` excluded); ``interval(low, high)`` the real numbers
between ``low`` and ``high``; ``tag(log, ...)`` samples on a log scale and ``tag(int, ...)`` an
interval's integers. The Optuna distributions come from these and nothing else, so the command
line of a grid multirun and of a search read alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Mapping, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (ChoiceSweep, IntervalSweep, Override, RangeSweep,
                                              Transformer)

if TYPE_CHECKING:  # optuna loads when a space is built: the command-line check runs without it
    from optuna.distributions import BaseDistribution

KNOWN_TAGS = {"log", "int"}


class SearchSpaceError(ValueError):
    """A search-space override that cannot be searched; the message is one line."""


@dataclass
class SearchSpace:
    """``params``: config key -> distribution; ``fixed``: the other overrides, as given."""

    params: Dict[str, BaseDistribution]
    fixed: List[str]

    def overrides(self, values: Mapping[str, object]) -> List[str]:
        """The command-line overrides of one trial: the fixed ones, then ``key=value``."""
        return [*self.fixed, *(f"{k}={_text(values[k])}" for k in self.params)]


def _text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _range_distribution(key: str, sweep: RangeSweep) -> BaseDistribution:
    from optuna.distributions import FloatDistribution, IntDistribution

    start, stop, step = sweep.start, sweep.stop, sweep.step
    if "log" in sweep.tags:
        raise SearchSpaceError(f"{key}=range(...): a range has a step and cannot be on a log "
                               "scale; use tag(log, interval(low, high))")
    if step is None or step <= 0:
        raise SearchSpaceError(f"{key}=range({start}, {stop}, step={step}): the step must be > 0")
    count = math.ceil((stop - start) / step)
    if count < 1:
        raise SearchSpaceError(f"{key}=range({start}, {stop}, step={step}) is empty: stop must "
                               "exceed start")
    last = start + (count - 1) * step
    if count == 1:
        raise SearchSpaceError(f"{key}=range({start}, {stop}, step={step}) holds one value "
                               f"({start}); set {key}={start} or widen the range")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(last), step=int(step))
    return FloatDistribution(float(start), float(last), step=float(step))


def _interval_distribution(key: str, sweep: IntervalSweep) -> BaseDistribution:
    from optuna.distributions import FloatDistribution, IntDistribution

    low, high, log = sweep.start, sweep.end, "log" in sweep.tags
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise SearchSpaceError(f"{key}=interval({low:g}, {high:g}) is empty: the interval needs "
                               "finite low < high")
    if log and low <= 0:
        raise SearchSpaceError(f"{key}=tag(log, interval({low:g}, {high:g})): a log scale needs "
                               "low > 0")
    if "int" in sweep.tags:
        if low != int(low) or high != int(high):
            raise SearchSpaceError(f"{key}=tag(int, interval({low:g}, {high:g})): the bounds of "
                                   "an integer interval must be integers")
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override.

    Raises:
        SearchSpaceError: an empty or malformed range, interval or choice, or an unknown tag.
    """
    key = override.get_key_element()
    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()))
    unknown = tags - KNOWN_TAGS
    if unknown:
        raise SearchSpaceError(f"{key}: unknown tag {', '.join(sorted(unknown))}; the tags of a "
                               "search space are log and int")
    if isinstance(sweep, IntervalSweep):
        return _interval_distribution(key, sweep)
    if isinstance(sweep, RangeSweep):
        return _range_distribution(key, sweep)
    if isinstance(sweep, ChoiceSweep):
        if tags:
            raise SearchSpaceError(f"{key}=choice(...): tags apply to interval() and range(), "
                                   "not to choice()")
        from optuna.distributions import CategoricalDistribution

        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if len(values) < 2:
            raise SearchSpaceError(f"{key}=choice({', '.join(values)}) needs at least two values")
        if len(set(values)) != len(values):
            raise SearchSpaceError(f"{key}=choice({', '.join(values)}) repeats a value")
        return CategoricalDistribution(values)
    raise SearchSpaceError(f"{key}: not a search space (choice, range or interval)")


def parse_search_space(arguments: Sequence[str],
                       params: Mapping[str, str] = ()) -> SearchSpace:
    """The search space of command-line ``arguments`` plus ``params`` (the sweeper's
    ``params`` dict, ``key -> override value``; the command line wins for a key in both).

    Raises:
        SearchSpaceError: an override that does not parse, a malformed sweep, or no
            parameter to search.
    """
    parser = OverridesParser.create()
    lines = [f"{k}={v}" for k, v in dict(params).items()]
    given = {}
    for line in [*lines, *arguments]:
        try:
            override = parser.parse_override(line)
        except Exception as e:  # noqa: BLE001 - Hydra's grammar errors come in several types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise SearchSpaceError(f"cannot read {line}: {first}") from None
        given[override.get_key_element()] = (line, override)
    space = SearchSpace({}, [])
    for key, (line, override) in given.items():
        if key.startswith("hydra"):
            continue
        if override.is_sweep_override():
            space.params[key] = distribution(override)
        else:
            space.fixed.append(line)
    if not space.params:
        raise SearchSpaceError(
            "the search space is empty: give at least one parameter as choice(...), "
            "range(...) or interval(...), e.g. 'optim.lr=tag(log, interval(1e-4, 1e-2))'")
    return space


def describe(params: Mapping[str, BaseDistribution]) -> List[Tuple[str, str]]:
    """(key, readable distribution) for logs and the report."""
    from optuna.distributions import CategoricalDistribution

    out = []
    for key, d in params.items():
        if isinstance(d, CategoricalDistribution):
            out.append((key, "choice of " + ", ".join(map(str, d.choices))))
        else:
            scale = " (log)" if getattr(d, "log", False) else ""
            step = f" step {d.step:g}" if getattr(d, "step", None) else ""
            out.append((key, f"{d.low:g} .. {d.high:g}{step}{scale}"))
    return out
