"""Where things live: the project's folders and the default MLflow store.

The bottom of the package: it imports nothing of ours, so every module may use it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The repository root for a source checkout, else the working directory."""
    if (_PACKAGE_PARENT / "pyproject.toml").is_file():
        return _PACKAGE_PARENT
    return Path.cwd()


def experiments_dir() -> Path:
    """``experiments/`` in the working directory if there is one, else the project's own."""
    local = Path.cwd() / "experiments"
    return local if local.is_dir() else project_root() / "experiments"


def datasets_dir() -> Path:
    """The shipped series (``co2``, ``sunspots``), each a CSV with a card beside it."""
    return project_root() / "datasets"


def checkpoints_dir(experiment: str, tracking_uri: str) -> Path:
    """Per-epoch backups of an experiment's unfinished trials, for resuming its sweep in the
    MLflow store at ``tracking_uri``; each store has its own, as each has its own sweeps. They
    lie in ``.checkpoints`` beside a local store (its sqlite file or its folder), for a
    tracking server at the project's root."""
    store = hashlib.sha1(tracking_uri.encode()).hexdigest()[:8]
    return _beside_store(tracking_uri) / ".checkpoints" / f"{experiment}-{store}"


def _beside_store(tracking_uri: str) -> Path:
    """The folder that holds a local store; the project's root for a tracking server."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent
    if tracking_uri.startswith("file:"):
        return Path(tracking_uri.removeprefix("file:").removeprefix("//")).resolve().parent
    if "://" not in tracking_uri:  # a folder of MLflow's file store
        return Path(tracking_uri).resolve().parent
    return project_root()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``mlflow.db`` at the project root.

    Read once, where a command starts; from there the URI is passed along explicitly.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
