"""Market identifiers: exchange names and unified ``BASE/QUOTE`` symbols."""

from __future__ import annotations

import re

_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$")
_EXCHANGE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is in ccxt's unified ``BASE/QUOTE`` form, else raise.

    Raises
    ------
    ValueError
        With a hint: ``BTC-USDT`` or ``BTCUSDT`` are suggested as ``BTC/USDT``.
    """
    if isinstance(symbol, str) and _SYMBOL.match(symbol):
        return symbol
    hint = ""
    if isinstance(symbol, str) and re.match(r"^[A-Za-z0-9]+[-_][A-Za-z0-9]+$", symbol):
        hint = f"; did you mean {re.sub(r'[-_]', '/', symbol).upper()!r}?"
    raise ValueError(f"symbol {symbol!r} is not in unified BASE/QUOTE form (e.g. 'BTC/USDT'){hint}")


def validate_exchange(exchange: str) -> str:
    """Return ``exchange`` if it is a lower-case ccxt-style id such as ``binance``, else raise."""
    if isinstance(exchange, str) and _EXCHANGE.match(exchange):
        return exchange
    raise ValueError(
        f"exchange {exchange!r} is not a ccxt exchange id: use lower case letters and digits, "
        "e.g. 'binance', 'okx', 'bittrex'"
    )
