import numpy as np
import pytest

from forecast.evaluation import class_frequencies, cross_entropy
from forecast.tasks import (
    TASKS,
    associative_recall,
    associative_recall_baseline,
    copy_memory,
    copy_memory_baseline,
    sine_long_gap,
    sine_long_gap_baseline_mse,
)


def test_shapes_and_determinism():
    inputs, targets = sine_long_gap(16, gap=30, seed=1)
    assert inputs.shape == (16, 20 + 30, 1) and targets.shape == (16, 1)
    assert inputs.dtype == np.float32 and targets.dtype == np.float32
    again, _ = sine_long_gap(16, gap=30, seed=1)
    other, _ = sine_long_gap(16, gap=30, seed=2)
    np.testing.assert_array_equal(inputs, again)
    assert not np.array_equal(inputs, other)


def test_target_is_the_segment_amplitude_and_the_gap_carries_none_of_it():
    inputs, targets = sine_long_gap(20_000, gap=40, seed=0)
    segment, gap = inputs[:, :20, 0], inputs[:, 20:, 0]
    peak = np.abs(segment).max(axis=1)
    # Sampling a full period at >= 5 points per period shows at least cos(pi/5) of the peak.
    assert np.all(peak <= targets[:, 0] + 1e-6)
    assert np.all(peak >= np.cos(np.pi / 5) * targets[:, 0] - 1e-6)
    # No shortcut: neither the last input nor the gap's energy predicts the target.
    for feature in (gap[:, -1], np.abs(gap).mean(axis=1)):
        assert abs(np.corrcoef(feature, targets[:, 0])[0, 1]) < 0.03


def test_trivial_baseline_mse_matches_its_formula():
    _, targets = sine_long_gap(50_000, gap=0, seed=0)
    assert np.var(targets) == pytest.approx(sine_long_gap_baseline_mse(), rel=0.03)
    assert sine_long_gap_baseline_mse() == pytest.approx(0.0675)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_samples": 0, "gap": 5}, "n_samples"),
        ({"n_samples": 4, "gap": -1}, "gap"),
        ({"n_samples": 4, "gap": 5, "segment_length": 10}, "segment_length"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sine_long_gap(seed=0, **kwargs)


def test_adding_hochreiter_marks_two_values_early_and_sums_them():
    from forecast.tasks import ADDING_BASELINE_MSE, adding_hochreiter

    inputs, targets = adding_hochreiter(20_000, gap=30, seed=0, segment_length=10)
    assert inputs.shape == (20_000, 40, 2) and targets.shape == (20_000, 1)
    values, markers = inputs[..., 0], inputs[..., 1]
    assert np.all(markers.sum(axis=1) == 2) and np.all(markers[:, 10:] == 0)
    np.testing.assert_allclose((values * markers).sum(axis=1), targets[:, 0], rtol=1e-6)
    assert np.var(targets) == pytest.approx(ADDING_BASELINE_MSE, rel=0.05)
    assert pytest.approx(0.167, abs=1e-3) == ADDING_BASELINE_MSE  # the published figure
    np.testing.assert_array_equal(
        adding_hochreiter(5, 3, seed=4)[0], adding_hochreiter(5, 3, seed=4)[0]
    )


@pytest.mark.parametrize("length", [100, 101])
def test_adding_arjovsky_marks_one_value_in_each_half_and_sums_them(length):
    from forecast.tasks import ADDING_BASELINE_MSE, adding_arjovsky

    inputs, targets = adding_arjovsky(20_000, gap=length, seed=0)
    assert inputs.shape == (20_000, length, 2) and targets.shape == (20_000, 1)
    assert inputs.dtype == np.float32 and targets.dtype == np.float32
    values, markers = inputs[..., 0], inputs[..., 1]
    half = length // 2
    assert np.all(markers[:, :half].sum(axis=1) == 1) and np.all(markers[:, half:].sum(axis=1) == 1)
    # Every step of each half gets marked by some sample: the positions are uniform within it.
    assert np.all(markers.sum(axis=0) > 0)
    assert np.all((values >= 0) & (values < 1))
    np.testing.assert_allclose((values * markers).sum(axis=1), targets[:, 0], rtol=1e-6)
    # Predicting 1 scores the variance of the sum: the baseline of Arjovsky et al.
    assert np.mean((targets - 1.0) ** 2) == pytest.approx(ADDING_BASELINE_MSE, rel=0.05)
    np.testing.assert_array_equal(
        adding_arjovsky(5, 8, seed=4)[0], adding_arjovsky(5, 8, seed=4)[0]
    )
    with pytest.raises(ValueError, match="sequence length T"):
        adding_arjovsky(5, 1, seed=0)


def test_delayed_recall_shows_numbers_then_silence_then_a_cue():
    from forecast.tasks import DELAYED_RECALL_BASELINE_MSE, delayed_recall

    inputs, targets = delayed_recall(20_000, gap=12, seed=0, n_values=3)
    assert inputs.shape == (20_000, 15, 2) and targets.shape == (20_000, 3)
    np.testing.assert_array_equal(inputs[:, :3, 0], targets)
    gap_noise = inputs[:, 3:, 0]
    assert gap_noise.std() == pytest.approx(0.2, rel=0.02)
    assert abs(np.corrcoef(gap_noise[:, -1], targets[:, 0])[0, 1]) < 0.03
    assert np.all(inputs[:, -1, 1] == 1) and np.all(inputs[:, :-1, 1] == 0)
    assert np.mean(targets**2) == pytest.approx(DELAYED_RECALL_BASELINE_MSE, rel=0.03)


def test_copy_memory_shows_symbols_then_blanks_a_delimiter_and_asks_for_them_back():
    inputs, labels, classes = copy_memory(64, gap=30, seed=3)
    length = 30 + 20
    assert inputs.shape == (64, length, 10) and inputs.dtype == np.float32
    assert labels.shape == (64, length) and np.issubdtype(labels.dtype, np.integer)
    assert classes == 9  # blank and 8 symbols; the delimiter (9) is never a target
    np.testing.assert_array_equal(inputs.sum(axis=-1), 1.0)  # one-hot at every step
    shown = inputs.argmax(axis=-1)
    symbols = shown[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    # T - 1 blanks, the delimiter, then 10 blanks while the symbols are asked for.
    assert np.all(shown[:, 10 : 10 + 29] == 0)
    assert np.all(shown[:, 39] == 9)
    assert np.all(shown[:, 40:] == 0)
    assert np.all(labels[:, :40] == 0)
    np.testing.assert_array_equal(labels[:, 40:], symbols)
    again, again_labels, _ = copy_memory(64, gap=30, seed=3)
    np.testing.assert_array_equal(inputs, again)
    np.testing.assert_array_equal(labels, again_labels)


def test_copy_memory_symbols_are_uniform_and_the_baseline_is_the_published_one():
    _, labels, _ = copy_memory(20_000, gap=100, seed=0)
    counts = np.bincount(labels[:, -10:].ravel(), minlength=9)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:] / counts[1:].sum(), 1 / 8, atol=0.005)
    # Arjovsky et al. (2016): the memoryless strategy scores 10 log(8) / (T + 20).
    assert copy_memory_baseline(100) == pytest.approx(10 * np.log(8) / 120)


def decoded_recall(inputs):
    """Per sample, the keys shown, their values (as classes 1 .. n_values) and the keys asked,
    read back from the one-hot tokens of :func:`associative_recall` with its defaults."""
    shown = inputs.argmax(axis=-1)
    return shown[:, 0:16:2], shown[:, 1:16:2] - 16, shown[:, -8:]


def test_associative_recall_shows_pairs_then_blanks_then_asks_for_their_values():
    inputs, labels, classes = associative_recall(500, gap=5, seed=3)
    length = 2 * 8 + 5 + 8
    assert inputs.shape == (500, length, 1 + 16 + 16) and inputs.dtype == np.float32
    assert labels.shape == (500, length) and labels.dtype == np.int32
    assert classes == 17  # blank and 16 values; keys are never a target
    np.testing.assert_array_equal(inputs.sum(axis=-1), 1.0)  # one-hot at every step
    keys, values, asked = decoded_recall(inputs)
    assert keys.min() >= 1 and keys.max() <= 16  # keys, then values, alternate
    assert values.min() >= 1 and values.max() <= 16
    assert all(len(set(row)) == 8 for row in keys)  # distinct within a sample
    assert all(len(set(row)) == 8 for row in values)
    assert np.all(inputs.argmax(axis=-1)[:, 16:21] == 0)  # the gap is blank
    # Every key asked once, in an order of its own; labelled with the value it was shown with.
    np.testing.assert_array_equal(np.sort(asked, axis=1), np.sort(keys, axis=1))
    assert not np.array_equal(asked, keys)
    for sample in range(500):
        bound = dict(zip(keys[sample], values[sample], strict=True))
        assert list(labels[sample, -8:]) == [bound[key] for key in asked[sample]]
    assert np.all(labels[:, :-8] == 0)
    again = associative_recall(500, gap=5, seed=3)
    np.testing.assert_array_equal(inputs, again[0])
    np.testing.assert_array_equal(labels, again[1])
    assert not np.array_equal(inputs, associative_recall(500, gap=5, seed=4)[0])


def test_associative_recall_asks_a_subset_and_fits_the_tasks_contract_at_gap_0():
    from forecast.plan import _check_task_output  # the planner's check; it loads TensorFlow

    assert TASKS["associative_recall"] is associative_recall
    drawn = associative_recall(2, gap=0, seed=0, n_pairs=4, n_keys=4, n_values=5, n_queries=2)
    inputs, labels, classes = _check_task_output("associative_recall", 0, drawn)
    assert inputs.shape == (2, 4 * 2 + 2, 1 + 4 + 5) and classes == 6
    keys = inputs.argmax(axis=-1)[:, 0:8:2]
    asked = inputs.argmax(axis=-1)[:, -2:]  # straight after the last value
    assert all(set(row) <= set(pairs) for row, pairs in zip(asked, keys, strict=True))
    assert all(len(set(row)) == 2 for row in asked)
    assert np.all(labels[:, -2:] >= 1) and np.all(labels[:, :-2] == 0)


def test_associative_recall_baseline_is_the_memoryless_guess():
    gap, length = 30, 2 * 8 + 30 + 8
    assert associative_recall_baseline(gap) == pytest.approx(8 * np.log(16) / length)
    _, labels, classes = associative_recall(2000, gap=gap, seed=0)
    # Certain of the blank before the queries, uniform over the 16 values at each of them.
    guess = np.zeros((length, classes))
    guess[:-8, 0] = 1.0
    guess[-8:, 1:] = 1 / 16
    assert cross_entropy(guess, labels) == pytest.approx(associative_recall_baseline(gap))
    # The trials' baseline, each step's class frequencies in training, finds that guess.
    _, train_labels, _ = associative_recall(8192, gap=gap, seed=1)
    fitted = cross_entropy(class_frequencies(train_labels, classes), labels)
    assert fitted == pytest.approx(associative_recall_baseline(gap), rel=0.01)
    assert associative_recall_baseline(0, n_pairs=4, n_values=5, n_queries=2) == pytest.approx(
        2 * np.log(5) / 10
    )


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_queries": 9}, "n_queries"),
        ({"n_queries": 0}, "n_queries"),
        ({"n_pairs": 17}, "n_keys"),
        ({"n_pairs": 8, "n_keys": 16, "n_values": 7}, "n_values"),
        ({"n_pairs": 1, "n_values": 1}, "n_values"),
        ({"n_pairs": 0}, "n_pairs"),
        ({"gap": -1}, "gap"),
    ],
)
def test_associative_recall_names_a_bad_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        associative_recall(4, **{"gap": 2, "seed": 0, **params})
