"""The Makefile's interpreter check (``make check-python``, which every installing target runs first).

Each test runs the real ``make`` on a copy of the Makefile, ``pyproject.toml`` and ``tools/`` in a
temporary folder, so the checkout's own ``.venv`` is never touched. A "Python 3.13" is this
interpreter made to report 3.13.0 (``sys.version_info`` and ``sys.version``) while it runs the
check; asked to do anything else (``-m venv``) it does it for real, so a check that let it through
would leave a ``.venv`` behind.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv

import pytest

FAKE_PYTHON = """
import os, runpy, sys
version = tuple(int(part) for part in os.environ["FAKE_PYTHON_VERSION"].split("."))
if sys.argv[1:2] == ["-m"]:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
sys.version_info = (*version, "final", 0)
sys.version = ".".join(map(str, version)) + sys.version[sys.version.index(" "):]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture
def project(repo_root, tmp_path):
    """A copy of what the Makefile reads, in a folder of its own."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(repo_root / name, folder / name)
    shutil.copytree(repo_root / "tools", folder / "tools")
    return folder


def fake_python(tmp_path, version: str):
    script = tmp_path / "fake_python.py"
    script.write_text(FAKE_PYTHON)
    launcher = tmp_path / f"python{version}"
    launcher.write_text(
        f'#!/bin/sh\nFAKE_PYTHON_VERSION={version} exec "{sys.executable}" "{script}" "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher


def make(project, *arguments):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=project,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def requires_python(project) -> str:
    return tomllib.loads((project / "pyproject.toml").read_text())["project"]["requires-python"]


@pytest.mark.parametrize("target", ["demo", "test", "install", "check-python"])
def test_a_python_outside_requires_python_is_refused_before_anything_is_created(
    project, tmp_path, target
):
    python = fake_python(tmp_path, "3.13.0")
    result = make(project, target, f"PYTHON={python}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert errors == [
        f"error: Candela needs Python {requires_python(project)} (requires-python in pyproject.toml); "
        f"{os.path.realpath(sys.executable)} is Python 3.13.0: install a Python in that range and run "
        "'make PYTHON=/path/to/python3.x ...'"
    ]
    assert result.stdout == ""
    assert sorted(path.name for path in project.iterdir()) == [
        "Makefile",
        "pyproject.toml",
        "tools",
    ]


def test_the_range_is_read_from_pyproject(project, tmp_path):
    python = fake_python(tmp_path, "3.13.0")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace(
            f'requires-python = "{requires_python(project)}"', 'requires-python = ">=3.11,<3.14"'
        )
    )
    assert make(project, "check-python", f"PYTHON={python}").returncode == 0
    assert (
        make(project, "check-python", f"PYTHON={fake_python(tmp_path, '3.14.1')}").returncode != 0
    )


def test_a_missing_interpreter_is_one_line(project):
    result = make(project, "demo", "PYTHON=/nonexistent/python3")
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if not line.startswith("make: ***")] == [
        "error: no Python interpreter '/nonexistent/python3' found: install one that fits requires-python "
        "in pyproject.toml and run 'make PYTHON=/path/to/python3.x ...'"
    ]
    assert not (project / ".venv").exists()


def make_venv(project, **config):
    """A virtual environment (no pip) made by this interpreter, its pyvenv.cfg edited by ``config``."""
    folder = project / ".venv"
    venv.create(folder, with_pip=False)
    cfg = folder / "pyvenv.cfg"
    lines = cfg.read_text().splitlines()
    for key, value in config.items():
        lines = [
            f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines
        ]
    cfg.write_text("\n".join(lines) + "\n")
    sum_ = subprocess.run(
        "cksum < pyproject.toml | cut -d' ' -f1",
        shell=True,
        cwd=project,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    stamp = folder / f".installed-{sum_}-runtime"
    stamp.touch()  # as if installed: only the interpreter check can make make install again
    return stamp


@pytest.mark.parametrize(
    "made_by",
    [
        {"executable": "/opt/another/bin/python3.11", "home": "/opt/another/bin"},
        {"version": "3.11.0", "version_info": "3.11.0"},
    ],
)
def test_a_venv_made_by_another_interpreter_is_removed_and_rebuilt(project, made_by):
    stamp = make_venv(project, **made_by)
    stamp_target = str(stamp.relative_to(project))
    assert make(project, "--question", stamp_target).returncode == 0  # before the check: up to date
    result = make(project, "check-python", f"PYTHON={sys.executable}")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"\.venv was made by .+ \(Python .+\), not by .+: removing it to build it again\n",
        result.stdout,
    )
    assert not (project / ".venv").exists()
    # what `make demo` runs next: the stamp is gone, so the venv is created and installed again
    plan = make(project, "--dry-run", stamp_target, f"PYTHON={sys.executable}").stdout
    assert f'"{sys.executable}" -m venv .venv' in plan and 'pip install --quiet -e "."' in plan


def test_a_venv_made_by_this_interpreter_is_kept(project):
    stamp = make_venv(project)
    result = make(project, "check-python", f"PYTHON={sys.executable}")
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert stamp.exists()


def test_a_folder_that_is_no_venv_is_not_removed(project):
    (project / ".venv").mkdir()
    (project / ".venv" / "mine.txt").write_text("keep")
    result = make(project, "check-python", f"PYTHON={sys.executable}")
    assert result.returncode != 0 and "is not a virtual environment" in result.stderr
    assert (project / ".venv" / "mine.txt").read_text() == "keep"


def test_each_target_installs_only_its_extras(project):
    plans = {
        target: make(project, "--dry-run", target, f"PYTHON={sys.executable}").stdout
        for target in ("demo", "test", "lab", "bench")
    }
    installs = {
        target: re.findall(r'pip install --quiet -e "(\.[^"]*)"', plan)
        for target, plan in plans.items()
    }
    assert installs == {
        "demo": ["."],
        "test": [".[dev]"],
        "lab": [".[notebooks]"],
        "bench": [".[bench]"],
    }


# --------------------------------------------------------------------------- the specifier


@pytest.fixture(scope="module")
def check_python(repo_root):
    spec = importlib.util.spec_from_file_location(
        "check_python", repo_root / "tools" / "check_python.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("specifier", "version", "expected"),
    [
        (">=3.11,<3.13", (3, 11, 0), True),
        (">=3.11,<3.13", (3, 12, 9), True),
        (">=3.11,<3.13", (3, 13, 0), False),
        (">=3.11,<3.13", (3, 10, 14), False),
        (">=3.11,<=3.12", (3, 12, 5), False),  # 3.12 means 3.12.0
        (">3.11", (3, 11, 0), False),
        ("==3.11.*", (3, 11, 7), True),
        ("==3.11.*", (3, 12, 0), False),
        ("!=3.12.*, >=3.11", (3, 12, 1), False),
        ("~=3.11", (3, 13, 0), True),
        ("~=3.11.2", (3, 11, 9), True),
        ("~=3.11.2", (3, 12, 0), False),
    ],
)
def test_specifier_matches_packaging(check_python, specifier, version, expected):
    from packaging.specifiers import SpecifierSet

    assert check_python.satisfies(version, specifier) is expected
    assert (".".join(map(str, version)) in SpecifierSet(specifier)) is expected  # the reference
