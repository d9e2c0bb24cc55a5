"""Write ``datasets/persistence.csv``: a synthetic panel of 16 AR(1) series whose persistence,
a static attribute of each series, is given beside it (see ``persistence.md``). Run
``python datasets/make_persistence.py``; seeded, so the file it writes is the one in git."""

from pathlib import Path

import numpy as np
import pandas as pd

SERIES = 16
DAYS = 300
SEED = 0


def persistence_panel(series: int = SERIES, days: int = DAYS, seed: int = SEED) -> pd.DataFrame:
    """``series``, ``date``, ``phi`` (the series' persistence, constant within it) and ``y``:
    ``y[t] = phi * y[t-1] + noise`` (standard deviation 1), ``phi`` spread evenly over
    [-0.9, 0.9], so a series' next steps depend on an attribute a short window shows poorly."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2020-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
    frames = []
    for number, phi in enumerate(np.linspace(-0.9, 0.9, series)):
        noise = rng.normal(0, 1, days)
        values = np.zeros(days)
        for step in range(1, days):
            values[step] = phi * values[step - 1] + noise[step]
        frames.append(
            pd.DataFrame(
                {
                    "series": f"s{number:02d}",
                    "date": dates,
                    "phi": round(phi, 3),
                    "y": values.round(3),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    path = Path(__file__).with_name("persistence.csv")
    persistence_panel().to_csv(path, index=False)
    print(f"wrote {path}")
