"""Check the interpreter the Makefile will build ``.venv`` with; discard a ``.venv`` made by another.

Run by ``make check-python`` (every target that installs depends on it) as
``$(PYTHON) tools/check_python.py pyproject.toml .venv``, with the interpreter being checked, so
it is written to run on any Python, even one far outside the range (no f-strings, no tomllib).

1. The interpreter's version must satisfy ``requires-python`` in ``pyproject.toml`` (read from
   there, never repeated here). Otherwise: one line naming the range, this interpreter and the
   fix, exit status 1, and nothing is created or removed.
2. If ``.venv`` exists but was made by another interpreter (another executable, or the same one
   at another version, as its ``pyvenv.cfg`` records), it is removed so that the caller builds
   it again; a folder there that is not a virtual environment is refused, not removed.

Exit status 0 when the interpreter fits (and ``.venv`` is absent or its own).
"""

from __future__ import print_function

import os
import platform
import re
import shutil
import sys

_REQUIRES = re.compile(r'^\s*requires-python\s*=\s*["\']([^"\']+)["\']\s*$', re.MULTILINE)
_CLAUSE = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?\s*$")


def fail(message):
    sys.stderr.write("error: " + message + "\n")
    sys.exit(1)


def read_requires_python(pyproject):
    """The ``requires-python`` string of ``pyproject`` (exactly one such line is expected)."""
    with open(pyproject) as handle:
        found = _REQUIRES.findall(handle.read())
    if len(found) != 1:
        fail(
            'cannot read requires-python from %s: expected one line like requires-python = ">=3.11,<3.13"'
            % pyproject
        )
    return found[0]


def _release(text):
    return tuple(int(part) for part in text.split("."))


def _padded(version, length):
    return tuple(version[:length]) + (0,) * max(0, length - len(version))


def satisfies(version, specifier):
    """Whether ``version`` (a tuple of ints) meets every comma-separated clause of ``specifier``.

    Supports the clauses PEP 440 allows on a release number: ``>=``, ``<=``, ``>``, ``<``,
    ``==`` and ``!=`` (with an optional ``.*`` prefix match), ``~=`` and ``===``.
    """
    for clause in specifier.split(","):
        match = _CLAUSE.match(clause)
        if not match:
            fail("cannot understand requires-python clause %r in pyproject.toml" % clause.strip())
        operator, number, wildcard = match.groups()
        wanted = _release(number)
        if wildcard:
            if operator not in ("==", "!="):
                fail("requires-python clause %r: '.*' only goes with == or !=" % clause.strip())
            equal = tuple(version[: len(wanted)]) == wanted
            ok = equal if operator == "==" else not equal
        elif operator == "~=":
            ok = (
                _padded(version, len(wanted)) >= wanted
                and tuple(version[: len(wanted) - 1]) == wanted[:-1]
            )
        else:
            length = max(len(wanted), len(version))
            left, right = _padded(version, length), _padded(wanted, length)
            ok = {
                "==": left == right,
                "===": left == right,
                "!=": left != right,
                "<=": left <= right,
                ">=": left >= right,
                "<": left < right,
                ">": left > right,
            }[operator]
        if not ok:
            return False
    return True


def base_executable():
    """The interpreter a venv made by this one records (for a venv's Python: its base)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def read_venv_config(venv):
    """``pyvenv.cfg`` of ``venv`` as a dict, or ``None`` if the folder has none."""
    path = os.path.join(venv, "pyvenv.cfg")
    if not os.path.isfile(path):
        return None
    config = {}
    with open(path) as handle:
        for line in handle:
            key, separator, value = line.partition("=")
            if separator:
                config[key.strip()] = value.strip()
    return config


def venv_maker(config):
    """``(executable, version)`` that made a venv, from its ``pyvenv.cfg`` (``None`` if unrecorded)."""
    executable = config.get("executable")
    if executable is None and config.get(
        "home"
    ):  # venvs made before Python 3.11 record only the folder
        executable = os.path.join(
            config["home"],
            "python%d.%d"
            % tuple(_release(config.get("version_info") or config.get("version") or "0.0")[:2]),
        )
    version = config.get("version_info") or config.get("version")
    return (os.path.realpath(executable) if executable else None), version


def main(arguments):
    if len(arguments) != 2:
        fail("usage: python tools/check_python.py PYPROJECT VENV")
    pyproject, venv = arguments
    specifier = read_requires_python(pyproject)
    here = platform.python_version()
    if not satisfies(tuple(sys.version_info[:3]), specifier):
        fail(
            "Candela needs Python %s (requires-python in %s); %s is Python %s: install a Python in that "
            "range and run 'make PYTHON=/path/to/python3.x ...'"
            % (specifier, pyproject, base_executable(), here)
        )
    if not os.path.lexists(venv):
        return 0
    config = read_venv_config(venv)
    if config is None:
        fail(
            "%s exists but is not a virtual environment (no pyvenv.cfg): move it away so that make can "
            "create one" % venv
        )
    executable, version = venv_maker(config)
    if (
        executable == base_executable()
        and version == here
        and os.path.exists(os.path.join(venv, "bin", "python"))
    ):
        return 0
    print(
        "%s was made by %s (Python %s), not by %s (Python %s): removing it to build it again"
        % (venv, executable or "an unrecorded interpreter", version or "?", base_executable(), here)
    )
    shutil.rmtree(venv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
