"""The GAN vocoder (train_gan.py --condition mel): layers, shapes, chunked vocoding, one training step, learning,
the command line (train, interrupt, resume, generate) and its refusals."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

import models
from data.features import CONTEXT_FRAMES, log_mel, mel_basis, mel_settings, pad_features
from data.frames import FrameGenerator
from models.gan_vocoder import (GriffinLimPhases, InverseSTFT, LayerScale, LinearMagnitudes, MelProjection,
                                ParallelPhase, PeriodFold, TrimEdges, context_frames, phase_loss, stft_resolutions)
from tests.conftest import run_main, run_script, write_wav
from tests.test_cli import assert_one_line_error
from tests.test_layers import run_layer_test

RATE = 8000
SETTINGS = mel_settings(RATE)  # hop 100: upsampling 5 x 5 x 4
HOP = SETTINGS.hop_length


BUILDERS = {"melgan": models.build_vocoder_generator,
            "istft": lambda settings, channels: models.build_istft_generator(settings, channels, blocks=2,
                                                                             linear_context=1)}


def tiny_vocoder(channels=16, discriminator_channels=4, adversarial_weight=1.0, seed=0, learning_rate=2e-4,
                 kind="melgan"):
    keras.utils.set_random_seed(seed)
    return models.build_vocoder_gan(SETTINGS, channels, discriminator_channels, learning_rate,
                                    adversarial_weight=adversarial_weight, generator=BUILDERS[kind](SETTINGS, channels))


def glide(seconds, start, end, rate=RATE):
    """A tone whose pitch moves exponentially from `start` to `end` Hz."""
    t = np.arange(int(seconds * rate)) / rate
    frequency = start * (end / start) ** (t / seconds)
    return (0.5 * np.sin(2 * np.pi * np.cumsum(frequency) / rate)).astype(np.float32)


def test_upsample_factors_multiply_to_the_hop():
    assert models.upsample_factors(100) == (5, 5, 4)
    assert models.upsample_factors(200) == (8, 5, 5)
    assert models.upsample_factors(256) == (4, 4, 4, 4)
    assert models.upsample_factors(110) == (11, 5, 2)
    for hop in (1, 7, 64, 120, 160, 441):
        assert int(np.prod(models.upsample_factors(hop))) == hop
    with pytest.raises(ValueError):
        models.upsample_factors(0)


def test_trim_edges_period_fold_layer_scale_and_inverse_stft_layers():
    run_layer_test(TrimEdges, {"samples": 3}, (2, 20, 4), (2, 14, 4), 0)
    run_layer_test(TrimEdges, {"samples": 3, "end_samples": 5}, (2, 20, 4), (2, 12, 4), 0)
    run_layer_test(LayerScale, {"init_value": 0.25}, (2, 5, 4), (2, 5, 4), 1)
    run_layer_test(InverseSTFT, {"fft_length": 16, "hop_length": 4}, (2, 6, 18), (2, 36, 1), 0)
    run_layer_test(InverseSTFT, {"fft_length": 16, "hop_length": 4, "window_length": 12}, (2, 6, 18), (2, 36, 1), 0)
    run_layer_test(GriffinLimPhases, {"fft_length": 16, "hop_length": 4, "iterations": 2, "generation_iterations": 3},
                   (2, 6, 18), (2, 6, 18), 0)
    run_layer_test(GriffinLimPhases, {"fft_length": 16, "hop_length": 4, "iterations": 2, "generation_iterations": 3,
                                      "momentum": 0.9, "window_length": 12}, (2, 6, 18), (2, 6, 18), 0)
    # LinearMagnitudes always computes in float32 (its pseudo-inverse cancels large terms: rounding its input to
    # half precision moves quiet bins by nats), so it has no mixed-precision case; its config round trips.
    for subtract_floor in (True, False):
        layer = LinearMagnitudes(SETTINGS.to_dict(), 400, subtract_floor=subtract_floor)
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
        assert revived.get_config() == layer.get_config() and revived.settings == SETTINGS
        assert revived.subtract_floor is subtract_floor
        assert layer(keras.KerasTensor((None, None, 80))).shape == (None, None, 201)


def test_linear_magnitudes_invert_the_filterbank_of_a_spectrum_it_can_hold():
    # A linear spectrum in the span of the mel filters' pseudo-inverse comes back exactly; silence stays the floor.
    layer = LinearMagnitudes(SETTINGS, 400)
    basis = mel_basis(dataclasses.replace(SETTINGS, n_fft=400))
    spectrum = np.random.default_rng(0).uniform(50, 150, (3, 80)) @ basis  # in the filters' span, not negative
    made = np.exp(np.asarray(layer(np.log(spectrum @ basis.T)[None].astype(np.float32)))[0])
    np.testing.assert_allclose(made, np.maximum(spectrum, SETTINGS.log_floor), rtol=1e-3, atol=1e-6)
    silent = np.asarray(layer(np.full((1, 2, 80), SETTINGS.floor_value, np.float32)))
    np.testing.assert_allclose(silent, SETTINGS.floor_value, atol=1e-5)
    # Keeping the floor (as librosa's Griffin-Lim): the same spectrum still comes back, and silence becomes the
    # inverse of a floor-level mel frame, louder than the floor in most bins, not the floor itself.
    keeping = LinearMagnitudes(SETTINGS, 400, subtract_floor=False)
    made = np.exp(np.asarray(keeping(np.log(spectrum @ basis.T)[None].astype(np.float32)))[0])
    np.testing.assert_allclose(made, np.maximum(spectrum, SETTINGS.log_floor), rtol=1e-3, atol=1e-6)
    silent = np.asarray(keeping(np.full((1, 2, 80), SETTINGS.floor_value, np.float32)))[0, 0]
    expected = np.log(np.maximum(np.full(80, SETTINGS.log_floor) @ np.linalg.pinv(basis).T, SETTINGS.log_floor))
    np.testing.assert_allclose(silent, expected, rtol=1e-4)
    assert np.mean(silent > SETTINGS.floor_value + 1) > 0.5
    run_layer_test(PeriodFold, {"period": 3}, (2, 20, 1), (2, 7, 3, 1), 0)
    folded = np.asarray(PeriodFold(3)(np.arange(7.0, dtype="float32").reshape(1, 7, 1)))[0, ..., 0]
    np.testing.assert_array_equal(folded, [[0, 1, 2], [3, 4, 5], [6, 0, 0]])  # rows of a period, zero-padded


def test_mel_projection_keeps_consistent_magnitudes_and_moves_others_to_the_spectrogram():
    basis = mel_basis(SETTINGS)  # (80, 257)
    rng = np.random.default_rng(0)
    magnitudes = rng.uniform(0.01, 2.0, (2, 5, SETTINGS.n_fft // 2 + 1)).astype(np.float32)
    mel = np.log(magnitudes @ basis.T).astype(np.float32)
    layer = MelProjection(SETTINGS.to_dict(), SETTINGS.n_fft, 3)
    # Magnitudes whose mel spectrogram is the given one pass unchanged.
    np.testing.assert_allclose(np.asarray(layer([np.log(magnitudes), mel])), np.log(magnitudes), atol=1e-4)
    # Others come closer to it with each update, and each bin's shape within its bands stays: a spectrum scaled
    # by 3 comes back.
    guess = np.log(magnitudes * rng.uniform(0.3, 3.0, magnitudes.shape)).astype(np.float32)
    errors = [np.abs(np.log(np.exp(np.asarray(MelProjection(SETTINGS, SETTINGS.n_fft, n)([guess, mel]))) @ basis.T)
                     - mel).mean() for n in (0, 1, 3, 10)]
    assert errors[0] > 0.3 and all(b < 0.8 * a for a, b in zip(errors, errors[1:])), errors
    covered = basis.sum(axis=0) > 0  # bins in no band (here 0 Hz and the Nyquist frequency) pass unchanged
    scaled = np.asarray(layer([np.log(3 * magnitudes), mel]))
    np.testing.assert_allclose(scaled[..., covered], np.log(magnitudes)[..., covered], atol=1e-3)
    np.testing.assert_allclose(scaled[..., ~covered], np.log(3 * magnitudes)[..., ~covered], atol=1e-5)
    # Config round trip, a symbolic call, and float32 work under a mixed policy (as LinearMagnitudes).
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert revived.get_config() == layer.get_config() and revived.iterations == 3 and revived.settings == SETTINGS
    symbolic = layer([keras.KerasTensor((None, None, 257)), keras.KerasTensor((None, None, 80))])
    assert symbolic.shape == (None, None, 257)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = MelProjection(SETTINGS, SETTINGS.n_fft, 3)
    finally:
        keras.config.set_dtype_policy("float32")
    assert mixed.compute_dtype == "float32"
    np.testing.assert_array_equal(np.asarray(mixed([guess, mel])), np.asarray(layer([guess, mel])))
    with pytest.raises(ValueError, match="mel_projection needs the mel layout"):
        models.build_istft_generator(SETTINGS, 16, blocks=1, layout="vocos", mel_projection=2)
    generator = models.build_istft_generator(SETTINGS, 16, blocks=1, mel_projection=2)
    assert generator.get_layer("mel_projection").iterations == 2


@pytest.mark.parametrize("kind", BUILDERS)
def test_generator_shapes_range_and_saved_settings(kind):
    generator = BUILDERS[kind](SETTINGS, 16)
    rows = np.random.default_rng(0).uniform(SETTINGS.floor_value, 1.0, (2, 12 + 2 * CONTEXT_FRAMES, 80))
    audio = np.asarray(generator(rows.astype(np.float32)))
    assert audio.shape == (2, 12 * HOP, 1) and np.abs(audio).max() <= 1.0 and audio.std() > 0
    assert models.is_gan_vocoder(generator) and not models.is_gan_generator(generator)
    assert models.vocoder_settings(generator) == SETTINGS
    assert models.vocoder_spec(generator).sample_rate == RATE
    # The discriminators: 3 scales and 5 periods, each 5 layers of features and a score map.
    discriminator = models.build_vocoder_discriminator(RATE, channels=4)
    views = discriminator(np.zeros((2, 1600, 1), np.float32))
    assert len(views) == 8 and all(len(view) == 6 for view in views)
    assert [tuple(view[-1].shape)[:2] for view in views[:3]] == [(2, 25), (2, 13), (2, 7)]  # 1600 / 64, halved
    assert tuple(views[3][-1].shape) == (2, 10, 2, 1)  # period 2: 800 rows, / 3^4 rounded up


def test_the_linear_term_starts_at_zero_and_adds_to_the_magnitudes_outside_the_normalisations():
    keras.utils.set_random_seed(0)
    generator = models.build_istft_generator(SETTINGS, 8, blocks=0, linear_context=2)
    spectrum = keras.Model(generator.input, generator.get_layer("spectrum").output)
    linear, from_inverse = generator.get_layer("magnitude_linear"), generator.get_layer("magnitude_from_inverse")
    assert linear.kernel.shape == (5, SETTINGS.n_mels, SETTINGS.n_fft // 2 + 1)  # 2 frames either side
    assert not np.any(linear.get_weights()[0]) and not np.any(from_inverse.get_weights()[0])
    rng = np.random.default_rng(0)
    mel = np.log(rng.uniform(1e-4, 1.0, (1, 12, SETTINGS.n_mels))).astype(np.float32)
    bins = SETTINGS.n_fft // 2 + 1
    before = np.asarray(spectrum(mel))[0, :, :bins]
    # A bias of 0.5 on the convolution and the identity on the inverse's log-magnitudes: every log-magnitude
    # becomes twice the inverse's plus the head's correction plus 0.5, whatever the frame's level.
    linear.set_weights([linear.get_weights()[0], np.full(bins, 0.5, np.float32)])
    from_inverse.set_weights([np.eye(bins, dtype=np.float32)])
    inverse = np.asarray(generator.get_layer("linear_magnitudes")(mel))[0]
    np.testing.assert_allclose(np.asarray(spectrum(mel))[0, :, :bins], before + inverse + 0.5, rtol=1e-5, atol=1e-4)
    assert "magnitude_linear" not in {layer.name for layer in models.build_istft_generator(SETTINGS, 8).layers}


@pytest.mark.parametrize("kind", BUILDERS)
def test_mixed_precision_generator_keeps_float32_audio(kind):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        generator = BUILDERS[kind](SETTINGS, 16)
        audio = generator(np.zeros((1, 9, 80), np.float32))
        assert audio.dtype == "float32" and generator.get_layer("mel_conv").compute_dtype == "bfloat16"
        assert generator.get_layer("mel_conv").kernel.dtype == "float32"
        if kind == "istft":  # the phases, exponentials and the filterbank's pseudo-inverse stay in float32
            assert generator.get_layer("inverse_stft").compute_dtype == "float32"
            assert generator.get_layer("linear_magnitudes").compute_dtype == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("kind", [*BUILDERS, "istft with Griffin-Lim"])
def test_chunked_vocoding_equals_one_pass(kind):
    # Griffin-Lim's phases divide by magnitudes, so quiet bins pass on rounding differences (of an FFT over
    # another batch shape) several times larger; 1e-4 is still 80 dB below full scale.
    atol = 1e-4 if kind.endswith("Lim") else 2e-5
    if kind == "melgan":
        generator = BUILDERS[kind](SETTINGS, 16)
    else:  # the full depth, whose receptive field the chunks' overlap must cover, and 8 iterations' more
        iterations = 8 if kind.endswith("Lim") else 0  # when generating; 4 in training
        generator = models.build_istft_generator(SETTINGS, channels=16, phase_iterations=iterations // 2,
                                                 generation_phase_iterations=iterations, phase_momentum=0.99)
        assert context_frames(generator) == 32 + 3 * iterations  # a window of 4 hops: 3 frames more per iteration
    mel = log_mel(glide(3.0, 200, 900) + 0.01 * np.random.default_rng(0).standard_normal(3 * RATE).astype("f"),
                  SETTINGS)
    whole = models.vocode(generator, mel, chunk_frames=10_000)
    assert whole.shape == (1, (len(mel) - 1) * HOP)
    for chunk in (7, 50, 111):
        chunked = models.vocode(generator, mel, chunk_frames=chunk)
        np.testing.assert_allclose(chunked, whole, atol=atol)
    # Several spectrograms at once, and the same through models.generate (the one vocoder interface).
    stacked = np.stack([mel, mel[::-1]])
    both = models.vocode(generator, stacked, chunk_frames=50)
    np.testing.assert_allclose(both[0], whole[0], atol=atol)
    np.testing.assert_allclose(models.generate(generator, mel=stacked), both, atol=atol)
    assert models.generate(generator, 250, mel=mel).shape == (1, 250)
    with pytest.raises(ValueError, match="needs a log-mel"):
        models.generate(generator, 100)
    with pytest.raises(ValueError, match="no prime"):
        models.generate(generator, mel=mel, prime=np.zeros(10))


def frames_of(signal, fft, centres, window_length=None):
    """The STFT frames of `signal` centred on `centres` (a periodic Hann window of `window_length`, default `fft`,
    centred in the frame, as the inverse STFT's)."""
    window_length = window_length or fft
    left = (fft - window_length) // 2
    window = np.pad(np.hanning(window_length + 1)[:-1], (left, fft - window_length - left))
    return np.fft.rfft(np.stack([signal[c - fft // 2:c + fft // 2] * window for c in centres]), axis=-1)


@pytest.mark.parametrize("layout", models.ISTFT_LAYOUTS)
def test_the_istft_generators_head_rebuilds_a_signal_from_its_frames_in_place(layout):
    # Feed the head the true STFT of a signal, frame k centred on the sample of mel frame k (row k + CONTEXT_FRAMES):
    # the generator's trimmed output must be that signal's samples from frame 0 on, unscaled and unshifted.
    generator = models.build_istft_generator(SETTINGS, channels=8, blocks=1, layout=layout)
    inverse = generator.get_layer("inverse_stft")
    fft, window = inverse.fft_length, inverse.window_length
    # The mel layout inverts the spectrogram's own STFT: its FFT and window, and the floor kept as sound.
    assert (fft, window) == ((SETTINGS.n_fft, SETTINGS.win_length) if layout == "mel" else (4 * HOP, 4 * HOP))
    assert generator.get_layer("linear_magnitudes").subtract_floor is (layout == "vocos")
    rows, offset = 12, 3 * fft
    signal = np.random.default_rng(0).uniform(-0.5, 0.5, offset + rows * HOP + fft).astype(np.float32)
    spectra = frames_of(signal, fft, offset + (np.arange(rows) - CONTEXT_FRAMES) * HOP, window)
    head = np.concatenate([np.log(np.abs(spectra)), np.angle(spectra)], axis=-1)[None].astype(np.float32)
    audio = head
    for name in ("inverse_stft", "trim_context", "audio"):
        audio = generator.get_layer(name)(audio)
    kept = (rows - 2 * CONTEXT_FRAMES) * HOP
    assert audio.shape == (1, kept, 1)
    np.testing.assert_allclose(np.asarray(audio)[0, :, 0], signal[offset:offset + kept], atol=1e-5)


def test_generators_saved_before_the_mel_layout_load_and_run_as_they_were():
    # A generator saved before the window, the momentum and the kept floor existed has none of them in its layers'
    # configs: it must load with the layout it was trained with (FFT and window 4 hops, the floor taken off).
    keras.utils.set_random_seed(0)
    generator = models.build_istft_generator(SETTINGS, channels=8, blocks=1, phase_iterations=2, layout="vocos")
    config = generator.get_config()
    for layer in config["layers"]:
        for key in ("window_length", "momentum", "subtract_floor"):
            layer["config"].pop(key, None)
    old = keras.Model.from_config(config)
    old.set_weights(generator.get_weights())
    assert old.get_layer("inverse_stft").window_length == 4 * HOP
    assert old.get_layer("griffin_lim_phases").momentum == 0.0
    assert old.get_layer("linear_magnitudes").subtract_floor is True
    rows = log_mel(glide(0.5, 300, 500), SETTINGS)[None]
    np.testing.assert_allclose(np.asarray(old(rows)), np.asarray(generator(rows)), atol=1e-6)
    with pytest.raises(ValueError, match="layout must be one of"):
        models.build_istft_generator(SETTINGS, channels=8, layout="hifigan")
    with pytest.raises(ValueError, match="a window of at most 4 hops"):
        models.build_istft_generator(dataclasses.replace(SETTINGS, win_length=512), channels=8)


def inconsistency(head, fft, hop, window_length=None):
    """Spectral convergence between a head's magnitudes and those of the audio its frames make (interior frames)."""
    bins = fft // 2 + 1
    audio = np.asarray(InverseSTFT(fft, hop, window_length)(head.astype(np.float32)))[0, :, 0]
    frames = head.shape[1]
    made = np.abs(frames_of(audio, fft, fft // 2 + hop * np.arange(frames), window_length))[4:-4]
    given = np.exp(head[0, 4:-4, :bins])
    return float(np.linalg.norm(made - given) / np.linalg.norm(given))


def random_phase_head(fft, hop, frames, seed, window_length=None):
    """`(spectra, true, random_phases)`: the STFT frames of a modulated noisy tone, and heads (`InverseSTFT`'s input)
    with their own phases (float32) and with random ones (float64)."""
    rng = np.random.default_rng(seed)
    t = np.arange(fft + hop * frames)
    signal = (np.sin(0.3 * t) * (1 + 0.5 * np.sin(0.01 * t)) + 0.1 * rng.standard_normal(len(t))).astype("f")
    spectra = frames_of(signal, fft, fft // 2 + hop * np.arange(frames), window_length)
    log_magnitude = np.log(np.abs(spectra))
    true = np.concatenate([log_magnitude, np.angle(spectra)], -1)[None].astype(np.float32)
    random_phases = np.concatenate([log_magnitude, rng.uniform(-np.pi, np.pi, log_magnitude.shape)], -1)[None]
    return spectra, true, random_phases


def loud_phase_error(head, other, spectra):
    """The largest phase difference (radians) between two heads over the interior frames' loud bins."""
    bins = spectra.shape[-1]
    loud = np.abs(spectra[4:-4]) > 0.1 * np.abs(spectra).max()
    difference = np.angle(np.exp(1j * (head[0, 4:-4, bins:] - other[0, 4:-4, bins:])))
    return np.abs(difference[loud]).max()


def test_griffin_lim_phases_make_random_phases_consistent_and_keep_magnitudes():
    fft, hop, frames = 64, 16, 40
    spectra, true, random_phases = random_phase_head(fft, hop, frames, seed=0)
    bins = fft // 2 + 1
    errors = []
    for iterations in (0, 4, 32):
        refined = np.asarray(GriffinLimPhases(fft, hop, iterations)(random_phases.astype(np.float32)))
        np.testing.assert_allclose(refined[..., :bins], random_phases[..., :bins], rtol=1e-6)  # magnitudes kept
        errors.append(inconsistency(refined, fft, hop))
    assert errors[0] > 0.5 and errors[1] < 0.5 * errors[0] and errors[2] < 0.7 * errors[1], errors
    # Training runs `iterations`, everything else `generation_iterations`.
    both = GriffinLimPhases(fft, hop, 4, generation_iterations=32)
    for training, iterations in ((True, 4), (False, 32)):
        np.testing.assert_allclose(np.asarray(both(random_phases.astype(np.float32), training=training)),
                                   np.asarray(GriffinLimPhases(fft, hop, iterations)(random_phases.astype(np.float32),
                                                                                    training=training)))
    # A spectrogram that is already some signal's STFT is a fixed point: its phases come back (interior frames).
    kept = np.asarray(GriffinLimPhases(fft, hop, 3)(true))
    assert loud_phase_error(kept, true, spectra) < 1e-2  # float32 rounding; a random phase is off by pi/2 on average


@pytest.mark.parametrize("window_length", [None, 48, 56])
def test_fast_griffin_lim_momentum_converges_faster_and_keeps_the_fixed_point(window_length):
    # librosa's momentum (0.99) against plain Griffin-Lim from the same random phases, with the window filling the
    # frame and shorter than it (the mel layout: the spectrogram's 400-sample window in its 512-point FFT), of
    # whole hops (the round trip by blocks) and not (56: ops.istft and ops.stft).
    fft, hop, frames = 64, 16, 40
    spectra, true, random_phases = random_phase_head(fft, hop, frames, seed=1, window_length=window_length)
    bins = fft // 2 + 1
    for iterations in (8, 32):
        errors = {}
        for momentum in (0.0, 0.99):
            layer = GriffinLimPhases(fft, hop, iterations, momentum=momentum, window_length=window_length)
            refined = np.asarray(layer(random_phases.astype(np.float32)))
            np.testing.assert_allclose(refined[..., :bins], random_phases[..., :bins], rtol=1e-6)
            errors[momentum] = inconsistency(refined, fft, hop, window_length)
        # About a fifth lower after 8 iterations and a third or less of plain Griffin-Lim's after 32.
        assert errors[0.99] < (0.9 if iterations == 8 else 0.5) * errors[0.0], (iterations, errors)
    # The true STFT (with that window) is still a fixed point with the momentum.
    kept = np.asarray(GriffinLimPhases(fft, hop, 3, momentum=0.99, window_length=window_length)(true))
    assert loud_phase_error(kept, true, spectra) < 3e-2  # the momentum's step doubles float32 rounding; random: pi/2
    assert inconsistency(true, fft, hop, window_length) < 1e-4
    # The round trip by blocks of a hop gives what ops.istft and ops.stft give, gradients included.
    layer = GriffinLimPhases(fft, hop, 4, momentum=0.99, window_length=window_length)
    assert layer._by_blocks is ((window_length or fft) % hop == 0)
    if layer._by_blocks:
        by_stft = GriffinLimPhases(fft, hop, 4, momentum=0.99, window_length=window_length)
        by_stft._by_blocks = False
        start = tf.constant(random_phases.astype(np.float32))
        results = []
        for each in (layer, by_stft):
            with tf.GradientTape() as tape:
                tape.watch(start)
                out = each(start)
                loss = tf.reduce_sum(tf.sin(out[..., bins:]) * tf.exp(out[..., :bins]))
            results.append((np.asarray(out), np.asarray(tape.gradient(loss, start))))
        (blocks, blocks_gradient), (stft, stft_gradient) = results
        assert loud_phase_error(blocks, stft, spectra) < 1e-3
        np.testing.assert_allclose(blocks_gradient, stft_gradient, rtol=1e-2, atol=1e-2 * np.abs(stft_gradient).max())


def test_stft_loss_is_zero_only_for_the_same_audio():
    rng = np.random.default_rng(0)
    real = rng.uniform(-0.5, 0.5, (2, 1600)).astype(np.float32)
    resolutions = stft_resolutions(SETTINGS)
    assert resolutions == ((256, 64, 256), (512, 128, 512), (1024, 256, 1024))
    assert float(models.stft_loss(real, real, resolutions)) < 1e-4
    quieter = float(models.stft_loss(real, 0.5 * real, resolutions))
    other = float(models.stft_loss(real, rng.uniform(-0.5, 0.5, (2, 1600)).astype(np.float32), resolutions))
    assert 0.3 < quieter and 0.3 < other


def test_parallel_phase_gives_each_bins_angle(tmp_path):
    run_layer_test(ParallelPhase, {}, (2, 5, 8), (2, 5, 4), 0)
    # Real parts 1, 0, -2 and imaginary parts 0, 1, -1: the angles of 1, i and -2 - i.
    angles = np.asarray(ParallelPhase()(np.array([[[1.0, 0.0, -2.0, 0.0, 1.0, -1.0]]], "float32")))
    np.testing.assert_allclose(angles[0, 0], [0.0, np.pi / 2, np.arctan2(-1.0, -2.0)], atol=1e-6)
    assert np.isfinite(angles).all()
    origin = tf.zeros((1, 1, 4))
    with tf.GradientTape() as tape:
        tape.watch(origin)
        angle = ParallelPhase()(origin)
        total = tf.reduce_sum(angle)
    assert np.isfinite(np.asarray(angle)).all()  # the origin too, and its gradient
    assert np.isfinite(np.asarray(tape.gradient(total, origin))).all()
    generator = models.build_istft_generator(SETTINGS, 16, blocks=1, phase_head="parallel")
    assert generator.get_layer("phase_parts").units == 2 * (SETTINGS.n_fft // 2 + 1)
    generator.save(tmp_path / "generator.keras")
    mel = log_mel(glide(0.5, 300, 600), SETTINGS)
    np.testing.assert_allclose(models.vocode(models.load_model(tmp_path / "generator.keras"), mel),
                               models.vocode(generator, mel), atol=1e-6)
    with pytest.raises(ValueError, match="phase_head"):
        models.build_istft_generator(SETTINGS, 16, blocks=1, phase_head="complex")


def test_phase_loss_is_zero_for_the_true_phases_in_any_turn_and_ignores_silent_bins():
    rng = np.random.default_rng(0)
    real, imag = rng.normal(size=(2, 2, 6, 9)).astype(np.float32)
    true = np.arctan2(imag, real)
    assert float(phase_loss(real, imag, true)) < 1e-5
    turns = 2 * np.pi * rng.integers(-3, 4, true.shape)
    assert float(phase_loss(real, imag, (true + turns).astype(np.float32))) < 1e-4
    # A constant offset: the instantaneous phase is off by it (weights average 1), the differences not at all.
    np.testing.assert_allclose(float(phase_loss(real, imag, true + 0.5)), 0.5, rtol=1e-4)
    # Each example's weights are its own: a louder example counts the same.
    wrong = rng.uniform(-np.pi, np.pi, true.shape).astype(np.float32)
    louder = np.array([100.0, 1.0], np.float32)[:, None, None]
    np.testing.assert_allclose(float(phase_loss(louder * real, louder * imag, wrong)),
                               float(phase_loss(real, imag, wrong)), rtol=1e-5)
    assert float(phase_loss(real, imag, rng.uniform(-np.pi, np.pi, true.shape).astype(np.float32))) > 1.0
    silent_real, silent_imag = real.copy(), imag.copy()
    silent_real[..., :4] = silent_imag[..., :4] = 0.0
    noisy = true.copy()
    noisy[..., :4] = rng.uniform(-np.pi, np.pi, noisy[..., :4].shape)
    assert float(phase_loss(silent_real, silent_imag, noisy)) < 1e-5


def test_the_phase_loss_compares_each_predicted_frame_with_the_real_audios_frame_at_its_place():
    # Rows of the true STFT of a longer signal, as a generator's spectrum: the frame at row CONTEXT_FRAMES + k is
    # centred on sample k of the audio the generator makes, and the loss sees no difference; a row off, it does.
    generator = models.build_istft_generator(SETTINGS, 16, blocks=1, phase_head="parallel")
    gan = models.VocoderGAN(generator, models.build_vocoder_discriminator(RATE, 4), phase_weight=1.0)
    fft, window, frames, start = SETTINGS.n_fft, SETTINGS.win_length, 40, 5
    signal = glide(1.0, 300, 900) + 0.05 * np.random.default_rng(0).normal(size=RATE).astype(np.float32)
    real, imag = (np.asarray(part) for part in keras.ops.stft(signal[None], window, HOP, fft, center=True))
    rows = np.concatenate([np.log(np.maximum(np.hypot(real, imag), 1e-9)), np.arctan2(imag, real)], axis=-1)
    audio = signal[None, (CONTEXT_FRAMES + start) * HOP:(CONTEXT_FRAMES + start + frames) * HOP]
    for first, expected in ((start, (0.0, 1e-5)), (start + 1, (1.0, 10.0))):
        spectrum = rows[:, first:first + frames + 2 * CONTEXT_FRAMES]
        assert expected[0] <= float(gan.phase_loss_of(audio, spectrum)) <= expected[1], first
        # The magnitude loss compares the same frames: nothing aligned, a clear difference a row off.
        magnitude = float(gan.magnitude_loss_of(audio, spectrum))
        assert magnitude < 1e-4 if first == start else magnitude > 0.1, (first, magnitude)
        # The same rows through the generator's own inverse STFT give the audio back where they are aligned.
        made = np.asarray(generator.get_layer("trim_context")(generator.get_layer("inverse_stft")(spectrum)))[0, :, 0]
        if first == start:
            np.testing.assert_allclose(made[fft:-fft], audio[0, fft:-fft], atol=1e-5)
    with pytest.raises(ValueError, match="need segments of at least 7 frames, not 6"):
        gan.phase_loss_of(audio[:, :6 * HOP], rows[:, start:start + 6 + 2 * CONTEXT_FRAMES])
    with pytest.raises(ValueError, match="only the istft generator predicts frames"):
        models.VocoderGAN(models.build_vocoder_generator(SETTINGS, 16), models.build_vocoder_discriminator(RATE, 4),
                          phase_weight=1.0)


def test_the_phase_loss_trains_the_phase_head_towards_the_real_phases():
    # The phase loss alone trains it (no STFT loss, whose pull on the phases varies from run to run). Measured: from
    # 3.78 to 2.69 in 60 steps, with one thread or two.
    signal = glide(2.0, 200, 800)
    frames = FrameGenerator([signal], 16 * HOP, 4, 60, mode="vocoder",
                            features=[pad_features(log_mel(signal, SETTINGS), SETTINGS)], hop=HOP)
    keras.utils.set_random_seed(0)
    generator = models.build_istft_generator(SETTINGS, 16, blocks=1, phase_head="parallel")
    gan = models.build_vocoder_gan(SETTINGS, learning_rate=1e-2, stft_weight=0.0, adversarial_weight=0.0,
                                   generator=generator, phase_weight=1.0)
    mel, audio = frames[0]
    before = float(gan.losses_of(mel, audio, training=False)[2]["phase_loss"])
    logs = gan.fit(frames, epochs=1, verbose=0).history
    after = float(gan.losses_of(mel, audio, training=False)[2]["phase_loss"])
    assert logs["phase_loss"][0] > 0 and after < 0.85 * before, (before, after)


def test_the_magnitude_loss_alone_trains_the_magnitudes_from_the_frames_and_leaves_the_rest():
    # No STFT loss and the discriminators not yet joined (the istft defaults): a step needs only the predicted
    # frames, reports no STFT loss, lowers the magnitude loss, and changes neither the phase head (which no loss
    # reaches) nor the discriminators. Measured: 0.64 to 0.52 in 30 steps.
    signal = glide(2.0, 200, 800) + 0.01 * np.random.default_rng(0).normal(size=2 * RATE).astype(np.float32)
    frames = FrameGenerator([signal], 16 * HOP, 4, 30, mode="vocoder",
                            features=[pad_features(log_mel(signal, SETTINGS), SETTINGS)], hop=HOP)
    keras.utils.set_random_seed(0)
    generator = models.build_istft_generator(SETTINGS, 16, blocks=1, phase_iterations=2, mel_projection=2)
    gan = models.build_vocoder_gan(SETTINGS, discriminator_channels=4, learning_rate=1e-2, stft_weight=0.0,
                                   generator=generator, adversarial_start=100, magnitude_weight=1.0)
    mel, audio = frames[0]
    before = float(gan.losses_of(mel, audio, training=False, adversarial=False)[2]["magnitude_loss"])
    untouched = {name: [w.copy() for w in layer.get_weights()] for name, layer in (
        ("phase", generator.get_layer("phase")), ("discriminator", gan.discriminator))}
    magnitude = [w.copy() for w in generator.get_layer("magnitude").get_weights()]
    def whole_generator(*args, **kwargs):
        raise AssertionError("the step ran the whole generator (Griffin-Lim iterations, inverse STFT)")

    gan.with_spectrum = whole_generator  # (a plain attribute: fit traces losses_of, which must not call it)
    logs = gan.fit(frames, epochs=1, verbose=0).history
    after = float(gan.losses_of(mel, audio, training=False, adversarial=False)[2]["magnitude_loss"])
    assert "stft_loss" not in logs and after < 0.9 * before, (logs.keys(), before, after)
    for name, layer in (("phase", generator.get_layer("phase")), ("discriminator", gan.discriminator)):
        assert all(np.array_equal(a, b) for a, b in zip(untouched[name], layer.get_weights())), name
    assert not np.array_equal(magnitude[0], generator.get_layer("magnitude").get_weights()[0])


def test_one_training_step_changes_generator_and_discriminators():
    signal = glide(2.0, 200, 800)
    frames = FrameGenerator([signal], 8 * HOP, 2, 1, mode="vocoder",
                            features=[pad_features(log_mel(signal, SETTINGS), SETTINGS)], hop=HOP)
    mel, audio = frames[0]
    assert mel.shape == (2, 8 + 2 * CONTEXT_FRAMES, 80) and audio.shape == (2, 8 * HOP, 1)
    for weight, kind in ((1.0, "melgan"), (0.0, "melgan"), (1.0, "istft")):
        gan = tiny_vocoder(adversarial_weight=weight, kind=kind)
        gan.run_eagerly = True  # one step: tracing the graph would cost more than the step
        before = [w.copy() for w in gan.generator.get_weights()], [w.copy() for w in gan.discriminator.get_weights()]
        logs = gan.fit(frames, epochs=1, verbose=0).history
        changed = [any(not np.array_equal(a, b) for a, b in zip(old, new.get_weights()))
                   for old, new in zip(before, (gan.generator, gan.discriminator))]
        assert changed == [True, bool(weight)]  # no adversarial weight: the discriminators are not trained at all
        assert np.isfinite(logs["g_loss"][0]) and logs["stft_loss"][0] > 0


def test_before_the_discriminators_join_training_is_the_stft_loss_alone():
    signal = glide(2.0, 200, 800)
    features = [pad_features(log_mel(signal, SETTINGS), SETTINGS)]
    frames = FrameGenerator([signal], 8 * HOP, 2, 2, mode="vocoder", features=features, hop=HOP)
    alone = tiny_vocoder(adversarial_weight=0.0, kind="istft")
    alone.run_eagerly = True  # a few steps: tracing the graph would cost more than they do
    alone.fit(FrameGenerator([signal], 8 * HOP, 2, 2, mode="vocoder", features=features, hop=HOP), epochs=1,
              verbose=0)
    late = tiny_vocoder(kind="istft")
    late.adversarial_start, late.run_eagerly = 2, True
    before = [w.copy() for w in late.discriminator.get_weights()]
    logs = late.fit(frames, epochs=1, verbose=0).history
    assert logs["adversarial_loss"][0] == 0 and logs["d_loss"][0] == 0
    for made, wanted in zip(late.generator.get_weights(), alone.generator.get_weights()):
        np.testing.assert_allclose(made, wanted, rtol=1e-5, atol=1e-7)
    assert all(np.array_equal(a, b) for a, b in zip(before, late.discriminator.get_weights()))
    logs = late.fit(frames, epochs=1, verbose=0).history  # steps 2 and 3: they have joined
    assert logs["adversarial_loss"][0] > 0 and logs["d_loss"][0] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, late.discriminator.get_weights()))


def test_compiled_training_switches_steps_at_the_join_and_a_resumed_run_starts_on_the_right_side():
    # Compiled (not eager): one traced step before the join, another from it, chosen from the generator's step
    # count. One scale and one period keep the traced steps small.
    signal = glide(2.0, 200, 800)
    features = [pad_features(log_mel(signal, SETTINGS), SETTINGS)]
    keras.utils.set_random_seed(0)
    discriminator = models.build_vocoder_discriminator(RATE, 2, scales=1, periods=(2,))
    gan = models.build_vocoder_gan(SETTINGS, generator=models.build_vocoder_generator(SETTINGS, 8),
                                   discriminator=discriminator, adversarial_start=2)
    before = [w.copy() for w in gan.discriminator.get_weights()]
    seen = []

    class Record(keras.callbacks.Callback):  # whether the epoch's steps so far include an adversarial one
        def on_train_batch_end(self, batch, logs=None):
            seen.append(bool(logs["adversarial_loss"] > 0))

    frames = FrameGenerator([signal], 8 * HOP, 2, 2, mode="vocoder", features=features, hop=HOP)
    logs = gan.fit(frames, epochs=1, verbose=0, callbacks=[Record()]).history
    assert seen == [False, False]
    assert logs["adversarial_loss"][0] == 0 and logs["d_loss"][0] == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, gan.discriminator.get_weights()))
    logs = gan.fit(frames, epochs=1, verbose=0, callbacks=[Record()]).history  # steps 2 and 3
    assert seen[2:] == [True, True]
    assert logs["adversarial_loss"][0] > 0 and logs["d_loss"][0] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, gan.discriminator.get_weights()))
    # From step 1 (as a run resumed there) it starts before the join and crosses it at step 2.
    gan.g_optimizer.iterations.assign(1)
    seen.clear()
    gan.fit(frames, epochs=1, verbose=0, callbacks=[Record()])
    assert seen == [False, True]


def test_the_schedule_sets_both_optimisers_rates_from_the_generators_step_count():
    from run.callbacks import LearningRateSchedule, learning_rate_at

    signal = glide(2.0, 200, 800)
    frames = FrameGenerator([signal], 8 * HOP, 2, 3, mode="vocoder",
                            features=[pad_features(log_mel(signal, SETTINGS), SETTINGS)], hop=HOP)
    gan = tiny_vocoder(kind="istft")
    gan.adversarial_start, gan.run_eagerly = 2, True  # six steps: tracing would cost more
    rates = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            rates.append((float(gan.g_optimizer.learning_rate), float(gan.d_optimizer.learning_rate)))

    gan.fit(frames, epochs=2, verbose=0, callbacks=[LearningRateSchedule(lambda: 1e-3, 1, 6, 0.1), Record()])
    wanted = [learning_rate_at(step, 1e-3, 1, 6, 0.1) for step in range(6)]
    assert rates == [pytest.approx((rate, rate), rel=1e-6) for rate in wanted]
    assert int(gan.g_optimizer.iterations) == 6


def peak_frequencies(audio, window=512):
    """The frequency of each hop's loudest spectral peak, in Hz (zero-padded FFT: 2 Hz bins)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, window)[::HOP] * np.hanning(window)
    return np.abs(np.fft.rfft(frames, 4096)).argmax(axis=1) * RATE / 4096


def glide_corpus():
    """16 two-second glides between random pitches with a faint noise floor, their padded spectrograms, and a
    one-second glide not among them."""
    rng = np.random.default_rng(0)
    signals = [glide(2.0, *rng.uniform(150, 1200, 2)) + 0.01 * rng.standard_normal(2 * RATE).astype("f")
               for _ in range(16)]
    unseen = glide(1.0, 300, 700) + 0.01 * rng.standard_normal(RATE).astype("f")
    return signals, [pad_features(log_mel(signal, SETTINGS), SETTINGS) for signal in signals], unseen


@pytest.mark.slow
def test_melgan_vocoder_comes_closer_to_an_unseen_glide():
    # MelGAN's generator on tones gliding between random pitches, scored on the spectrogram of a glide it never saw;
    # the STFT loss alone trains it (adversarial_weight 0: the discriminators' part is tested above and costs 7x the
    # time per step). A noise floor in the audio matters: on pure tones the log-magnitude term is smallest for
    # silence, and the generator went quiet. Measured: the STFT distance 2.26 -> 1.95 (seed 0) and 2.22 -> 1.90
    # (seed 1) after 400 steps. Following the glide's pitch took 1,500 steps (82% and 87% of its frames within
    # 60 Hz, 0% before) and most of a minute, so the pitch is left to the (tiny) istft generator's test, below.
    signals, features, unseen = glide_corpus()
    mel = log_mel(unseen, SETTINGS)
    gan = tiny_vocoder(channels=32, adversarial_weight=0.0, learning_rate=1e-3)

    def distance():
        made = models.vocode(gan.generator, mel)
        edge = 2 * HOP  # the edge frames see padding
        return float(models.stft_loss(unseen[None, edge:len(made[0]) - edge], made[:, edge:-edge],
                                      stft_resolutions(SETTINGS)))

    before = distance()
    gan.fit(FrameGenerator(signals, 16 * HOP, 8, 400, mode="vocoder", features=features, hop=HOP), epochs=1,
            verbose=0)
    after = distance()
    assert after < 0.92 * before, (before, after)


@pytest.mark.slow
def test_train_gan_vocoder_interrupt_resume_and_generate(tmp_path):
    speech = write_wav(tmp_path / "speech.wav", np.concatenate([glide(1.5, 200, 600), glide(1.5, 700, 300)]))
    run_dir = tmp_path / "run"
    flags = ["--condition", "mel", "--generator", "melgan", "--adversarial-start", "0", "--train", speech,
             "--segment-frames", "8", "--generator-channels", "16", "--discriminator-channels", "4", "--batch-size",
             "2", "--steps-per-epoch", "2", "--epochs", "2", "--sample-every", "1", "--sample-seconds", "0.5",
             "--output-dir", run_dir]
    result = run_script("train_gan.py", *flags, env={"WAVEGEN_KILL_AT": "step-end:3:SIGINT"})
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"  python train_gan.py --resume --output-dir {run_dir}"
    folder = run_dir / "checkpoints" / "epoch_0001_step_0001"
    assert {p.name for p in folder.iterdir()} >= {"generator.keras", "discriminator.keras", "optimizers.npz"}
    # As a run from before the iSTFT generator and the warm start: its config.json has neither, and it resumes
    # with what it was trained with (MelGAN, discriminators from step 0), not today's defaults.
    config = json.loads((run_dir / "config.json").read_text())
    del config["generator"], config["adversarial_start"], config["phase_iterations"]
    (run_dir / "config.json").write_text(json.dumps(config))
    result = run_script("train_gan.py", "--resume", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["condition"] == "mel" and config["mel"]["hop_length"] == HOP and config["batch_size"] == 2
    assert config["generator"] == "melgan" and config["adversarial_start"] == 0
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"d_loss", "g_loss", "stft_loss", "feature_loss", "adversarial_loss", "samples_per_second"} <= set(header)
    for name in ("generator.keras", "discriminator.keras", "samples/epoch_0002.wav", "samples/original.wav"):
        assert (run_dir / name).is_file(), name
    assert sf.info(str(run_dir / "samples" / "epoch_0002.wav")).frames == 4000  # 0.5 s, whole hops
    assert list((run_dir / "logs" / "samples").iterdir())  # the samples as TensorBoard audio

    # The one vocoder interface: --mel-from and --mel as for the WaveNet vocoder, in a fresh process (.keras round
    # trip with only `import models`).
    generator = run_dir / "generator.keras"
    result = run_script("generate.py", generator, "--mel-from", speech, "--output", tmp_path / "a.wav")
    assert result.returncode == 0, result.stderr[-2000:]
    audio, rate = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    assert rate == RATE and len(audio) == (len(log_mel(sf.read(str(speech))[0], SETTINGS)) - 1) * HOP
    expected = models.vocode(models.load_model(generator), log_mel(sf.read(str(speech), dtype="float32")[0],
                                                                   SETTINGS))[0]
    np.testing.assert_allclose(audio, expected, atol=2 / 32768)  # the same audio, to 16-bit rounding
    np.save(tmp_path / "mel.npy", np.stack([log_mel(audio, SETTINGS)] * 2))
    result = run_main("generate.py", generator, "--mel", tmp_path / "mel.npy", "--num", "2", "--output-dir",
                      tmp_path / "out")  # (the fresh process was the call above)
    assert result.returncode == 0 and len(list((tmp_path / "out").glob("*.wav"))) == 2, result.stderr[-2000:]

    # Refusals: one line, exit status 2, nothing written (generate.py's in this process: see run_main).
    for args, message in (((generator, "--output", tmp_path / "x.wav"), "give --mel-from AUDIO or --mel"),
                          ((generator, "--mel-from", speech, "--temperature", "0.5", "--output", tmp_path / "x.wav"),
                           "draws nothing at random")):
        assert_one_line_error(run_main("generate.py", *args), message)
    refusals = [
        (("train_gan.py", "--condition", "mel", "--train", speech, "--loss", "bce", "--output-dir", tmp_path / "r"),
         "--loss: a WaveGAN setting"),
        (("train_gan.py", "--train", speech, "--stft-weight", "3", "--output-dir", tmp_path / "r"),
         "--stft-weight: a vocoder setting"),
        (("train_gan.py", "--condition", "mel", "--train", speech, "--segment-frames", "400", "--output-dir",
          tmp_path / "r"), "one training segment"),
        (("train_gan.py", "--condition", "mel", "--train", speech, "--mel-fmax", "5000", "--output-dir",
          tmp_path / "r"), "above the Nyquist frequency"),
    ]
    for args, message in refusals:  # in this process: each is refused before anything is built
        assert_one_line_error(run_main(*args), message)
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_train_istft_vocoder_warm_start_and_generate_in_a_fresh_process(tmp_path):
    speech = write_wav(tmp_path / "speech.wav", np.concatenate([glide(1.5, 200, 600), glide(1.5, 700, 300)]))
    run_dir = tmp_path / "run"
    result = run_main("train_gan.py", "--condition", "mel", "--train", speech, "--segment-frames", "8",
                      "--generator-channels", "16", "--discriminator-channels", "4", "--batch-size", "2",
                      "--steps-per-epoch", "2", "--epochs", "2", "--adversarial-start", "9", "--sample-every", "0",
                      "--phase-iterations", "2", "--phase-head", "parallel", "--phase-weight", "1",
                      "--mel-projection", "2", "--magnitude-weight", "1", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["generator"] == "istft" and config["learning_rate"] == 5e-4  # the vocoder's defaults
    assert config["phase_iterations"] == 2 and config["generation_phase_iterations"] == 16  # the default
    assert config["phase_momentum"] == 0.99 and config["istft_layout"] == "mel"  # the defaults
    assert config["phase_head"] == "parallel" and config["phase_weight"] == 1.0
    assert config["mel_projection"] == 2 and config["magnitude_weight"] == 1.0
    history = (run_dir / "history.csv").read_text().splitlines()
    header, rows = history[0].split(","), [dict(zip(history[0].split(","), line.split(","))) for line in history[1:]]
    assert "adversarial_loss" in header and len(rows) == 2
    assert all(float(row["phase_loss"]) > 0 and float(row["magnitude_loss"]) > 0 for row in rows)
    # Before the join (at step 9: joining is tested above, compiled; here it would trace the discriminators too).
    assert config["adversarial_start"] == 9 and all(float(row["adversarial_loss"]) == 0 for row in rows)
    generator = run_dir / "generator.keras"
    result = run_script("generate.py", generator, "--mel-from", speech, "--output", tmp_path / "a.wav")
    assert result.returncode == 0, result.stderr[-2000:]
    audio, rate = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    mel = log_mel(sf.read(str(speech), dtype="float32")[0], SETTINGS)
    assert rate == RATE and len(audio) == (len(mel) - 1) * HOP
    restored = models.load_model(generator)
    phases = restored.get_layer("griffin_lim_phases")
    assert phases.iterations == 2 and phases.generation_iterations == 16 and phases.momentum == 0.99
    assert restored.get_layer("inverse_stft").fft_length == SETTINGS.n_fft
    assert restored.get_layer("phase_parts").units == 2 * (SETTINGS.n_fft // 2 + 1)
    assert restored.get_layer("mel_projection").iterations == 2
    np.testing.assert_allclose(audio, models.vocode(restored, mel)[0], atol=2 / 32768)
    result = run_script("train_gan.py", "--condition", "mel", "--train", speech, "--generator", "melgan",
                        "--phase-iterations", "2", "--output-dir", tmp_path / "r")
    assert_one_line_error(result, "--phase-iterations: a setting of the istft generator")
    vocoder = ["--condition", "mel", "--train", speech]
    for args, message in (
            ([*vocoder, "--generator", "melgan", "--istft-layout", "vocos"], "--istft-layout: a setting of the istft"),
            ([*vocoder, "--generator", "melgan", "--phase-weight", "1"], "--phase-weight: a setting of the istft"),
            ([*vocoder, "--generator", "melgan", "--magnitude-weight", "1"], "--magnitude-weight: a setting of the"),
            (["--train", speech, "--phase-head", "parallel"], "--phase-head: a vocoder setting"),
            ([*vocoder, "--segment-frames", "6", "--phase-weight", "1"],
             "--segment-frames 6: the phase loss (--phase-weight) needs segments of at least 7"),
            ([*vocoder, "--segment-frames", "6", "--magnitude-weight", "1"],
             "--segment-frames 6: the magnitude loss (--magnitude-weight) needs segments of at least 7"),
            ([*vocoder, "--istft-layout", "vocos", "--mel-projection", "2"],
             "--mel-projection 2: needs --istft-layout mel"),
            ([*vocoder, "--magnitude-weight", "0"], "the generator would learn nothing before the discriminators"),
            ([*vocoder, "--magnitude-weight", "0", "--adversarial-weight", "0"],
             "the generator would learn nothing without discriminators (--adversarial-weight 0)"),
            ([*vocoder, "--mel-window-ms", "60"],
             "--mel-window-ms 60: the istft generator's mel layout needs a window of at most")):
        assert_one_line_error(run_main("train_gan.py", *args, "--output-dir", tmp_path / "r"), message)
    assert not (tmp_path / "r").exists()
    # A run whose config.json predates the momentum and the layout resumes with what it was trained with.
    config = json.loads((run_dir / "config.json").read_text())
    del config["phase_momentum"], config["istft_layout"], config["phase_head"], config["phase_weight"]
    del config["mel_projection"], config["magnitude_weight"], config["generator_blocks"], config["linear_context"]
    config["stft_weight"] = 45.0  # what every config.json recorded before the magnitude loss
    (run_dir / "config.json").write_text(json.dumps(config))
    import train_gan

    resumed, _ = train_gan.resolve(["--resume", "--output-dir", str(run_dir)])
    assert resumed.phase_momentum == 0.0 and resumed.istft_layout == "vocos"
    assert resumed.phase_head == "direct" and resumed.phase_weight == 0.0
    assert resumed.mel_projection == 0 and resumed.magnitude_weight == 0.0
    assert resumed.generator_blocks == 8 and resumed.linear_context == 0 and resumed.stft_weight == 45.0
    fresh, _ = train_gan.resolve(["--condition", "mel", "--train", str(speech), "--output-dir", str(tmp_path / "d")])
    assert fresh.phase_head == "direct" and fresh.phase_weight == 0.0  # the defaults
    assert fresh.mel_projection == 5 and fresh.magnitude_weight == 45.0 and fresh.stft_weight == 0.0
    assert fresh.generator_channels == 128 and fresh.generator_blocks == 0 and fresh.linear_context == 2
    vocos, _ = train_gan.resolve(["--condition", "mel", "--train", str(speech), "--istft-layout", "vocos",
                                  "--output-dir", str(tmp_path / "d")])
    assert vocos.mel_projection == 0 and vocos.magnitude_weight == 45.0  # the projection needs the mel layout
    melgan, _ = train_gan.resolve(["--condition", "mel", "--train", str(speech), "--generator", "melgan",
                                   "--output-dir", str(tmp_path / "d")])
    assert melgan.stft_weight == 45.0 and melgan.magnitude_weight == 0.0 and melgan.mel_projection == 0
    assert train_gan.CHOICES["istft_layout"] == models.ISTFT_LAYOUTS
    assert train_gan.CHOICES["phase_head"] == models.PHASE_HEADS


@pytest.mark.slow
def test_istft_vocoder_learns_an_unseen_glide():
    # The iSTFT generator starts from the filterbank's inverse, so an unseen glide's pitch can be right before any
    # training: what it must learn is the rest of the spectrum and phases that add up across frames. Measured: the
    # STFT distance to the unseen glide 2.18 before, 1.20 after 400 steps (seed 1: 2.05 and 1.15 after 800; both
    # before the test's generator had a linear term), and
    # every frame's peak within 60 Hz.
    signals, features, unseen = glide_corpus()
    mel, true = log_mel(unseen, SETTINGS), peak_frequencies(unseen)
    gan = tiny_vocoder(channels=32, adversarial_weight=0.0, learning_rate=1e-3, kind="istft")

    def distance():
        made = models.vocode(gan.generator, mel)
        edge = 2 * HOP  # the edge frames see padding
        return float(models.stft_loss(unseen[None, edge:len(made[0]) - edge], made[:, edge:-edge],
                                      stft_resolutions(SETTINGS))), made[0]

    before, _ = distance()
    gan.fit(FrameGenerator(signals, 16 * HOP, 8, 400, mode="vocoder", features=features, hop=HOP), epochs=1,
            verbose=0)
    after, made = distance()
    pitch = peak_frequencies(made)
    count = min(len(pitch), len(true)) - 2
    on_pitch = np.mean(np.abs(pitch[2:count] - true[2:count]) < 60)
    assert after < 0.7 * before and on_pitch >= 0.8, (before, after, on_pitch)
