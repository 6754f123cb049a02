"""What the research commands read from the command line: strategy references, parameter
assignments and grids, times; and how they print parameters and times back."""

from __future__ import annotations

import math
from typing import Any

from candela.cli.commands import CommandError, user_errors


def resolve_strategy(reference: str):
    """Return the :class:`~research.types.StrategySpec` that ``reference`` names (a registry
    or user strategy name, or ``module:ATTRIBUTE``; see :mod:`runner.strategy_source`)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from runner.strategy_source import StrategyReferenceError
    from runner.strategy_source import resolve_strategy as resolve

    with user_errors(StrategyReferenceError):
        return resolve(reference)


def make_params(spec, values: Any):
    """``spec.make_params(values)``; its ``ValueError``/``TypeError`` become one-line errors."""
    with user_errors(ValueError, TypeError):
        return spec.make_params(values)


def parse_value(text: str) -> Any:
    """Parse ``text`` as int, float, bool (true/false) or, failing those, keep the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Parse ``["fast=10", "slow=50"]`` into ``{"fast": 10, "slow": 50}``."""
    values: dict[str, Any] = {}
    for item in items:
        name, separator, text = item.partition("=")
        if not separator or not name.strip() or not text.strip():
            raise CommandError(f"--param {item!r} is not NAME=VALUE, e.g. --param fast=10")
        values[name.strip()] = parse_value(text)
    return values


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """Parse ``NAME=START:STOP:STEP`` (stop included) or ``NAME=V1,V2,...`` into value lists."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, separator, text = item.partition("=")
        name = name.strip()
        if not separator or not name or not text.strip():
            raise CommandError(f"--grid {item!r} is not NAME=START:STOP:STEP or NAME=V1,V2,...")
        if ":" in text:
            grid[name] = _parse_range(item, text)
        else:
            grid[name] = [parse_value(part) for part in text.split(",") if part.strip()]
    return grid


def _parse_range(item: str, text: str) -> list[Any]:
    parts = [parse_value(part) for part in text.split(":")]
    if len(parts) == 2:
        parts.append(1)
    if len(parts) != 3 or not all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts
    ):
        raise CommandError(f"--grid {item!r}: the range must be START:STOP[:STEP] with numbers")
    start, stop, step = parts
    if step <= 0 or stop < start:
        raise CommandError(f"--grid {item!r}: need START <= STOP and a positive STEP")
    if all(isinstance(p, int) for p in parts):
        return list(range(start, stop + 1, step))
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 12) for i in range(count)]


def to_ms(text: str | None) -> int | None:
    if text is None:
        return None
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise CommandError(
            f"cannot read time {text!r}: use an ISO date such as 2024-01-31 or 2024-01-31T12:00"
        ) from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def time_text(ms: int) -> str:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    return str(pd.Timestamp(int(ms), unit="ms", tz="UTC"))


def format_params(params: Any) -> str:
    """``(fast=10, slow=50)``."""
    return "(" + ", ".join(f"{key}={value}" for key, value in params._asdict().items()) + ")"
