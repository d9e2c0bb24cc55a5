import numpy as np
import pytest

from forecast.tasks import (
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
