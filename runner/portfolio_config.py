"""Portfolio bot configuration: a bot that trades a portfolio strategy over a universe.

A portfolio bot file names a ``portfolio`` strategy instead of a ``strategy``, and a
``universe`` instead of one market::

    {
      "portfolio": "momentum_rotation",
      "params": {"top": 2, "window": 72},
      "universe": {"exchange": "bittrex", "timeframe": "1m",
                   "symbols": ["ADA/BTC", "ETH/BTC", "LTC/BTC", "XLM/BTC", "DASH/BTC"]},
      "initial_cash": 10000,
      "costs": {"fee_rate": 0.0025, "slippage_bps": 2},
      "stops": {"stop_loss": 0.05},
      "limits": {"max_weight": 0.5, "max_gross": 1.0, "daily_loss_limit": null,
                 "max_drawdown": 0.3, "min_notional": 10},
      "rebalance": {"period": 3600000},
      "grace_seconds": 30,
      "start": "2018-01-21T00:00:00Z"
    }

Keys
----
``portfolio``      a portfolio strategy reference (required): a shipped name
                   (:mod:`strategies.portfolio_registry`) or ``module:ATTRIBUTE`` of a
                   :class:`~research.portfolio_model.PortfolioSpec`.
``universe``       ``exchange``, ``timeframe`` and ``symbols`` (a list of at least one market,
                   each once), required.
``params``         the strategy's parameters; missing ones take its defaults.
``costs``, ``stops``  as for a single-market bot (stops apply to every position; without
                   ``stops`` none).
``limits``         :class:`~research.kernels.portfolio_records.BookLimits`: ``max_weight``,
                   ``max_gross``, ``daily_loss_limit`` and ``max_drawdown`` (``null``
                   disables those two), ``min_notional``.
``rebalance``      :class:`~research.kernels.portfolio_records.Rebalance`: ``every``,
                   ``period``, ``offset`` (ms), ``drift`` (``null`` disables); without it the
                   strategy's own rule.
``grace_seconds``  how long after a bar's close time the bot waits for a market that has not
                   committed that bar (default 60); then the market is treated as missing at
                   that bar (it does not trade there) and the decision records which markets
                   were present. A market whose next stored bar is later is missing at once.
``id``, ``initial_cash``, ``start``, ``description``, ``version``  as for a single-market bot.

The config is immutable once the bot has traded, universe included (see
:func:`runner.registry.register_bots`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from candela.core.markets import validate_exchange, validate_symbol
from candela.core.timeframes import SUPPORTED_TIMEFRAMES, timeframe_to_ms
from research.kernels.portfolio_records import BookLimits, Rebalance, make_book_config
from research.portfolio_model import PortfolioSpec
from research.types import Costs, Stops
from strategies.portfolio_registry import get_portfolio, portfolio_names

PORTFOLIO_KEYS = (
    "id",
    "portfolio",
    "params",
    "universe",
    "initial_cash",
    "costs",
    "stops",
    "limits",
    "rebalance",
    "grace_seconds",
    "start",
    "description",
    "version",
)
REQUIRED = ("portfolio", "universe")
UNIVERSE_KEYS = ("exchange", "timeframe", "symbols")
PORTFOLIO_SYMBOL = "(portfolio)"
"""What a portfolio bot's ``bots.symbol`` column holds (its markets are in its config)."""


@dataclass(frozen=True)
class PortfolioBotConfig:
    """A validated portfolio bot (see the module docstring).

    ``exchange`` and ``timeframe`` are the universe's; ``symbols`` its markets in column order.
    """

    bot_id: str
    strategy: str
    params: dict
    exchange: str
    timeframe: str
    symbols: tuple[str, ...]
    initial_cash: float = 10_000.0
    costs: Costs = Costs()
    stops: Stops = Stops()
    limits: BookLimits = BookLimits()
    rebalance: Rebalance | None = None
    grace_seconds: float = 60.0
    start: int | None = None
    description: str = ""
    version: int = 1
    spec: PortfolioSpec | None = field(default=None, compare=False, repr=False)
    source: str = field(default="bot config", compare=False, repr=False)

    symbol = PORTFOLIO_SYMBOL

    @property
    def timeframe_ms(self) -> int:
        return timeframe_to_ms(self.timeframe)

    @property
    def markets(self) -> list[tuple[str, str, str]]:
        """``(exchange, symbol, timeframe)`` of every market of the universe."""
        return [(self.exchange, symbol, self.timeframe) for symbol in self.symbols]

    @property
    def book_rebalance(self) -> Rebalance:
        """The rebalancing rule: the config's, else the strategy's for these params."""
        if self.rebalance is not None:
            return self.rebalance
        return self.spec.rebalance(self.spec.make_params(self.params))

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (``nan`` as ``None``); loads back unchanged."""
        none = lambda value: None if isinstance(value, float) and math.isnan(value) else value  # noqa: E731
        return {
            "id": self.bot_id,
            "portfolio": self.strategy,
            "params": dict(self.params),
            "universe": {
                "exchange": self.exchange,
                "timeframe": self.timeframe,
                "symbols": list(self.symbols),
            },
            "initial_cash": self.initial_cash,
            "costs": {key: none(value) for key, value in self.costs._asdict().items()},
            "stops": {key: none(value) for key, value in self.stops._asdict().items()},
            "limits": {key: none(value) for key, value in self.limits._asdict().items()},
            "rebalance": None
            if self.rebalance is None
            else {key: none(value) for key, value in self.rebalance._asdict().items()},
            "grace_seconds": self.grace_seconds,
            "start": self.start,
            "description": self.description,
            "version": self.version,
        }

    def to_json(self) -> str:
        """Canonical JSON of :meth:`to_dict`, as stored in ``bots.config_json``."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def bot_markets(config) -> list[tuple[str, str, str]]:
    """The markets a bot trades: a portfolio bot's universe, else its one market."""
    return list(config.markets) if isinstance(config, PortfolioBotConfig) else [config.market]


def resolve_portfolio(reference: str) -> PortfolioSpec:
    """The portfolio strategy ``reference`` names: a shipped name or ``module:ATTRIBUTE``.

    Raises
    ------
    ValueError
        If nothing usable has that name (the message lists the shipped ones).
    """
    if not isinstance(reference, str) or not reference:
        raise ValueError(
            f"must name a portfolio strategy, e.g. 'momentum_rotation', got {reference!r}"
        )
    if ":" in reference:
        module_name, _, attribute = reference.partition(":")
        try:
            value = getattr(importlib.import_module(module_name), attribute, None)
        except ImportError as exc:
            raise ValueError(f"cannot import {module_name!r} for {reference!r}: {exc}") from None
        if not isinstance(value, PortfolioSpec):
            raise ValueError(
                f"{reference!r} is not a portfolio strategy (made with @portfolio or allocate)"
            )
        return value
    try:
        return get_portfolio(reference)
    except ValueError as exc:
        raise ValueError(
            f"{exc}; or module:ATTRIBUTE of your own (shipped: {', '.join(portfolio_names())})"
        ) from None


def parse_portfolio_config(
    data: Mapping,
    *,
    bot_id: str | None,
    source: str,
    fail,
    parse_section,
    parse_start,
    reject_unknown,
    resolve=resolve_portfolio,
) -> PortfolioBotConfig:
    """Validate a decoded portfolio bot config (called by
    :func:`runner.config.parse_bot_config`, whose helpers and error format it shares).

    Raises
    ------
    BotConfigError
        Through ``fail``: naming the file, the field path and the fix.
    """
    reject_unknown(data, PORTFOLIO_KEYS, "", fail)
    for key in REQUIRED:
        if key not in data:
            raise fail(
                key, f'missing; add "{key}": ... (a portfolio bot needs {", ".join(REQUIRED)})'
            )
    identifier = data.get("id", bot_id)
    reference = data["portfolio"]
    try:
        spec = resolve(reference)
    except ValueError as exc:
        raise fail("portfolio", str(exc)) from exc
    raw = data.get("params") or {}
    if not isinstance(raw, Mapping):
        raise fail("params", f"must be an object of parameter values, got {type(raw).__name__}")
    try:
        params = spec.make_params(dict(raw))
    except (ValueError, TypeError) as exc:
        raise fail("params", str(exc)) from exc
    exchange, timeframe, symbols = _parse_universe(data["universe"], fail)
    initial_cash = data.get("initial_cash", 10_000.0)
    if (
        isinstance(initial_cash, bool)
        or not isinstance(initial_cash, (int, float))
        or not (math.isfinite(initial_cash) and initial_cash > 0)
    ):
        raise fail(
            "initial_cash", f"must be a positive number of quote currency, got {initial_cash!r}"
        )
    costs = parse_section(data.get("costs") or {}, "costs", Costs, fail)
    stops = parse_section(data.get("stops") or {}, "stops", Stops, fail)
    limits = parse_section(data.get("limits") or {}, "limits", BookLimits, fail)
    rebalance = None
    if data.get("rebalance") is not None:
        rebalance = parse_section(data["rebalance"], "rebalance", Rebalance, fail)
        rebalance = Rebalance(
            int(rebalance.every), int(rebalance.period), int(rebalance.offset), rebalance.drift
        )
    try:
        make_book_config(costs, stops, limits, rebalance or spec.rebalance(params))
    except ValueError as exc:
        path, _, message = str(exc).partition(" ")
        raise fail(path, message + " (use null to disable an optional limit)") from exc
    grace = data.get("grace_seconds", 60.0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < 86_400:
        raise fail("grace_seconds", f"must be a number of seconds from 0 to 86399, got {grace!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "must be a string")
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("version", f"must be a whole number from 1, got {version!r}")
    return PortfolioBotConfig(
        bot_id=identifier,
        strategy=reference,
        params={
            key: (value.item() if hasattr(value, "item") else value)
            for key, value in params._asdict().items()
        },
        exchange=exchange,
        timeframe=timeframe,
        symbols=symbols,
        initial_cash=float(initial_cash),
        costs=costs,
        stops=stops,
        limits=limits,
        rebalance=rebalance,
        grace_seconds=float(grace),
        start=parse_start(data.get("start"), fail),
        description=description,
        version=version,
        spec=spec,
        source=source,
    )


def _parse_universe(universe: Any, fail) -> tuple[str, str, tuple[str, ...]]:
    if not isinstance(universe, Mapping):
        raise fail("universe", "must be an object with exchange, timeframe and symbols")
    for key in universe:
        if key not in UNIVERSE_KEYS:
            raise fail(
                f"universe.{key}",
                f"unknown key (allowed: {', '.join(UNIVERSE_KEYS)}; "
                "one timeframe for every market)",
            )
    for key in UNIVERSE_KEYS:
        if key not in universe:
            raise fail(f"universe.{key}", "missing")
    try:
        exchange = validate_exchange(universe["exchange"])
    except ValueError as exc:
        raise fail("universe.exchange", str(exc)) from exc
    timeframe = universe["timeframe"]
    if timeframe not in SUPPORTED_TIMEFRAMES:
        raise fail(
            "universe.timeframe",
            f"unsupported timeframe {timeframe!r} (supported: {', '.join(SUPPORTED_TIMEFRAMES)})",
        )
    symbols = universe["symbols"]
    if not isinstance(symbols, list) or not symbols:
        raise fail(
            "universe.symbols",
            'must be a list of at least one market, e.g. ["BTC/USDT", "ETH/USDT"]',
        )
    checked = []
    for index, symbol in enumerate(symbols):
        try:
            checked.append(validate_symbol(symbol))
        except ValueError as exc:
            raise fail(f"universe.symbols[{index}]", str(exc)) from exc
        if checked.count(checked[-1]) > 1:
            raise fail(
                f"universe.symbols[{index}]",
                f"{checked[-1]} is listed twice: list each market once",
            )
    return exchange, timeframe, tuple(checked)
