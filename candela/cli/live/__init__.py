"""Live operations tools for people watching paper bots: the monitor and the reconciliation.

* :mod:`~candela.cli.live.records`: a bot's records and the bars it consumed, as stored;
* :mod:`~candela.cli.live.reconcile`: paper against the backtest, every difference with its
  cause (``candela bots reconcile``); :mod:`~candela.cli.live.service`: decision timeliness
  and slippage against the next open; :mod:`~candela.cli.live.text` shows both as text and
  tables, :mod:`~candela.cli.live.charts` as plotly charts, and
  :mod:`~candela.cli.live.report` renders ``notebooks/05_reconcile.ipynb`` to HTML;
* :mod:`~candela.cli.live.snapshot`, :mod:`~candela.cli.live.monitor` and
  :mod:`~candela.cli.live.monitor_view`: the live monitor of
  ``notebooks/06_live_monitor.ipynb`` (ipywidgets and a plotly ``FigureWidget``).

They belong to the roof (docs/architecture.md §1): they read the runner's records and call
the same code as the command line (``candela bots start|stop``, ``candela backtest --bot``).
This package imports nothing; the command imports only what it needs when it runs.
"""
