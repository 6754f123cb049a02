"""An independent pandas formulation of the windowed most-recent-event rule."""

from __future__ import annotations

import numpy as np
import pandas as pd


def last_index(flags: pd.Series) -> pd.Series:
    """Index of the most recent True at or before each bar (-1 if none)."""
    positions = pd.Series(np.arange(len(flags)), index=flags.index)
    return positions.where(flags.astype(bool)).ffill().fillna(-1).astype(int)


def windowed_position(long_entry, long_exit, short_entry, short_exit, max_hold: int) -> np.ndarray:
    """Side of the most recent entry within ``max_hold`` bars unless exited since; else flat."""
    le, lx, se, sx = (
        pd.Series(np.asarray(a, dtype=bool))
        for a in (long_entry, long_exit, short_entry, short_exit)
    )
    last_long, last_short = last_index(le), last_index(se & ~le)
    now = pd.Series(np.arange(len(le)))
    is_long = last_long >= last_short
    entry = last_long.where(is_long, last_short)
    last_exit = last_index(lx & ~le).where(is_long, last_index(sx & ~se))
    held = (entry >= 0) & (now - entry < max_hold) & (last_exit < entry)
    side = np.where(is_long, 1.0, -1.0)
    return np.where(held, side, 0.0)
