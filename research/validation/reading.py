"""Plain-words readings of the validation statistics, for reports and the command line.

Each function turns one result into a few sentences that say what the number is, how large it
is against the usual thresholds, and what follows for the parameter set the search picked. The
thresholds are conventions, stated in the text: a deflated Sharpe ratio of 0.95 or more (the
selected Sharpe ratio beats the luck of the search with 95 % probability); a PBO below 0.2
(rarely overfit), 0.2 to 0.5 (often), 0.5 or more (the selection does no better than chance);
a walk-forward efficiency of 0.5 or more (Pardo's rule of thumb: the out-of-sample keeps at least
half of the in-sample performance).
"""

from __future__ import annotations

import math
from typing import Any

from research.formatting import fmt_count, fmt_percent, fmt_ratio

DSR_CONFIDENT = 0.95
PBO_LOW, PBO_HIGH = 0.2, 0.5
WFE_GOOD = 0.5


def read_overfitting(overfitting: Any, params: str = "the best parameter set") -> str:
    """The deflated Sharpe ratio and the PBO of :class:`~research.validation.overfitting.
    Overfitting` in words."""
    o = overfitting
    lines = []
    if math.isnan(o.dsr):
        lines.append(
            f"The deflated Sharpe ratio of {params} is undefined (its returns have no "
            "variance, or too few bars)."
        )
    else:
        verdict = (
            "beats what luck alone gives the best of these trials"
            if o.dsr >= DSR_CONFIDENT
            else "does not clear the bar that luck sets for the best of these trials; treat "
            "it as unproven"
        )
        lines.append(
            f"{params.capitalize()} has an annualised Sharpe ratio of {fmt_ratio(o.annual_sharpe)}"
            f" over {fmt_count(o.n_bars)} bars. The {fmt_count(o.n_trials)} trials behave like "
            f"{fmt_count(o.n_effective)} independent ones (correlated parameter sets clustered); "
            f"the best of {fmt_count(o.n_effective)} strategies without any skill would be "
            f"expected to reach {fmt_ratio(o.annual_benchmark)}. The probability that the true "
            f"Sharpe ratio is above that (deflated Sharpe ratio, with the returns' skewness "
            f"{fmt_ratio(o.skew)} and kurtosis {fmt_ratio(o.kurtosis)}) is "
            f"{fmt_percent(o.dsr, 1)}: it {verdict} (the usual bar is "
            f"{fmt_percent(DSR_CONFIDENT, 0)}). Counting every trial as independent, it is "
            f"{fmt_percent(o.dsr_all_trials, 1)}."
        )
    if o.pbo is not None:
        p = o.pbo.pbo
        if p < PBO_LOW:
            verdict = "the selection carries over out of sample"
        elif p < PBO_HIGH:
            verdict = "the selection often fails out of sample"
        else:
            verdict = "the selection does no better than chance out of sample: overfit"
        lines.append(
            f"Probability of backtest overfitting: {fmt_percent(p, 1)}. In that share of the "
            f"{fmt_count(o.pbo.n_splits)} ways of splitting the history into two halves of "
            f"{o.pbo.n_blocks // 2} blocks each, the parameter set that was best in one half "
            f"ranked at or below the median in the other; {verdict}. The in-half winner lost "
            f"money in the other half in {fmt_percent(o.pbo.probability_of_loss, 1)} of the "
            "splits."
        )
    return " ".join(lines)


def read_walkforward(walk: Any) -> str:
    """Walk-forward efficiency, out-of-sample result and parameter stability in words."""
    efficiency = walk.efficiency
    stats = walk.stats
    windows = walk.windows
    traded = int(windows["is_sharpe"].notna().sum())
    wfe = efficiency["sharpe"]
    if math.isnan(wfe):
        verdict = (
            "not defined: the chosen parameter sets had no positive in-sample Sharpe "
            "ratio on average, so there was no in-sample edge to keep"
        )
    elif wfe >= WFE_GOOD:
        verdict = (
            f"at least {fmt_percent(WFE_GOOD, 0)} of the in-sample Sharpe ratio survives "
            "out of sample"
        )
    elif wfe > 0:
        verdict = "most of the in-sample performance is lost out of sample"
    else:
        verdict = "out of sample the strategy did the opposite of what it did in sample"
    stability = walk.stability()
    changes = ", ".join(
        f"{row.parameter} changed in {fmt_percent(row.change_share, 0)} of the "
        f"steps ({row.distinct} distinct values)"
        for row in stability.itertuples()
    )
    return (
        f"{len(windows)} walk-forward windows ({'anchored' if walk.anchored else 'rolling'}); "
        f"{traded} chose a parameter set with at least {walk.min_trades} trades. Stitched out "
        f"of sample: total return {fmt_percent(stats['total_return'], 1)}, Sharpe ratio "
        f"{fmt_ratio(stats['sharpe'])}, maximum drawdown {fmt_percent(stats['max_drawdown'], 1)}"
        f" (buy and hold: {fmt_percent(stats['buy_hold_return'], 1)}). Walk-forward efficiency "
        f"(out-of-sample over mean in-sample Sharpe ratio) {fmt_ratio(wfe)}: {verdict}. "
        f"Parameter stability: {changes or 'no parameter chosen'}."
    )


def read_cross_validation(cv: Any) -> str:
    """The distribution of out-of-sample Sharpe ratios over CV paths in words."""
    s = cv.summary()
    what = (
        "combinatorial purged cross-validation"
        if cv.method == "cpcv"
        else "purged k-fold cross-validation"
    )
    text = (
        f"{what.capitalize()} with {cv.n_folds} groups"
        + (f", {cv.n_test_folds} in each test set" if cv.method == "cpcv" else "")
        + f" and an embargo of {fmt_count(cv.embargo)} bars gives "
        f"{fmt_count(s['paths'])} out-of-sample path(s) of the parameter selection. "
    )
    if s["paths"] > 1:
        text += (
            f"Their annualised Sharpe ratios: median {fmt_ratio(s['median_sharpe'])}, "
            f"5 % to 95 % from {fmt_ratio(s['q05_sharpe'])} to "
            f"{fmt_ratio(s['q95_sharpe'])}; {fmt_percent(s['share_negative'], 0)} of the "
            "paths lose money. "
        )
    else:
        text += f"Its annualised Sharpe ratio is {fmt_ratio(s['median_sharpe'])}. "
    text += (
        "A selection procedure worth trusting keeps most paths above zero."
        if s["share_negative"] < 0.5
        else "Most paths are below zero: the procedure does not pick parameters that hold up."
    )
    return text
