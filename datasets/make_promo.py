"""Write ``datasets/promo.csv``: a synthetic daily sales series whose jumps only a known future
input explains (see ``promo.md``). Run ``python datasets/make_promo.py``; seeded, so the file
it writes is the one in git."""

from pathlib import Path

import numpy as np
import pandas as pd

DAYS = 1500
SEED = 0


def promo_series(days: int = DAYS, seed: int = SEED) -> pd.DataFrame:
    """``date``, ``promo`` (0/1, planned ahead) and ``sales``: a level, a weekly season, +6
    on promotion days, and noise (standard deviation 0.5)."""
    rng = np.random.default_rng(seed)
    # Promotions of 1 to 3 days start on about one day in ten, at random: the calendar cannot
    # predict them, and the input window says nothing about the next one.
    promo = np.zeros(days)
    for start in np.flatnonzero(rng.random(days) < 0.1):
        promo[start : start + rng.integers(1, 4)] = 1.0
    step = np.arange(days)
    sales = 20 + 2 * np.sin(2 * np.pi * step / 7) + 6 * promo + rng.normal(0, 0.5, days)
    dates = pd.date_range("2020-01-01", periods=days, freq="D")
    return pd.DataFrame(
        {"date": dates.strftime("%Y-%m-%d"), "promo": promo.astype(int), "sales": sales.round(3)}
    )


if __name__ == "__main__":
    path = Path(__file__).with_name("promo.csv")
    promo_series().to_csv(path, index=False)
    print(f"wrote {path}")
