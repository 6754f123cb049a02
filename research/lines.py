"""Lines: numpy arrays that know how much of the past they need (pure core: numpy only).

A :class:`Line` is a 1-D ``numpy.ndarray`` aligned with the bars, carrying two integers:

* ``lookback``: the bars before its first defined value (``sma(close, 50)`` has 49);
* ``history``: the bars the runner must load so that the value at the last bar of a window of
  that many bars equals, bit for bit, the value computed on the full history (``sma(close,
  50)`` needs 50; a recursive indicator needs enough bars for its seed to be forgotten).

The columns of the bars a strategy receives are Lines (``lookback`` 0, ``history`` 1), the
indicators of :mod:`research.indicators` return Lines, and numpy's element-wise operations
carry the two numbers along, so the look-back and history window of a whole strategy are known
without any arithmetic by its author (docs/writing-a-strategy.md).

What keeps the numbers and what loses them:

* an **element-wise** ufunc call (arithmetic, comparisons, ``&``, ``|``, ``~``, ``np.abs``,
  ``np.maximum``, ``np.sign``, ``np.isnan``, ...) and the element-wise functions in
  :data:`ELEMENTWISE_FUNCTIONS` (``np.where``, ``np.clip``, ``np.select``, ...) over Lines and
  scalars give a Line with the largest ``lookback`` and the largest ``history`` of the Line
  inputs; ``astype`` and ``copy`` keep them;
* a plain array among the inputs (anything but a scalar) makes the result a **plain** array:
  nothing is known of how it was computed;
* anything that is not element-wise gives a plain array: indexing and slicing (which may change
  the alignment with the bars; ``line[:]`` and ``line[...]`` excepted), ``np.roll``,
  ``np.concatenate``, ``np.diff``, ``np.cumsum`` and other accumulations, reductions (``sum``,
  ``max``, ...); a single element taken out is a plain scalar.

A strategy whose result is a plain array has an unknown look-back and history window, which
:mod:`research.strategy_model` refuses with the fixes: :func:`research.indicators.shift`
instead of slicing, :func:`research.indicators.indicator` around an array function, or the
numbers declared on ``@strategy``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

#: numpy functions (dispatched through ``__array_function__``) that work element by element:
#: their result is a Line when every array input is a Line (or a scalar).
ELEMENTWISE_FUNCTIONS = frozenset(
    {
        np.where,
        np.clip,
        np.select,
        np.nan_to_num,
        np.round,
        np.around,
        np.isclose,
        np.copy,
        np.zeros_like,
        np.ones_like,
        np.full_like,
        np.empty_like,
        np.fix,
        np.isneginf,
        np.isposinf,
    }
)


class Line(np.ndarray):
    """A 1-D array aligned with the bars, with its ``lookback`` and ``history`` (see the module
    docstring).

    Parameters
    ----------
    values : array_like
        The values (viewed, not copied, when already an array).
    lookback : int
        Bars before the first defined value (``>= 0``).
    history : int
        Bars a window must hold for its last value to equal the full-history one
        (``>= 1``).
    """

    lookback: int = 0
    history: int = 1

    def __new__(cls, values: Any, lookback: int = 0, history: int = 1) -> Line:
        line = np.asarray(values).view(cls)
        line.lookback = int(lookback)
        line.history = int(history)
        if line.lookback < 0 or line.history < 1:
            raise ValueError(
                f"a Line needs lookback >= 0 and history >= 1, got lookback "
                f"{lookback} and history {history}"
            )
        return line

    def __array_finalize__(self, obj: Any) -> None:
        # views, copies and astype of a Line keep its numbers (indexing is handled below); a
        # view of a plain array has the class defaults until as_line sets them
        if type(obj) is Line:
            self.lookback = obj.lookback
            self.history = obj.history

    def __getitem__(self, index: Any) -> Any:
        result = np.ndarray.__getitem__(self.view(np.ndarray), index)
        if isinstance(result, np.ndarray) and _keeps_alignment(index):
            return as_line(result, self.lookback, self.history)
        return result

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if not kwargs and method == "__call__":
            # the common case, kept short: a strategy in a sweep makes many such calls
            lookback, history = 0, 1
            plain = []
            for value in inputs:
                if type(value) is Line:
                    if value.history < 1:
                        break
                    if value.lookback > lookback:
                        lookback = value.lookback
                    if value.history > history:
                        history = value.history
                    plain.append(value.view(np.ndarray))
                elif _is_scalar(value):
                    plain.append(value)
                else:
                    break
            else:
                result = ufunc(*plain)
                if type(result) is np.ndarray and result.ndim == 1:
                    line = result.view(Line)
                    line.lookback, line.history = lookback, history
                    return line
                return _wrap(result, (lookback, history))
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_plain(array) for array in out)
        where = kwargs.get("where")
        if isinstance(where, np.ndarray):
            kwargs["where"] = _plain(where)
        result = getattr(ufunc, method)(*(_plain(value) for value in inputs), **kwargs)
        numbers = None
        if method == "__call__" and ufunc.signature is None:
            numbers = combined(list(inputs) + ([where] if where is not None else []))
        if out is not None:
            # in place (``x += y``, ``out=``): the caller's own arrays come back
            for array in out:
                if isinstance(array, Line):
                    if numbers is None:  # it no longer holds what its numbers say
                        array.lookback, array.history = _UNKNOWN
                    else:
                        array.lookback, array.history = numbers
            return out[0] if len(out) == 1 else out
        return _wrap(result, numbers)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        result = func(*_plain_tree(args), **_plain_tree(kwargs))
        if func not in ELEMENTWISE_FUNCTIONS or (func is np.where and len(args) == 1):
            return result  # np.where(condition) alone gives indices
        return _wrap(result, combined(_leaves((args, kwargs))))

    def __reduce__(self):
        constructor, arguments, state = super().__reduce__()
        return constructor, arguments, (state, self.lookback, self.history)

    def __setstate__(self, state: tuple) -> None:
        array_state, self.lookback, self.history = state
        super().__setstate__(array_state)

    def __repr__(self) -> str:
        body = np.array2string(self.view(np.ndarray), separator=", ", prefix="Line(")
        return f"Line({body}, lookback={self.lookback}, history={self.history})"


#: The numbers of an array whose history is not known: a strategy refuses it.
_UNKNOWN = (-1, -1)


def as_line(values: Any, lookback: int, history: int) -> Line:
    """``values`` viewed as a :class:`Line` with the given numbers (no copy, no checks)."""
    line = (values if type(values) is np.ndarray else np.asarray(values)).view(Line)
    line.lookback = lookback
    line.history = history
    return line


def numbers_of(value: Any) -> tuple[int, int] | None:
    """``(lookback, history)`` of a Line, ``(0, 1)`` of a scalar (a Python or numpy number, a
    0-d array), ``None`` for anything else (a plain array: its history is unknown)."""
    if isinstance(value, Line):
        if value.history < 1:
            return None
        return value.lookback, value.history
    if _is_scalar(value):
        return 0, 1
    return None


def combined(values: Iterable[Any]) -> tuple[int, int] | None:
    """The numbers of an element-wise result of ``values``: the largest ``lookback`` and the
    largest ``history`` of the Lines among them; ``None`` if one of them is a plain array (or
    a Line of unknown history)."""
    lookback, history = 0, 1
    for value in values:
        if value is None:
            continue
        numbers = numbers_of(value)
        if numbers is None:
            return None
        lookback, history = max(lookback, numbers[0]), max(history, numbers[1])
    return lookback, history


_SCALARS = (int, float, bool, complex, np.generic)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0


def _keeps_alignment(index: Any) -> bool:
    return index is Ellipsis or (isinstance(index, slice) and index == slice(None))


def _plain(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, Line) else value


def _plain_tree(value: Any) -> Any:
    if isinstance(value, Line):
        return value.view(np.ndarray)
    if isinstance(value, tuple):
        return tuple(_plain_tree(item) for item in value)
    if isinstance(value, list):
        return [_plain_tree(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain_tree(item) for key, item in value.items()}
    return value


def _leaves(value: Any) -> Iterable[Any]:
    """The values inside nested tuples, lists and dicts (the arguments of a numpy function);
    callables (``np.piecewise``'s functions) are not data."""
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (np.ndarray, int, float, bool, complex, np.generic)):
        yield value
    elif value is None or isinstance(value, (str, np.dtype)) or callable(value):
        return
    else:  # anything else is data of unknown history
        yield np.asarray(value)


def _wrap(result: Any, numbers: tuple[int, int] | None) -> Any:
    if isinstance(result, tuple):
        return tuple(_wrap(item, numbers) for item in result)
    if not isinstance(result, np.ndarray) or result.ndim != 1:
        return result.view(np.ndarray) if isinstance(result, Line) else result
    if numbers is None:
        return result.view(np.ndarray) if isinstance(result, Line) else result
    return as_line(result, *numbers)
