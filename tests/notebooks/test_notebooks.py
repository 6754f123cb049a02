"""The notebooks run top to bottom with papermill on the bundled sample, in a fresh SQLite
database (the notebooks import the sample themselves when the database is empty)."""

from __future__ import annotations

import base64
import json
import re

import nbformat
import numpy as np
import papermill
import plotly.io as pio
import pytest

PLOTLY_MIME = "application/vnd.plotly.v1+json"
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


def execute(repo_root, tmp_path, name: str, **parameters) -> nbformat.NotebookNode:
    output = tmp_path / name
    papermill.execute_notebook(
        str(repo_root / "notebooks" / name), str(output), parameters=parameters,
        kernel_name="python3", cwd=str(repo_root / "notebooks"), progress_bar=False,
    )
    return nbformat.read(str(output), as_version=4)


def outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def figures(notebook) -> list:
    """Every plotly figure the notebook displayed, decoded (plotly.js binary arrays included)."""
    found = []
    for output in outputs(notebook):
        data = output.get("data", {})
        if PLOTLY_MIME in data:
            figure = data[PLOTLY_MIME]
            found.append(pio.from_json(figure if isinstance(figure, str) else json.dumps(figure),
                                       skip_invalid=True))
    return found


def html_tables(notebook) -> list[str]:
    return [output["data"]["text/html"] for output in outputs(notebook)
            if "text/html" in output.get("data", {}) and "<table" in output["data"]["text/html"]]


def markdown_outputs(notebook) -> str:
    return "".join(output["data"]["text/markdown"] for output in outputs(notebook)
                   if "text/markdown" in output.get("data", {}))


def stream_text(notebook) -> str:
    return "".join(output.get("text", "") for output in outputs(notebook)
                   if output.get("output_type") == "stream")


def assert_no_scientific_notation(notebook) -> None:
    """Tables, printed text and markdown show plain numbers (1.2e-05 nowhere)."""
    for text in html_tables(notebook) + [stream_text(notebook), markdown_outputs(notebook)]:
        # the tables' cell text, not their markup nor their stylesheet (whose random ids such as
        # "T_89e97" are not numbers)
        cells = re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", " ", text, flags=re.S))
        assert not SCIENTIFIC.search(cells), SCIENTIFIC.search(cells).group(0)


def assert_no_errors(notebook) -> None:
    errors = [output for output in outputs(notebook) if output.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue") if errors else ""


def array(value) -> np.ndarray:
    """A trace array, decoding plotly's typed-array JSON form ({"bdata", "dtype", "shape"})."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(part) for part in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(float)
    return np.asarray(value, dtype=float)


def trace_types(figure) -> list[str]:
    return [trace.type for trace in figure.data]


@pytest.mark.slow
def test_research_notebook_runs_on_the_sample(repo_root, tmp_path):
    database = f"sqlite:///{tmp_path / 'research.db'}"
    notebook = execute(repo_root, tmp_path, "01_research.ipynb", database_url=database,
                       sweep_grid={"fast": [5, 10, 20], "slow": [20, 40]})
    assert_no_errors(notebook)
    charts = figures(notebook)
    assert len(charts) == 3  # backtest chart, sweep heatmap, best equity curves
    backtest_chart, heatmap, curves = charts
    assert "candlestick" in trace_types(backtest_chart)
    assert trace_types(heatmap) == ["heatmap"]
    z = array(heatmap.data[0].z)
    assert z.shape == (2, 3)  # slow rows x fast columns
    assert np.isnan(z[0, 2]) and np.isfinite(z[1]).all()  # fast=20, slow=20 is invalid
    assert 1 <= len(curves.data) <= 3
    tables = html_tables(notebook)
    assert any("sharpe" in table and "total_return" in table and "basis" in table
               for table in tables)
    assert any("entry_price" in table for table in tables)
    assert "evaluated" in stream_text(notebook) and "not ranked" in stream_text(notebook)
    assert_no_scientific_notation(notebook)
    assert (tmp_path / "research.db").exists()


@pytest.mark.slow
def test_report_notebook_is_parameterised(repo_root, tmp_path):
    database = f"sqlite:///{tmp_path / 'report.db'}"
    notebook = execute(repo_root, tmp_path, "02_report.ipynb", database_url=database,
                       strategy="sma_cross", params={"fast": 8}, exchange="binance",
                       symbol="ETH/USDT", timeframe="1h", resample="4h")
    assert_no_errors(notebook)
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1
    heading = markdown_outputs(notebook)
    assert "# sma_cross on binance ETH/USDT 1h resampled to 4h" in heading
    assert "fast=8" in heading and "slow=50" in heading
    chart, monthly, rolling, trade_returns = figures(notebook)
    assert "candlestick" in trace_types(chart)
    assert trace_types(monthly) == ["heatmap"] and monthly.data[0].zmid == 0
    assert [trace.name for trace in rolling.data] == ["buy and hold", "strategy"]
    assert trace_types(trade_returns) == ["histogram", "histogram"]
    tables = html_tables(notebook)
    assert any("sharpe" in table and "max_drawdown" in table and "basis" in table
               for table in tables)
    assert any("Jan" in table and "year" in table for table in tables)  # monthly returns
    assert any("depth" in table and "recovered" in table for table in tables)  # drawdowns
    assert any("win_rate" in table and "payoff_ratio" in table for table in tables)
    assert any("entry_time" in table for table in tables)  # the last trades
    assert_no_scientific_notation(notebook)


@pytest.mark.slow
def test_write_a_strategy_notebook_promotes_replays_and_compares(repo_root, tmp_path):
    """The guide's path in one notebook: write, check, backtest, sweep, bots create, replay,
    compare. The notebook itself stops (an error output) if the replay's fills differ from the
    backtest's."""
    database = f"sqlite:///{tmp_path / 'write.db'}"
    notebook = execute(repo_root, tmp_path, "03_write_a_strategy.ipynb", database_url=database,
                       strategy_folder=str(tmp_path / "strategies"),
                       bots_folder=str(tmp_path / "bots"), bot_id="trend-test",
                       sweep_grid={"fast": [5, 26], "slow": [20, 40], "ceiling": [70.0]})
    assert_no_errors(notebook)
    text = stream_text(notebook)
    assert (tmp_path / "strategies" / "trend.py").is_file()
    assert text.count("OK, no past target changed") == 2  # in the notebook, then by bots create
    assert text.count("OK, the history window reproduces every sampled decision") == 2
    assert "bot 'trend-test' written" in text and (tmp_path / "bots" / "trend-test.json").is_file()
    assert "trend-test" in text and "finished" in text
    match = re.search(r"the replay recorded (\d+) fills; the backtest has (\d+): identical, "
                      r"bit for bit", text)
    assert match and match.group(1) == match.group(2) and int(match.group(1)) > 0
    assert "3 evaluated, 1 invalid" in text  # fast=26 with slow=20 breaks fast < slow
    backtest_chart, heatmap = figures(notebook)
    assert "candlestick" in trace_types(backtest_chart)
    assert "rsi" in [annotation.text for annotation in backtest_chart.layout.annotations]
    assert trace_types(heatmap) == ["heatmap"]


@pytest.mark.slow
def test_portfolio_notebook_runs_on_the_bundled_pairs(repo_root, tmp_path):
    database = f"sqlite:///{tmp_path / 'portfolio.db'}"
    notebook = execute(repo_root, tmp_path, "04_portfolio.ipynb", database_url=database,
                       sweep_grid={"top": [1, 2, 9], "window": [24, 72]})
    assert_no_errors(notebook)
    text = stream_text(notebook)
    assert "4 markets on 1,997 grid bars of 1h: BTC/USDT, ETH/USDT, NEO/USDT, XRP/USDT" in text
    assert text.count(": OK,") == 2  # the look-ahead and history-window checks
    (chart,) = figures(notebook)
    names = [trace.name for trace in chart.data]
    assert "equity" in names and "equal-weight buy and hold" in names
    stacked = {trace.name for trace in chart.data if getattr(trace, "stackgroup", None)}
    assert stacked <= {"BTC/USDT", "ETH/USDT", "NEO/USDT", "XRP/USDT"} and len(stacked) >= 2
    assert trace_types(chart).count("bar") == 1
    tables = html_tables(notebook)
    assert any("coverage" in table and "missing" in table for table in tables)
    assert any("contribution_pct" in table and "mean_weight" in table for table in tables)
    assert any("book_contribution" in table for table in tables)
    assert any("contribution:BTC/USDT" in table for table in tables)
    assert_no_scientific_notation(notebook)
