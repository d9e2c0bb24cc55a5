"""forecast from Python: run an experiment, read every forecaster's forecasts as one table,
score them again without training, and load the same results back from MLflow.

    .venv/bin/python examples/python_api.py
"""

import forecast

results = forecast.run("air_passengers", {"train.epochs": 3, "seeds": [0]}, log=None)
print(results.summary().to_string(index=False))

# One long table: the networks' and the baselines' forecasts of the same origins and steps.
forecasts = results.forecasts
print(forecasts.groupby("forecaster")[["origin", "step"]].nunique())

# MAPE by hand from the table, beside the one in `scores`.
by_hand = 100 * ((forecasts.yhat - forecasts.y).abs() / forecasts.y.abs())
mape = results.scores.query("metric == 'mape'").set_index(["trial", "forecaster"])["value"]
print(by_hand.groupby([forecasts.trial, forecasts.forecaster]).mean().round(4).eq(mape.round(4)))

# The same results, rebuilt from the MLflow store.
same = forecast.load(results.run_id)
print(same.summary().equals(results.summary()))
