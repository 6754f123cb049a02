"""The layout rules that import-linter alone cannot see.

import-linter (``.importlinter``, run by ``make test``) checks the dependency direction. Its
floor and roof contracts cover whole packages, but the research-core contract names the research
upper-layer modules one by one: these tests fail when a module exists that the contracts do not
classify, so a new module cannot slip past them.
"""

from __future__ import annotations

import configparser
import pkgutil

import candela
import research
from candela.core.paths import REPO_ROOT

RESEARCH_CORE = {
    "types",
    "lines",
    "indicators",
    "indicator_memo",
    "strategy_model",
    "kernels",
    "panel",
    "portfolio_model",
}
CONTRACTS_NAMING_THE_UPPER_LAYERS = ("research-core-pure", "strategies-pure", "runner")


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / ".importlinter")
    return parser


def _listed(parser: configparser.ConfigParser, contract: str, key: str) -> set[str]:
    return set(parser[f"importlinter:contract:{contract}"][key].split())


def test_every_research_upper_module_is_forbidden_to_the_core_strategies_and_runner():
    parser = _contracts()
    upper = {
        f"research.{info.name}"
        for info in pkgutil.iter_modules(research.__path__)
        if info.name not in RESEARCH_CORE
    }
    assert upper, "research has no upper-layer modules?"
    for contract in CONTRACTS_NAMING_THE_UPPER_LAYERS:
        missing = upper - _listed(parser, contract, "forbidden_modules")
        assert not missing, f"add {sorted(missing)} to forbidden_modules of contract {contract!r}"


def test_research_core_contract_names_exactly_the_core():
    sources = _listed(_contracts(), "research-core-pure", "source_modules")
    assert sources == {f"research.{name}" for name in RESEARCH_CORE}
    present = {info.name for info in pkgutil.iter_modules(research.__path__)}
    assert RESEARCH_CORE <= present


def test_candela_holds_only_the_floor_and_the_roof():
    """Anything directly under ``candela/`` would escape both the floor and the roof contract."""
    children = {info.name for info in pkgutil.iter_modules(candela.__path__)}
    assert children == {"core", "cli"}
    parser = _contracts()
    assert _listed(parser, "floor", "source_modules") == {"candela.core"}
    assert _listed(parser, "roof", "forbidden_modules") == {"candela.cli"}
