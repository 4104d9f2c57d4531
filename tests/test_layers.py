"""Every custom layer, keras-hub style: config round trip, serialisation, eager and symbolic calls, weights, and
mixed-precision dtypes (float32 variables, half-precision compute)."""

import os

import keras
import numpy as np
import pytest

import models
from models.gan import PhaseShuffle


def run_layer_test(layer_class, init_kwargs, input_shape, expected_output_shape, expected_num_trainable_weights,
                   call_kwargs=None, input_dtype="float32"):
    """What keras-hub's `TestCase.run_layer_test` checks, for one layer."""
    call_kwargs = call_kwargs or {}
    rng = np.random.default_rng(0)
    data = rng.uniform(-1.5, 1.5, input_shape).astype(input_dtype)

    # Config round trip: every constructor argument is in the config, and from_config rebuilds the same layer.
    layer = layer_class(**init_kwargs)
    config = layer.get_config()
    for name, value in init_kwargs.items():
        assert config[name] == value, name
    clone = layer_class.from_config(config)
    assert clone.get_config() == config
    # Serialisation through Keras' registry (what .keras files use), safe mode on.
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert type(revived) is layer_class and revived.get_config() == config

    # Eager call: shape and trainable weights; a clone with the same weights computes the same thing.
    output = layer(data, **call_kwargs)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    clone(data, **call_kwargs)
    clone.set_weights(layer.get_weights())
    if not call_kwargs.get("training"):
        np.testing.assert_allclose(np.asarray(clone(data, **call_kwargs)), np.asarray(output), rtol=1e-6)

    # Symbolic call, with an unknown batch (and time) dimension.
    symbolic = keras.KerasTensor((None,) * (len(input_shape) - 1) + (input_shape[-1],), dtype=input_dtype)
    symbolic_output = layer_class(**init_kwargs)(symbolic, **call_kwargs)
    assert symbolic_output.shape[-1] == expected_output_shape[-1]
    assert len(symbolic_output.shape) == len(expected_output_shape)

    # Mixed precision: variables stay float32, compute (and output) in the policy's half precision.
    for policy in ("mixed_float16", "mixed_bfloat16"):
        mixed = layer_class(**{**init_kwargs, "dtype": policy})
        result = mixed(data, **call_kwargs)
        compute = keras.DTypePolicy(policy).compute_dtype
        assert keras.backend.standardize_dtype(result.dtype) == compute, (policy, result.dtype)
        for weight in mixed.weights:
            assert weight.dtype == "float32", (policy, weight.path)
        assert np.all(np.isfinite(np.asarray(keras.ops.cast(result, "float32"))))
        # The half-precision result is the float32 one to within half precision.
        if not call_kwargs.get("training"):
            mixed.set_weights(layer.get_weights())
            np.testing.assert_allclose(np.asarray(keras.ops.cast(mixed(data, **call_kwargs), "float32")),
                                       np.asarray(output), rtol=5e-2, atol=5e-2)


def test_audio_input():
    run_layer_test(models.AudioInput, {"sample_rate": 8000}, (2, 10, 1), (2, 10, 1), 0)
    clipped = models.AudioInput(8000)(np.array([[[2.0], [-0.5], [-3.0]]], np.float32))
    assert np.asarray(clipped).ravel().tolist() == [1.0, -0.5, -1.0]


@pytest.mark.parametrize("kernel_size,dilation_rate", [(2, 1), (3, 4)])
def test_causal_conv(kernel_size, dilation_rate):
    run_layer_test(models.CausalConv1D, {"filters": 6, "kernel_size": kernel_size, "dilation_rate": dilation_rate},
                   (2, 12, 3), (2, 12, 6), 2)


def test_gated_activation():
    run_layer_test(models.GatedActivation, {}, (2, 7, 8), (2, 7, 4), 0)
    x = np.random.default_rng(1).normal(size=(1, 3, 8)).astype(np.float32)
    expected = np.tanh(x[..., :4]) / (1 + np.exp(-x[..., 4:]))  # filters first, gates second
    np.testing.assert_allclose(np.asarray(models.GatedActivation()(x)), expected, rtol=1e-5, atol=1e-6)

    # The gradient reaches both halves in place: filters' as tanh' * sigmoid, gates' as tanh * sigmoid'.
    import tensorflow as tf

    x = tf.constant(x)
    upstream = np.random.default_rng(2).normal(size=(1, 3, 4)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = models.GatedActivation()(x)
    gradient = tape.gradient(y, x, output_gradients=tf.constant(upstream)).numpy()
    f, g = x.numpy()[..., :4], x.numpy()[..., 4:]
    sigmoid = 1 / (1 + np.exp(-g))
    expected = np.concatenate([upstream * (1 - np.tanh(f) ** 2) * sigmoid,
                               upstream * np.tanh(f) * sigmoid * (1 - sigmoid)], axis=-1)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)


def test_importing_models_turns_on_tensorflows_reusing_cpu_allocator():
    """`import models` asks for TensorFlow's BFC allocator on the CPU (it keeps and reuses its memory; the default
    maps and unmaps pages for every large tensor), and a value the user set is kept."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = ("import models, tensorflow as tf; tf.zeros(1000) + 1\n"
             "try: print('stats', tf.config.experimental.get_memory_info('CPU:0')['peak'] > 0)\n"
             "except ValueError: print('no stats')")
    # Without the BFC allocator TensorFlow keeps no peak: it refuses the query on some CPUs (AVX2 EPYC) and
    # answers zero on others (the AMX Xeon).
    for setting, expected in ((None, {"stats True"}), ("0", {"no stats", "stats False"})):
        env = {key: value for key, value in os.environ.items() if key != "TF_CPU_ALLOCATOR_USE_BFC"}
        if setting is not None:
            env["TF_CPU_ALLOCATOR_USE_BFC"] = setting
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120)
        assert done.stdout.strip().splitlines()[-1] in expected, done.stderr[-2000:]


@pytest.mark.parametrize("distribution,channels", [("categorical", 16), ("logistic_mixture", 12), ("point", 1)])
def test_output_distribution(distribution, channels):
    run_layer_test(models.OutputDistribution, {"distribution": distribution, "num_classes": 16, "num_mixtures": 4},
                   (2, 5, channels), (2, 5, channels), 0)


def test_output_distribution_clamps_only_log_scales():
    x = np.full((1, 1, 6), -20.0, np.float32)  # 2 mixtures: logits, means, log scales
    y = np.asarray(models.OutputDistribution("logistic_mixture", num_mixtures=2)(x))
    assert y.ravel().tolist() == [-20.0, -20.0, -20.0, -20.0, -7.0, -7.0]
    with pytest.raises(ValueError, match="distribution must be one of"):
        models.OutputDistribution("gaussian")


def test_phase_shuffle():
    run_layer_test(PhaseShuffle, {"radius": 2, "seed": 3}, (4, 20, 3), (4, 20, 3), 0, call_kwargs={"training": True})
    x = np.arange(20, dtype=np.float32).reshape(1, 20, 1)
    np.testing.assert_array_equal(np.asarray(PhaseShuffle(2)(x, training=False)), x)  # identity at inference
    shifted = np.asarray(PhaseShuffle(2, seed=0)(np.repeat(x, 16, axis=0), training=True))[..., 0]
    offsets = {int(row[5] - 5) for row in shifted}
    assert offsets <= {-2, -1, 0, 1, 2} and len(offsets) > 1


def test_phase_shuffle_takes_each_example_and_channel_from_itself_and_its_gradient_adds_back():
    import tensorflow as tf

    shape = (8, 20, 3)
    # Every input value names its example, time and channel (exact in float32).
    b, t, c = np.meshgrid(*map(np.arange, shape), indexing="ij")
    named = (1000 * b + t + 100 * c).astype(np.float32)
    # A traced call with an unknown batch size; two layers with the same seed draw the same shifts on first use.
    layer = PhaseShuffle(2, seed=4)
    shuffle = tf.function(lambda x: layer(x, training=True), input_signature=[tf.TensorSpec((None, 20, 3))])
    taken = np.asarray(shuffle(named)).astype(int)
    np.testing.assert_array_equal(taken // 1000, b)  # from its own example
    np.testing.assert_array_equal(taken % 1000 // 100, c)  # and its own channel
    taken = taken % 100  # the input time each output was taken from
    shifts = t - taken
    np.testing.assert_array_equal(shifts[:, 2:-2], np.broadcast_to(shifts[:, 2:3, :1], (8, 16, 3)))  # one shift each
    assert set(shifts[:, 2, 0]) <= {-2, -1, 0, 1, 2} and len(set(shifts[:, 2, 0])) > 1

    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    weights = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(PhaseShuffle(2, seed=4)(x, training=True) * weights)
    expected = np.zeros_like(weights)
    np.add.at(expected, (b, taken, c), weights)  # each output's weight back where it was taken from
    np.testing.assert_allclose(np.asarray(tape.gradient(loss, x)), expected, rtol=1e-6, atol=1e-6)


def test_mu_law_embedding():
    from data.mulaw import mu_law_bin_edges, mu_law_encode

    run_layer_test(models.MuLawEmbedding, {"output_dim": 4, "num_classes": 256}, (2, 9, 1), (2, 9, 4), 1)
    layer = models.MuLawEmbedding(output_dim=3)
    edges = mu_law_bin_edges()
    below = np.nextafter(edges[edges != 0], -2.0)  # (below the 0 edge is a subnormal, which TensorFlow flushes to 0)
    x = np.concatenate([edges, below, [-1.5, 1.5, 0.0]]).astype(np.float32)  # every edge, and just below it
    rows = np.asarray(layer(x[None, :, None]))[0]
    np.testing.assert_array_equal(rows, layer.get_weights()[0][mu_law_encode(x)])


def test_class_embedding():
    run_layer_test(models.ClassEmbedding, {"class_names": ["a", "b", "c"], "output_dim": 4}, (2, 1), (2, 1, 4), 1,
                   input_dtype="int32")
    layer = models.ClassEmbedding(["a", "b"], output_dim=3)
    rows = np.asarray(layer(np.array([[1], [0]])))
    np.testing.assert_array_equal(rows[:, 0], layer.get_weights()[0][[1, 0]])
    with pytest.raises(ValueError, match="unique"):
        models.ClassEmbedding(["a", "a"])


def test_mel_features():
    from data.features import mel_settings

    settings = mel_settings(8000, n_mels=4).to_dict()
    run_layer_test(models.MelFeatures, {"settings": settings}, (2, 5, 4), (2, 5, 4), 0)
    scaled = np.asarray(models.MelFeatures(settings)(np.array([[[np.log(1e-5), 0.0, np.log(1e-5) / 2, 1.0]]],
                                                               np.float32)))
    np.testing.assert_allclose(scaled.ravel(), [-1.0, 1.0, 0.0, 1.0 + 2 / np.log(1e5)], rtol=1e-5)


def test_frame_upsampler():
    run_layer_test(models.FrameUpsampler, {"factor": 4}, (2, 5, 3), (2, 20, 3), 1)
    frames = np.array([[[0.0], [4.0], [8.0]]], np.float32)
    layer = models.FrameUpsampler(4)
    # It starts as linear interpolation between frame centres (frame k at step 4k), zeros beyond the ends.
    np.testing.assert_allclose(np.asarray(layer(frames))[0, :, 0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 4, 2], atol=1e-6)
    # Any kernel: phase j of frame k mixes frames k - 1, k and k + 1 with that phase's weights, per channel.
    kernel = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    layer.set_weights([kernel[:, :, :1]])
    x = np.random.default_rng(1).normal(size=(1, 6, 2)).astype(np.float32)
    wide = models.FrameUpsampler(4)
    wide.build(x.shape)
    wide.set_weights([kernel])
    out = np.asarray(wide(x))[0]
    padded = np.pad(x[0], ((1, 1), (0, 0)))
    for k in range(6):
        for j in range(4):
            expected = sum(kernel[j, o] * padded[k + o] for o in range(3))
            np.testing.assert_allclose(out[4 * k + j], expected, rtol=1e-5, atol=1e-6)


def test_crop_to_length():
    layer = models.CropToLength(offset=3)
    assert models.CropToLength.from_config(layer.get_config()).offset == 3
    features = np.arange(20, dtype=np.float32).reshape(1, 10, 2)
    cropped = np.asarray(layer([features, np.zeros((1, 4, 1), np.float32)]))
    np.testing.assert_array_equal(cropped, features[:, 3:7])
    symbolic = layer([keras.KerasTensor((None, None, 2)), keras.KerasTensor((None, None, 1))])
    assert symbolic.shape[-1] == 2
    mixed = models.CropToLength(offset=3, dtype="mixed_bfloat16")([features, np.zeros((1, 4, 1), np.float32)])
    assert keras.backend.standardize_dtype(mixed.dtype) == "bfloat16"


def test_gated_activation_adds_its_conditioning_before_both_halves():
    x = np.random.default_rng(2).normal(size=(2, 3, 8)).astype(np.float32)
    by_class = np.random.default_rng(3).normal(size=(2, 1, 8)).astype(np.float32)  # broadcast over time
    by_mel = np.random.default_rng(4).normal(size=(2, 3, 8)).astype(np.float32)
    total = x + by_class + by_mel
    expected = np.tanh(total[..., :4]) / (1 + np.exp(-total[..., 4:]))
    np.testing.assert_allclose(np.asarray(models.GatedActivation()([x, by_class, by_mel])), expected, rtol=1e-5,
                               atol=1e-6)
