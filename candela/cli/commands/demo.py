"""``candela demo``: the main job on the embedded defaults.

Steps run in order; each lives in a module of :mod:`candela.cli.demo` with a ``run(context)``
function, so every part of the platform adds its own step.
"""

from __future__ import annotations

import argparse
import importlib

DEMO_STEPS = (
    "candela.cli.demo.foundation",  # upgrade the database, import the sample, print the inventory
    "candela.cli.demo.research",  # backtest, plot to HTML, sweep
    "candela.cli.demo.paper",  # replay the sample through two bots, compare with the backtest
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="run the end-to-end demo on the bundled sample")
    parser.add_argument("--out", default="out", help="folder for the demo's files (default: out/)")
    parser.set_defaults(handler=_demo)


def _demo(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.demo import DemoContext

    context = DemoContext.create(arguments.database_url, arguments.out)
    for name in DEMO_STEPS:
        module = importlib.import_module(name)
        print(f"\n=== {module.TITLE}")
        module.run(context)
    print(f"\nDemo finished. Files are in {context.out_dir}/")
    return 0
