"""Windowing against Keras' reference, leakage-free splits, and series loading errors."""

import keras
import numpy as np
import pandas as pd
import pytest

from forecast.data import (
    DataError,
    Windows,
    WindowView,
    backtest_splits,
    fold_bounds,
    load_panel,
    load_series,
    make_windows,
    panel_splits,
    series_splits,
    to_dataset,
    windowed_dataset,
)


def series(length=40, features=2):
    # Values encode (step, feature), so every window says where it came from.
    return np.arange(length)[:, None] * 10.0 + np.arange(features)[None, :]


def keras_windows(values, input_width, gap, stride):
    """keras.utils.timeseries_dataset_from_array's windows for a 1-step horizon."""
    dataset = keras.utils.timeseries_dataset_from_array(
        values[: len(values) - gap - 1],
        values[input_width + gap :],
        sequence_length=input_width,
        sequence_stride=stride,
        batch_size=10_000,
    )
    (inputs, targets) = next(iter(dataset))
    return inputs.numpy(), targets.numpy()


@pytest.mark.parametrize("input_width, gap, stride", [(5, 0, 1), (7, 3, 2), (1, 10, 4), (12, 0, 5)])
def test_windows_equal_keras_timeseries_dataset_from_array(input_width, gap, stride):
    values = series().astype("float32")
    inputs, targets = make_windows(values, input_width, horizon=1, gap=gap, stride=stride)
    reference_inputs, reference_targets = keras_windows(values, input_width, gap, stride)
    np.testing.assert_array_equal(inputs, reference_inputs)
    np.testing.assert_array_equal(targets[:, 0, :], reference_targets)


def test_multi_step_targets_and_target_columns():
    values = series(30, 3)
    inputs, targets = make_windows(
        values, input_width=4, horizon=3, gap=2, stride=3, target_columns=[2]
    )
    assert inputs.shape == (8, 4, 3) and targets.shape == (8, 3, 1)
    for i in range(8):
        start = 3 * i
        np.testing.assert_array_equal(inputs[i], values[start : start + 4])
        np.testing.assert_array_equal(targets[i, :, 0], values[start + 6 : start + 9, 2])


def test_windows_are_read_only_views_of_the_series():
    values = np.random.default_rng(0).normal(size=(10_000, 1))
    inputs, targets = make_windows(values, input_width=512)
    assert np.shares_memory(inputs, values) and np.shares_memory(targets, values)
    assert not inputs.flags.writeable


def test_windowed_dataset_matches_the_windows_and_shuffles_only_when_asked():
    values = series(50, 2).astype("float32")
    inputs, targets = make_windows(values, 6, horizon=2, gap=1, stride=2)
    batches = list(windowed_dataset(values, 6, horizon=2, gap=1, stride=2, batch_size=4))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), inputs)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), targets)
    shuffled = np.concatenate(
        [b[0] for b in windowed_dataset(values, 6, 2, 1, 2, batch_size=4, shuffle=True, seed=1)]
    )
    assert not np.array_equal(shuffled, inputs)
    assert sorted(map(tuple, shuffled[:, 0])) == sorted(map(tuple, inputs[:, 0]))


def test_to_dataset_shuffles_training_batches_only():
    x, y = np.arange(20, dtype="float32")[:, None, None], np.arange(20, dtype="float32")[:, None]
    in_order = np.concatenate([b[1] for b in to_dataset(x, y, batch_size=8)])
    np.testing.assert_array_equal(in_order, y)
    shuffled = np.concatenate([b[1] for b in to_dataset(x, y, batch_size=8, shuffle=True, seed=0)])
    assert not np.array_equal(shuffled, y) and sorted(shuffled[:, 0]) == list(y[:, 0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_width": 0}, "input_width must be an integer >= 1, got 0"),
        ({"input_width": 4, "horizon": 0}, "horizon must be an integer >= 1"),
        ({"input_width": 4, "gap": -1}, "gap must be an integer >= 0"),
        ({"input_width": 4, "stride": 0}, "stride must be an integer >= 1"),
        ({"input_width": 8, "gap": 2, "horizon": 1}, "a series of 10 steps is too short for one"),
    ],
)
def test_bad_window_arguments_are_named(kwargs, message):
    with pytest.raises(DataError, match=message):
        make_windows(np.zeros(10), **kwargs)


def test_every_val_and_test_step_is_a_target_and_training_never_sees_one():
    length = 200
    frame = pd.DataFrame({"step": np.arange(length, dtype=float), "noise": np.ones(length)})
    data = series_splits(
        frame,
        input_width=10,
        horizon=3,
        gap=2,
        feature_columns=["step"],
        val_fraction=0.2,
        test_fraction=0.2,
        scaler="none",
    )
    n_train, n_val, n_test = data.split_lengths
    assert (n_train, n_val, n_test) == (120, 40, 40)
    bounds = [(0, 120), (120, 160), (160, 200)]
    parts = [
        (np.asarray(data.splits.x_train), np.asarray(data.splits.y_train)),
        (np.asarray(data.splits.x_val), np.asarray(data.splits.y_val)),
        (np.asarray(data.splits.x_test), np.asarray(data.splits.y_test)),
    ]
    # Values are step numbers. Training windows lie wholly in the train part; a validation or
    # test window's targets lie in its part, and its inputs (10 steps, then a gap of 2) reach
    # back before the part where they must, so each of the part's steps is a target.
    (train_inputs, train_targets), *forecast_parts = parts
    assert train_inputs.min() == 0 and train_targets.max() == 119
    assert len(train_inputs) == 120 - (10 + 2 + 3) + 1
    for (start, end), (inputs, targets) in zip(bounds[1:], forecast_parts, strict=True):
        assert targets.min() == start and targets.max() == end - 1
        assert inputs.min() == start - 12 and len(inputs) == (end - start) - 3 + 1
        np.testing.assert_array_equal(targets[:, 0, 0], inputs[:, -1, 0] + 3)
    scaled = series_splits(frame, 10, feature_columns=["step"], scaler="standard")
    train_steps = frame["step"].to_numpy()[: scaled.split_lengths[0]]
    assert scaled.target_scaler.mean_[0] == pytest.approx(train_steps.mean())
    assert np.asarray(scaled.splits.x_test).min() > 1.5  # later steps sit far above the train mean


def test_relative_windows_and_their_origins_in_original_units():
    frame = pd.DataFrame({"y": np.linspace(100.0, 300.0, 120) ** 1.1})
    data = series_splits(frame, input_width=8, horizon=2, relative=True)
    np.testing.assert_allclose(data.splits.x_test[:, -1, :], 0.0, atol=1e-6)
    raw = frame["y"].to_numpy()
    test_start = sum(data.split_lengths[:2])
    first_window_targets = raw[test_start : test_start + 2]
    original = data.to_original_units(np.asarray(data.splits.y_test))
    np.testing.assert_allclose(original[0, :, 0], first_window_targets, rtol=1e-5)
    # The first test window's origin is the step before the test part, its last input.
    assert data.origins["test"][0] == test_start - 1
    np.testing.assert_allclose(data.values[data.origins["test"], 0], raw[test_start - 1 : -2])
    val_original = data.to_original_units(np.asarray(data.splits.y_val), "val")
    np.testing.assert_allclose(val_original[:, 0, 0], raw[data.origins["val"] + 1], rtol=1e-5)


def test_a_part_too_short_for_a_window_is_named():
    frame = pd.DataFrame({"y": np.arange(40.0)})
    # Each names the config keys that would make it fit.
    with pytest.raises(
        DataError,
        match=r"^val part \(6 steps\): too short for data.horizon \(8 steps\); raise "
        r"data.val_fraction or lower it$",
    ):
        series_splits(frame, input_width=8, horizon=8)
    with pytest.raises(
        DataError,
        match=r"^train part \(28 steps\): too short for one window of input_width 27 \+ gap 1 \+"
        r".*; lower data.input_width, data.gap or data.horizon$",
    ):
        series_splits(frame, input_width=27, gap=1)


@pytest.mark.parametrize("transform", ["log", "boxcox"])
def test_a_target_transform_is_undone_exactly_and_fitted_on_the_train_part_only(transform):
    """The transform comes before the scaler, on the target (and its feature column), and the
    forecasts' way back to original units undoes both; poisoning the validation and test
    parts changes nothing fitted."""
    steps = np.arange(240)
    level = 100 * np.exp(steps / 120) * (1 + 0.3 * np.sin(2 * np.pi * steps / 12))
    frame = pd.DataFrame({"sales": level, "price": np.cos(steps / 7)})
    window = dict(input_width=24, horizon=6, target_columns=["sales"], relative=True)
    data = series_splits(frame, **window, target_transform=transform)
    back = data.to_original_units(np.asarray(data.splits.y_test, np.float64), "test")
    targets = data.origins["test"][:, None] + 1 + np.arange(6)
    np.testing.assert_allclose(back[..., 0], level[targets], rtol=1e-5)  # float32 windows
    scaler = data.target_scaler
    values = level[:, None]
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(values)), values)
    # The transform is in the inputs too: the sales feature reads as the target does.
    features = data.transform.feature_scaler.transform(frame[["sales", "price"]].to_numpy())
    np.testing.assert_allclose(features[:, 0], scaler.transform(values)[:, 0])

    poisoned = frame.copy()
    train_end = data.split_lengths[0]
    poisoned.loc[train_end:, "sales"] *= 100
    fitted = series_splits(poisoned, **window, target_transform=transform).target_scaler
    for before, after in zip(scaler.steps, fitted.steps, strict=True):
        for attribute in ("lambdas_", "mean_", "scale_"):
            if hasattr(before[1], attribute):
                np.testing.assert_array_equal(
                    getattr(after[1], attribute), getattr(before[1], attribute)
                )


def test_deseasonalizing_is_undone_exactly_and_fitted_on_the_train_part_only():
    """data.deseasonalize: the targets less MSTL's seasonal profile (the mean of statsforecast's
    seasonal component per phase of the train part) before the scaling, added back exactly to
    the forecasts; poisoning the validation and test parts changes nothing fitted."""
    from statsforecast.mstl import mstl

    frame = load_series("air_passengers", "month")
    window = dict(input_width=24, horizon=12, val_fraction=0.25, test_fraction=0.25, relative=True)
    data = series_splits(frame, **window, deseasonalize=(12,))
    train_end = data.split_lengths[0]
    passengers = frame["passengers"].to_numpy(np.float64)
    component = mstl(passengers[:train_end], [12])["seasonal"].to_numpy()
    expected = component.reshape(-1, 12).mean(axis=0)  # the train part holds whole years
    (profile,) = data.transform.seasonal.profiles
    np.testing.assert_allclose(profile[:, 0], expected)
    # What the network learns is the rest: its inputs read the deseasonalised series.
    plain = series_splits(frame, **{**window, "relative": False}, scaler="none")
    rest = series_splits(frame, **{**window, "relative": False}, scaler="none", deseasonalize=(12,))
    phases = np.arange(len(frame)) % 12
    np.testing.assert_allclose(
        np.asarray(rest.splits.x_test)[..., 0],
        np.asarray(plain.splits.x_test)[..., 0] - profile[phases, 0][_input_steps(plain)],
        atol=1e-3,
    )
    back = data.to_original_units(np.asarray(data.splits.y_test, np.float64), "test")
    targets = data.origins["test"][:, None] + 1 + np.arange(12)
    np.testing.assert_allclose(back[..., 0], passengers[targets], rtol=1e-5)  # float32 windows

    poisoned = frame.copy()
    poisoned.iloc[train_end:, 0] *= np.linspace(1, 5, len(frame) - train_end)
    refitted = series_splits(poisoned, **window, deseasonalize=(12,))
    np.testing.assert_array_equal(refitted.transform.seasonal.profiles[0], profile)
    np.testing.assert_array_equal(refitted.target_scaler.mean_, data.target_scaler.mean_)


def _input_steps(data):
    """Each test window's input steps as indices of the series."""
    width = np.asarray(data.splits.x_test).shape[1]
    return data.origins["test"][:, None] - np.arange(width)[::-1]


def test_a_deseasonalised_series_transform_places_request_rows_by_their_times():
    """The logged model's way: a request's window less the seasons at its rows' times equals
    the trial's test window, the window's own targets come back as the next rows, and a time
    off the series' steps is one line."""
    frame = load_series("taylor", "time")
    data = series_splits(frame, 336, 48, relative=True, deseasonalize=(48, 336))
    transform = data.transform
    assert [len(profile) for profile in transform.seasonal.profiles] == [48, 336]
    raw = frame.reset_index()
    origin = data.origins["test"][3]
    rows = raw.iloc[origin - 400 : origin + 1]  # more history than the window: the last 336
    np.testing.assert_allclose(
        transform.model_input(rows)[0], data.splits.x_test[3], rtol=0, atol=1e-5
    )
    forecast = transform.forecast_frame(data.splits.y_test[3], rows)
    expected = raw.iloc[origin + 1 : origin + 49].reset_index(drop=True)
    pd.testing.assert_series_equal(forecast["time"], expected["time"], check_freq=False)
    np.testing.assert_allclose(forecast["demand"], expected["demand"], rtol=1e-5)
    shifted = rows.assign(time=pd.to_datetime(rows["time"]) + pd.Timedelta(minutes=10))
    with pytest.raises(DataError, match=r"^input: time 2000-0.* is not on the series' steps"):
        transform.model_input(shifted)


def test_a_transform_of_a_target_that_is_not_positive_is_one_line():
    frame = pd.DataFrame({"sales": [3.0, 2.0, 0.0, 4.0] * 20})
    with pytest.raises(DataError) as error:
        series_splits(frame, input_width=4, target_transform="log")
    assert str(error.value) == (
        "data.transform: log needs positive values; column 'sales' has 0 at row 2 (2)"
    )


def test_test_windows_every_step_are_those_of_every_origin_at_those_origins():
    """evaluation.step: the test part's windows start every k steps, the same windows as at
    step 1 there; the training and validation windows are untouched (their data.stride)."""
    frame = pd.DataFrame({"y": np.sin(np.arange(300) / 5) + np.arange(300) / 100})
    every = series_splits(frame, input_width=8, horizon=3, stride=2)
    third = series_splits(frame, input_width=8, horizon=3, stride=2, test_stride=3)
    np.testing.assert_array_equal(third.origins["test"], every.origins["test"][::3])
    np.testing.assert_array_equal(np.diff(every.origins["test"]), 1)  # not data.stride's 2
    for array in ("x_test", "y_test"):
        np.testing.assert_array_equal(
            np.asarray(getattr(third.splits, array)), np.asarray(getattr(every.splits, array))[::3]
        )
    for array in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(
            np.asarray(getattr(third.splits, array)), np.asarray(getattr(every.splits, array))
        )


def test_backtest_folds_cut_the_test_part_and_train_on_everything_before_each():
    # 100 steps, 30 tested in 3 folds of 10, validation the 10 steps before each fold.
    folds = fold_bounds(100, val_fraction=0.1, test_fraction=0.3, folds=3)
    assert folds == [
        {"train": (0, 60), "val": (60, 70), "test": (70, 80)},
        {"train": (0, 70), "val": (70, 80), "test": (80, 90)},
        {"train": (0, 80), "val": (80, 90), "test": (90, 100)},
    ]
    slide = fold_bounds(100, val_fraction=0.1, test_fraction=0.3, folds=3, refit=False)
    assert [fold["train"] for fold in slide] == [(0, 60)] * 3
    assert [fold["val"] for fold in slide] == [(60, 70)] * 3
    assert [fold["test"] for fold in slide] == [(70, 80), (80, 90), (90, 100)]
    # refit: 2, over 4 folds of 10: trained before folds 1 and 3, each kept for the next.
    every_other = fold_bounds(100, val_fraction=0.1, test_fraction=0.4, folds=4, refit=2)
    assert [fold["val"] for fold in every_other] == [(50, 60), (50, 60), (70, 80), (70, 80)]
    assert [fold["test"][0] for fold in every_other] == [60, 70, 80, 90]
    # Folds of unequal length when the test part does not divide evenly: 7 steps in 3 folds.
    uneven = fold_bounds(20, val_fraction=0.25, test_fraction=0.35, folds=3)
    assert [fold["test"] for fold in uneven] == [(13, 15), (15, 17), (17, 20)]
    (single,) = fold_bounds(200, 0.2, 0.2)
    assert single == {"train": (0, 120), "val": (120, 160), "test": (160, 200)}
    with pytest.raises(DataError, match="backtest folds must be an integer >= 1, got 0"):
        fold_bounds(100, 0.1, 0.3, folds=0)


def test_each_backtest_fold_is_windowed_and_scaled_on_its_own_past():
    raw = np.linspace(1.0, 50.0, 300) ** 1.5
    frame = pd.DataFrame({"y": raw})
    window = {"input_width": 12, "horizon": 2, "val_fraction": 0.1, "test_fraction": 0.3}
    folds = backtest_splits(frame, folds=3, refit=True, **window)
    one = backtest_splits(frame, folds=1, refit=True, **window)[0]
    single = series_splits(frame, **window)
    np.testing.assert_array_equal(one.splits.x_test, single.splits.x_test)
    for data, test_start, train_end in zip(folds, (210, 240, 270), (180, 210, 240), strict=True):
        assert data.split_lengths == (train_end, 30, 30)
        assert data.target_scaler.mean_[0] == pytest.approx(raw[:train_end].mean())
        original = data.to_original_units(np.asarray(data.splits.y_test))
        # Window i's targets: steps test_start + i and the one after it, every step of the fold.
        expected = np.stack([raw[test_start : test_start + 29], raw[test_start + 1 :][:29]])
        np.testing.assert_allclose(original[:, :, 0], expected.T, rtol=1e-5)
    slid = backtest_splits(frame, folds=3, refit=False, **window)
    means = [data.target_scaler.mean_[0] for data in slid]
    assert means == pytest.approx([raw[:180].mean()] * 3)
    np.testing.assert_array_equal(slid[2].splits.x_train, folds[0].splits.x_train)
    with pytest.raises(DataError, match=r"backtest fold 1 of 5: test part \(18 steps\): too sh"):
        backtest_splits(frame, folds=5, refit=True, **{**window, "horizon": 20})


@pytest.mark.parametrize("relative, scaler", [(True, "standard"), (False, "minmax")])
def test_the_series_transform_rebuilds_test_windows_from_raw_rows(relative, scaler):
    frame = load_series("co2", "date", fillna="interpolate")
    data = series_splits(frame, 52, 4, relative=relative, scaler=scaler)
    transform = data.transform
    assert transform.columns == ["date", "co2"] and transform.time_step == "W-SAT"
    raw = frame.reset_index()
    rows = raw.iloc[: len(raw) - 4]  # the last test window's inputs end 4 weeks before the end
    np.testing.assert_allclose(
        transform.model_input(rows)[0], data.splits.x_test[-1], rtol=0, atol=1e-5
    )
    # The window's own targets, as a model output, come back as the last 4 weeks.
    forecast = transform.forecast_frame(data.splits.y_test[-1], rows)
    expected = raw.iloc[-4:].reset_index(drop=True)
    pd.testing.assert_series_equal(forecast["date"], expected["date"], check_freq=False)
    np.testing.assert_allclose(forecast["co2"], expected["co2"], rtol=1e-6)


def test_the_series_transform_names_bad_rows_in_one_line():
    frame = pd.DataFrame({"year": np.arange(1900.0, 1960.0), "y": np.linspace(0, 1, 60)})
    data = series_splits(load_series(frame, "year"), input_width=5, horizon=2, gap=1)
    transform = data.transform
    rows = frame.iloc[-5:]
    assert list(transform.forecast_frame(np.zeros(2), rows)["year"]) == [1961.0, 1962.0]
    for bad, message in [
        (rows.drop(columns="y"), "input: no column 'y'; columns are: year"),
        (rows.iloc[-4:], "input: 4 rows; the model reads the last 5"),
        (rows.assign(y=[0.1, None, 0.2, 0.3, 0.4]), "column 'y' row 1: missing value$"),
        (rows.assign(y=[0.1, 0.2, "x", 0.3, 0.4]), "column 'y' row 2: non-numeric value 'x'$"),
    ]:
        with pytest.raises(DataError, match=message):
            transform.model_input(bad)


@pytest.mark.parametrize("fillna", ["ffill", "interpolate", "drop"])
def test_a_request_with_missing_values_is_filled_as_training_filled_the_series(fillna):
    """A model trained with ``fillna`` forecasts from a history with gaps as if the gaps had
    been filled as the training series' were, and says how many values were missing."""
    frame = pd.DataFrame({"year": np.arange(1900.0, 1960.0), "y": np.linspace(0, 1, 60) ** 2})
    data = series_splits(load_series(frame, "year"), input_width=5, horizon=2, fillna=fillna)
    transform = data.transform
    rows = frame.iloc[-8:].reset_index(drop=True)
    holed = rows.assign(y=rows["y"].where(~rows.index.isin([4, 6])))
    # What load_series would have made of the history with its gaps, then read alike.
    refilled = load_series(holed, "year", fillna=fillna).reset_index()
    np.testing.assert_allclose(transform.model_input(holed), transform.model_input(refilled))
    outputs = np.zeros(2)
    forecast = transform.forecast_frame(outputs, holed)
    expected = transform.forecast_frame(outputs, refilled)
    assert forecast["filled_values"].tolist() == [2, 2]
    assert expected["filled_values"].tolist() == [0, 0]
    pd.testing.assert_frame_equal(
        forecast.drop(columns="filled_values"), expected.drop(columns="filled_values")
    )
    # Without fillna in training, a gap is still refused, and the forecast has no such column.
    plain = series_splits(load_series(frame, "year"), input_width=5, horizon=2).transform
    with pytest.raises(DataError, match="column 'y' row 4: missing value$"):
        plain.model_input(holed)
    assert "filled_values" not in plain.forecast_frame(outputs, rows)


def test_shipped_datasets_load_by_name():
    co2 = load_series("co2", time_column="date", fillna="interpolate")
    assert len(co2) == 2284 and list(co2.columns) == ["co2"]
    assert isinstance(co2.index, pd.DatetimeIndex) and co2.index.is_monotonic_increasing
    assert not co2.isna().any().any() and 310 < co2["co2"].iloc[0] < 320
    sunspots = load_series("sunspots", time_column="year")
    assert len(sunspots) == 309 and sunspots.index[0] == 1700


def write_csv(tmp_path, text):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("t,y\n1,1\n2,x\n", {"time_column": "t"}, "column 'y' line 3: non-numeric value 'x'"),
        (
            "t,y\n1,1\n2,\n3,4\n",
            {"time_column": "t"},
            "column 'y' has missing values (1 in all, first at line 3); set fillna",
        ),
        ("t,y\n1,1\n3,2\n2,3\n", {"time_column": "t"}, "unsorted timestamp 2 at line 4"),
        ("t,y\n1,1\n1,2\n", {"time_column": "t"}, "duplicate timestamp 1 at line 3"),
        ("t,y\n1,1\n", {"time_column": "time"}, "no column 'time'; columns are: t, y"),
        ("t,y\n1,1\n", {"columns": ["z"]}, "no column 'z'"),
        ("t,y\n2020-01-01,1\nsoon,2\n", {"time_column": "t"}, "line 3: not a timestamp: 'soon'"),
    ],
)
def test_bad_series_files_get_one_line_naming_file_column_and_line(tmp_path, text, kwargs, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(DataError) as error:
        load_series(path, **kwargs)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_file_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_series(tmp_path / "absent.csv")
    with pytest.raises(
        DataError, match="unknown dataset .nope.; available: air_passengers, ausbeer"
    ):
        load_series("nope")


@pytest.mark.parametrize(
    "fillna, expected", [("ffill", [1, 1, 4]), ("interpolate", [1, 2.5, 4]), ("drop", [1, 4])]
)
def test_fillna_is_opt_in(tmp_path, fillna, expected):
    path = write_csv(tmp_path, "t,y\n1,1\n2,\n3,4\n")
    assert load_series(path, "t", fillna=fillna)["y"].tolist() == expected


def test_frames_and_arrays_load_too():
    index = pd.date_range("2020-01-01", periods=5, freq="D")
    frame = load_series(pd.DataFrame({"y": range(5)}, index=index))
    assert frame.index.equals(index) and frame["y"].dtype == np.float64
    assert load_series(np.arange(6.0)).shape == (6, 1)
    with pytest.raises(DataError, match="DataFrame: unsorted timestamp"):
        load_series(pd.DataFrame({"y": range(3)}, index=[0, 2, 1]))


def test_each_windows_origin_is_its_last_input_step_and_its_targets_follow_the_gap():
    frame = pd.DataFrame({"y": np.arange(200.0)})
    data = series_splits(frame, input_width=12, horizon=3, gap=1, stride=2, scaler="none")
    for part, targets in (("val", data.splits.y_val), ("test", data.splits.y_test)):
        origins = data.origins[part]
        assert len(origins) == len(targets)
        # y = step: the targets are origin + gap + 1 ...
        np.testing.assert_array_equal(np.asarray(targets)[:, 0, 0], origins + 2)
    assert data.fit_end == sum(data.split_lengths[:2])


def test_make_windows_refuses_nan_naming_its_position():
    values = series(length=30, features=2)
    values[17, 1] = np.nan
    with pytest.raises(DataError) as error:
        make_windows(values, input_width=4)
    message = str(error.value)
    assert message.startswith("values: NaN at step 17, feature 1;") and "\n" not in message
    make_windows(np.arange(30), input_width=4)  # integers have no NaN to look for
    infinite = series(length=30, features=1)
    infinite[[3, 5], 0] = [np.inf, -np.inf]  # their sum is NaN, yet no value is
    assert len(make_windows(infinite, input_width=4)[0]) == 26


def long_table():
    """Three series in long format, their rows interleaved; series b starts later and is
    shorter. Values encode (series, step): a's 1000 + step, b's 2000 + step, c's 3000 + step."""
    rows = []
    for step in range(60):
        for number, name in enumerate("abc", 1):
            if name == "b" and step < 10:
                continue
            rows.append({"id": name, "t": 1900 + step, "y": number * 1000.0 + step})
    return pd.DataFrame(rows)


def test_a_panel_loads_each_series_as_load_series_loads_its_own_rows():
    table = long_table()
    panel = load_panel(table, "id", "t")
    assert list(panel) == ["a", "c", "b"]  # in order of first appearance (b starts later)
    for name, frame in panel.items():
        own = load_series(table[table["id"] == name].drop(columns="id"), "t")
        pd.testing.assert_frame_equal(frame, own)
    assert len(panel["b"]) == 50 and panel["b"].index[0] == 1910
    # Without a time column, each series counts its own steps (not its rows' places in the table).
    untimed = load_panel(table.drop(columns="t"), "id")
    assert list(untimed["b"].index) == list(range(50))
    np.testing.assert_array_equal(untimed["b"]["y"], panel["b"]["y"])
    nox = load_panel("nox", "site", "date", fillna="interpolate")
    assert len(nox) == 13 and {len(frame) for frame in nox.values()} == {366}
    assert not any(frame.isna().any().any() for frame in nox.values())


def test_panel_windows_never_cross_series_and_each_series_scales_on_its_own_train_part():
    panel = load_panel(long_table(), "id", "t")
    window = {"input_width": 5, "horizon": 2, "test_fraction": 0.3, "val_fraction": 0.2}
    (data,) = panel_splits(panel, "id", **window)
    alone = {name: series_splits(frame, **window) for name, frame in panel.items()}
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        expected = np.concatenate([getattr(part.splits, split) for part in alone.values()])
        np.testing.assert_array_equal(getattr(data.splits, split), expected)
    original = data.to_original_units(np.asarray(data.splits.y_test))
    inputs = np.concatenate(
        [
            part.target_scaler.inverse_transform(part.splits.x_test[..., 0])
            for part in alone.values()
        ]
    )[..., None]
    # Every window's inputs and targets come from one series (the thousands say which).
    series_of = np.floor(np.concatenate([inputs[:, :, 0], original[:, :, 0]], axis=1) / 1000)
    assert (series_of == series_of[:, :1]).all()
    windows = data.windows("test")
    assert [windows[name].stop - windows[name].start for name in alone] == [17, 17, 14]
    assert set(np.unique(series_of[data.windows("test")["b"]])) == {2.0}
    for name, part in alone.items():  # each scaled by its own train part
        train_end = fold_bounds(len(panel[name]), 0.2, 0.3)[0]["train"][1]
        assert part.target_scaler.mean_[0] == pytest.approx(panel[name]["y"][:train_end].mean())
    # Each test window's origin, in its own series, is its last input step.
    for name, part in alone.items():
        np.testing.assert_array_equal(data.origins["test"][windows[name]], part.origins["test"])
        last_inputs = part.target_scaler.inverse_transform(part.splits.x_test[:, -1, :])
        np.testing.assert_allclose(part.values[part.origins["test"]], last_inputs, rtol=1e-6)


def test_a_panel_backtest_folds_every_series_alike():
    panel = load_panel(long_table(), "id", "t")
    folds = panel_splits(panel, "id", folds=2, input_width=3, test_fraction=0.4)
    alone = backtest_splits(panel["c"], folds=2, refit=True, input_width=3, test_fraction=0.4)
    for data, own in zip(folds, alone, strict=True):
        np.testing.assert_array_equal(
            data.splits.x_test[data.windows("test")["c"]], own.splits.x_test
        )
    with pytest.raises(DataError, match=r"^series 'b': backtest fold 1 of 6: test part"):
        panel_splits(panel, "id", folds=6, input_width=3, horizon=4, test_fraction=0.4)


def test_the_panel_transform_forecasts_each_series_from_its_raw_rows():
    table = long_table()
    panel = load_panel(table, "id", "t")
    (data,) = panel_splits(panel, "id", input_width=5, horizon=2, relative=True)
    transform = data.transform
    assert transform.columns == ["id", "t", "y"]
    # Each series' rows up to its last test window's inputs, all series in one frame.
    rows = pd.concat([table[table["id"] == name].iloc[:-2] for name in "cab"])
    last = [data.windows("test")[name].stop - 1 for name in "cab"]
    np.testing.assert_allclose(
        transform.model_input(rows), data.splits.x_test[last], rtol=0, atol=1e-6
    )
    forecast = transform.forecast_frame(np.asarray(data.splits.y_test)[last], rows)
    assert list(forecast.columns) == ["id", "t", "y"]
    assert list(forecast["id"]) == ["c", "c", "a", "a", "b", "b"]
    assert list(forecast["t"]) == [1958.0, 1959.0] * 3
    np.testing.assert_allclose(forecast["y"], [3058, 3059, 1058, 1059, 2058, 2059], rtol=1e-6)
    assert data.last_rows.columns.tolist() == ["id", "t", "y"] and len(data.last_rows) == 15
    for bad, message in [
        (rows.drop(columns="id"), "input: no column 'id'; columns are: t, y"),
        (rows.assign(id="d"), "input: unknown series 'd'; the model knows: a, c, b"),
        (
            pd.concat([rows[rows["id"] != "a"], table[table["id"] == "a"].iloc[:2]]),
            "series 'a': input: 2 rows; the model reads the last 5",
        ),
    ]:
        with pytest.raises(DataError, match=message):
            transform.model_input(bad)


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,t,y\na,1,1\nb,1,2\na,1,3\n", r"series 'a': duplicate timestamp 1 at line 4"),
        ("id,t,y\na,1,1\nb,1,x\n", r"series 'b': column 'y' line 3: non-numeric value 'x'"),
        ("id,t,y\na,1,1\n,2,2\n", r"column 'id' line 3: no series id"),
        ("id,t,y\na#1,1,1\n", r"series id 'a#1': MLflow metric names"),
        ("key,t,y\na,1,1\n", r"no column 'id'; columns are: key, t, y"),
    ],
)
def test_bad_panels_get_one_line_naming_the_series_and_the_file_line(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(DataError, match=message) as error:
        load_panel(path, "id", "t")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_transform_with_an_interval_forecasts_its_bounds_step_by_step():
    frame = pd.DataFrame({"y": np.arange(60.0)}, index=pd.RangeIndex(60, name="step"))
    transform = series_splits(frame, input_width=5, horizon=2, scaler="none").transform
    below, above = np.array([[1.0], [2.0]]), np.array([[3.0], [4.0]])
    transform = transform.with_interval(0.9, {"": (below, above)})
    rows = frame.reset_index().tail(5)
    forecast = transform.forecast_frame(np.array([[[10.0], [20.0]]]), rows)
    assert list(forecast.columns) == ["step", "y", "y_lo90", "y_hi90"]
    assert forecast["y_lo90"].tolist() == [9.0, 18.0]
    assert forecast["y_hi90"].tolist() == [13.0, 24.0]


def copied_parts(frame, features, targets, input_width, horizon, gap, stride, relative):
    """Each part's windows as they were before streaming: every window copied out of the
    scaled series, made relative window by window (the reference the streamed batches match)."""
    from sklearn.preprocessing import StandardScaler

    (bounds,) = fold_bounds(len(frame), 0.15, 0.15)
    train_end = bounds["train"][1]
    scaled = [
        StandardScaler().fit(values[:train_end]).transform(values)
        for values in (frame[features].to_numpy(np.float64), frame[targets].to_numpy(np.float64))
    ]
    combined = np.concatenate(scaled, axis=1).astype(np.float32)
    target_index = list(range(len(features), len(features) + len(targets)))
    parts = {}
    for part, (start, end) in bounds.items():
        first = max(start - input_width - gap, 0)
        inputs, part_targets = make_windows(
            combined[first:end], input_width, horizon, gap, stride, target_index
        )
        part_inputs = inputs[..., : len(features)]
        if relative:
            part_targets = part_targets - inputs[:, -1:, len(features) :]
            part_inputs = part_inputs - part_inputs[:, -1:, :]
        parts[part] = (np.ascontiguousarray(part_inputs), np.ascontiguousarray(part_targets))
    return parts


def random_walks(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [
        pd.DataFrame({"a": np.cumsum(rng.normal(size=n)), "b": rng.normal(size=n)}) for n in lengths
    ]


@pytest.mark.parametrize("panel", [False, True], ids=["series", "panel"])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
@pytest.mark.parametrize("stride, gap", [(1, 0), (3, 2)])
def test_streamed_batches_equal_the_copied_windows_batch_by_batch(panel, relative, stride, gap):
    window = dict(input_width=12, horizon=3, gap=gap, stride=stride, relative=relative)
    window["test_stride"] = stride  # the copies stride every part alike
    columns = dict(feature_columns=["a", "b"], target_columns=["a"])
    frames = random_walks([160, 230, 300] if panel else [300])
    if panel:
        named = {f"s{index}": frame for index, frame in enumerate(frames)}
        (data,) = panel_splits(named, "site", **window, **columns)
    else:
        data = series_splits(frames[0], **window, **columns)
    copies = [
        copied_parts(frame, ["a", "b"], ["a"], 12, 3, gap, stride, relative) for frame in frames
    ]
    batch = 7
    for part in ("train", "val", "test"):
        x, y = getattr(data.splits, f"x_{part}"), getattr(data.splits, f"y_{part}")
        assert isinstance(x, WindowView) and isinstance(y, WindowView)
        # A panel's windows: each series' after the other's, never two series in one window.
        want_x = np.concatenate([copy[part][0] for copy in copies])
        want_y = np.concatenate([copy[part][1] for copy in copies])
        assert x.shape == want_x.shape and y.shape == want_y.shape
        streamed = list(to_dataset(x, y, batch))
        copied = list(to_dataset(want_x, want_y, batch))  # today's path, from the copies
        assert len(streamed) == len(copied) == -(-len(want_x) // batch)
        for (got_x, got_y), (old_x, old_y) in zip(streamed, copied, strict=True):
            np.testing.assert_array_equal(got_x.numpy(), old_x.numpy())
            np.testing.assert_array_equal(got_y.numpy(), old_y.numpy())
        # Read whole (validation and test, for scoring), the windows are the copies too.
        np.testing.assert_array_equal(np.asarray(x), want_x)
        np.testing.assert_array_equal(np.asarray(y), want_y)


def test_a_panel_holds_its_series_once_and_windows_share_it():
    named = {f"s{index}": frame for index, frame in enumerate(random_walks([120, 150]))}
    (data,) = panel_splits(named, "site", input_width=8, relative=True)
    joint = data.splits.x_train.windows.series
    assert joint.shape == (270, 4)  # two feature and two target columns, each series once
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert getattr(data.splits, part).windows.series is joint
        for member in data.series.values():
            assert getattr(member.splits, part).windows.series is joint
    own = data.series["s1"]
    np.testing.assert_array_equal(
        np.asarray(data.splits.x_test)[data.windows("test")["s1"]], np.asarray(own.splits.x_test)
    )


def test_streamed_training_shuffles_every_epoch_the_same_way_for_a_seed():
    windows = Windows(np.arange(100.0), np.arange(0, 90, 2), input_width=4, horizon=2)
    dataset = windows.dataset(8, shuffle=True, seed=5)
    first, second = ([b[1][:, 0, 0].numpy() for b in dataset] for _ in range(2))
    again = [b[1][:, 0, 0].numpy() for b in windows.dataset(8, shuffle=True, seed=5)]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # reshuffled
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))  # per seed
    targets = np.sort(np.concatenate(first))
    np.testing.assert_array_equal(targets, np.arange(0, 90, 2) + 4.0)  # every window once


def test_refitting_joins_train_and_validation_by_their_starts():
    from forecast.trial import with_validation_in_training

    data = series_splits(random_walks([200])[0], input_width=10, relative=True)
    merged = with_validation_in_training(data.splits)
    assert merged.x_train.windows.series is data.splits.x_train.windows.series
    np.testing.assert_array_equal(
        np.asarray(merged.x_train),
        np.concatenate([np.asarray(data.splits.x_train), np.asarray(data.splits.x_val)]),
    )
    assert len(merged.x_val) == 0 and len(merged.y_val) == 0


def test_window_starts_outside_the_series_are_refused():
    with pytest.raises(DataError, match="a window start lies outside the series of 10 steps"):
        Windows(np.arange(10.0), np.array([0, 8]), input_width=3)


# Future-known covariates (data.future_columns, data.calendar).


def promo_frame(length=40):
    """A monthly series whose values encode their step: the target y = step, the future
    column promo = 1000 + step, so every value a window holds says where it came from."""
    index = pd.date_range("2020-01-01", periods=length, freq="MS", name="date")
    steps = np.arange(length, dtype=float)
    return pd.DataFrame({"y": steps, "promo": 1000 + steps}, index=index)


def test_future_columns_reach_each_window_at_its_target_steps_and_no_target_leaks():
    width, horizon, gap = 4, 2, 1
    data = series_splits(
        promo_frame(),
        input_width=width,
        horizon=horizon,
        gap=gap,
        scaler="none",
        future_columns=["promo"],
        calendar=["month"],
    )
    splits = data.splits
    assert splits.future_steps == horizon
    assert splits.input_shape == (width + horizon, 4)  # y, promo, month_sin, month_cos
    for part in ("train", "val", "test"):
        inputs, targets = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        for window, target in zip(inputs, targets, strict=True):
            start = int(window[0, 0])  # y at the window's first step is its step number
            history = np.arange(start, start + width)
            ahead = np.arange(start + width + gap, start + width + gap + horizon)
            np.testing.assert_array_equal(window[:width, 0], history)  # past target
            np.testing.assert_array_equal(window[:width, 1], 1000 + history)
            np.testing.assert_array_equal(window[width:, 1], 1000 + ahead)
            np.testing.assert_array_equal(target[:, 0], ahead)
            # The horizon's rows hold no target: zeros where the past features sit.
            np.testing.assert_array_equal(window[width:, 0], 0)
            # month of each row: January 2020 is step 0
            months = np.concatenate([history, ahead]) % 12
            np.testing.assert_allclose(window[:, 2], np.sin(2 * np.pi * months / 12), atol=1e-6)
            np.testing.assert_allclose(window[:, 3], np.cos(2 * np.pi * months / 12), atol=1e-6)
            assert not set(target[:, 0]) & set(window[:, 0]) - {0.0}


def test_future_columns_are_scaled_on_the_train_part_and_not_shifted_by_relative():
    frame = promo_frame()
    data = series_splits(frame, 4, 2, future_columns=["promo"], relative=True)
    train_end = data.split_lengths[0]
    promo = frame["promo"].to_numpy()[:train_end]
    window = data.splits.x_train[0]
    np.testing.assert_allclose(
        window[:, 1][:4], (1000 + np.arange(4) - promo.mean()) / promo.std(), rtol=1e-5
    )
    assert window[3, 0] == 0  # relative shifts the past target ...
    assert window[3, 1] != 0  # ... not the covariates


def test_windows_without_covariates_are_as_before():
    frame = promo_frame()
    plain = series_splits(frame[["y"]], 4, 2, scaler="none")
    assert plain.splits.future_steps == 0 and plain.splits.input_shape == (4, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(calendar=["weekday"]), r"^calendar: unknown feature 'weekday'; choose from month, "),
        (dict(future_columns=["y"], target_columns=["y"]), r"^future column 'y' is also a targ"),
        (dict(future_columns=["price"]), r"^series: no column 'price'"),
    ],
)
def test_bad_covariates_are_refused_in_one_line(kwargs, message):
    with pytest.raises(DataError, match=message):
        series_splits(promo_frame(), 4, 2, **kwargs)


def test_a_calendar_needs_timestamps():
    frame = promo_frame().reset_index(drop=True)  # steps 0, 1, ...: no calendar
    with pytest.raises(DataError, match=r"^calendar: month needs timestamps"):
        series_splits(frame, 4, 2, calendar=["month"])


def test_the_transform_reads_history_then_future_rows_as_the_windows_do():
    width, horizon, gap = 4, 2, 1
    frame = promo_frame()
    data = series_splits(
        frame, width, horizon, gap, future_columns=["promo"], calendar=["month", "day_of_year"]
    )
    transform, rows = data.transform, data.last_rows
    # The example request: the history, then gap + horizon rows with only promo known.
    assert len(rows) == width + gap + horizon and rows["y"].iloc[width:].isna().all()
    np.testing.assert_allclose(transform.model_input(rows), data.splits.x_test[-1:], atol=1e-6)
    forecast = transform.forecast_frame(np.zeros((1, horizon, 1)), rows)
    assert list(forecast["date"]) == list(frame.index[-horizon:])
    with pytest.raises(DataError, match=r"^input: 0 future rows .* needs 3 \(gap 1 \+ horizon 2\)"):
        transform.model_input(rows.iloc[:width])
    missing = rows.assign(promo=rows["promo"].where(rows.index != len(rows) - 1))
    with pytest.raises(DataError, match=rf"^input: column 'promo' row {len(rows) - 1}: missing"):
        transform.model_input(missing)
    with pytest.raises(DataError, match=r"^input: no column 'promo'"):
        transform.model_input(rows.drop(columns="promo"))


def test_a_calendar_only_model_derives_the_horizon_from_the_timestamps():
    frame = promo_frame()[["y"]]
    data = series_splits(frame, 4, 2, calendar=["month"])
    assert len(data.last_rows) == 4  # the example request: the history alone
    # The last test window's history, without future rows: its calendar comes from the times.
    rows = frame.iloc[-6:-2].reset_index()
    np.testing.assert_allclose(data.transform.model_input(rows), data.splits.x_test[-1:], atol=1e-6)


def static_table():
    """long_table with a static column `alt` (a: 5, b: 7, c: 9) and a future column `f`."""
    table = long_table()
    table["alt"] = table["id"].map({"a": 5.0, "b": 7.0, "c": 9.0})
    table["f"] = (table["t"] % 3).astype(float)
    return table


@pytest.mark.parametrize("future", [False, True], ids=["streamed", "with-future-columns"])
def test_every_window_of_a_panel_carries_its_own_series_statics_and_index(future):
    table = static_table()
    columns = dict(feature_columns=["y"], target_columns=["y"])
    if future:
        columns["future_columns"] = ["f"]
    window = dict(input_width=5, horizon=2, relative=True, **columns)
    panel = load_panel(table, "id", "t")
    (data,) = panel_splits(panel, "id", static_columns=["alt"], series_index=True, **window)
    plain = {name: frame.drop(columns="alt") for name, frame in panel.items()}
    (without,) = panel_splits(plain, "id", **window)
    assert (data.splits.static_columns, data.splits.series_count) == (1, 3)
    # alt standardised across the three series: 5, 7, 9 -> -1.22, 0, 1.22; a, c, b in order.
    scaled = {"a": -1.2247449, "b": 0.0, "c": 1.2247449}
    index = {"a": 0.0, "c": 1.0, "b": 2.0}
    for part in ("train", "val", "test"):
        x = np.asarray(getattr(data.splits, f"x_{part}"))
        old = np.asarray(getattr(without.splits, f"x_{part}"))
        # The other columns are today's; `relative` shifts none of the per-series columns.
        np.testing.assert_array_equal(x[..., :-2], old)
        np.testing.assert_array_equal(
            np.asarray(getattr(data.splits, f"y_{part}")),
            np.asarray(getattr(without.splits, f"y_{part}")),
        )
        for name, windows in (data.windows(part) if part != "train" else {}).items():
            np.testing.assert_allclose(x[windows][..., -2], scaled[name], rtol=1e-6)
            np.testing.assert_array_equal(x[windows][..., -1], index[name])
        if part == "train":  # every series' windows in order, a's first
            first = np.unique(x[:, 0, -1], return_index=True)[1]
            assert list(np.sort(first)) == sorted(first) and len(first) == 3
        # The pooled batches (streamed, unless future columns make the windows arrays).
        y = getattr(data.splits, f"y_{part}")
        batches = [b[0].numpy() for b in to_dataset(getattr(data.splits, f"x_{part}"), y, 4)]
        np.testing.assert_array_equal(np.concatenate(batches), x)
    assert isinstance(data.splits.x_train, WindowView) != future
    assert data.last_rows.columns.tolist()[:2] == ["id", "t"] and "alt" in data.last_rows


def test_a_static_column_that_varies_within_a_series_is_refused_in_one_line():
    table = static_table()
    table.loc[(table["id"] == "b") & (table["t"] == 1930), "alt"] = 8.0
    panel = load_panel(table, "id", "t")
    varies = r"^static column 'alt' varies within series 'b' \(7 and 8\)"
    with pytest.raises(DataError, match=varies):
        panel_splits(panel, "id", input_width=5, static_columns=["alt"])
    with pytest.raises(DataError, match=r"^series 'a': no column 'height'"):
        panel_splits(panel, "id", input_width=5, static_columns=["height"])
    text = static_table().assign(alt=lambda frame: frame["id"].map({"a": "hill"}))
    with pytest.raises(DataError, match=r"column 'alt' row \d+: non-numeric value 'hill'"):
        load_panel(text.dropna(), "id", "t")


def test_the_panel_transform_takes_statics_from_the_rows_or_its_record_and_forecasts_new_series():
    table = static_table().drop(columns="f")
    panel = load_panel(table, "id", "t")
    window = dict(input_width=5, horizon=2, feature_columns=["y"], target_columns=["y"])
    (data,) = panel_splits(panel, "id", static_columns=["alt"], **window)
    transform = data.transform
    assert transform.columns == ["id", "t", "y", "alt"]
    rows = pd.concat([table[table["id"] == name].iloc[:-2] for name in "cab"])
    last = [data.windows("test")[name].stop - 1 for name in "cab"]
    want = data.splits.x_test[last]
    # The statics given in the rows, or left out: the series' own, as trained.
    np.testing.assert_allclose(transform.model_input(rows), want, atol=1e-6)
    np.testing.assert_allclose(transform.model_input(rows.drop(columns="alt")), want, atol=1e-6)
    # A series never trained on: its statics from its rows, its scaling from its own history.
    new = table[table["id"] == "a"].assign(id="d", alt=7.0, y=lambda f: f["y"] * 2)
    got = transform.model_input(new)
    history = new["y"].to_numpy()
    np.testing.assert_allclose(
        got[0, :, 0], (history[-5:] - history.mean()) / history.std(), rtol=1e-5
    )
    np.testing.assert_allclose(got[0, :, 1], 0.0, atol=1e-6)  # alt 7: the mean of 5, 7, 9
    forecast = transform.forecast_frame(np.zeros((1, 2, 1)), new)
    np.testing.assert_allclose(forecast["y"], history.mean(), rtol=1e-6)  # in its own units
    for bad, message in [
        (new.drop(columns="alt"), r"^series 'd': input: no value of static column 'alt'"),
        (
            rows.assign(alt=np.where(rows["t"] > 1950, 1.0, 2.0)),
            r"^series 'c': input: static column 'alt' varies within the series' rows",
        ),
        (rows.assign(alt="high"), r"^series 'c': input: static column 'alt': non-numeric"),
    ]:
        with pytest.raises(DataError, match=message):
            transform.model_input(bad)
    # With an embedding of each series, only those trained on are known.
    (embedded,) = panel_splits(panel, "id", static_columns=["alt"], series_index=True, **window)
    with pytest.raises(DataError, match=r"^input: unknown series 'd'; the model knows: a, c, b"):
        embedded.transform.model_input(new)
    np.testing.assert_allclose(
        embedded.transform.model_input(rows), embedded.splits.x_test[last], atol=1e-6
    )


def test_the_model_reads_the_statics_and_the_series_embedding_at_every_step_and_last():
    from forecast.models import build_model

    model = build_model(
        "SimpleRNN", 3, (5, 4), (2, 1), static_columns=2, series_count=3, series_embedding=2
    )
    # The read-out's inputs: the last Concatenate, which the Dense reads.
    joined = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)][-1]
    probe = keras.Model(model.input, joined.input)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    x[:, :, 1:3] = [[[0.5, -1.0]], [[2.0, 0.0]], [[-3.0, 1.0]]]  # statics, per window
    x[:, :, 3] = [[2.0], [0.0], [1.0]]  # the series index
    state, statics, embedded = (np.asarray(part) for part in probe(x))
    np.testing.assert_allclose(statics, x[:, 0, 1:3])
    table = model.get_layer("series").embeddings.numpy()
    np.testing.assert_allclose(embedded, table[[2, 0, 1]])
    # The recurrent stack reads the series' own column, its statics and its embedding.
    (recurrent,) = [layer for layer in model.layers if "rnn" in layer.name.lower()]
    beside = np.concatenate([x[:, 0, 1:3], table[[2, 0, 1]]], axis=1)
    steps = np.concatenate([x[:, :, :1], np.repeat(beside[:, None], 5, axis=1)], axis=2)
    np.testing.assert_allclose(state, recurrent(steps), rtol=1e-5)
