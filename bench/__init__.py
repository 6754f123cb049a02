"""Benchmarks (not tests): each ``bench/<name>.py`` with a ``main()`` prints figures and ratios.

Run one with ``python -m bench.<name>``, or all of them in turn with ``python -m bench``.
"""
