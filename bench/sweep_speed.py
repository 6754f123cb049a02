"""Benchmark: SMA-cross sweep on 1,000,000 synthetic 1m bars, Candela vs vectorbt.

Grid: fast 5..54 x slow 20..216 step 4 with fast < slow (2,329 combinations), fee 1 bp,
decide at bar t's close and fill at bar t+1's open.

**Agreement gate, before any timing.** A seeded sample of ``--check`` combinations (default
8) is run on the full series by Candela's sweep (``research.sweep(..., sample=...)``, its own
rows) and by the very vectorbt chunk function that is timed; each row's closed trade count and
final equity (``initial cash x (1 + total_return)``) must equal the vectorbt column's
(1e-9 relative, :func:`bench.gate.agree`), or the disagreeing rows are printed, nothing is
timed and the benchmark exits with status 1. (At a 0.1 % fee many combinations ruin the
account on this random walk, after which vectorbt refuses orders and Candela trades a dust
balance: hence 1 bp.)

* **Candela**: ``research.sweep(spec, bars, grid, n_jobs=2)``: two workers of the default
  backend (``"auto"``: threads of one process for these rows, which run compiled code that
  releases the GIL; ``--backend loky`` for two processes with the bars shipped once through a
  memory-mapped file), one stats row per combination, the 5 best keep their equity curves.
  The throughput is reported as bar-combinations per second per core (bars x combinations /
  seconds / 2), the figure issue 16 targets (at least 200 million, peak RSS under 500 MB).
* **vectorbt**: chunks of combinations (the issue suggests ~256; here a column costs about
  120 MB on 1M bars at peak, so 256 columns would need ~30 GB and get the process killed; the
  default is 32, ``--chunk`` changes it): each distinct moving average of the chunk once
  (``vbt.MA``), the crossover levels as a bars x chunk array, ``Portfolio.from_signals`` over
  the chunk, then total return, Sharpe ratio and maximum drawdown per column. vectorbt is
  vectorized and runs in one process.

Each engine runs in its own child process so that its peak memory (resident set of the
process tree, sampled every 20 ms with psutil) is measured alone; Numba compilation is warmed
up in that child before the clock starts (on a small slice) and reported separately.

``python -m bench.sweep_speed`` runs the whole grid on both engines (many minutes on two
cores). ``--sample N`` times a seeded subset of N combinations instead (for vectorbt: the
first N of the grid, still in chunks) and extrapolates linearly to the whole grid, saying so;
``--vectorbt-sample N`` samples vectorbt only. ``--repeats N`` runs each engine's child
``N`` times, interleaved (Candela, vectorbt, Candela, ...), and prints min/median/max; a run
is flagged noisy when an engine's slowest run took more than 1.5x its fastest or the load
average exceeded the cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from bench.engines import CASH, FEE, Outcome
from bench.gate import NOISY_SPREAD, agree, refuse

N_JOBS = 2
VECTORBT_CHUNK = 32  # ~120 MB per column on 1M bars: 256 columns need ~30 GB
FAST_WINDOWS = range(5, 55)
SLOW_WINDOWS = range(20, 217, 4)


def grid_pairs() -> list[tuple[int, int]]:
    """Every (fast, slow) pair of the grid with fast < slow, in grid order."""
    return [(fast, slow) for fast in FAST_WINDOWS for slow in SLOW_WINDOWS if fast < slow]


# --------------------------------------------------------------------------- engines (children)


def run_candela(sample: int | None, backend: str = "auto") -> dict:
    from bench.synthetic import synthetic_bars
    from research.sweeps import sweep
    from research.types import Costs
    from strategies.registry import get_strategy

    bars = synthetic_bars()
    spec = get_strategy("sma_cross")
    costs = Costs(fee_rate=FEE)
    started = time.perf_counter()
    sweep(spec, bars[:5_000], {"fast": [5], "slow": [20]}, costs, progress=False, keep_best=1)
    warmup = time.perf_counter() - started
    grid = {"fast": list(FAST_WINDOWS), "slow": list(SLOW_WINDOWS)}
    started = time.perf_counter()
    result = sweep(
        spec,
        bars,
        grid,
        costs,
        n_jobs=N_JOBS,
        backend=backend,
        sample=sample,
        seed=0,
        keep_best=5,
        progress=False,
    )
    seconds = time.perf_counter() - started
    best = result.best(1).iloc[0]
    return {
        "seconds": seconds,
        "warmup": warmup,
        "combinations": result.n_evaluated,
        "bars": len(bars),
        "best": f"fast={int(best['fast'])} slow={int(best['slow'])} sharpe={best['sharpe']:.3f}",
    }


def vectorbt_chunk(close, open_, chunk, outcomes: bool = False):
    """vectorbt on the ``(fast, slow)`` pairs of ``chunk`` (one column each): total return,
    Sharpe ratio and maximum drawdown per column, plus, with ``outcomes``, one
    :class:`~bench.engines.Outcome` per column (closed trades, final value; not timed)."""
    import vectorbt as vbt

    fast_windows = sorted({fast for fast, _ in chunk})
    slow_windows = sorted({slow for _, slow in chunk})
    fast_ma = vbt.MA.run(close, fast_windows).ma.to_numpy().reshape(len(close), -1)
    slow_ma = vbt.MA.run(close, slow_windows).ma.to_numpy().reshape(len(close), -1)
    fast_column = [fast_windows.index(fast) for fast, _ in chunk]
    slow_column = [slow_windows.index(slow) for _, slow in chunk]
    level = fast_ma[:, fast_column] > slow_ma[:, slow_column]
    del fast_ma, slow_ma
    entries = np.zeros_like(level)
    entries[1:] = level[:-1]  # decided at t's close, filled at t+1's open
    exits = np.zeros_like(level)
    exits[1:] = ~level[:-1]
    del level
    portfolio = vbt.Portfolio.from_signals(
        close, entries, exits, price=open_, fees=FEE, size=np.inf, init_cash=CASH, freq="1min"
    )
    stats = (
        portfolio.total_return().to_numpy(),
        portfolio.sharpe_ratio().to_numpy(),
        portfolio.max_drawdown().to_numpy(),
    )
    if not outcomes:
        return stats
    trades = np.atleast_1d(portfolio.trades.closed.count().to_numpy())
    final = np.atleast_1d(portfolio.final_value().to_numpy())
    return stats, [Outcome(int(n), float(v)) for n, v in zip(trades, final, strict=True)]


def run_vectorbt(sample: int | None, chunk_size: int = VECTORBT_CHUNK) -> dict:
    import pandas as pd

    from bench.synthetic import synthetic_bars

    bars = synthetic_bars()
    # tz-naive UTC index: a tz-aware one makes vectorbt build object arrays of Timestamps
    index = pd.to_datetime(bars.ts, unit="ms")
    close = pd.Series(bars.close, index=index)
    open_ = pd.Series(bars.open, index=index)
    pairs = grid_pairs()
    chosen = pairs if sample is None else pairs[:sample]
    chunks = [chosen[i : i + chunk_size] for i in range(0, len(chosen), chunk_size)]

    started = time.perf_counter()
    vectorbt_chunk(close.iloc[:5_000], open_.iloc[:5_000], chunks[0][:4])
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    sharpe = []
    for chunk in chunks:
        sharpe.extend(vectorbt_chunk(close, open_, chunk)[1])
        gc.collect()  # free the chunk's portfolio (reference cycles) before the next one
    seconds = time.perf_counter() - started
    evaluated = sum(len(chunk) for chunk in chunks)
    best = int(np.nanargmax(sharpe))
    fast, slow = pairs[best]
    return {
        "seconds": seconds,
        "warmup": warmup,
        "combinations": evaluated,
        "best": f"fast={fast} slow={slow} sharpe={sharpe[best]:.3f}",
    }


# --------------------------------------------------------------------------- parent


def tree_rss(process) -> int:
    """Resident bytes of ``process`` and all its descendants."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_with_peak_rss(command: list[str], label: str) -> dict:
    """Run ``command`` (a child that prints a JSON report as its last line); return the report
    plus ``peak_rss``, the peak resident bytes of the child's process tree sampled every 20 ms."""
    import psutil

    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample_rss():
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(process))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{label} benchmark failed with status {child.returncode}")
    report = json.loads(output.strip().splitlines()[-1])
    report["peak_rss"] = peak
    return report


def measure(engine: str, sample: int | None, chunk_size: int, backend: str = "auto") -> dict:
    """Run ``engine`` in a child process; return its report plus the peak tree RSS."""
    command = [
        sys.executable,
        "-m",
        "bench.sweep_speed",
        "--engine",
        engine,
        "--chunk",
        str(chunk_size),
        "--backend",
        backend,
    ]
    if sample is not None:
        command += ["--sample", str(sample)]
    return run_with_peak_rss(command, engine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_speed")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help="time N seeded combinations and extrapolate to the whole grid",
    )
    parser.add_argument(
        "--vectorbt-sample",
        type=int,
        default=None,
        metavar="N",
        help="sample size for vectorbt only (default: --sample)",
    )
    parser.add_argument("--skip-candela", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--check",
        type=int,
        default=8,
        help="seeded combinations checked against vectorbt before timing (default 8)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per engine, interleaved (default 1: the full grid takes many minutes)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=VECTORBT_CHUNK,
        help=f"vectorbt combinations per chunk (default {VECTORBT_CHUNK}; "
        "lower it if the machine runs out of memory)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "threading", "loky"),
        default="auto",
        help="Candela's joblib backend (default auto: threads for these rows)",
    )
    parser.add_argument(
        "--engine", choices=("candela", "vectorbt"), default=None, help=argparse.SUPPRESS
    )
    arguments = parser.parse_args([] if argv is None else argv)
    if arguments.engine:
        if arguments.engine == "candela":
            print(json.dumps(run_candela(arguments.sample, arguments.backend)))
        else:
            print(json.dumps(run_vectorbt(arguments.sample, arguments.chunk)))
        return

    total = len(grid_pairs())
    print(
        f"grid: fast 5..54 x slow 20..216 step 4, fast < slow: {total:,} combinations; "
        f"1,000,000 synthetic 1m bars; fee {FEE:.2%}"
    )
    if not arguments.skip_candela:
        problems, checked = sweep_agreement(arguments.check)
        if problems:
            refuse("\n".join(problems))
        print(
            f"agreement: {checked} seeded combinations, each row's closed trades and final "
            "equity equal to vectorbt's column (1e-9 relative)"
        )
    engines = ("vectorbt",) if arguments.skip_candela else ("candela", "vectorbt")
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {engine: [] for engine in engines}
    for _ in range(arguments.repeats):
        for engine in engines:  # interleaved: candela, vectorbt, candela, ...
            sample = arguments.sample
            if engine == "vectorbt" and arguments.vectorbt_sample is not None:
                sample = arguments.vectorbt_sample
            report = measure(engine, sample, arguments.chunk, arguments.backend)
            report["full_seconds"] = report["seconds"] * total / report["combinations"]
            runs[engine].append(report)
    load = max(load_before, os.getloadavg()[0])
    noise = []
    for engine, reports in runs.items():
        how = (
            f"{N_JOBS} workers, backend {arguments.backend}"
            if engine == "candela"
            else f"1 process, chunks of {arguments.chunk}"
        )
        seconds = [report["seconds"] for report in reports]
        full = [report["full_seconds"] for report in reports]
        rss = [report["peak_rss"] / 2**20 for report in reports]
        combinations = reports[0]["combinations"]
        print(f"\n{engine} ({how}), {len(reports)} run(s): min / median / max")
        print(f"  JIT warm-up (small slice)  {_spread(r['warmup'] for r in reports)} s")
        print(
            f"  {combinations:,} combinations  {_spread(seconds)} s "
            f"({statistics.median(seconds) / combinations * 1000:.1f} ms each, median)"
        )
        if combinations < total:
            print(f"  extrapolated to {total:,} {_spread(full)} s (linear)")
        if engine == "candela":
            per_core = [
                r["bars"] * r["combinations"] / r["seconds"] / N_JOBS / 1e6 for r in reports
            ]
            print(f"  bar-combinations per core  {_spread(per_core)} million/s")
        print(f"  peak RSS (process tree)    {_spread(rss)} MiB")
        print(f"  best by Sharpe: {reports[0]['best']}")
        if max(seconds) > NOISY_SPREAD * min(seconds):
            noise.append(f"{engine}: slowest run {max(seconds) / min(seconds):.2f}x the fastest")
    cores = os.cpu_count() or 1
    if load > cores:
        noise.append(f"load average {load:.2f} > {cores} cores")
    print(f"\nload average up to {load:.2f}, {cores} cores")
    print("NOISY RUN: " + "; ".join(noise) if noise else "not noisy")
    if len(runs) < 2:
        return
    ours = [report["full_seconds"] for report in runs["candela"]]
    theirs = [report["full_seconds"] for report in runs["vectorbt"]]
    print(
        f"vectorbt time / Candela time: median {statistics.median(theirs) / statistics.median(ours):.2f}x "
        f"(range {min(theirs) / max(ours):.2f}x to {max(theirs) / min(ours):.2f}x); "
        f"Candela peak {max(report['peak_rss'] for report in runs['candela']) / 2**20:,.0f} MiB "
        "(target < 500 MB)"
    )


def _spread(values) -> str:
    values = list(values)
    return f"{min(values):8.2f} {statistics.median(values):8.2f} {max(values):8.2f}"


def sweep_agreement(check: int, seed: int = 1, bars=None) -> tuple[list[str], int]:
    """Compare ``check`` seeded rows of Candela's sweep with vectorbt's columns.

    Candela's rows come from ``research.sweep(..., sample=check, seed=seed)`` on ``bars``
    (default: the benchmark's series) over the benchmark's grid; vectorbt runs
    :func:`vectorbt_chunk` on the same pairs. Returns the disagreements (one line per row,
    see :func:`bench.gate.agree`; empty when all agree) and the number of rows compared.
    """
    import pandas as pd

    from bench.synthetic import synthetic_bars
    from research.sweeps import sweep
    from research.types import Costs
    from strategies.registry import get_strategy

    bars = synthetic_bars() if bars is None else bars
    grid = {"fast": list(FAST_WINDOWS), "slow": list(SLOW_WINDOWS)}
    result = sweep(
        get_strategy("sma_cross"),
        bars,
        grid,
        Costs(fee_rate=FEE),
        sample=check,
        seed=seed,
        keep_best=1,
        progress=False,
        initial_cash=CASH,
    )
    rows = result.frame[result.frame["valid"]]
    pairs = [(int(fast), int(slow)) for fast, slow in zip(rows["fast"], rows["slow"], strict=True)]
    index = pd.to_datetime(bars.ts, unit="ms")
    _stats, outcomes = vectorbt_chunk(
        pd.Series(bars.close, index=index), pd.Series(bars.open, index=index), pairs, True
    )
    problems = []
    for (fast, slow), count, total_return, theirs in zip(
        pairs, rows["trade_count"], rows["total_return"], outcomes, strict=True
    ):
        ours = Outcome(int(count), CASH * (1.0 + float(total_return)))
        why = agree(ours, theirs)
        if why is not None:
            problems.append(f"fast={fast} slow={slow}: vectorbt {why}")
    return problems, len(pairs)


if __name__ == "__main__":
    main(sys.argv[1:])
