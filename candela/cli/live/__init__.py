"""Live operations tools for people watching paper bots: the monitor and the reconciliation.

* :mod:`candela.cli.live.records`: a bot's records and the bars it consumed, as stored;
* :mod:`candela.cli.live.reconcile`: paper against the backtest, every difference with its
  cause (``candela bots reconcile``, ``notebooks/05_reconcile.ipynb``);
* :mod:`candela.cli.live.service`: decision timeliness and slippage against the next open;
* :mod:`candela.cli.live.snapshot`, :mod:`~candela.cli.live.monitor` and
  :mod:`~candela.cli.live.monitor_view`: the live monitor of
  ``notebooks/04_live_monitor.ipynb`` (ipywidgets and plotly ``FigureWidget``).

They belong to the roof (docs/architecture.md §1): they read the runner's records and call
the same code as the command line (``candela bots start|stop``, ``candela backtest --bot``).
Nothing here imports widgets or plotly at import time except :mod:`~candela.cli.live.monitor`.
"""
