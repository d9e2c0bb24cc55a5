"""Bring your own: layers, cells and tasks named by import path, checked before any run."""

import doctest
import importlib
import importlib.metadata
import os
import subprocess
import sys

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from forecast.cli import main
from forecast.config import ConfigError, available_experiments, load_experiment
from forecast.layers import GRU, LSTM, LSTMCell, SimpleRNN
from forecast.models import build_model
from forecast.paths import project_root
from forecast.plan import plan_trials
from forecast.plots import gate_names
from tests.test_experiment import TINY
from tests.test_sweep import runs_in, set_args

USER_TASKS = '''
import numpy as np


def recall(n_samples, gap, seed, scale=1.0):
    """The first input value, shown before `gap` steps of zeros."""
    rng = np.random.default_rng(seed)
    inputs = np.zeros((n_samples, 3 + gap, 1), dtype=np.float32)
    inputs[:, 0, 0] = rng.uniform(-1, 1, n_samples) * scale
    return inputs, inputs[:, 0, :].copy()


def flat_inputs(n_samples, gap, seed):
    return np.zeros((n_samples, 4), np.float32), np.zeros((n_samples, 1), np.float32)


def float64(n_samples, gap, seed):
    return np.zeros((n_samples, 4, 1)), np.zeros((n_samples, 1))


def too_few(n_samples, gap, seed):
    return np.zeros((1, 4, 1), np.float32), np.zeros((1, 1), np.float32)


def with_nan(n_samples, gap, seed):
    targets = np.full((n_samples, 1), np.nan, np.float32)
    return np.zeros((n_samples, 4, 1), np.float32), targets


def first_sign(n_samples, gap, seed):
    """A categorical task with one label per sample: was the first value positive?"""
    inputs, _ = recall(n_samples, gap, seed)
    return inputs, (inputs[:, :1, 0] > 0).astype(np.int64), 2


def labels_out_of_range(n_samples, gap, seed):
    return np.zeros((n_samples, 4, 1), np.float32), np.full((n_samples, 4), 5), 3


def float_labels(n_samples, gap, seed):
    return np.zeros((n_samples, 4, 1), np.float32), np.zeros((n_samples, 4), np.float32), 3


def one_class(n_samples, gap, seed):
    return np.zeros((n_samples, 4, 1), np.float32), np.zeros((n_samples, 4), np.int32), 1


def broken_import():
    pass


NOT_A_FUNCTION = 3
'''

USER_MODELS = '''
import math

import keras


def convolutional(input_shape, output_shape, filters=4):
    """Not recurrent at all: a causal convolution, pooled, and a read-out."""
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv1D(filters, 3, padding="causal", activation="relu"),
        keras.layers.GlobalMaxPooling1D(),
        keras.layers.Dense(math.prod(output_shape)),
        keras.layers.Reshape(output_shape),
    ])


def wrong_output(input_shape, output_shape):
    return keras.Sequential([keras.Input(input_shape), keras.layers.LSTM(2), keras.layers.Dense(7)])


def not_a_model(input_shape, output_shape):
    return "a model"


class UnsaveableCell(keras.layers.SimpleRNNCell):
    """Takes a function, which Keras cannot write into a config without a get_config."""

    def __init__(self, units, squash=keras.ops.tanh, **kwargs):
        super().__init__(units, activation=squash, **kwargs)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's module in the working directory, as `python -m` would find it."""
    (tmp_path / "my_tasks.py").write_text(USER_TASKS)
    (tmp_path / "my_models.py").write_text(USER_MODELS)
    (tmp_path / "broken_module.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_layers_and_cells_by_import_path_and_stacked():
    keras_lstm = build_model("keras.layers:LSTM", 4, (10, 1), (1,))
    assert type(keras_lstm.layers[0]) is keras.layers.LSTM
    cell = build_model("keras.layers:SimpleRNNCell", 4, (10, 1), (1,))
    assert type(cell.layers[0]) is keras.layers.RNN
    assert type(cell.layers[0].cell) is keras.layers.SimpleRNNCell
    ours = build_model("forecast.layers:LSTMCell", 4, (10, 1), (2, 3))
    assert isinstance(ours.layers[0].cell, LSTMCell) and ours.output_shape == (None, 2, 3)
    deep = build_model("GRU", 4, (10, 1), (1,), depth=3)
    recurrent = deep.layers[:3]
    assert [layer.return_sequences for layer in recurrent] == [True, True, False]
    assert deep.predict(np.zeros((2, 10, 1), "float32"), verbose=0).shape == (2, 1)


@pytest.mark.parametrize(
    "override, message",
    [
        ("models.1.layer=nosuchmodule:LSTM", "models.1: cannot import 'nosuchmodule':"),
        ("models.1.layer=keras.layers:Nope", "models.1: module 'keras.layers' has no 'Nope'"),
        ("models.1.layer=numpy:ndarray", "models.1: numpy:ndarray is neither a Keras layer"),
        ("models.1.layer=keras.layers:LSTM", "models.1:"),  # chrono_init is ours alone
        ("models.0.depth=0", "models.0.depth: must be positive, got 0"),
        ("models.0.builder=my_models:nope", "models.0: module 'my_models' has no 'nope'"),
        ("models.0.builder=my_models:not_a_model", "returned str, not a keras.Model"),
        (
            "models.0.builder=my_models:wrong_output",
            "to (None, 7); expected (None, 420, 1) to (None, 1)",
        ),
        ("models.1.builder=my_models:convolutional", "models.1: builder my_models:convolutional:"),
        (
            "models.0.layer=my_models:UnsaveableCell",
            "models.0: my_models:UnsaveableCell cannot be saved and loaded again: TypeError:",
        ),
        ("task.name=my_tasks:nothing", "task.name: module 'my_tasks' has no 'nothing'"),
        ("task.name=broken_module:f", "cannot import 'broken_module': RuntimeError: no GPU here"),
        ("task.name=my_tasks:NOT_A_FUNCTION", "task.name: my_tasks:NOT_A_FUNCTION is not a"),
        ("task.name=my_tasks:flat_inputs", "returned inputs of shape (2, 4) for 2 samples"),
        ("task.name=my_tasks:float64", "returned inputs of dtype float64; expected float32"),
        ("task.name=my_tasks:too_few", "returned inputs of shape (1, 4, 1) for 2 samples"),
        ("task.name=my_tasks:with_nan", "returned targets with NaN or infinite values"),
        ("task.name=my_tasks:broken_import", "task.params:"),  # takes none of the arguments
        ("task.name=my_tasks:labels_out_of_range", "labels from 5 to 5; expected 0 .. 2 for 3"),
        ("task.name=my_tasks:float_labels", "returned labels of dtype float32; expected int"),
        ("task.name=my_tasks:one_class", "returned classes=1; expected an integer >= 2"),
    ],
)
def test_bad_references_fail_in_one_line(user_module, override, message):
    with pytest.raises(ConfigError) as error:
        plan_trials(load_experiment("sine_long_gap", [override])[1])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_users_categorical_task_with_one_label_a_sample_gets_one_read_out(user_module):
    from forecast.data import synthetic_splits
    from forecast.tasks import task_function

    config = load_experiment("sine_long_gap", ["task.name=my_tasks:first_sign"])[1]
    assert plan_trials(config)
    splits = synthetic_splits(task_function("my_tasks:first_sign"), 5, 0, 8, 4, 4)
    assert splits.classes == 2 and not splits.per_step and splits.output_shape == (1, 2)
    model = build_model("LSTM", 3, splits.input_shape, splits.output_shape)
    assert model.output_shape == (None, 1, 2)


def test_a_model_that_cannot_be_saved_runs_when_models_are_not_logged(user_module):
    overrides = ["models.0.layer=my_models:UnsaveableCell", "log_models=false"]
    assert plan_trials(load_experiment("sine_long_gap", overrides)[1])


def test_a_users_task_and_keras_own_layer_run_and_are_tracked(user_module, tracking_store):
    theirs = '{name: theirs, layer: "keras.layers:LSTM", units: 3}'
    conv = '{name: conv, builder: "my_models:convolutional", options: {filters: 2}}'
    models = f"[{theirs}, {{name: ours, layer: GRU, units: 3}}, {conv}]"
    overrides = [*TINY, "task.name=my_tasks:recall", "task.params={scale: 0.5}", f"models={models}"]
    overrides += ["task.gaps=[6]"]
    assert main(["run", "sine_long_gap", *set_args(overrides)]) == 0
    children = [r for r in runs_in(tracking_store) if "mlflow.parentRunId" in r.data.tags]
    assert {r.info.status for r in children} == {"FINISHED"} and len(children) == 3
    layers = {r.data.params["model"]: r.data.params["layer"] for r in children}
    assert layers == {
        "theirs": "keras.layers:LSTM",
        "ours": "GRU",
        "conv": "my_models:convolutional",
    }
    assert {r.data.params["source"] for r in children} == {"my_tasks:recall"}
    # Our layers report their gates and get a figure; Keras' LSTM and a convolution do not.
    client = MlflowClient(tracking_store)
    with_gates = {
        r.data.params["model"]
        for r in children
        if "gates.png" in {a.path for a in client.list_artifacts(r.info.run_id)}
    }
    assert with_gates == {"ours"}


def test_gate_names_are_what_each_layer_gates_with():
    x = np.zeros((1, 4, 1), "float32")
    reported = {
        layer.__name__: gate_names(layer(2).gate_activations(x)) for layer in (LSTM, GRU, SimpleRNN)
    }
    assert reported == {
        "LSTM": ["forget", "input", "output"],
        "GRU": ["update", "reset"],
        "SimpleRNN": [],
    }


def test_a_bad_reference_from_the_command_line_leaves_no_run(user_module, tracking_store, capsys):
    assert main(["run", "sine_long_gap", "--set", "task.name=my_tasks:float64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forecast: error: task.name: my_tasks:float64") and err.count("\n") == 1
    assert runs_in(tracking_store) == []


EXAMPLE = project_root() / "examples" / "janet.yaml"


@pytest.mark.processes
def test_the_example_cell_runs_and_its_model_reloads_elsewhere(tracking_store, monkeypatch):
    """JANET from examples/, as the README walks through it; its logged model loads through
    pyfunc in a fresh process whose path has neither examples/ nor the project."""
    monkeypatch.syspath_prepend(str(project_root()))  # the project root, as `make experiment`
    janet = '{name: janet, layer: "examples.janet:JANETCell", units: 3, options: {t_max: 6}}'
    tiny = [*TINY, "task.gaps=[6]", "log_models=true", f"models=[{janet}]"]
    assert main(["run", str(EXAMPLE), *set_args(tiny)]) == 0
    [child] = [r for r in runs_in(tracking_store, "janet") if "mlflow.parentRunId" in r.data.tags]
    assert child.data.params["layer"] == "examples.janet:JANETCell"

    model_uri = f"runs:/{child.info.run_id}/model"
    x = np.random.default_rng(0).normal(size=(3, 26, 1)).astype("float32")
    np.save("x.npy", x)
    script = (
        "import importlib.util, sys, mlflow, numpy as np\n"
        "assert importlib.util.find_spec('examples') is None, 'examples/ is on the path'\n"
        f"model = mlflow.pyfunc.load_model({model_uri!r})\n"
        "print(sys.modules['examples.janet'].__file__)\n"
        "np.save('y.npy', model.predict(np.load('x.npy')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("/code/examples/janet.py")
    assert not done.stdout.strip().startswith(str(project_root()))
    in_process = mlflow.pyfunc.load_model(model_uri).predict(x)
    np.testing.assert_allclose(np.load("y.npy"), in_process, atol=1e-6)


def test_the_example_documents_itself():
    result = doctest.testmod(importlib.import_module("examples.janet"))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("experiment", [*available_experiments(), str(EXAMPLE)])
def test_every_shipped_experiment_passes_its_plan(experiment, monkeypatch):
    """Their references import, their layers build and save, their tasks keep the contract."""
    monkeypatch.chdir(project_root())  # as `make experiment` runs them
    assert plan_trials(load_experiment(experiment)[1])


def test_a_models_user_code_travels_with_it_and_installed_packages_are_pinned():
    import yaml  # noqa: F401  (installed: pinned, not copied)

    from forecast.tracking import _code_and_requirements

    importlib.import_module("examples.janet")
    code, requirements = _code_and_requirements(["examples.janet", "yaml"])
    assert code == [str(project_root() / "examples")]
    assert requirements == [f"PyYAML=={importlib.metadata.version('PyYAML')}"]
