"""Generation from conditioned WaveNets: the cached generator equals the full-history loop for every head with
each kind of conditioning, the upsampler runs once per call, and conditioning that does not fit is refused."""

import keras
import numpy as np
import pytest

import models
from models import generation
from data.features import CONTEXT_FRAMES, FeatureError, frames_for_samples, log_mel, mel_settings, pad_features
from tests.conftest import tone

HEADS = [("classifier", None), ("regressor", "logistic-mixture"), ("regressor", "mse")]
# Small mel settings so tiny tests stay fast: 16 bins, hop 20 samples.
MEL = mel_settings(8000, n_mels=16, hop_length=20, win_length=64, n_fft=64)
CLASSES = ("low", "mid", "high")


def conditioned(head="classifier", loss=None, classes=CLASSES, mel=MEL, seed=0):
    """A tiny conditioned WaveNet with random weights large enough that the conditioning changes the output."""
    keras.utils.set_random_seed(seed)
    model = models.build_wavenet(head, loss, stacks=1, layers=3, residual_channels=8, skip_channels=8,
                                 sample_rate=8000, class_names=classes, mel=mel, mel_channels=8)
    rng = np.random.default_rng(seed + 1)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return model


def spectrogram(seconds=0.05, frequency=600.0):
    return log_mel(0.5 * tone(seconds, frequencies=(frequency,)), MEL)


KINDS = {"class": dict(classes=CLASSES, mel=None), "mel": dict(classes=(), mel=MEL),
         "both": dict(classes=CLASSES, mel=MEL)}


def request(kind, streams=2):
    given = {}
    if KINDS[kind]["classes"]:
        given["classes"] = ["low", "high"][:streams]
    if KINDS[kind]["mel"] is not None:
        given["mel"] = np.stack([spectrogram(frequency=f) for f in (400.0, 1500.0)][:streams])
    return given


@pytest.mark.parametrize("head,loss", HEADS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cached_generation_equals_the_full_history_loop(head, loss, kind, monkeypatch):
    if head == "classifier":  # the spectrogram projected in the loop (many streams), not in blocks before it
        monkeypatch.setattr(generation, "PROJECTED_STREAMS", 0)
    else:  # projected before the loop, in blocks of 5 steps
        monkeypatch.setattr(generation, "PROJECTED_BLOCK", 5)
    model = conditioned(head, loss, **KINDS[kind])
    given = request(kind)
    for temperature, seed in ((0.0, None), (1.0, 5)):
        naive = models.generate_naive(model, 45, num_streams=2, temperature=temperature, seed=seed, **given)
        for split_cores in (1, 2):  # blocks of streams, and each step split across two threads
            net = generation.IncrementalWaveNet(model, engine="numba", split_cores=split_cores)
            # Chunks of 7 samples: calls that start and end inside a hop of the spectrogram.
            fast = np.concatenate(list(models.generate_chunks(net, 45, num_streams=2, temperature=temperature,
                                                              seed=seed, chunk_size=7, **given)), axis=1)
            np.testing.assert_allclose(fast, naive, atol=1e-5)
        numpy_engine = models.generate(model, 45, num_streams=2, temperature=temperature, seed=seed, engine="numpy",
                                       **given)
        np.testing.assert_allclose(numpy_engine, naive, atol=1e-5)


def test_conditioning_changes_the_output_per_stream():
    model = conditioned()
    mel = spectrogram()
    # The same uniforms in every stream, so only the conditioning can make streams differ.
    same = models.generate(model, 40, classes=["mid", "mid"], mel=mel, seed=3)
    differ = models.generate(model, 40, classes=["low", "high"], mel=mel, seed=3)
    other_mel = models.generate(model, 40, classes=["mid", "mid"], mel=spectrogram(frequency=2500.0), seed=3)
    assert not np.array_equal(differ[0], same[0]) or not np.array_equal(differ[1], same[1])
    assert not np.array_equal(other_mel, same)
    by_id = models.generate(model, 40, classes=[1, 1], mel=mel, seed=3)
    np.testing.assert_array_equal(by_id, same)
    one_for_all = models.generate(model, 40, num_streams=2, classes=["mid"], mel=mel, seed=3)
    np.testing.assert_array_equal(one_for_all, same)


def test_spectrogram_sets_the_length_and_streams():
    model = conditioned(classes=())
    mel = spectrogram(0.05)  # 400 samples: 21 frames -> (21 - 1) * 20 = 400 samples
    assert mel.shape == (21, 16)
    audio = models.generate(model, mel=mel, seed=0)
    assert audio.shape == (1, 400)
    assert models.generate(model, mel=np.stack([mel, mel, mel]), seed=0).shape == (3, 400)
    assert models.generate(model, 30, mel=mel, seed=0).shape == (1, 30)
    with pytest.raises(ValueError, match="condition 400 samples"):
        models.generate(model, 401, mel=mel)


def test_class_conditioned_prime_warms_the_queues_with_the_class():
    model = conditioned(mel=None)
    prime = tone(0.01, frequencies=(300,))
    fast = models.generate(model, 30, classes=["low", "high"], prime=prime, temperature=0)
    naive = models.generate_naive(model, 30, classes=["low", "high"], prime=prime, temperature=0)
    np.testing.assert_allclose(fast, naive, atol=1e-5)


def test_upsampler_runs_once_per_call():
    model = conditioned(classes=())
    mel = spectrogram(0.05)
    net = models.IncrementalWaveNet(model)
    calls = []
    upsampler = net._upsampler()
    net.upsampler = lambda rows, training=False: calls.append(rows.shape) or upsampler(rows, training=training)
    reference = models.generate(model, mel=mel, seed=2)
    chunks = list(models.generate_chunks(net, mel=mel, seed=2, chunk_size=100))
    assert len(calls) == len(chunks) == 4
    # The first call reads its 5 frames and the context on each side: rows 0 .. 4 + 2 * CONTEXT_FRAMES.
    assert calls[0] == (1, 100 // MEL.hop_length + 2 * CONTEXT_FRAMES, 16)
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), reference, atol=1e-6)


def test_class_projection_is_packed_once_per_class():
    model = conditioned(mel=None)
    weights = models.pack_weights(model)
    assert weights.class_table.shape == (3, 3, 32)  # classes, layers, gate channels padded to 2 x 16
    vectors = model.get_layer("class_embedding").get_weights()[0]
    kernel = model.get_layer("s0_l1_class").get_weights()[0]  # (16, 2 * 8): filters | gates
    np.testing.assert_allclose(weights.class_table[2, 1, :8], vectors[2] @ kernel[:, :8], rtol=1e-5)
    np.testing.assert_allclose(weights.class_table[2, 1, 16:24], vectors[2] @ kernel[:, 8:], rtol=1e-5)
    np.testing.assert_array_equal(weights.class_table[:, :, 8:16], 0.0)  # padding stays zero
    assert weights.mel_w.shape == (3, 0, 32)
    unconditioned = models.pack_weights(models.build_wavenet(stacks=1, layers=2, residual_channels=8,
                                                              skip_channels=8))
    assert unconditioned.class_table.shape[0] == 0 and unconditioned.mel_w.shape[1] == 0


def test_conditioning_that_does_not_fit_is_refused():
    both = conditioned()
    mel = spectrogram()
    cases = [
        (dict(classes=["loud"], mel=mel), "unknown class 'loud'; the model's classes: low, mid, high"),
        (dict(classes=[7], mel=mel), "out of range"),
        (dict(mel=mel), "conditioned on a class"),
        (dict(classes=["low"]), "conditioned on log-mel spectrograms"),
        (dict(classes=["low"], mel=mel, prime=np.zeros(50, np.float32)), "prime cannot be combined"),
        (dict(classes=["low"], mel=np.zeros((21, 80), np.float32)), "takes 16 mel bins, the spectrogram has 80"),
        (dict(classes=["low"], mel=mel.T), "transpose"),
        (dict(classes=["low"], mel=10 * mel), "below log"),
        (dict(classes=["low"], mel=np.full((5, 16), 40.0, np.float32)), "too large"),
        (dict(classes=["low", "mid", "high"], mel=mel, num_streams=2), "one class per stream"),
    ]
    for given, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            models.generate(both, 20, **given)
    assert issubclass(FeatureError, ValueError)
    plain = models.build_wavenet(stacks=1, layers=2, residual_channels=8, skip_channels=8, sample_rate=8000)
    with pytest.raises(ValueError, match="not trained with classes"):
        models.generate(plain, 5, classes=["low"])
    with pytest.raises(ValueError, match="not trained on spectrograms"):
        models.generate(plain, 5, mel=mel)


def test_spec_round_trips_through_a_saved_model(tmp_path):
    model = conditioned()
    model.save(tmp_path / "m.keras")
    loaded = models.load_model(tmp_path / "m.keras")
    spec = models.wavenet_spec(loaded)
    assert spec == models.wavenet_spec(model)
    assert spec.class_names == CLASSES and spec.mel == MEL and spec.input_names == ("waveform", "class_id", "mel")
    given = request("both")
    np.testing.assert_array_equal(models.generate(loaded, 30, seed=1, **given),
                                  models.generate(model, 30, seed=1, **given))


def test_model_input_alignment_matches_pad_features():
    """Output position t of a window whose first target is sample n0 (a multiple of hop) is conditioned on the
    frame of sample n0 + t: checked on a ramp spectrogram (frame k holds k) through an identity upsampler."""
    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=2, residual_channels=8, skip_channels=8, sample_rate=8000,
                                 mel=MEL, mel_channels=16)
    conv = model.get_layer("mel_conv")
    kernel = np.zeros((3, 16, 16), np.float32)
    kernel[1] = np.eye(16)  # each frame only, bin by bin
    conv.set_weights([kernel, np.zeros(16, np.float32)])
    nearest = np.zeros((MEL.hop_length, 3, 16), np.float32)
    nearest[:, 1] = 1.0  # every phase of frame k is frame k
    model.get_layer("mel_upsample").set_weights([nearest])
    cropped = keras.Model(model.inputs, model.get_layer("mel_crop").output)
    frames = 12
    mel = (MEL.floor_value + 0.05 * np.arange(frames, dtype=np.float32))[:, None].repeat(16, axis=1)
    padded = pad_features(mel, MEL)
    np.testing.assert_array_equal(padded[CONTEXT_FRAMES:CONTEXT_FRAMES + frames], mel)
    assert np.all(padded[:CONTEXT_FRAMES] == MEL.floor_value) and np.all(padded[-CONTEXT_FRAMES - 1:] == MEL.floor_value)

    def frame_value(k):  # what the identity upsampler makes of frame k: MelFeatures' scaling, then tanh
        return np.tanh((mel[k, 0] - MEL.floor_value) / -MEL.floor_value * 2.0 - 1.0)

    for first_target in (0, 40, 100):
        length = 6 * MEL.hop_length - 1
        rows = padded[None, first_target // MEL.hop_length:][:, :frames_for_samples(length, MEL)]
        out = np.asarray(cropped({"waveform": np.zeros((1, length, 1), np.float32), "mel": rows}))[0, :, 0]
        expected = [frame_value((first_target + t) // MEL.hop_length) for t in range(length)]
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_damaged_or_odd_spectrogram_files_are_feature_errors(tmp_path):
    from data.features import load_mel, save_mel

    mel = spectrogram()
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, mel=np.array([mel, "text"], dtype=object))
    with pytest.raises(FeatureError, match="cannot read its arrays"):
        load_mel(pickled, MEL)
    odd = tmp_path / "odd.npz"
    np.savez(odd, mel=mel, hop_length=np.array([20, 20]))
    with pytest.raises(FeatureError, match="hop_length must be one number"):
        load_mel(odd, MEL)
    wrong = tmp_path / "wrong.npz"
    save_mel(wrong, mel, mel_settings(8000, n_mels=16, hop_length=40, win_length=64, n_fft=64))
    with pytest.raises(FeatureError, match="hop_length is 40 but the model was trained with 20"):
        load_mel(wrong, MEL)
    good = tmp_path / "good.npz"
    save_mel(good, mel, MEL)
    np.testing.assert_array_equal(load_mel(good, MEL), mel)
    with pytest.raises(FeatureError, match="holds no spectrograms"):
        models.generate(conditioned(classes=()), mel=np.zeros((0, 21, 16), np.float32))
    plain = models.build_wavenet(stacks=1, layers=2, residual_channels=8, skip_channels=8, sample_rate=8000)
    with pytest.raises(ValueError, match="not trained on spectrograms"):
        models.generate(plain, mel=mel)  # no length given: the model's refusal, not a missing length


def test_advancing_no_steps_with_many_streams_is_empty():
    model = conditioned(classes=())
    net = models.IncrementalWaveNet(model)
    x = net.reset(6, mel=spectrogram())
    output, fed = net.advance(x, 0, np.zeros((0, 6, 2)))
    assert output.shape == (6, 0)
