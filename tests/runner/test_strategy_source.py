"""Strategy references: shipped names, user strategy folders and ``module:ATTRIBUTE``."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest
from strategy_folders import write_strategy

import candela.core.paths as paths
from runner.config import BotConfigError, parse_bot_config
from runner.strategy_source import (
    StrategyReferenceError,
    catalog,
    find_strategy,
    resolve_strategy,
    strategy_file,
    strategy_source_hash,
)
from strategies.registry import get_strategy, names

BASE = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}


def test_a_user_folder_strategy_is_found_by_name_with_its_file(strategy_folder):
    path = write_strategy(strategy_folder, "trend_rules.py", name="my_trend")
    write_strategy(strategy_folder, "_helpers.py", name="hidden")  # "_" marks a helper module
    (strategy_folder / "notes.txt").write_text("not python")

    entry = find_strategy("my_trend")
    assert entry.origin == "user" and entry.file == path.resolve()
    assert resolve_strategy("my_trend") is entry.spec
    assert entry.spec.make_params({"window": 7}).window == 7
    listed = catalog()
    assert set(names()) | {"my_trend"} == set(listed)
    assert list(listed) == sorted(listed)
    with pytest.raises(StrategyReferenceError, match="unknown strategy 'hidden'"):
        resolve_strategy("hidden")


def test_a_bot_config_names_a_user_strategy_like_a_shipped_one(strategy_folder):
    write_strategy(strategy_folder, "mine.py", name="mine")
    config = parse_bot_config({**BASE, "strategy": "mine", "params": {"window": 9}}, bot_id="b")
    assert config.spec.name == "mine" and config.params == {"window": 9}
    with pytest.raises(
        BotConfigError, match=r"strategy: unknown strategy 'mien'; did you mean 'mine'\?"
    ):
        parse_bot_config({**BASE, "strategy": "mien"}, bot_id="b")


def test_every_folder_of_the_setting_is_searched_in_order(tmp_path, strategy_folder, monkeypatch):
    second = tmp_path / "more"
    second.mkdir()
    write_strategy(strategy_folder, "first_one.py", name="first_one")
    write_strategy(second, "second_one.py", name="second_one")
    monkeypatch.setenv(
        "CANDELA_STRATEGY_PATH",
        os.pathsep.join([str(strategy_folder), "", str(second), str(tmp_path / "nowhere")]),
    )
    assert paths.strategy_dirs() == [strategy_folder, second, tmp_path / "nowhere"]
    assert find_strategy("second_one").file == (second / "second_one.py").resolve()
    with pytest.raises(StrategyReferenceError, match=r"nowhere \(missing\)"):
        resolve_strategy("third_one")


def test_without_the_setting_the_folder_is_user_strategies_at_the_root(tmp_path, monkeypatch):
    monkeypatch.delenv("CANDELA_STRATEGY_PATH", raising=False)
    assert paths.strategy_dirs() == [paths.REPO_ROOT / "user_strategies"]
    monkeypatch.setattr(paths, "USER_STRATEGY_DIR", tmp_path)
    path = list(sys.path)
    try:
        write_strategy(tmp_path, "rooted.py", name="rooted")
        assert find_strategy("rooted").file == (tmp_path / "rooted.py").resolve()
    finally:
        sys.modules.pop("rooted", None)
        sys.path[:] = path


def test_a_name_clash_with_a_shipped_strategy_names_both_files(strategy_folder):
    mine = write_strategy(strategy_folder, "my_sma.py", name="sma_cross")
    with pytest.raises(StrategyReferenceError) as info:
        resolve_strategy("ema_cross")  # any name: the catalog is ambiguous
    message = str(info.value)
    assert (
        str(mine.resolve()) in message and str(strategy_file(get_strategy("sma_cross"))) in message
    )
    assert "defined twice" in message


def test_a_name_clash_between_user_files_names_both_files(strategy_folder):
    one = write_strategy(strategy_folder, "one.py", name="twin")
    two = write_strategy(strategy_folder, "two.py", name="twin")
    with pytest.raises(StrategyReferenceError, match="defined twice") as info:
        catalog()
    assert str(one.resolve()) in str(info.value) and str(two.resolve()) in str(info.value)


def test_an_imported_spec_is_registered_once_where_it_is_defined(strategy_folder):
    origin = write_strategy(strategy_folder, "origin.py", name="origin")
    (strategy_folder / "reuser.py").write_text(
        "from origin import SPEC as BORROWED\nfrom strategies.registry import get_strategy\n"
        "SHIPPED = get_strategy('sma_cross')\n"
    )
    listed = catalog()
    assert listed["origin"].file == origin.resolve()
    assert listed["sma_cross"].origin == "shipped"


def test_a_file_named_like_another_module_is_refused(strategy_folder):
    write_strategy(strategy_folder, "json.py", name="jsonish")
    with pytest.raises(
        StrategyReferenceError, match=r"json\.py has the name of another module.*rename"
    ):
        catalog()


def test_a_bug_in_a_user_file_keeps_its_traceback_with_the_file_named(strategy_folder):
    (strategy_folder / "broken.py").write_text(
        "import numpy as np\nWINDOW = np.ones(3) + np.ones(2)\n"
    )
    with pytest.raises(ValueError, match="broadcast") as info:
        catalog()
    assert not isinstance(info.value, StrategyReferenceError)
    assert any("broken.py" in note for note in info.value.__notes__)


def test_an_edited_user_file_is_read_again(strategy_folder):
    path = write_strategy(strategy_folder, "edited.py", name="before_edit")
    assert "before_edit" in catalog()
    write_strategy(strategy_folder, "edited.py", name="after_edit", attribute="RENAMED")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    listed = catalog()
    assert "after_edit" in listed and "before_edit" not in listed


def test_module_attribute_references(strategy_folder):
    assert find_strategy("strategies.sma_cross:sma_cross").spec is get_strategy("sma_cross")
    assert find_strategy("strategies.sma_cross:sma_cross").origin == "module"
    with pytest.raises(
        StrategyReferenceError, match="cannot import strategy module 'no_such_module'"
    ):
        resolve_strategy("no_such_module:SPEC")
    with pytest.raises(
        StrategyReferenceError, match="'strategies.sma_cross:Params' is not a StrategySpec"
    ):
        resolve_strategy("strategies.sma_cross:Params")
    with pytest.raises(StrategyReferenceError, match="is not 'module:ATTRIBUTE'"):
        resolve_strategy("strategies.sma_cross:")
    (strategy_folder / "needs_missing.py").write_text("import candela_no_such_dependency\n")
    sys.path.append(str(strategy_folder))
    with pytest.raises(ModuleNotFoundError, match="candela_no_such_dependency"):
        resolve_strategy("needs_missing:SPEC")  # the module exists: its own import failing is a bug
    with pytest.raises(StrategyReferenceError, match="non-empty string"):
        resolve_strategy("")


def test_the_source_hash_is_the_defining_file_s(strategy_folder):
    spec = get_strategy("sma_cross")
    file = strategy_file(spec)
    assert file.name == "sma_cross.py" and file.parent.name == "strategies"
    assert strategy_source_hash(spec) == hashlib.sha256(file.read_bytes()).hexdigest()
    path = write_strategy(strategy_folder, "hashed.py", name="hashed")
    assert (
        strategy_source_hash(resolve_strategy("hashed"))
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )
