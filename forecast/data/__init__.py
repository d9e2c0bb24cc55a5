"""Data: a series read and cleaned (:mod:`.sources`), windowed without copies (:mod:`.windows`),
cut into parts and backtest folds and scaled (:mod:`.splits`), many series pooled
(:mod:`.panels`), and turned back from a model's output into future rows (:mod:`.transforms`);
what an experiment's config makes of it, a trial's folds (:mod:`.prepare`).

Each module is one concern, in the order a series flows through them; this package re-exports
their public names, so ``from forecast.data import load_series`` is the way in.
"""

from forecast.data.panels import combine_series, panel_splits
from forecast.data.prepare import (
    data_source,
    make_folds,
    prepare_series,
    prepare_unswept,
    series_name,
)
from forecast.data.sources import (
    FILL_METHODS,
    SERIES_ID,
    DataError,
    available_datasets,
    load_panel,
    load_series,
)
from forecast.data.splits import (
    SeriesData,
    Splits,
    backtest_splits,
    fold_bounds,
    make_scaler,
    refit_every,
    series_splits,
    synthetic_splits,
)
from forecast.data.transforms import PanelTransform, SeriesTransform, time_step, unscale_targets
from forecast.data.windows import (
    Windows,
    WindowView,
    check_window_args,
    make_windows,
    to_dataset,
    windowed_dataset,
)

__all__ = [
    "data_source",
    "make_folds",
    "prepare_series",
    "prepare_unswept",
    "series_name",
    "FILL_METHODS",
    "SERIES_ID",
    "DataError",
    "PanelTransform",
    "SeriesData",
    "SeriesTransform",
    "Splits",
    "WindowView",
    "Windows",
    "available_datasets",
    "backtest_splits",
    "check_window_args",
    "combine_series",
    "fold_bounds",
    "refit_every",
    "load_panel",
    "load_series",
    "make_scaler",
    "make_windows",
    "panel_splits",
    "series_splits",
    "synthetic_splits",
    "time_step",
    "to_dataset",
    "unscale_targets",
    "windowed_dataset",
]
