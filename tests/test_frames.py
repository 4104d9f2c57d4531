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


def stepped_tone(pitches, seconds=0.1, rate=8000):
    """A sine stepping through `pitches`, `seconds` each: a signal whose log-mel changes from frame to frame."""
    t = np.arange(int(seconds * rate)) / rate
    return np.concatenate([0.5 * np.sin(2 * np.pi * f * t) for f in pitches]).astype(np.float32)


def conditioned_frames(frame_size=300, batch_size=64, **kwargs):
    from data.features import log_mel, mel_settings, pad_features

    settings = mel_settings(8000, n_mels=16, hop_length=50, win_length=200, n_fft=256)
    data = [stepped_tone([300, 700, 1500, 500]), stepped_tone([900, 400, 2000], seconds=0.07)]  # 3200, 1680 samples
    raw = [log_mel(signal, settings) for signal in data]
    padded = [pad_features(mel, settings) for mel in raw]
    frames = FrameGenerator(data, frame_size, batch_size, 4, labels=[3, 7], features=padded, hop=50, seed=1,
                            **kwargs)
    return frames, data, raw, padded, settings


def test_mel_windows_start_on_frames_and_carry_their_own_rows():
    from data.features import CONTEXT_FRAMES, frames_for_samples

    frames, data, raw, padded, settings = conditioned_frames()
    rows_per_window = frames_for_samples(300, settings)
    assert frames.mel_frames == rows_per_window == (300 - 1) // 50 + 1 + 2 * CONTEXT_FRAMES
    seen = set()
    for index in range(4):
        x, y = frames[index]
        assert set(x) == {"waveform", "class_id", "mel"}
        assert x["mel"].shape == (64, rows_per_window, 16) and x["mel"].dtype == np.float32
        assert x["class_id"].shape == (64, 1) and x["class_id"].dtype == np.int32
        signal, start = frames.draw(index)
        np.testing.assert_array_equal(frames.window_starts(index), frames.file_starts[signal] + start)
        for row in range(64):
            s, first = signal[row], start[row] + 1  # the window's first target, within its own signal
            seen.add(int(s))
            assert first % 50 == 0 and first >= 50 and start[row] + 301 <= len(data[s])  # on a frame, inside
            assert x["class_id"][row, 0] == (3, 7)[s]  # the label of the signal the window came from
            np.testing.assert_array_equal(x["waveform"][row, :, 0], mu_law_round_trip(data[s][start[row]:start[row] + 300]))
            np.testing.assert_array_equal(y[row], mu_law_encode(data[s][first:first + 300]))
            np.testing.assert_array_equal(x["mel"][row], padded[s][first // 50:first // 50 + rows_per_window])
            for n in (0, 1, 49, 50, 51, 99, 100, 249, 250, 299):  # target n is conditioned by frame (first + n) // hop
                np.testing.assert_array_equal(x["mel"][row, n // 50 + CONTEXT_FRAMES], raw[s][(first + n) // 50])
    assert seen == {0, 1}


def test_mel_windows_reach_the_last_frame_aligned_start_and_keep_the_callers_arrays():
    frames, data, raw, padded, settings = conditioned_frames(frame_size=1000, batch_size=512)
    # The second signal (1680 samples) has 13 starts whose first target is on a frame: 49, 99, ..., 649 (the last
    # window ends at sample 1649 + 1001 = 1650 <= 1680; the next one, 699, would cross the end).
    assert list(frames.starts_per_signal) == [(3200 - 1001 + 1) // 50, (1680 - 1001 + 1) // 50] == [44, 13]
    signal, start = frames.draw(0)
    assert set(start[signal == 1]) == set(range(49, 650, 50))
    assert start[signal == 0].max() == 3200 - 1001 and set((start + 1) % 50) == {0}
    x, _ = frames[0]
    last = np.flatnonzero((signal == 1) & (start == 649))[0]
    np.testing.assert_array_equal(x["mel"][last], padded[1][13:13 + frames.mel_frames])  # within the padding
    assert 13 + frames.mel_frames <= len(padded[1])
    # Features are kept as the caller's arrays (no copy) and only sliced per batch.
    assert all(kept is given for kept, given in zip(frames.features, padded))
    assert all(np.shares_memory(kept, given) for kept, given in zip(frames.features, padded))


def test_labels_alone_give_class_ids_and_leave_starts_free():
    data = signals()
    frames = FrameGenerator(data, 100, 256, 1, labels=[0, 1], seed=0)
    x, y = frames[0]
    assert set(x) == {"waveform", "class_id"}
    signal, start = frames.draw(0)
    np.testing.assert_array_equal(x["class_id"][:, 0], signal)
    assert len({int(s) % 50 for s in start}) > 10  # not restricted to frame boundaries
    plain = FrameGenerator(data, 100, 256, 1, seed=0)
    np.testing.assert_array_equal(plain[0][0], x["waveform"])  # the same windows as without labels


def test_short_signals_are_left_out_with_their_labels_and_features():
    from data.features import log_mel, mel_settings, pad_features

    settings = mel_settings(8000, n_mels=8, hop_length=50, win_length=200, n_fft=256)
    data = [stepped_tone([300], seconds=0.04), stepped_tone([500, 900])]  # 320 samples: shorter than 300 + 50
    padded = [pad_features(log_mel(s, settings), settings) for s in data]
    frames = FrameGenerator(data, 300, 8, 1, labels=[5, 6], features=padded, hop=50)
    assert list(frames.labels) == [6] and frames.features[0] is padded[1]
    assert np.all(frames[0][0]["class_id"] == 6)


def test_conditioning_bad_arguments():
    from data.features import log_mel, mel_settings, pad_features

    settings = mel_settings(8000, n_mels=8, hop_length=50, win_length=200, n_fft=256)
    data = signals()
    padded = [pad_features(log_mel(s, settings), settings) for s in data]
    with pytest.raises(ValueError, match="hop"):
        FrameGenerator(data, 64, 2, 1, features=padded)
    with pytest.raises(ValueError, match="one entry per signal"):
        FrameGenerator(data, 64, 2, 1, labels=[0])
    with pytest.raises(ValueError, match="padded"):
        FrameGenerator(data, 64, 2, 1, features=[p[:20] for p in padded], hop=50)
    with pytest.raises(ValueError, match="slice mode takes none"):
        FrameGenerator(data, 64, 2, 1, mode="slice", features=[np.zeros((5, 4))] * len(data), hop=16)
    with pytest.raises(ValueError, match="vocoder mode takes features"):
        FrameGenerator(data, 64, 2, 1, mode="vocoder")
    (batch,) = FrameGenerator(data, 64, 2, 1, mode="slice", labels=[0, 1])[0]  # a class-conditional GAN's batch
    assert batch["waveform"].shape == (2, 64, 1) and batch["class_id"].shape == (2, 1)


@pytest.mark.parametrize("mode", ["classifier", "regressor"])
def test_tf_dataset_yields_the_same_conditioned_batches(mode):
    frames = conditioned_frames(batch_size=3, mode=mode, epochs=2)[0]
    frames.position = 5
    batches = list(frames.as_dataset())
    assert len(batches) == 3
    for index, (x, y) in enumerate(batches):
        expected_x, expected_y = frames[index]
        assert set(x) == set(expected_x)
        for key in expected_x:
            np.testing.assert_array_equal(np.asarray(x[key]), expected_x[key])
        np.testing.assert_array_equal(np.asarray(y), expected_y)
