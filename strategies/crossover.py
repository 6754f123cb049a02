"""What the two moving-average crossover strategies share: their parameter rule."""

from __future__ import annotations


def check_fast_below_slow(p) -> None:
    """Raise ``ValueError`` unless ``1 <= p.fast < p.slow`` (look-backs in bars)."""
    if p.fast < 1:
        raise ValueError(f"fast ({p.fast}) must be at least 1 bar")
    if p.fast >= p.slow:
        raise ValueError(
            f"fast ({p.fast}) must be smaller than slow ({p.slow}): swap them or lower fast"
        )
