"""Benchmark: walk-forward optimisation and model-based search at scale.

* **Walk-forward**: SMA cross over the sweep benchmark's grid (fast 5..54 x slow 20..216 step 4,
  fast < slow: 2,329 combinations), on the shared 1,000,000-bar synthetic 1m series, 10 rolling
  windows: each training window 90,000 bars (warmed on the bars before it), each test window
  the next 91,000 bars; two workers (threads of one process: the rows have no stops or
  limits, so the default backend runs them on threads). Reported: time, bar-combinations per second
  (training bars x combinations, summed over the windows, per second), peak memory of the
  process tree, and the same walk-forward with a quarter of the combinations: peak memory
  should not grow with the number of combinations (the ratio is printed).
* **Search**: 200 Optuna TPE trials over the same space on the same 1,000,000 bars, the study
  in a SQLite database (a temporary folder), median pruning on; time, trials per second,
  bar-combinations per second (full runs and pruning stages), and against a grid sweep's time
  per combination on the same bars.

No peer has a walk-forward or a stored search to time against (vectorbt's walk-forward and
resumable sweeps are in its paid edition); the ratio of one training sweep against vectorbt is
``bench.sweep_speed``'s (the same grid on 1,000,000 bars).

Each measurement runs in a fresh child process (Numba's compilation warmed up in it first,
on a small slice, and reported apart); peak memory is the resident set of the child's process
tree, sampled every 20 ms. ``--repeat N`` repeats each measurement and prints min / median / max.

``python -m bench.validation_speed`` runs everything (about 15 minutes on two cores);
``--only walkforward`` or ``--only search`` one of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

N_JOBS = 2
FEE = 0.001
WINDOWS = 10
TRAIN_BARS = 90_000
TRIALS = 200


def _grid(quarter: bool = False) -> dict[str, list[int]]:
    from bench.sweep_speed import FAST_WINDOWS, SLOW_WINDOWS

    fast = list(FAST_WINDOWS)[::2] if quarter else list(FAST_WINDOWS)
    slow = list(SLOW_WINDOWS)[::2] if quarter else list(SLOW_WINDOWS)
    return {"fast": fast, "slow": slow}


# --------------------------------------------------------------------------- children


def run_walkforward(quarter: bool) -> dict:
    from bench.synthetic import synthetic_bars
    from research.types import Costs
    from research.validation.walkforward import walk_forward
    from strategies.registry import get_strategy

    bars = synthetic_bars()
    spec = get_strategy("sma_cross")
    costs = Costs(fee_rate=FEE)
    started = time.perf_counter()
    walk_forward(
        spec,
        bars[:20_000],
        {"fast": [5, 6], "slow": [20, 24]},
        costs,
        train=5_000,
        n_windows=2,
        progress=False,
    )
    warmup = time.perf_counter() - started
    grid = _grid(quarter)
    started = time.perf_counter()
    walk = walk_forward(
        spec, bars, grid, costs, train=TRAIN_BARS, n_windows=WINDOWS, n_jobs=N_JOBS, progress=False
    )
    seconds = time.perf_counter() - started
    windows = walk.windows
    bar_combinations = int((windows["train_bars"] * windows["n_valid"]).sum())
    return {
        "seconds": seconds,
        "warmup": warmup,
        "combinations": int(windows["n_valid"].max()),
        "bar_combinations": bar_combinations,
        "oos_sharpe": float(walk.stats["sharpe"]),
        "wfe_sharpe": float(walk.efficiency["sharpe"]),
    }


def run_search() -> dict:
    from bench.synthetic import synthetic_bars
    from candela.core.db import create_database_engine, upgrade
    from research.sweeps import sweep
    from research.types import Costs
    from research.validation.search import PRUNING_STAGES, search
    from strategies.registry import get_strategy

    bars = synthetic_bars()
    spec = get_strategy("sma_cross")
    costs = Costs(fee_rate=FEE)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade(create_database_engine(url))
        started = time.perf_counter()
        search(
            spec,
            bars[:20_000],
            {"fast": range(5, 55), "slow": range(20, 217, 4)},
            costs,
            n_trials=3,
            database_url=url,
            progress=False,
            study_name="warmup",
        )
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        result = search(
            spec,
            bars,
            {"fast": range(5, 55), "slow": range(20, 217, 4)},
            costs,
            n_trials=TRIALS,
            database_url=url,
            progress=False,
            study_name="bench",
        )
        seconds = time.perf_counter() - started
    frame = result.frame
    complete = int((frame["state"] == "complete").sum())
    pruned = int((frame["state"] == "pruned").sum())
    # bars run: every complete trial ran all the bars plus its pruning stages; a pruned one its
    # stages up to where it stopped (at most both)
    stage_bars = sum(PRUNING_STAGES) * len(bars)
    bar_combinations = complete * (len(bars) + stage_bars) + pruned * stage_bars
    started = time.perf_counter()
    sample = sweep(spec, bars, _grid(), costs, n_jobs=1, sample=20, keep_best=0, progress=False)
    per_combination = (time.perf_counter() - started) / sample.n_evaluated
    return {
        "seconds": seconds,
        "warmup": warmup,
        "trials": len(frame),
        "complete": complete,
        "pruned": pruned,
        "bar_combinations": bar_combinations,
        "grid_seconds_per_combination": per_combination,
        "best": None
        if result.best is None
        else f"fast={int(result.best['fast'])} slow={int(result.best['slow'])} "
        f"sharpe={result.best['sharpe']:.3f}",
        "dsr": None if result.overfitting is None else result.overfitting.dsr,
    }


# --------------------------------------------------------------------------- parent


def measure(task: str, *options: str) -> dict:
    """Run ``task`` in a child process; return its report plus the peak RSS of its tree."""
    from bench.sweep_speed import run_with_peak_rss

    command = [sys.executable, "-m", "bench.validation_speed", "--child", task, *options]
    return run_with_peak_rss(command, task)


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return (
        f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} "
        "(min / median / max)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.validation_speed")
    parser.add_argument("--only", choices=("walkforward", "search"), default=None)
    parser.add_argument("--repeat", type=int, default=1, help="repeat each measurement N times")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quarter", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args([] if argv is None else argv)
    if arguments.child == "walkforward":
        print(json.dumps(run_walkforward(arguments.quarter)))
        return
    if arguments.child == "search":
        print(json.dumps(run_search()))
        return

    if arguments.only in (None, "walkforward"):
        reports = [measure("walkforward") for _ in range(arguments.repeat)]
        quarter = measure("walkforward", "--quarter")
        seconds = [r["seconds"] for r in reports]
        rates = [r["bar_combinations"] / r["seconds"] / 1e6 for r in reports]
        peaks = [r["peak_rss"] / 2**30 for r in reports]
        first = reports[0]
        print(
            f"walk-forward: SMA cross, {first['combinations']:,} combinations x {WINDOWS} "
            f"rolling windows of {TRAIN_BARS:,} training bars, 1,000,000 synthetic 1m bars, "
            f"{N_JOBS} workers (threads: backend auto)"
        )
        print(f"  JIT warm-up (small slice)   {first['warmup']:.2f} s")
        print(f"  time                        {_spread(seconds)} s")
        print(
            f"  bar-combinations per second {_spread(rates)} million "
            f"({first['bar_combinations'] / 1e9:.2f} billion in all)"
        )
        print(f"  peak RSS (process tree)     {_spread(peaks)} GiB")
        print(
            f"  with {quarter['combinations']:,} combinations: peak RSS "
            f"{quarter['peak_rss'] / 2**30:.2f} GiB (ratio full / quarter "
            f"{first['peak_rss'] / quarter['peak_rss']:.2f}), time {quarter['seconds']:.1f} s"
        )
        print(
            f"  out-of-sample Sharpe {first['oos_sharpe']:.3f}, WFE (Sharpe) "
            f"{first['wfe_sharpe']:.3f}"
        )
    if arguments.only in (None, "search"):
        reports = [measure("search") for _ in range(arguments.repeat)]
        first = reports[0]
        seconds = [r["seconds"] for r in reports]
        print(
            f"\nsearch: {TRIALS} Optuna TPE trials, SMA cross, 1,000,000 synthetic 1m bars, "
            "SQLite study, median pruning"
        )
        print(f"  JIT and storage warm-up     {first['warmup']:.2f} s")
        print(
            f"  time                        {_spread(seconds)} s "
            f"({first['complete']} complete, {first['pruned']} pruned)"
        )
        print(
            f"  trials per second           "
            f"{_spread([r['trials'] / r['seconds'] for r in reports])}"
        )
        print(
            f"  bar-combinations per second "
            f"{_spread([r['bar_combinations'] / r['seconds'] / 1e6 for r in reports])} million"
        )
        per_trial = [
            r["seconds"] / r["trials"] / r["grid_seconds_per_combination"] for r in reports
        ]
        print(
            f"  per trial vs a grid row     {_spread(per_trial)} (time per search trial / "
            "time per grid-sweep combination, one process each)"
        )
        print(
            f"  peak RSS (process tree)     {_spread([r['peak_rss'] / 2**30 for r in reports])} GiB"
        )
        print(f"  best: {first['best']}; deflated Sharpe ratio {first['dsr']}")


if __name__ == "__main__":
    main(sys.argv[1:])
