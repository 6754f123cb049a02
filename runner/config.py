"""Bot configuration: one JSON file per bot in ``config/bots/``, validated strictly.

A bot file looks like::

    {
      "strategy": "sma_cross",
      "params": {"fast": 10, "slow": 50},
      "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m",
      "initial_cash": 10000,
      "costs": {"fee_rate": 0.001, "slippage_bps": 2},
      "stops": {"stop_loss": 0.05, "take_profit": null, "trailing_stop": null},
      "risk": {"max_position": 1.0, "daily_loss_limit": 0.05, "max_drawdown": 0.25},
      "start": "2018-01-01T00:00:00Z"
    }

Keys
----
``id``            bot id (default: the file name without ``.json``); letters, digits, ``_.-``.
``strategy``      a strategy reference (required): a shipped name, the name of a strategy in a
                  user strategy folder, or ``module:ATTRIBUTE`` (see :mod:`runner.strategy_source`).
``params``        strategy parameters; missing ones take the strategy's defaults.
``exchange``, ``symbol``, ``timeframe``  the market (required).
``initial_cash``  quote currency (default 10000).
``costs``         ``fee_rate``, ``slippage_bps`` (defaults of :class:`~research.types.Costs`).
``stops``         ``stop_loss``, ``take_profit``, ``trailing_stop``; ``null`` disables one.
                  Without ``stops`` the strategy's own default stops apply (as in the backtest).
``risk``          ``max_position``, ``daily_loss_limit``, ``max_drawdown``; ``null`` disables.
``start``         first bar to trade: ISO 8601 UTC time or ms; a bar trades if its close time
                  is at or after ``start``. Without it a bot trades the bars that close after
                  it was first registered (replays start at ``--from`` or the first stored bar).
``description``   free text.
``version``       the config's version, an integer from 1 (default 1). A bot's config is
                  immutable once the bot has recorded a decision: the runner refuses a changed
                  file, naming the changed fields. To trade a changed config under the same id,
                  raise ``version``: the runner then keeps the old version's records under the
                  id ``ID@vN`` and starts the new version with fresh state (see
                  :func:`runner.registry.register_bots`).

Unknown keys are rejected with a "did you mean" hint; every error names the file, the field path
and the fix. A file with ``portfolio`` instead of ``strategy`` is a portfolio bot
(:mod:`runner.portfolio_config`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from candela.core.markets import validate_exchange, validate_symbol
from candela.core.timeframes import SUPPORTED_TIMEFRAMES, timeframe_to_ms
from research.kernels.records import make_config
from research.strategy_model import StrategySpec
from research.types import Costs, RiskLimits, Stops
from runner.strategy_source import StrategyReferenceError, StrategyResolver, resolve_strategy

TOP_LEVEL_KEYS = (
    "id",
    "strategy",
    "params",
    "exchange",
    "symbol",
    "timeframe",
    "initial_cash",
    "costs",
    "stops",
    "risk",
    "start",
    "description",
    "version",
)
REQUIRED_KEYS = ("strategy", "exchange", "symbol", "timeframe")
SECTIONS = {"costs": Costs, "stops": Stops, "risk": RiskLimits}
NULLABLE_FIELDS = {
    "stops": ("stop_loss", "take_profit", "trailing_stop"),
    "risk": ("daily_loss_limit", "max_drawdown"),
    "costs": (),
    "limits": ("daily_loss_limit", "max_drawdown"),  # a portfolio bot's
    "rebalance": ("drift",),
}
_BOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BotConfigError(ValueError):
    """A bot config is invalid; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class BotConfig:
    """A validated bot: everything the runner needs to trade one strategy on one market.

    Attributes
    ----------
    bot_id : str
    strategy : str
        The reference the config used (a strategy name or ``module:ATTRIBUTE``).
    params : dict
        Every parameter of the strategy, defaults filled in (JSON-ready).
    exchange, symbol, timeframe : str
    initial_cash : float
    costs : Costs
    stops : Stops
    risk : RiskLimits
    start : int or None
        Close time (ms UTC) of the first bar to trade, if given.
    description : str
    version : int
        The config's version (see the module docstring).
    source : str
        Where the config came from (its file), for messages; not part of the config.
    """

    bot_id: str
    strategy: str
    params: dict
    exchange: str
    symbol: str
    timeframe: str
    initial_cash: float = 10_000.0
    costs: Costs = Costs()
    stops: Stops = Stops()
    risk: RiskLimits = RiskLimits()
    start: int | None = None
    description: str = ""
    version: int = 1
    spec: StrategySpec | None = field(default=None, compare=False, repr=False)
    source: str = field(default="bot config", compare=False, repr=False)

    @property
    def timeframe_ms(self) -> int:
        """Bar length in milliseconds."""
        return timeframe_to_ms(self.timeframe)

    @property
    def market(self) -> tuple[str, str, str]:
        """``(exchange, symbol, timeframe)``."""
        return (self.exchange, self.symbol, self.timeframe)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (``nan`` written as ``None``); loads back unchanged."""
        none = lambda value: None if isinstance(value, float) and math.isnan(value) else value  # noqa: E731
        return {
            "id": self.bot_id,
            "strategy": self.strategy,
            "params": dict(self.params),
            "exchange": self.exchange,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "initial_cash": self.initial_cash,
            "costs": {key: none(value) for key, value in self.costs._asdict().items()},
            "stops": {key: none(value) for key, value in self.stops._asdict().items()},
            "risk": {key: none(value) for key, value in self.risk._asdict().items()},
            "start": self.start,
            "description": self.description,
            "version": self.version,
        }

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict` (sorted keys), as stored in ``bots.config_json``."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        """SHA-256 (hex) of :meth:`to_json`: stored with every decision (``signals.config_hash``)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def parse_bot_config(
    data: Any,
    *,
    bot_id: str | None = None,
    source: str = "bot config",
    resolve: StrategyResolver = resolve_strategy,
) -> BotConfig:
    """Validate a decoded bot config and return a :class:`BotConfig`.

    Parameters
    ----------
    data : mapping
        The decoded JSON object.
    bot_id : str, optional
        Id to use when ``data`` has no ``id`` (the loader passes the file name).
    source : str
        Where the config came from, used as the prefix of every error message.
    resolve : callable
        Maps a strategy name to its :class:`StrategySpec` (inject a test registry here).

    Raises
    ------
    BotConfigError
        Naming ``source``, the field path and the fix.
    """

    def fail(path: str, message: str) -> BotConfigError:
        return BotConfigError(f"{source}: {path}: {message}")

    if not isinstance(data, Mapping):
        raise fail("(top level)", f"must be a JSON object, got {type(data).__name__}")
    if "portfolio" in data and "strategy" not in data:  # a portfolio bot
        identifier = data.get("id", bot_id)
        if not isinstance(identifier, str) or not _BOT_ID.match(identifier):
            raise fail(
                "id",
                f"{identifier!r} is not a valid bot id: use 1-64 letters, digits, '_', '.' or '-'",
            )
        from runner.portfolio_config import parse_portfolio_config

        return parse_portfolio_config(
            data,
            bot_id=identifier,
            source=source,
            fail=fail,
            parse_section=_parse_section,
            parse_start=_parse_start,
            reject_unknown=_reject_unknown,
        )
    _reject_unknown(data, TOP_LEVEL_KEYS, "", fail)
    for key in REQUIRED_KEYS:
        if key not in data:
            raise fail(
                key, f'missing; add "{key}": ... (required keys: {", ".join(REQUIRED_KEYS)})'
            )

    identifier = data.get("id", bot_id)
    if not isinstance(identifier, str) or not _BOT_ID.match(identifier):
        raise fail(
            "id", f"{identifier!r} is not a valid bot id: use 1-64 letters, digits, '_', '.' or '-'"
        )

    strategy = data["strategy"]
    try:
        spec = resolve(strategy)
    except StrategyReferenceError as exc:
        raise fail("strategy", str(exc)) from exc

    raw_params = data.get("params", {})
    if raw_params is None:
        raw_params = {}
    if not isinstance(raw_params, Mapping):
        raise fail(
            "params", f"must be an object of parameter values, got {type(raw_params).__name__}"
        )
    try:
        params = spec.make_params(dict(raw_params))
    except (ValueError, TypeError) as exc:
        raise fail("params", str(exc)) from exc

    market = {}
    for key, check in (("exchange", validate_exchange), ("symbol", validate_symbol)):
        try:
            market[key] = check(data[key])
        except ValueError as exc:
            raise fail(key, str(exc)) from exc
    timeframe = data["timeframe"]
    if timeframe not in SUPPORTED_TIMEFRAMES:
        hint = difflib.get_close_matches(str(timeframe), SUPPORTED_TIMEFRAMES, n=1)
        raise fail(
            "timeframe",
            f"unsupported timeframe {timeframe!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (supported: {', '.join(SUPPORTED_TIMEFRAMES)})",
        )

    initial_cash = data.get("initial_cash", 10_000.0)
    if (
        isinstance(initial_cash, bool)
        or not isinstance(initial_cash, (int, float))
        or not (math.isfinite(initial_cash) and initial_cash > 0)
    ):
        raise fail(
            "initial_cash", f"must be a positive number of quote currency, got {initial_cash!r}"
        )

    sections = {}
    for name, kind in SECTIONS.items():
        if name == "stops" and data.get("stops") is None:
            sections[name] = spec.stops
            continue
        sections[name] = _parse_section(data.get(name) or {}, name, kind, fail)
    try:
        make_config(sections["costs"], sections["stops"], sections["risk"])
    except ValueError as exc:
        path, _, message = str(exc).partition(" ")
        raise fail(path, message + " (use null to disable an optional limit)") from exc

    start = _parse_start(data.get("start"), fail)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "must be a string")
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("version", f"must be a whole number from 1, got {version!r}")
    return BotConfig(
        bot_id=identifier,
        strategy=strategy,
        params=_json_ready(params._asdict()),
        exchange=market["exchange"],
        symbol=market["symbol"],
        timeframe=timeframe,
        initial_cash=float(initial_cash),
        costs=sections["costs"],
        stops=sections["stops"],
        risk=sections["risk"],
        start=start,
        description=description,
        version=version,
        spec=spec,
        source=source,
    )


def load_bot_config(path: str | Path, *, resolve: StrategyResolver = resolve_strategy) -> BotConfig:
    """Read and validate one bot file; the bot id defaults to the file name without ``.json``.

    Raises
    ------
    BotConfigError
        If the file is not valid JSON or the config is invalid (the message names the file).
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BotConfigError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse_bot_config(data, bot_id=path.stem, source=str(path), resolve=resolve)


def load_bot_configs(
    directory: str | Path, *, resolve: StrategyResolver = resolve_strategy
) -> list[BotConfig]:
    """Load every ``*.json`` file of ``directory`` (sorted by name); ids must be unique.

    Raises
    ------
    BotConfigError
        For the first invalid file, or when two files declare the same bot id.
    FileNotFoundError
        If ``directory`` does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"bot config folder {directory} not found: create it with one JSON file per bot "
            "or pass --bots DIR"
        )
    configs: list[BotConfig] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.json")):
        config = load_bot_config(path, resolve=resolve)
        if config.bot_id in seen:
            raise BotConfigError(
                f"{path}: id: bot id {config.bot_id!r} is already used by {seen[config.bot_id]}; "
                "give every bot a unique id"
            )
        seen[config.bot_id] = path
        configs.append(config)
    return configs


def config_from_json(text: str, *, resolve: StrategyResolver = resolve_strategy) -> BotConfig:
    """Rebuild a :class:`BotConfig` from :meth:`BotConfig.to_json` (e.g. ``bots.config_json``)."""
    return parse_bot_config(json.loads(text), source="stored bot config", resolve=resolve)


# --------------------------------------------------------------------------- helpers


def _reject_unknown(data: Mapping, allowed: tuple[str, ...], prefix: str, fail) -> None:
    for key in data:
        if key not in allowed:
            close = _suggest(str(key), allowed)
            hint = f"did you mean {close!r}? " if close else ""
            raise fail(f"{prefix}{key}", f"unknown key; {hint}(allowed: {', '.join(allowed)})")


def _suggest(key: str, allowed: tuple[str, ...]) -> str | None:
    """The allowed name closest to ``key`` (spelling, or ``key`` abbreviating it), if any."""
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return close[0]
    squashed = key.lower().replace("_", "").replace("-", "")
    for name in allowed:
        if name.replace("_", "").startswith(squashed) or squashed.startswith(name.replace("_", "")):
            return name
    return None


def _parse_section(values: Any, name: str, kind: type, fail) -> Any:
    if not isinstance(values, Mapping):
        raise fail(
            name,
            f"must be an object with keys {', '.join(kind._fields)}, got {type(values).__name__}",
        )
    _reject_unknown(values, kind._fields, f"{name}.", fail)
    parsed = {}
    for key, value in values.items():
        path = f"{name}.{key}"
        if value is None:
            if key not in NULLABLE_FIELDS[name]:
                raise fail(path, "cannot be null: give a number")
            parsed[key] = math.nan
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(
                path,
                f"must be a number{' or null' if key in NULLABLE_FIELDS[name] else ''}, got {value!r}",
            )
        else:
            parsed[key] = float(value)
    if name == "stops":  # a given stops object is complete: what it omits is disabled
        parsed = {key: parsed.get(key, math.nan) for key in kind._fields}
    return kind(**parsed)


def _parse_start(value: Any, fail) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise fail(
            "start", "must be an ISO 8601 UTC time such as '2018-01-01T00:00:00Z' or ms since 1970"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
    raise fail(
        "start",
        f"{value!r} is not a time: use ISO 8601 UTC such as '2018-01-01T00:00:00Z' or ms since 1970",
    )


def _json_ready(values: dict) -> dict:
    ready = {}
    for key, value in values.items():
        if hasattr(value, "item"):
            value = value.item()
        ready[key] = value
    return ready
