"""The real market-data files the repository ships for its tests are what their manifests say,
and byte for byte the wider collection's files they were copied from."""

from __future__ import annotations

import hashlib
import json

import pytest
from market_files import FIXTURE_DIR, REPOSITORY_DIRS, market_file, repository_file

from candela.core.paths import SAMPLE_DIR

DOCUMENTS = {"PROVENANCE.md", "manifest.json"}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_files(root) -> list[dict]:
    return json.loads((root / "manifest.json").read_text())["files"]


def test_fixture_files_are_the_ones_listed_with_their_size_and_sha256():
    listed = {entry["file"]: entry for entry in manifest_files(FIXTURE_DIR)}
    present = {
        path.relative_to(FIXTURE_DIR).as_posix()
        for path in FIXTURE_DIR.rglob("*")
        if path.is_file() and path.name not in DOCUMENTS
    }
    assert present == set(listed)
    provenance = (FIXTURE_DIR / "PROVENANCE.md").read_text()
    for name, entry in listed.items():
        path = FIXTURE_DIR / name
        assert path.stat().st_size == entry["bytes"], name
        assert sha256(path) == entry["sha256"], name
        assert f"`{name}`" in provenance and entry["sha256"] in provenance, name
        assert entry["sources"] and all(s["licence"] for s in entry["sources"]), name


def test_no_file_is_shipped_twice():
    fixture = {entry["file"] for entry in manifest_files(FIXTURE_DIR)}
    sample = {entry["file"] for entry in manifest_files(SAMPLE_DIR)}
    assert not fixture & sample


def test_market_file_prefers_the_repository_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("CANDELA_SHARED_DATA", str(tmp_path))
    (tmp_path / "ohlcv").mkdir()
    for name in ("ohlcv/bittrex_ADA-BTC_1m.csv.gz", "ohlcv/coinbase_BTC-USD_1m.csv.gz"):
        (tmp_path / name).write_bytes(b"not the repository's copy")
        assert repository_file(name) is not None
        assert market_file(name) == repository_file(name)
    (tmp_path / "ohlcv" / "only_in_the_collection.csv.gz").write_bytes(b"x")
    assert (
        market_file("ohlcv/only_in_the_collection.csv.gz")
        == tmp_path / "ohlcv" / "only_in_the_collection.csv.gz"
    )


def test_a_file_nowhere_skips_or_fails_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("CANDELA_SHARED_DATA", str(tmp_path / "absent"))
    outcomes = (pytest.skip.Exception, pytest.fail.Exception)
    with pytest.raises(
        outcomes, match=r"ohlcv/nowhere_X-Y_1m\.csv\.gz is not shipped.*CANDELA_SHARED_DATA"
    ):
        market_file("ohlcv/nowhere_X-Y_1m.csv.gz")


@pytest.mark.shared_data
@pytest.mark.parametrize("root", REPOSITORY_DIRS, ids=["fixture", "sample"])
def test_repository_copies_equal_the_collection_byte_for_byte(shared_data, root):
    for entry in manifest_files(root):
        assert (shared_data / entry["file"]).read_bytes() == (root / entry["file"]).read_bytes(), (
            entry["file"]
        )
