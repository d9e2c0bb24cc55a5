"""`make bench-forecast`'s series and protocols (benchmarks/bench_forecast.py), without
training: each series loads, splits and windows as its protocol says, and the table's ratio
is the best network's score over the best statistical method's."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.config import build_config, validate
from forecast.data import prepare_unswept

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_forecast.py"
spec = importlib.util.spec_from_file_location("bench_forecast", SCRIPT)
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_forecast"] = bench  # dataclasses look their module up
spec.loader.exec_module(bench)

# Per series: (steps, horizon, test origins) as the docs' table describes the protocol.
PROTOCOLS = {
    "lynx": (114, 6, 18),
    "sunspots": (309, 6, 57),
    "ausbeer": (211, 8, 35),
    "air_passengers": (144, 36, 1),
    "wineind": (176, 18, 18),
    "elec_equip": (257, 18, 34),
    "co2": (2284, 13, 83),
    "taylor": (4032, 48, 28),
}


def test_the_benchmark_spans_the_frequencies_the_issue_asks_for():
    assert set(bench.SERIES) == set(PROTOCOLS) and len(bench.SERIES) >= 8
    frequencies = {series.frequency for series in bench.SERIES.values()}
    assert {"yearly", "quarterly", "monthly", "weekly", "half-hourly"} <= frequencies


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_each_series_splits_as_its_protocol_says(name):
    config = build_config(bench.experiment(name, seeds=3, epochs=None), where=name)
    validate(config)
    (data,) = prepare_unswept(config)
    steps, horizon, origins = PROTOCOLS[name]
    assert len(data.values) == steps and config.data.horizon == horizon
    test_origins = data.origins["test"]
    assert len(test_origins) == origins
    # The test windows' targets lie in the test part, and every forecaster is scored on them.
    assert test_origins[0] + 1 >= data.fit_end and test_origins[-1] + horizon < steps
    assert [model.name for model in config.models] == ["rnn", "lstm", "slstm", "mlstm"]
    assert config.seeds == [0, 1, 2] and not config.log_models
    assert {"ets", "theta", "arima", "mstl"} <= set(config.data.baselines)


def test_the_table_divides_the_best_network_by_the_best_statistical_method():
    rows = {
        "rnn": 1.2,
        "lstm": 0.9,
        "rnn_ensemble": 0.8,
        "naive": 0.5,  # a naive forecaster is not a statistical method
        "ets": 1.0,
        "arima": 0.64,
    }
    frame = pd.DataFrame({"forecaster": list(rows), "mase": list(rows.values())})
    table = bench.table({"toy": frame}, "mase")
    assert list(table.columns) == [
        "rnn",
        "lstm",
        "rnn_ensemble",
        "naive",
        "ets",
        "arima",
        "best_net/best_stat",
    ]
    assert table.loc["toy", "best_net/best_stat"] == pytest.approx(0.8 / 0.64)
    markdown = bench.markdown(table).splitlines()
    assert markdown[0].startswith("| series | rnn |") and markdown[2].endswith("| 1.250 |")
    assert np.isfinite(table.to_numpy(dtype=float)).all()


def test_the_long_memory_figure_draws_each_network_against_its_window():
    """docs/long_memory.py's figure from a made-up table: a line per network over the three
    windows, the two references, and each network's gradient share over two weeks labelled
    with its effective memory in days."""
    path = SCRIPT.parents[1] / "docs" / "long_memory.py"
    spec = importlib.util.spec_from_file_location("long_memory", path)
    memory = importlib.util.module_from_spec(spec)
    sys.modules["long_memory"] = memory
    spec.loader.exec_module(memory)
    rows = [
        {"model": name, "window": width, "mase": 1.0 + index, "effective_memory": 96.0}
        for index, name in enumerate(["rnn", "lstm"])
        for width in memory.WINDOWS.values()
    ]
    rows += [{"model": "seasonal_naive", "window": 672, "mase": 1.2, "effective_memory": None}]
    rows += [{"model": "mstl", "window": 672, "mase": 0.5, "effective_memory": None}]
    flows = {"rnn": np.exp(-np.arange(672) / 10.0), "lstm": np.ones(672)}
    drawn = memory.figure(pd.DataFrame(rows), flows)
    by_window, by_lag = drawn.axes
    assert [line.get_label() for line in by_window.lines] == [
        "rnn",
        "lstm",
        "weekly seasonal naive",
        "MSTL [48, 336]",
    ]
    np.testing.assert_array_equal(by_window.lines[1].get_ydata(), [2.0, 2.0, 2.0])
    assert [line.get_label() for line in by_lag.lines[:2]] == [
        "rnn: 90% within 2.0 days",
        "lstm: 90% within 2.0 days",
    ]
