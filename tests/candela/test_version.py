"""``candela --version`` prints the installed version, read from the package metadata."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from candela.cli import main


def test_version_is_the_installed_package_version(repo_root, capsys):
    declared = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"candela {declared}\n"


def test_version_from_a_fresh_process(repo_root):
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "candela.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=repo_root,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"candela {version('candela')}\n",
        "",
    )


def test_version_without_package_metadata_says_how_to_install(monkeypatch, capsys):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run 'make install'" in err
