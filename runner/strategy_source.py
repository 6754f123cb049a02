"""Strategy references: how bot configs and the ``candela`` commands name a strategy.

A *reference* is one of

* a **name**: a shipped strategy (:mod:`strategies.registry`, e.g. ``sma_cross``) or a strategy
  found in a user strategy folder;
* ``module:ATTRIBUTE``: a :class:`~research.strategy_model.StrategySpec` (a function decorated
  with ``@strategy``) held by an importable module, e.g. ``my_package.signals:trend``.

User strategy folders are :func:`candela.core.paths.strategy_dirs`: the folders of
``CANDELA_STRATEGY_PATH`` (separated by ``os.pathsep``), else ``user_strategies/`` at the
repository root (created by nothing: make it when you need it). Every ``*.py`` file directly in
such a folder whose name does not start with ``_`` (those are helper modules) is imported as a
top-level module named after the file, its folder appended to ``sys.path`` (so the files may
import each other and sweep workers can import them again); every ``StrategySpec`` at its module
level is registered under its ``name``. A name defined twice (by two user files, or by a user
file and a shipped strategy) is an error naming both files; so is a file whose name is taken by
another module (``random.py``, ``strategies.py``, ...).

:func:`resolve_strategy` is the one resolver of the runner's bot configs and of ``candela
backtest | sweep | report | strategies | bots create``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import keyword
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from candela.core.paths import strategy_dirs
from research.strategy_model import StrategySpec
from strategies.registry import all_specs

StrategyResolver = Callable[[str], StrategySpec]

SHIPPED, USER, MODULE = "shipped", "user", "module"


class StrategyReferenceError(ValueError):
    """A strategy reference names nothing usable; the message says what to fix."""


@dataclass(frozen=True)
class StrategyEntry:
    """A strategy and where it comes from.

    Attributes
    ----------
    name : str
        ``spec.name``.
    spec : StrategySpec
    origin : str
        ``"shipped"``, ``"user"`` (a user strategy folder) or ``"module"`` (``module:ATTRIBUTE``).
    file : Path or None
        The source file that defines the strategy (``None`` if it has none, e.g. a notebook cell).
    """

    name: str
    spec: StrategySpec
    origin: str
    file: Path | None


def resolve_strategy(reference: str) -> StrategySpec:
    """Return the :class:`StrategySpec` that ``reference`` names (see the module docstring).

    Raises
    ------
    StrategyReferenceError
        If nothing has that name (with the closest names), ``module:ATTRIBUTE`` cannot be
        imported or is not a ``StrategySpec``, or the user folders define a name twice.
    """
    return find_strategy(reference).spec


def find_strategy(reference: str, dirs: Iterable[str | Path] | None = None) -> StrategyEntry:
    """Return the :class:`StrategyEntry` of ``reference``.

    Parameters
    ----------
    reference : str
        A strategy name or ``module:ATTRIBUTE``.
    dirs : iterable of paths, optional
        User strategy folders (default :func:`candela.core.paths.strategy_dirs`).

    Raises
    ------
    StrategyReferenceError
        As for :func:`resolve_strategy`. An exception raised while importing a user file or the
        module of ``module:ATTRIBUTE`` (a bug in it) propagates unchanged, with a note naming
        the file.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise StrategyReferenceError(
            f"strategy must be a non-empty string such as 'sma_cross' or 'my_module:my_strategy', "
            f"got {reference!r}"
        )
    if ":" in reference:
        return _module_entry(reference)
    folders = _folders(dirs)
    entries = catalog(folders)
    entry = entries.get(reference)
    if entry is None:
        close = difflib.get_close_matches(reference, list(entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        searched = ", ".join(
            f"{folder}{'' if folder.is_dir() else ' (missing)'}" for folder in folders
        )
        raise StrategyReferenceError(
            f"unknown strategy {reference!r}{hint} (available: {', '.join(entries)}; user "
            f"strategies are found in {searched or 'no folder'}, see CANDELA_STRATEGY_PATH; or "
            "name one as 'module:ATTRIBUTE')"
        )
    return entry


def catalog(dirs: Iterable[str | Path] | None = None) -> dict[str, StrategyEntry]:
    """Every strategy a name can refer to: the shipped ones and those of the user folders.

    Returns
    -------
    dict
        ``{name: StrategyEntry}`` sorted by name.

    Raises
    ------
    StrategyReferenceError
        If a name is defined twice (naming both files), or a user file's name is not usable.
    """
    entries = {
        name: StrategyEntry(name, spec, SHIPPED, strategy_file(spec))
        for name, spec in all_specs().items()
    }
    for entry in user_strategies(dirs):
        other = entries.get(entry.name)
        if other is not None and other.spec is not entry.spec:
            what = "the shipped strategy" if other.origin == SHIPPED else "the user strategy"
            raise StrategyReferenceError(
                f"strategy name {entry.name!r} is defined twice: in {entry.file} and by {what} "
                f"in {other.file}; rename one of them (a strategy is named by its 'name')"
            )
        entries.setdefault(entry.name, entry)
    return dict(sorted(entries.items()))


def user_strategies(dirs: Iterable[str | Path] | None = None) -> list[StrategyEntry]:
    """The strategies of the user folders, in folder then file order (not checked for clashes).

    A spec that a user file only imports (a shipped one, or one of another user file) is listed
    once, with the file that defines it.
    """
    entries: list[StrategyEntry] = []
    seen: set[int] = set()
    for folder in _folders(dirs):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            module = _import_user_file(path)
            for value in vars(module).values():
                if isinstance(value, StrategySpec) and id(value) not in seen:
                    seen.add(id(value))
                    entries.append(
                        StrategyEntry(
                            value.name, value, USER, strategy_file(value) or path.resolve()
                        )
                    )
    return entries


# --------------------------------------------------------------------------- the defining source


def strategy_function(spec: StrategySpec) -> Callable:
    """The function that holds the strategy's own code (the one ``@strategy`` decorated),
    unwrapped (``__wrapped__``) when another decorator wrapped the author's function."""
    return inspect.unwrap(spec.function)


def strategy_file(spec: StrategySpec) -> Path | None:
    """The source file that defines the strategy's function, or ``None`` (e.g. a notebook cell)."""
    try:
        name = inspect.getsourcefile(strategy_function(spec))
    except TypeError:  # a built-in or a callable object without code
        return None
    if not name:
        return None
    path = Path(name)
    return path.resolve() if path.is_file() else None


def strategy_source_hash(spec: StrategySpec) -> str | None:
    """SHA-256 (hex) of the source file that defines the strategy, or ``None`` without one.

    Stored with every decision of a bot (``signals.strategy_hash``) so that a later look at its
    records can tell which code made them.
    """
    path = strategy_file(spec)
    return None if path is None else hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- helpers

_loaded: dict[Path, int] = {}
"""User files imported by this process, with their modification time then (for reloads)."""


def _folders(dirs: Iterable[str | Path] | None) -> list[Path]:
    return strategy_dirs() if dirs is None else [Path(folder) for folder in dirs]


def _import_user_file(path: Path) -> ModuleType:
    """Import a user strategy file as the top-level module named after it (again if it changed)."""
    path = path.resolve()
    name = path.stem
    if not name.isidentifier() or keyword.iskeyword(name):
        raise StrategyReferenceError(
            f"user strategy file {path}: {name!r} is not a Python module name; rename the file "
            "(letters, digits and '_', not starting with a digit)"
        )
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    modified = path.stat().st_mtime_ns
    module = sys.modules.get(name)
    if module is None:
        importlib.invalidate_caches()  # the folder may have changed since it was last listed
    origin = _module_file(module) if module is not None else _spec_file(name)
    if origin != path:
        where = origin if origin is not None else f"a built-in or namespace module {name!r}"
        raise StrategyReferenceError(
            f"user strategy file {path} has the name of another module ({where}): rename the file"
        )
    if module is not None and _loaded.get(path, modified) != modified:
        del sys.modules[name]  # changed since: import it afresh (no names left from before)
        module = None
    try:
        if module is None:
            module = importlib.import_module(name)
    except Exception as exc:
        exc.add_note(f"(while importing the user strategy file {path})")
        raise
    _loaded[path] = modified
    return module


def _module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _spec_file(name: str) -> Path | None:
    found = importlib.util.find_spec(name)
    if found is None or not found.origin or not found.has_location:
        return None
    return Path(found.origin).resolve()


def _module_entry(reference: str) -> StrategyEntry:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise StrategyReferenceError(
            f"strategy {reference!r} is not 'module:ATTRIBUTE', e.g. 'my_package.my_module:my_strategy'"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise  # the module exists but imports something missing: a bug in it
        raise StrategyReferenceError(
            f"cannot import strategy module {module_name!r} ({exc}): check the "
            "'module:ATTRIBUTE' name and that the module is on the Python path"
        ) from exc
    spec = getattr(module, attribute, None)
    if not isinstance(spec, StrategySpec):
        raise StrategyReferenceError(
            f"{reference!r} is not a StrategySpec: point 'strategy' at a module attribute that "
            "holds one, e.g. 'my_package.my_module:my_strategy'"
        )
    return StrategyEntry(spec.name, spec, MODULE, strategy_file(spec) or _module_file(module))
