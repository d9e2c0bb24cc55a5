"""The trainer's safety nets: NaN losses, early stopping, resume, determinism."""

import keras
import numpy as np
import pandas as pd
import pytest

from forecast.config import ConfigError, TrainConfig, load_experiment
from forecast.data import Splits, series_splits
from forecast.evaluation import score
from forecast.models import build_model
from forecast.plan import plan_trials
from forecast.tasks import sine_long_gap
from forecast.training import make_optimizer, train


def tiny_splits(seed=0, n=96):
    x, y = sine_long_gap(n + 64, gap=3, seed=seed)
    return Splits(x[:n], y[:n], x[n : n + 32], y[n : n + 32], x[n + 32 :], y[n + 32 :])


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model("LSTM", 4, (23, 1), (1,))


def test_optimizers_come_by_keras_name_with_the_configured_rate_and_clipping():
    for name, cls in [("adam", keras.optimizers.Adam), ("sgd", keras.optimizers.SGD)]:
        optimizer = make_optimizer(name, 0.25, 1.0)
        assert type(optimizer) is cls
        assert float(optimizer.learning_rate) == 0.25 and optimizer.clipnorm == 1.0
    assert make_optimizer("rmsprop", 0.1, None).clipnorm is None


def test_a_nan_loss_stops_training_and_is_reported():
    splits = tiny_splits()
    poisoned = Splits(
        splits.x_train, np.full_like(splits.y_train, np.nan), *list(vars(splits).values())[2:]
    )
    result = train(tiny_model(), poisoned, TrainConfig(epochs=5, batch_size=32))
    assert result.failure is not None and "nan" in result.failure.lower()
    assert result.epochs_run == 1  # TerminateOnNaN stopped it in the first epoch


@pytest.mark.parametrize("ratio, epochs_run", [(1e-6, 3), (100.0, 6)])
def test_a_trial_still_above_the_give_up_ratio_at_the_give_up_epoch_stops(ratio, epochs_run):
    """No model gets within a millionth of the trivial baseline's error in 3 epochs; every
    model is within 100 times it."""
    config = TrainConfig(epochs=6, batch_size=32, give_up_epoch=3, give_up_ratio=ratio)
    splits = tiny_splits()
    result = train(tiny_model(), splits, config)
    assert result.failure is None and result.epochs_run == epochs_run
    assert result.pruned_at == (3 if epochs_run == 3 else None)
    # The ratio the rule reads: each epoch's validation MSE over the train mean's.
    baseline = np.mean((splits.y_val - splits.y_train.mean(axis=0)) ** 2)
    ratios = np.asarray(result.history["val_loss"]) / baseline
    np.testing.assert_allclose(result.history["val_ratio"], ratios, rtol=1e-5)


def test_early_stopping_stops_and_restores_the_best_weights():
    splits = tiny_splits()
    rng = np.random.default_rng(1)
    noisy_val = Splits(
        splits.x_train,
        splits.y_train,
        splits.x_val,
        rng.normal(size=splits.y_val.shape).astype("float32"),
        splits.x_test,
        splits.y_test,
    )
    model = tiny_model()
    config = TrainConfig(epochs=60, batch_size=32, early_stopping_patience=2)
    result = train(model, noisy_val, config)
    assert result.failure is None and result.epochs_run < 60
    best = min(result.history["val_loss"])
    restored = model.evaluate(noisy_val.x_val, noisy_val.y_val, verbose=0)
    assert restored == pytest.approx(best, rel=1e-4)


class StopAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("killed")


def test_an_interrupted_training_resumes_from_its_last_epoch(tmp_path):
    splits, config = tiny_splits(), TrainConfig(epochs=5, batch_size=32)
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), splits, config, callbacks=[StopAfterEpoch(1)], checkpoint_dir=backup)
    assert backup.exists()
    seen = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    result = train(tiny_model(), splits, config, callbacks=[recorder], checkpoint_dir=backup)
    assert seen == [2, 3, 4] and result.epochs_run == 3
    assert not backup.exists()  # removed once training completed


def test_a_model_restored_from_a_backup_trains_every_epoch_when_trained_again(tmp_path):
    # The trials of one shape reuse one model (forecast.trial), and Keras' BackupAndRestore
    # leaves the epoch it restored on the model, where every later fit would start.
    splits, config = tiny_splits(), TrainConfig(epochs=4, batch_size=32)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), splits, config, callbacks=[StopAfterEpoch(1)], checkpoint_dir=tmp_path)
    model, seen = tiny_model(), []
    recorder = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    train(model, splits, config, checkpoint_dir=tmp_path)  # resumed: epochs 2 and 3
    for backup_dir in (tmp_path / "next_trial", None):
        seen.clear()
        result = train(model, splits, config, callbacks=[recorder], checkpoint_dir=backup_dir)
        assert seen == [0, 1, 2, 3] and result.epochs_run == 4


def test_the_same_seed_gives_the_same_metrics():
    config = TrainConfig(epochs=2, batch_size=32, checkpoint=False)
    metrics = []
    for _ in range(2):
        keras.backend.clear_session()
        model, splits = tiny_model(seed=5), tiny_splits(seed=5)
        train(model, splits, config, seed=5)
        predictions = model.predict(splits.x_test, verbose=0)
        metrics.append(score(predictions, splits.y_test, splits.y_train, solved_ratio=0.1))
    assert metrics[0] == metrics[1]


def test_streamed_series_windows_train_the_same_for_the_same_seed():
    frame = pd.DataFrame({"y": np.sin(np.arange(400) / 7.0)})
    splits = series_splits(frame, input_width=16, relative=True).splits
    config = TrainConfig(epochs=2, batch_size=32, checkpoint=False)
    histories = []
    for _ in range(2):
        keras.backend.clear_session()
        keras.utils.set_random_seed(3)
        model = build_model("LSTM", 4, splits.input_shape, splits.output_shape)
        histories.append(train(model, splits, config, seed=3).history)
    assert histories[0] == histories[1]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.optimizer=adamz", "train.optimizer: unknown optimizer 'adamz'; use a name of"),
        ("train.strategy=tpu", "train.strategy: unknown strategy 'tpu'; choose one of default"),
        ("train.early_stopping_patience=0", "train.early_stopping_patience: must be positive"),
        ("train.give_up_epoch=0", "train.give_up_epoch: must be positive or null, got 0"),
        ("train.give_up_ratio=-1", "train.give_up_ratio: must be positive, got -1"),
    ],
)
def test_bad_trainer_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        plan_trials(load_experiment("sine_long_gap", [override])[1])


def test_a_categorical_task_trains_on_cross_entropy_with_a_label_at_every_step():
    # The copy task at T = 1 with two symbols, one of them copied: the label two steps after
    # the symbol is shown. Every part of the categorical path runs: integer labels, a per-step
    # read-out, cross-entropy, accuracy, and the give-up rule's cross-entropy baseline.
    from forecast.data import synthetic_splits
    from forecast.evaluation import classification_score
    from forecast.tasks import copy_memory

    splits = synthetic_splits(copy_memory, 1, 0, 512, 64, 128, n_symbols=2, n_copied=1)
    assert splits.classes == 3 and splits.per_step and splits.output_shape == (3, 3)
    keras.utils.set_random_seed(0)
    model = build_model("LSTM", 8, splits.input_shape, splits.output_shape, per_step=True)
    assert model.output_shape == (None, 3, 3)
    config = TrainConfig(epochs=8, batch_size=32, learning_rate=0.03, give_up_epoch=8)
    result = train(model, splits, config)
    assert result.epochs_run == 8
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(result.history)
    metrics = classification_score(
        model.predict(splits.x_test, verbose=0), splits.y_test, splits.y_train, 0.1
    )
    # Memoryless, the last step is a coin flip: log(2) / 3 nats per step.
    assert metrics["baseline_cross_entropy"] == pytest.approx(np.log(2) / 3, rel=0.05)
    assert metrics["test_accuracy"] == 1.0 and metrics["solved"] == 1.0


def test_the_pinball_loss_is_scikit_learns_averaged_over_quantiles():
    from sklearn.metrics import mean_pinball_loss

    from forecast.evaluation import interval_errors, interval_metrics, pinball_loss, trivial_loss
    from forecast.training import PinballLoss

    rng = np.random.default_rng(0)
    quantiles = [0.1, 0.5, 0.9]
    truth = rng.normal(size=(50, 4, 2)).astype("float32")
    forecasts = rng.normal(size=(50, 4, 2, 3)).astype("float32")
    expected = np.mean(
        [
            mean_pinball_loss(truth.ravel(), forecasts[..., i].ravel(), alpha=q)
            for i, q in enumerate(quantiles)
        ]
    )
    keras_loss = float(PinballLoss(quantiles)(truth, forecasts))
    assert keras_loss == pytest.approx(expected, rel=1e-5)
    assert pinball_loss(forecasts, truth, quantiles) == pytest.approx(expected, rel=1e-5)
    # Coverage, by its definition: the share of truths between the outer quantiles.
    low, high = np.full_like(truth, -1.0), np.full_like(truth, 1.0)
    band = np.stack([low, np.zeros_like(truth), high], axis=-1)
    scale = (np.ones(2), np.ones(2))
    errors = interval_errors(low, high, truth, 0.8, scale, band, quantiles)
    scores = interval_metrics(errors, len(quantiles))
    assert scores["coverage"] == pytest.approx(np.mean(np.abs(truth) <= 1.0))
    # WQL is the mean pinball loss over quantiles, scaled by the mean |truth|, times 2.
    wql = 2 * pinball_loss(band, truth, quantiles) / np.mean(np.abs(truth))
    assert scores["wql"] == pytest.approx(wql, rel=1e-5)
    # The trivial quantile forecast: the training targets' own quantiles, per position.
    train = rng.normal(size=(10_000, 1)).astype("float32")
    test = rng.normal(size=(10_000, 1)).astype("float32")
    constant = np.quantile(train, quantiles)
    assert trivial_loss(train, test, None, quantiles) == pytest.approx(
        np.mean(
            [
                mean_pinball_loss(test, np.full_like(test, c), alpha=q)
                for c, q in zip(constant, quantiles, strict=True)
            ]
        ),
        rel=1e-5,
    )


def test_a_refit_trains_as_many_epochs_as_the_weights_it_replaces_had():
    from forecast.config import TrainConfig
    from forecast.trial import chosen_epochs

    history = {"loss": [5.0, 4.0, 3.0, 2.0, 1.0], "val_loss": [3.0, 2.0, 1.5, 1.7, 1.9]}
    # Early stopping restored the best epoch's weights (the third): a refit trains three.
    assert chosen_epochs(history, TrainConfig(early_stopping_patience=2)) == 3
    assert chosen_epochs(history, TrainConfig()) == 5  # without it, the last epoch's weights


def test_a_refit_trains_on_the_validation_windows_too():
    import pandas

    from forecast.data import series_splits
    from forecast.trial import with_validation_in_training

    frame = pandas.DataFrame({"y": np.arange(100.0)})
    splits = series_splits(frame, input_width=5, horizon=2, scaler="none").splits
    merged = with_validation_in_training(splits)
    np.testing.assert_array_equal(merged.x_train[-len(splits.x_val) :], splits.x_val)
    np.testing.assert_array_equal(merged.y_train[: len(splits.y_train)], splits.y_train)
    assert len(merged.x_val) == 0 and merged.x_test is splits.x_test
