import numpy as np
import pytest

from forecast.tasks import sine_long_gap, sine_long_gap_baseline_mse


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
