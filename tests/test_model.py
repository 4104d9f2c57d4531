import numpy as np
import pytest

import models
from tests.conftest import run_script

HEADS = [("classifier", None, 256), ("regressor", "logistic-mixture", 30), ("regressor", "mse", 1)]


@pytest.mark.parametrize("head,loss,channels", HEADS)
def test_output_shape_any_length(tiny_wavenet, head, loss, channels):
    model = tiny_wavenet(head, loss)
    for length in (1, 37, 500):
        assert model(np.zeros((2, length, 1), np.float32)).shape == (2, length, channels)


@pytest.mark.parametrize("head,loss,channels", HEADS)
def test_causality(tiny_wavenet, head, loss, channels):
    model = tiny_wavenet(head, loss)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 200, 1)).astype(np.float32)
    changed = x.copy()
    t0 = 120
    changed[:, t0:] = rng.uniform(-1, 1, changed[:, t0:].shape)
    a, b = np.asarray(model(x)), np.asarray(model(changed))
    np.testing.assert_array_equal(a[:, :t0], b[:, :t0])  # the past never sees the future
    assert not np.allclose(a[:, t0:], b[:, t0:])


@pytest.mark.parametrize("kernel_size,dilation,length", [(2, 1, 10), (2, 4, 10), (3, 2, 9), (2, 16, 5),
                                                         (1, 8, 6), (3, 8, 12)])
def test_causal_conv_equals_keras_conv1d_with_its_gradients(kernel_size, dilation, length):
    """The matrix-product convolution and its hand-written gradient against Keras' causal Conv1D, including
    dilations longer than the signal."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(kernel_size * 100 + dilation)
    x = tf.constant(rng.standard_normal((2, length, 3)), tf.float32)
    upstream = tf.constant(rng.standard_normal((2, length, 5)), tf.float32)
    ours = models.CausalConv1D(5, kernel_size, dilation_rate=dilation)
    reference = keras.layers.Conv1D(5, kernel_size, dilation_rate=dilation, padding="causal")
    ours.build(x.shape)
    reference.build(x.shape)
    reference.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in reference.get_weights()])
    ours.set_weights(reference.get_weights())
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    for mine, theirs, what in zip(*results, ("output", "input gradient", "kernel gradient", "bias gradient")):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5, err_msg=what)
    assert ours.get_config()["dilation_rate"] == dilation


def test_receptive_field_formula_and_default():
    assert models.receptive_field() == 2047  # 2 x 10 layers, as the original 2048-sample frame
    default = models.build_wavenet(sample_rate=8000)
    spec = models.wavenet_spec(default)
    assert spec.receptive_field == 2047 and spec.dilations == tuple(2 ** i for i in range(10)) * 2
    assert models.receptive_field(stacks=3, layers=4, kernel_size=3, input_kernel_size=2) == 1 + 1 + 3 * 2 * 15


@pytest.mark.parametrize("input_kernel_size,input_embedding", [(1, False), (3, False), (1, True)])
def test_receptive_field_is_exact(tiny_wavenet, input_kernel_size, input_embedding):
    model = tiny_wavenet(input_kernel_size=input_kernel_size, input_embedding=input_embedding)
    rf = models.wavenet_spec(model).receptive_field
    assert rf == models.receptive_field(2, 3, 2, input_kernel_size)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (1, 100, 1)).astype(np.float32)
    t = 80
    base = np.asarray(model(x))[0, t]
    inside, outside = x.copy(), x.copy()
    inside[0, t - rf + 1] += 0.5   # oldest sample output t can see
    outside[0, t - rf] += 0.5      # one further back
    assert not np.allclose(np.asarray(model(inside))[0, t], base)
    np.testing.assert_array_equal(np.asarray(model(outside))[0, t], base)


def test_heads_and_losses_are_checked():
    with pytest.raises(ValueError, match="does not fit"):
        models.build_wavenet("classifier", "mse")
    with pytest.raises(ValueError, match="head"):
        models.build_wavenet("mixture")


@pytest.mark.parametrize("head,loss,channels", HEADS)
def test_keras_round_trip_in_a_fresh_process(tmp_path, tiny_wavenet, head, loss, channels):
    model = tiny_wavenet(head, loss)
    distribution = models.wavenet_spec(model).distribution
    model.compile(optimizer="adam", loss=models.loss_for(distribution), metrics=[models.BitsPerSample(distribution)])
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", np.asarray(model(x)))
    script = tmp_path / "load.py"
    script.write_text(
        "import sys, numpy as np, keras\n"
        "import models\n"
        f"m = keras.saving.load_model({str(path)!r}, safe_mode=True)\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); e = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "np.testing.assert_allclose(np.asarray(m(x)), e, rtol=1e-5, atol=1e-5)\n"
        "s = models.wavenet_spec(m)\n"
        "print('OK', s.sample_rate, s.distribution, s.receptive_field, m.loss.__class__.__name__)\n")
    result = run_script(script, cwd=tmp_path)  # an absolute path: ROOT / script is the script itself
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:4] == ["OK", "8000", distribution, "15"]


def test_categorical_bits_of_a_uniform_guess_is_eight():
    logits = np.zeros((2, 5, 256), np.float32)
    codes = np.random.default_rng(0).integers(0, 256, (2, 5))
    np.testing.assert_allclose(np.asarray(models.bits_per_sample("categorical", codes, logits)), 8.0, rtol=1e-6)


def test_logistic_mixture_bin_masses_sum_to_one():
    from data.mulaw import mu_law_decode

    rng = np.random.default_rng(0)
    params = np.concatenate([rng.normal(0, 1, 10), rng.uniform(-0.5, 0.5, 10), rng.uniform(-6, -2, 10)])
    centres = mu_law_decode(np.arange(256))[None, :, None]  # one target per bin
    tiled = np.tile(params.astype(np.float32), (1, 256, 1))
    bits = np.asarray(models.bits_per_sample("logistic_mixture", centres, tiled))
    assert np.all(np.isfinite(bits))
    np.testing.assert_allclose(np.sum(2.0 ** -bits), 1.0, rtol=1e-3)


def test_losses_prefer_the_right_answer():
    target = np.full((1, 4, 1), 0.3, np.float32)
    good = np.zeros((1, 4, 30), np.float32)
    good[..., 10:20], good[..., 20:] = 0.3, -5.0
    bad = good.copy()
    bad[..., 10:20] = -0.6
    loss = models.DiscretizedLogisticMixtureLoss()
    assert float(loss(target, good)) < float(loss(target, bad))
    point_bits = np.asarray(models.bits_per_sample("point", target + 0.01, np.full((1, 4, 1), 0.3, np.float32)))
    assert np.all(np.isfinite(point_bits))
