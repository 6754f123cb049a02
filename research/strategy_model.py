"""The strategy model: ``@strategy`` turns one function into a :class:`StrategySpec`.

Pure core: numpy and the research core only, so the runner and the strategies can import it.
A strategy is a function of the bars and its parameters (docs/writing-a-strategy.md)::

    @strategy(sweep={"fast": range(5, 30), "slow": range(20, 120, 5)},
              constraints=["fast < slow"])
    def ema_trend(bars, fast: int = 12, slow: int = 26):
        \"\"\"Long while the fast EMA is above the slow one.\"\"\"
        fast_ema, slow_ema = ema(bars.close, fast), ema(bars.close, slow)
        return fast_ema > slow_ema, {"price": {"ema_fast": fast_ema, "ema_slow": slow_ema}}

* **Parameters** come from the signature: every parameter after the bars needs a default; its
  type is the annotation (``int``, ``float``, ``bool``, ``str``) or the default's type.
* The function returns the **target** (one level per bar: ``+1`` long, ``0`` flat, ``-1``
  short, fractions between, ``nan`` flat; a boolean target becomes ``1.0``/``0.0``), or
  ``(target, panes)`` with ``panes = {pane: {series name: series}}``: the pane ``"price"`` is
  drawn over the candles, every other pane in a subplot of its own; every series is recorded
  with each live decision (the strategy's *indicators*).
* The function receives bars whose columns are :class:`~research.lines.Line` objects, so the
  target and the series know their **look-back** (bars before the first defined target) and
  **history** (bars a window needs to give the full-history value bit for bit). The library
  masks the target to ``nan`` during the look-back; the runner loads the **history window**,
  ``max(history of the target and of every series, look-back + 1)`` bars, for each decision.
  Both are read by evaluating the strategy on zero bars (once per parameter set). A target or
  series of unknown history (a plain array) is an error naming the fixes, unless ``lookback=``
  and ``history=`` are declared on ``@strategy``.
* **Constraints** are comparisons between parameters and numbers (``"fast < slow"``,
  ``"0 <= lower < upper <= 100"``), parsed once (no ``eval``); :meth:`StrategySpec.make_params`
  refuses a parameter set that breaks one.
"""

from __future__ import annotations

import ast
import collections
import difflib
import importlib
import inspect
import math
import operator
import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from research.lines import Line, as_line, numbers_of
from research.types import Bars, Stops

#: Parameter types a strategy may declare.
PARAMETER_TYPES = (bool, int, float, str)

_COMPARISONS = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}

FIXES = (
    "use research.indicators.shift(x, k) instead of slicing or np.roll, wrap your own array "
    "function with @indicator(lookback=..., history=...), or declare lookback= and "
    "history= on @strategy (numbers, or functions of the parameters)"
)


class ConstraintError(ValueError):
    """A parameter set breaks one of the strategy's constraints (``constraint`` is its text)."""

    def __init__(self, message: str, constraint: str):
        super().__init__(message)
        self.constraint = constraint


class UnknownHistoryError(TypeError):
    """A strategy returned a target or a series whose look-back or history window the library
    cannot follow (a plain array), and declared none."""


class Evaluation(NamedTuple):
    """One evaluation of a strategy over bars.

    Attributes
    ----------
    target : ndarray of float64
        One level per bar, ``nan`` during the look-back (masked by the library).
    indicators : dict of str to ndarray of float64
        Every series of every pane, by name.
    panes : dict of str to list of str
        The series names of each pane, ``"price"`` first when present.
    lookback : int
        Bars before the first defined target.
    history_window : int
        Bars the runner loads per decision: ``max(history of the target and of every series,
        lookback + 1)``.
    """

    target: np.ndarray
    indicators: dict[str, np.ndarray]
    panes: dict[str, list[str]]
    lookback: int
    history_window: int


class Constraint(NamedTuple):
    """A comparison between parameters (and numbers), e.g. ``"0 <= lower < upper <= 100"``."""

    text: str
    operands: tuple[str | float, ...]  # parameter names (str) and numbers
    comparisons: tuple[Callable[[Any, Any], bool], ...]

    def holds(self, params: Any) -> bool:
        values = [getattr(params, x) if isinstance(x, str) else x for x in self.operands]
        pairs = zip(self.comparisons, values, values[1:], strict=False)
        return all(compare(a, b) for compare, a, b in pairs)

    def names(self) -> list[str]:
        return [x for x in self.operands if isinstance(x, str)]


@dataclass(frozen=True, eq=False)
class StrategySpec:
    """Everything the backtest and the runner need to know about one strategy (made by
    :func:`strategy`; see the module docstring).

    Attributes
    ----------
    name : str
        The strategy's name (by default its function's).
    params : type
        A ``NamedTuple`` class of the parameters, with their defaults and types.
    function : callable
        ``function(bars, **params)`` returning the target or ``(target, panes)``.
    sweep : mapping
        Default sweep values per parameter name.
    constraints : tuple of Constraint
    stops : Stops
        Default protective exits.
    long_only : bool
        Whether the target never goes below zero (documentation, oracle configuration).
    description : str
        The function's docstring.
    declared_lookback, declared_history : int, callable or None
        ``lookback=`` / ``history=`` of ``@strategy``: a number or ``f(params)``; they override
        what the Lines say.
    """

    name: str
    params: type
    function: Callable[..., Any]
    sweep: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    stops: Stops = Stops()
    long_only: bool = False
    description: str = ""
    declared_lookback: int | Callable[[Any], int] | None = None
    declared_history: int | Callable[[Any], int] | None = None
    _numbers: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ parameters

    def make_params(self, values: Mapping[str, Any] | Any | None = None, **overrides: Any) -> Any:
        """Return a validated ``params`` instance from defaults, ``values`` and ``overrides``.

        Raises
        ------
        ValueError
            For an unknown parameter name (with a "did you mean" suggestion), a value of the
            wrong type, or a parameter set that breaks a constraint (:class:`ConstraintError`).
        """
        fields = self.params._fields
        if isinstance(values, self.params) and not overrides:
            merged = values._asdict()
        else:
            merged = {}
            if values is not None:
                merged.update(values._asdict() if hasattr(values, "_asdict") else dict(values))
            merged.update(overrides)
        for key in merged:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown parameter {key!r} for strategy {self.name!r}{hint} "
                    f"(parameters: {', '.join(fields)})"
                )
        kinds = self.params.__annotations__
        params = self.params(
            **{
                key: _convert_param(self.name, key, value, kinds[key])
                for key, value in merged.items()
            }
        )
        for constraint in self.constraints:
            if not constraint.holds(params):
                values_text = ", ".join(
                    f"{name}={getattr(params, name)!r}"
                    for name in dict.fromkeys(constraint.names())
                )
                raise ConstraintError(
                    f"constraint {constraint.text!r} of strategy {self.name!r} does not hold "
                    f"for {values_text}: choose values that satisfy it",
                    constraint.text,
                )
        return params

    def _params(self, params: Any) -> Any:
        return params if isinstance(params, self.params) else self.make_params(params)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, bars: Bars, params: Any = None, *, raw_target: bool = False) -> Evaluation:
        """Run the strategy on ``bars``: its masked target, its series and their panes.

        ``params`` is a ``params`` instance, a mapping or ``None`` (defaults). With
        ``raw_target``, a boolean target is given as it is (a bool array, not masked: its
        levels are ``nan`` before ``lookback``, else ``1.0`` / ``0.0``), which a sweep row
        reads without converting it; any other target is the masked float64 levels as usual.

        Raises
        ------
        UnknownHistoryError
            If the target or a series is a plain array and ``lookback=``/``history=`` are not
            declared.
        TypeError, ValueError
            If the function returns something else than a target of one number per bar (and
            panes of such series). Exceptions of the strategy's own code propagate unchanged.
        """
        params = params if type(params) is self.params else self._params(params)
        output = self.function(_line_bars(bars), **params._asdict())
        target, panes = self._parts(output)
        n = len(bars)
        if not _is_series(target, n):
            _refuse_series(self.name, "target", target, n)
        series: dict[str, np.ndarray] = {}
        groups: dict[str, list[str]] = {}
        for pane, members in panes.items():
            if not isinstance(members, (dict, Mapping)):
                raise TypeError(
                    f"strategy {self.name!r}: pane {pane!r} must map series names "
                    f"to series, got {type(members).__name__}"
                )
            names = groups.setdefault(str(pane), [])
            for name, values in members.items():
                if name in series:
                    raise ValueError(
                        f"strategy {self.name!r}: series {name!r} appears in two "
                        "panes; give each series its own name"
                    )
                if not _is_series(values, n):
                    _refuse_series(self.name, f"series {name!r}", values, n)
                series[name] = values
                names.append(str(name))
        lookback, history = self._numbers_of(params, target, series)
        if raw_target and target.dtype == np.bool_:
            levels = target.view(np.ndarray)
        else:
            levels = np.array(target, dtype=np.float64)
            levels[:lookback] = np.nan
        indicators = {
            name: values.view(np.ndarray)
            if values.dtype == np.float64
            else values.astype(np.float64)
            for name, values in series.items()
        }
        return Evaluation(levels, indicators, groups, lookback, max(history, lookback + 1))

    def _parts(self, output: Any) -> tuple[Any, Mapping]:
        if isinstance(output, tuple):
            if len(output) != 2 or not isinstance(output[1], (dict, Mapping)):
                raise TypeError(
                    f"strategy {self.name!r} must return the target or (target, "
                    f"panes) with panes a dict, got a tuple of {len(output)} items"
                )
            return output
        return output, {}

    def _numbers_of(self, params: Any, target: Any, series: Mapping[str, Any]) -> tuple[int, int]:
        """``(lookback, history)``: declared, else read from the Lines."""
        if self.declared_lookback is not None:
            lookback = _declared(self, "lookback", self.declared_lookback, params, 0)
        else:
            numbers = numbers_of(target)
            if numbers is None:
                raise UnknownHistoryError(
                    f"strategy {self.name!r}: look-back and history window unknown: its target "
                    f"is a plain array, computed with something the library cannot follow "
                    f"(slicing, np.roll, np.concatenate, a reduction, a plain array); {FIXES}"
                )
            lookback = numbers[0]
        if self.declared_history is not None:
            return lookback, _declared(self, "history", self.declared_history, params, 1)
        history = 1
        for label, values in (("target", target), *series.items()):
            if type(values) is not Line or values.history < 1:
                what = "target" if values is target else f"series {label!r}"
                raise UnknownHistoryError(
                    f"strategy {self.name!r}: history window unknown: its {what} is a plain "
                    f"array, computed with something the library cannot follow (slicing, "
                    f"np.roll, np.concatenate, a reduction, a plain array); {FIXES}"
                )
            if values.history > history:
                history = values.history
        return lookback, history

    def target(self, bars: Bars, params: Any = None) -> np.ndarray:
        """The masked target levels over ``bars`` (float64, ``nan`` = flat)."""
        return self.evaluate(bars, params).target

    def indicators(self, bars: Bars, params: Any = None) -> dict[str, np.ndarray]:
        """Every series of every pane over ``bars``, by name."""
        return self.evaluate(bars, params).indicators

    def target_and_indicators(
        self, bars: Bars, params: Any = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(target, indicators)`` of one evaluation (what the runner records per bar)."""
        evaluation = self.evaluate(bars, params)
        return evaluation.target, evaluation.indicators

    # ------------------------------------------------------------------ look-back and history

    def _empty_evaluation(self, params: Any) -> tuple[int, int, dict[str, list[str]]]:
        params = self._params(params)
        try:
            cached = self._numbers.get(params)
        except TypeError:  # an unhashable parameter value
            cached = None
        if cached is None:
            try:
                evaluation = self.evaluate(EMPTY_BARS, params)
            except Exception as exc:
                exc.add_note(
                    f"(while evaluating strategy {self.name!r} on zero bars to find its "
                    "look-back and history window: its code must accept empty arrays)"
                )
                raise
            cached = (evaluation.lookback, evaluation.history_window, evaluation.panes)
            try:
                self._numbers[params] = cached
            except TypeError:
                pass
        return cached

    def _both_declared(self, params: Any) -> tuple[int, int] | None:
        if self.declared_lookback is None or self.declared_history is None:
            return None
        params = self._params(params)
        lookback = _declared(self, "lookback", self.declared_lookback, params, 0)
        history = _declared(self, "history", self.declared_history, params, 1)
        return lookback, max(history, lookback + 1)

    def lookback(self, params: Any = None) -> int:
        """Bars before the first defined target for ``params``: the backtest trades from the
        bar after them (declared, or read by evaluating the strategy on zero bars)."""
        declared = self._both_declared(params)
        return declared[0] if declared else self._empty_evaluation(params)[0]

    def history_window(self, params: Any = None) -> int:
        """Bars the runner loads for each decision with ``params`` so that it equals the
        full-history decision bit for bit: ``max(history of the target and of every series,
        lookback + 1)``, or the declared history (at least ``lookback + 1``)."""
        declared = self._both_declared(params)
        return declared[1] if declared else self._empty_evaluation(params)[1]

    def panes(self, params: Any = None) -> dict[str, list[str]]:
        """``{pane: [series names]}`` of the strategy's series for ``params``."""
        return {pane: list(names) for pane, names in self._empty_evaluation(params)[2].items()}

    def check_enough_bars(self, n_bars: int, params: Any = None) -> None:
        """Raise ``ValueError`` if ``n_bars`` cannot give one defined target (``lookback + 1``)."""
        params = self._params(params)
        needed = self.lookback(params) + 1
        if n_bars < needed:
            raise ValueError(
                f"strategy {self.name!r} with {params} needs at least {needed} bars "
                f"(look-back {needed - 1}) but got {n_bars}: load a longer history or use "
                "shorter look-back parameters"
            )

    # ------------------------------------------------------------------ pickling

    def __reduce_ex__(self, protocol: Any) -> Any:
        """By reference (module and name) when the spec is what its module holds under its
        function's name (sweep workers import it again); else by value."""
        module, qualname = self.function.__module__, self.function.__qualname__
        if module != "__main__" and _lookup(module, qualname) is self:
            return _lookup, (module, qualname)
        return super().__reduce_ex__(protocol)


def _lookup(module: str, qualname: str) -> Any:
    """The object at ``module.qualname`` (``None`` if there is none)."""
    value: Any = sys.modules.get(module)
    if value is None:
        try:
            value = importlib.import_module(module)
        except ImportError:
            return None
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value


def _declared(spec: StrategySpec, what: str, value: Any, params: Any, least: int) -> int:
    number = value(params) if callable(value) else value
    if (
        isinstance(number, (bool, np.bool_))
        or not isinstance(number, (int, np.integer))
        or number < least
    ):
        raise ValueError(
            f"strategy {spec.name!r}: {what}= must give an int of at least {least} "
            f"bars for {params}, got {number!r}"
        )
    return int(number)


def _is_series(values: Any, n: int) -> bool:
    """Whether ``values`` is one number (or bool) per bar."""
    return isinstance(values, np.ndarray) and values.shape == (n,) and values.dtype.kind in "biuf"


def _refuse_series(strategy: str, label: str, values: Any, n: int) -> None:
    """Raise the error that says what is wrong with ``values`` (not :func:`_is_series`)."""
    if not isinstance(values, np.ndarray):
        raise TypeError(
            f"strategy {strategy!r} must return numpy arrays; its {label} is a "
            f"{type(values).__name__}"
        )
    if values.shape != (n,):
        raise ValueError(
            f"strategy {strategy!r} returned a {label} of shape {values.shape}; "
            f"expected ({n},), one value per bar"
        )
    raise TypeError(
        f"strategy {strategy!r} returned a {label} of dtype {values.dtype}; "
        "return numbers (float64, nan = undefined) or booleans"
    )


_LINE_BARS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _line_bars(bars: Bars) -> Bars:
    """``bars`` with every column viewed as a Line of look-back 0 and history 1; the same
    object for the same ``bars`` (the indicator memo of a sweep recognises its columns)."""
    lines = _LINE_BARS.get(bars)
    if lines is None:
        if not isinstance(bars, Bars):
            raise TypeError(
                f"bars must be research.types.Bars (see research.load_bars), got "
                f"{type(bars).__name__}"
            )
        lines = Bars(
            *(as_line(getattr(bars, name), 0, 1) for name in ("ts",) + Bars.COLUMNS),
            bars.timeframe_ms,
        )
        _LINE_BARS[bars] = lines
    return lines


EMPTY_BARS = Bars(np.empty(0, np.int64), *(np.empty(0) for _ in Bars.COLUMNS))


# --------------------------------------------------------------------------- @strategy


def strategy(
    function: Callable[..., Any] | None = None,
    *,
    sweep: Mapping[str, Sequence[Any]] | None = None,
    constraints: Sequence[str] = (),
    long_only: bool = False,
    stops: Stops = Stops(),
    name: str | None = None,
    lookback: int | Callable[[Any], int] | None = None,
    history: int | Callable[[Any], int] | None = None,
) -> Any:
    """Decorator: turn ``def f(bars, p1: int = 10, ...)`` into a :class:`StrategySpec`.

    Parameters
    ----------
    function : callable
        The strategy (when used bare, ``@strategy``).
    sweep : mapping, optional
        Default sweep values per parameter, e.g. ``{"fast": range(5, 30)}``.
    constraints : sequence of str
        Comparisons between parameters and numbers, e.g. ``["fast < slow"]``.
    long_only : bool
        Documents that the target never goes below zero.
    stops : Stops
        Default protective exits.
    name : str, optional
        The strategy's name; default the function's.
    lookback, history : int or callable, optional
        Declared look-back and history window (numbers, or functions of the ``params``
        NamedTuple), overriding what the Lines say; needed when the strategy computes its
        target with something the library cannot follow.

    Raises
    ------
    TypeError, ValueError
        At definition, for a parameter without a default or of an unsupported type, a sweep
        or constraint naming an unknown parameter, a constraint that is not a comparison, or
        defaults that break a constraint.
    """

    def decorate(function: Callable[..., Any]) -> StrategySpec:
        spec_name = name or function.__name__
        params = _params_class(function, spec_name)
        fields = params._fields
        for key in sweep or {}:
            if key not in fields:
                raise ValueError(_unknown(spec_name, "sweep", key, fields))
        if isinstance(constraints, str):
            raise TypeError(
                f"strategy {spec_name!r}: constraints= takes a list of comparisons, "
                f"e.g. [{constraints!r}]"
            )
        parsed = tuple(parse_constraint(text, fields, spec_name) for text in constraints)
        if not isinstance(stops, Stops):
            raise TypeError(f"strategy {spec_name!r}: stops= must be research.types.Stops")
        for what, value in (("lookback", lookback), ("history", history)):
            if (
                value is not None
                and not callable(value)
                and (isinstance(value, bool) or not isinstance(value, int) or value < 0)
            ):
                raise ValueError(
                    f"strategy {spec_name!r}: {what}= must be a number of bars "
                    f"or a function of the parameters, got {value!r}"
                )
        spec = StrategySpec(
            name=spec_name,
            params=params,
            function=function,
            sweep=dict(sweep or {}),
            constraints=parsed,
            stops=stops,
            long_only=bool(long_only),
            description=inspect.cleandoc(function.__doc__ or ""),
            declared_lookback=lookback,
            declared_history=history,
        )
        spec.make_params()  # the defaults must satisfy the constraints
        return spec

    return decorate if function is None else decorate(function)


def _params_class(function: Callable[..., Any], spec_name: str) -> type:
    """The ``Params`` NamedTuple of ``function``'s parameters after the bars."""
    try:
        signature = inspect.signature(function, eval_str=True)
    except NameError as exc:
        raise TypeError(
            f"strategy {spec_name!r}: an annotation cannot be resolved ({exc}); "
            "annotate parameters with int, float, bool or str"
        ) from None
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"strategy {spec_name!r}: the function must take the bars first, e.g. "
            f"def {function.__name__}(bars, fast: int = 10)"
        )
    names, kinds, defaults = [], {}, []
    for parameter in parameters[1:]:
        if parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            raise TypeError(
                f"strategy {spec_name!r}: parameter {parameter.name!r} must be an "
                "ordinary named parameter with a default (no *args, **kwargs or /)"
            )
        if parameter.default is inspect.Parameter.empty:
            raise TypeError(
                f"strategy {spec_name!r}: parameter {parameter.name!r} needs a "
                f"default, e.g. {parameter.name}: int = 10"
            )
        kind = parameter.annotation
        if kind is inspect.Parameter.empty:
            kind = type(parameter.default)
        if kind not in PARAMETER_TYPES:
            raise TypeError(
                f"strategy {spec_name!r}: parameter {parameter.name!r} must be an "
                f"int, float, bool or str, got {getattr(kind, '__name__', kind)}"
            )
        names.append(parameter.name)
        kinds[parameter.name] = kind
        defaults.append(_convert_param(spec_name, parameter.name, parameter.default, kind))
    params = collections.namedtuple("Params", names, defaults=defaults, module=function.__module__)
    params.__annotations__ = kinds
    # found again by pickle through the spec that the module holds under the function's name
    params.__qualname__ = f"{function.__qualname__}.params"
    params.__doc__ = f"Parameters of strategy {spec_name!r}."
    return params


def parse_constraint(text: str, fields: Sequence[str], spec_name: str = "") -> Constraint:
    """Parse ``text``: a comparison, possibly chained, of parameter names and numbers.

    Raises
    ------
    ValueError
        For anything else (no code is evaluated), or an unknown parameter name.
    """
    example = "e.g. 'fast < slow' or '0 <= lower < upper <= 100'"
    if not isinstance(text, str):
        raise TypeError(f"strategy {spec_name!r}: a constraint is text, {example}; got {text!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(
            f"strategy {spec_name!r}: constraint {text!r} is not a comparison, {example}"
        ) from None
    if not isinstance(node, ast.Compare):
        raise ValueError(
            f"strategy {spec_name!r}: constraint {text!r} must compare parameters "
            f"and numbers with <, <=, >, >=, == or !=, {example}"
        )
    comparisons = []
    for op in node.ops:
        if type(op) not in _COMPARISONS:
            raise ValueError(
                f"strategy {spec_name!r}: constraint {text!r} may only use <, <=, "
                f">, >=, == and !=, {example}"
            )
        comparisons.append(_COMPARISONS[type(op)])
    operands: list[str | float] = []
    for operand in (node.left, *node.comparators):
        if isinstance(operand, ast.Name):
            if operand.id not in fields:
                raise ValueError(_unknown(spec_name, f"constraint {text!r}", operand.id, fields))
            operands.append(operand.id)
        else:
            operands.append(_number(operand, text, spec_name, example))
    if not any(isinstance(x, str) for x in operands):
        raise ValueError(f"strategy {spec_name!r}: constraint {text!r} names no parameter")
    return Constraint(text.strip(), tuple(operands), tuple(comparisons))


def _number(node: ast.AST, text: str, spec_name: str, example: str) -> float:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return sign * node.value
    raise ValueError(
        f"strategy {spec_name!r}: constraint {text!r} may only hold parameter "
        f"names and numbers, {example}"
    )


def _unknown(spec_name: str, where: str, key: str, fields: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"strategy {spec_name!r}: {where} names unknown parameter {key!r}{hint} "
        f"(parameters: {', '.join(fields) or 'none'})"
    )


def _convert_param(strategy_name: str, key: str, value: Any, kind: type) -> Any:
    """Coerce ``value`` to ``kind`` (bool, int, float, str), or raise ``ValueError``."""
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif kind is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        if (
            isinstance(value, (float, np.floating))
            and math.isfinite(value)
            and float(value).is_integer()
        ):
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        ):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ValueError(
        f"parameter {key!r} of strategy {strategy_name!r} must be {kind.__name__}, got {value!r}"
    )


__all__ = [
    "Constraint",
    "ConstraintError",
    "Evaluation",
    "Line",
    "StrategySpec",
    "UnknownHistoryError",
    "parse_constraint",
    "strategy",
]
