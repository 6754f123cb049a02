"""``python -m bench``: run every benchmark module of this folder that exposes ``main()``.

``python -m bench load_bars sweep`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def benchmark_modules() -> list[str]:
    """Names of the modules in ``bench/`` that define a ``main`` function, sorted."""
    names = []
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("_"):
            continue
        if callable(getattr(importlib.import_module(f"bench.{module.name}"), "main", None)):
            names.append(module.name)
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    available = benchmark_modules()
    chosen = (argv if argv is not None else sys.argv[1:]) or available
    unknown = [name for name in chosen if name not in available]
    if unknown:
        print(
            f"error: no benchmark named {', '.join(unknown)}; available: {', '.join(available)}",
            file=sys.stderr,
        )
        return 2
    for name in chosen:
        print(f"\n##### bench.{name}")
        started = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"##### bench.{name} finished in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
