import numpy as np
import pytest

from data.frames import FrameGenerator
from data.mulaw import mu_law_encode, mu_law_round_trip


def signals():
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, 5000).astype(np.float32), rng.uniform(-1, 1, 3001).astype(np.float32)]


def test_classifier_windows_align_inputs_and_targets():
    data = signals()
    frames = FrameGenerator(data, frame_size=300, batch_size=16, steps_per_epoch=4, seed=3)
    x, y = frames[1]
    assert x.shape == (16, 300, 1) and x.dtype == np.float32 and y.shape == (16, 300) and y.dtype == np.int32
    joined = np.concatenate(data)
    for row, start in enumerate(frames.window_starts(1)):
        window = joined[start:start + 301]
        np.testing.assert_array_equal(x[row, :, 0], mu_law_round_trip(window[:-1]))  # what generation feeds back
        np.testing.assert_array_equal(y[row], mu_law_encode(window[1:]))  # step t predicts sample t + 1


def test_windows_never_cross_signal_boundaries():
    data = signals()
    frames = FrameGenerator(data, frame_size=1000, batch_size=256, steps_per_epoch=1, seed=0)
    starts = frames.window_starts(0)
    inside_first = starts + 1001 <= 5000
    inside_second = (starts >= 5000) & (starts + 1001 <= 8001)
    assert np.all(inside_first | inside_second)
    assert inside_first.any() and inside_second.any()


def test_regressor_targets_are_the_raw_samples():
    data = signals()
    frames = FrameGenerator(data, frame_size=64, batch_size=4, steps_per_epoch=1, mode="regressor")
    x, y = frames[0]
    joined = np.concatenate(data)
    start = frames.window_starts(0)[0]
    assert y.shape == (4, 64, 1)
    np.testing.assert_array_equal(y[0, :, 0], joined[start + 1:start + 65])


def test_seeded_repeatable_new_windows_every_step_and_resumable():
    a = FrameGenerator(signals(), 128, 8, 3, seed=5, epochs=4)
    b = FrameGenerator(signals(), 128, 8, 3, seed=5, epochs=4)
    assert len(a) == 12
    np.testing.assert_array_equal(a[2][0], b[2][0])
    assert not np.array_equal(a.window_starts(0), a.window_starts(3))  # epoch 2 differs from epoch 1
    b.position = 7  # resumed at epoch 3, step 2: the same stream continues
    assert len(b) == 5
    np.testing.assert_array_equal(b.window_starts(0), a.window_starts(7))
    fixed = FrameGenerator(signals(), 128, 8, 3, seed=5, reshuffle=False, epochs=4)
    fixed.position = 6
    assert len(fixed) == 3
    np.testing.assert_array_equal(fixed.window_starts(1), FrameGenerator(signals(), 128, 8, 3, seed=5).window_starts(1))
    assert not np.array_equal(FrameGenerator(signals(), 128, 8, 3, seed=6).window_starts(0), a.window_starts(0))


def test_slice_mode_pads_short_clips():
    short = np.full(100, 0.5, np.float32)
    frames = FrameGenerator([short], frame_size=256, batch_size=3, steps_per_epoch=2, mode="slice")
    (x,) = frames[0]
    assert x.shape == (3, 256, 1)
    np.testing.assert_array_equal(x[0, :100, 0], short)
    assert np.all(x[0, 100:, 0] == 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="frame_size"):
        FrameGenerator(signals(), 0, 4, 1)
    with pytest.raises(ValueError, match="at least"):
        FrameGenerator(signals(), 6000, 4, 1)
    with pytest.raises(IndexError):
        FrameGenerator(signals(), 16, 4, 2)[2]


@pytest.mark.parametrize("mode", ["classifier", "regressor", "slice"])
def test_tf_dataset_yields_the_same_batches_from_the_position(mode):
    frames = FrameGenerator(signals(), 64, 3, 4, mode=mode, seed=2, epochs=2)
    frames.position = 5
    batches = list(frames.as_dataset())
    assert len(batches) == 3
    for index, batch in enumerate(batches):
        for got, expected in zip(batch, frames[index]):
            np.testing.assert_array_equal(np.asarray(got), expected)
