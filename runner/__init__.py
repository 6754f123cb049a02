"""The paper-trading runner: bots that run research strategies unchanged (docs/architecture.md §6).

An asyncio process hosts many bots. Each bot is a strategy, its parameters, a market, costs,
stops and risk limits, read from a JSON file in ``config/bots/`` (:mod:`runner.config`). For
every closed bar a bot computes its decision from the strategy's ``target`` on the history
window, fills it with :func:`research.kernels.execution.step` (the execution function the
backtest loops) and records signal, trades, state and equity atomically (:mod:`runner.bot`,
:mod:`runner.ledger`); then it publishes on the bus. The bots of one market take each bar
together: one transaction and one publish for all of them (:mod:`runner.market_group`).
Startup is recovery (:mod:`runner.process`). Replay (:mod:`runner.process`, ``replay=``) feeds
stored bars through the same path.

Keep this module light: it imports nothing.
"""
