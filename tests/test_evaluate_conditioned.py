"""Evaluation of conditioned WaveNets: held-out likelihood with classes and log-mel spectrograms, and the
vocoder measures (STOI, log-spectral, multi-resolution STFT and mel distances)."""

import numpy as np
import pytest

from data.audio import read_audio
from data.features import log_mel, mel_settings
from evaluation import (log_spectral_distance, mel_distance, multi_resolution_stft, signal_bits, stoi,
                        vocoder_scores)
from evaluation.vocoder import join_segments, split_spectrogram
from tests.conftest import ROOT, randomize, tone

MEL = mel_settings(8000, n_mels=16)


@pytest.fixture(scope="module")
def speech():
    return read_audio(ROOT / "assets" / "speech" / "demo.wav")[0][8000:8000 + 2 * 8000]  # 2 s of speech


@pytest.fixture(scope="module")
def conditioned():
    import keras

    import models

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=3, residual_channels=8, skip_channels=8, sample_rate=8000,
                                 class_names=("low", "high"), mel=MEL, mel_channels=8)
    return randomize(model, seed=2), models.wavenet_spec(model)


def test_conditioned_bits_do_not_depend_on_the_chunk(conditioned):
    model, spec = conditioned
    signal = tone(0.16, frequencies=(300, 1300)) * np.linspace(0.1, 1, 1280, dtype=np.float32)
    signal = signal[:1234]  # not a multiple of the hop
    whole = signal_bits(model, spec, signal, chunk=5000, class_id="high")
    assert whole.shape == (len(signal) - 1,) and np.all(np.isfinite(whole))
    for chunk in (37, 100, 150, 999):  # passes that start inside a frame, on a boundary, across several
        np.testing.assert_allclose(signal_bits(model, spec, signal, chunk=chunk, class_id="high"), whole,
                                   rtol=1e-5, atol=1e-4)


def test_conditioned_bits_use_the_class_and_the_spectrogram(conditioned):
    model, spec = conditioned
    signal = tone(0.1, frequencies=(500,))
    own = signal_bits(model, spec, signal, class_id="low")
    np.testing.assert_allclose(own, signal_bits(model, spec, signal, class_id=0, mel=log_mel(signal, MEL)))
    assert not np.allclose(own, signal_bits(model, spec, signal, class_id="high"))
    other = log_mel(tone(0.1, frequencies=(2500,)), MEL)
    assert not np.allclose(own, signal_bits(model, spec, signal, class_id="low", mel=other))


def test_conditioned_bits_equal_one_forward_pass_after_a_sample_of_silence(conditioned):
    import models
    from data.features import frames_for_samples, pad_features
    from data.mulaw import mu_law_round_trip

    model, spec = conditioned
    signal = tone(0.1, frequencies=(700,))
    inputs = mu_law_round_trip(np.concatenate([[0.0], signal[:-1]]).astype(np.float32))
    mel = pad_features(log_mel(signal, MEL), MEL)[None, :frames_for_samples(len(signal), MEL)]
    params = model.predict_on_batch({"waveform": inputs[None, :, None], "class_id": np.array([[1]], np.int32),
                                     "mel": mel})
    from data.mulaw import mu_law_encode

    expected = np.asarray(models.bits_per_sample(spec.distribution, mu_law_encode(signal)[None], params))[0]
    np.testing.assert_allclose(signal_bits(model, spec, signal, chunk=64, class_id="high"), expected[1:],
                               rtol=1e-5, atol=1e-4)


def test_conditioning_errors_are_one_line_value_errors(conditioned):
    model, spec = conditioned
    signal = tone(0.05)
    with pytest.raises(ValueError, match="give a class"):
        signal_bits(model, spec, signal)
    with pytest.raises(ValueError, match="unknown class 'mid'.*low, high"):
        signal_bits(model, spec, signal, class_id="mid")
    with pytest.raises(ValueError, match="out of range"):
        signal_bits(model, spec, signal, class_id=2)
    with pytest.raises(ValueError, match="frames"):
        signal_bits(model, spec, signal, class_id="low", mel=log_mel(tone(0.2), MEL))


def test_identical_signals_score_perfectly(speech):
    mel = log_mel(speech, MEL)
    assert stoi(speech, speech, 8000) > 0.999
    assert log_spectral_distance(speech, speech) == pytest.approx(0.0, abs=1e-6)
    multi = multi_resolution_stft(speech, speech)
    assert multi["spectral_convergence"] == pytest.approx(0.0, abs=1e-6)
    assert multi["log_magnitude"] == pytest.approx(0.0, abs=1e-6)
    assert mel_distance(speech, mel, MEL) == pytest.approx(0.0, abs=1e-6)
    scores = vocoder_scores(speech, speech, mel, MEL)
    assert set(scores) == {"stoi", "lsd_db", "mrstft_sc", "mrstft_log_mag", "mrstft", "mel_distance"}


def test_noise_scores_worse_and_more_noise_worse_still(speech):
    rng = np.random.default_rng(0)
    mel = log_mel(speech, MEL)
    rms = float(np.sqrt(np.mean(speech ** 2)))
    scores = [vocoder_scores(speech, np.clip(speech + rng.normal(0, level * rms, speech.shape), -1, 1), mel, MEL)
              for level in (0.1, 1.0)]
    light, heavy = scores
    noise_only = vocoder_scores(speech, rng.normal(0, rms, speech.shape).astype(np.float32), mel, MEL)
    assert 0.999 > light["stoi"] > heavy["stoi"] > noise_only["stoi"]
    assert noise_only["stoi"] < 0.5
    for key in ("lsd_db", "mrstft_sc", "mrstft_log_mag", "mrstft", "mel_distance"):
        assert 0 < light[key] < heavy[key], key
    assert noise_only["lsd_db"] > 3.0 and noise_only["mel_distance"] > 0.5


def test_different_lengths_compare_over_the_shorter(speech):
    assert log_spectral_distance(speech, speech[:8000]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="empty"):
        multi_resolution_stft(speech, speech[:0])


@pytest.mark.parametrize("frames,streams,warmup", [(21, 3, 2), (21, 4, 0), (5, 16, 8), (2, 1, 3), (801, 16, 8)])
def test_split_segments_condition_each_kept_sample_on_its_own_frame(frames, streams, warmup):
    """A stand-in generator whose sample `n` is the frame its conditioning says (`n // hop` of its stream): the
    joined audio then names, for every sample of the clip, the frame that conditions it in a whole-clip pass."""
    mel = np.repeat(np.arange(frames, dtype=np.float32)[:, None], MEL.n_mels, 1)
    stacked, plan = split_spectrogram(mel, MEL, streams, warmup_frames=warmup)
    assert stacked.shape[0] == plan.streams <= streams and stacked.shape[2] == MEL.n_mels
    assert plan.samples_per_stream <= (stacked.shape[1] - 1) * MEL.hop_length  # within what the spectrogram gives
    steps = np.arange(plan.samples_per_stream) // MEL.hop_length
    fake = stacked[:, steps, 0]
    joined = join_segments(fake, plan)
    np.testing.assert_array_equal(joined, np.arange((frames - 1) * MEL.hop_length) // MEL.hop_length)
    for s in range(plan.streams):  # the look-ahead frames after each segment are the clip's own, or silence
        end = (s + 1) * plan.segment_frames
        ahead = stacked[s, warmup + plan.segment_frames + 1:, 0]
        expected = [end + 1 + k if end + 1 + k < frames else MEL.floor_value for k in range(len(ahead))]
        np.testing.assert_array_equal(ahead, np.float32(expected))
