import numpy as np
import pytest

import models
import models.generation
from tests.conftest import tone

HEADS = [("classifier", None), ("regressor", "logistic-mixture"), ("regressor", "mse")]


@pytest.mark.parametrize("head,loss", HEADS)
@pytest.mark.parametrize("primed", [False, True])
def test_temperature_zero_equals_naive_full_history_loop(tiny_wavenet, head, loss, primed):
    model = tiny_wavenet(head, loss)
    prime = tone(0.01, frequencies=(300,)) if primed else None  # 80 samples: longer than the field (15)
    fast = models.generate(model, 40, num_streams=2, temperature=0, prime=prime)
    naive = models.generate_naive(model, 40, num_streams=2, temperature=0, prime=prime)
    np.testing.assert_allclose(fast, naive, atol=1e-5)
    assert fast.shape == (2, 40) and fast.dtype == np.float32
    assert np.all(np.abs(fast) <= 1.0)


@pytest.mark.parametrize("head,loss", HEADS[:2])
def test_seeded_sampling_is_repeatable_and_matches_naive(tiny_wavenet, head, loss):
    model = tiny_wavenet(head, loss)
    a = models.generate(model, 50, num_streams=3, temperature=1.0, seed=7)
    b = models.generate(model, 50, num_streams=3, temperature=1.0, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, models.generate_naive(model, 50, num_streams=3, temperature=1.0, seed=7),
                               atol=1e-5)
    assert not np.array_equal(a, models.generate(model, 50, num_streams=3, temperature=1.0, seed=8))
    assert not np.array_equal(a[0], a[1])  # streams are independent


def test_kernel_size_three_and_wide_input_convolution(tiny_wavenet):
    model = tiny_wavenet(kernel_size=3, input_kernel_size=4)
    prime = tone(0.02, frequencies=(500,))
    np.testing.assert_allclose(models.generate(model, 30, temperature=0, prime=prime),
                               models.generate_naive(model, 30, temperature=0, prime=prime), atol=1e-5)


def test_per_stream_primes_and_chunks(tiny_wavenet):
    model = tiny_wavenet()
    primes = np.stack([tone(0.01, frequencies=(200,)), tone(0.01, frequencies=(900,))])
    whole = models.generate(model, 25, num_streams=2, temperature=0, prime=primes)
    chunks = list(models.generate_chunks(model, 25, num_streams=2, temperature=0, prime=primes, chunk_size=10))
    assert [c.shape[1] for c in chunks] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)
    np.testing.assert_allclose(whole, models.generate_naive(model, 25, num_streams=2, temperature=0, prime=primes),
                               atol=1e-5)


def test_bad_arguments(tiny_wavenet):
    model = tiny_wavenet()
    with pytest.raises(ValueError, match="temperature"):
        models.generate(model, 5, temperature=-1)
    with pytest.raises(ValueError, match="prime"):
        models.generate(model, 5, num_streams=2, prime=np.zeros((3, 10), np.float32))
    assert models.generate(model, 0).shape == (1, 0)


@pytest.mark.parametrize("head,loss", HEADS)
def test_numpy_fallback_gives_the_same_audio_as_the_compiled_kernel(tiny_wavenet, head, loss):
    model = tiny_wavenet(head, loss, kernel_size=3, input_kernel_size=2)
    prime = tone(0.01, frequencies=(300,))
    for temperature, seed in ((0.0, None), (1.0, 11)):
        compiled = models.generate(model, 60, num_streams=3, temperature=temperature, prime=prime, seed=seed,
                                   engine="numba")
        portable = models.generate(model, 60, num_streams=3, temperature=temperature, prime=prime, seed=seed,
                                   engine="numpy")
        np.testing.assert_allclose(portable, compiled, atol=1e-5)
        assert np.abs(compiled).max() > 0


@pytest.mark.parametrize("head,loss", HEADS)
def test_steps_split_across_threads_give_the_same_audio(tiny_wavenet, head, loss):
    """One stream's step shared by 2 or 3 threads (each a share of every layer's columns, meeting at a spin
    barrier per layer) gives what the full-history loop gives, with and without a prime, sampled or not."""
    model = tiny_wavenet(head, loss, kernel_size=3, input_kernel_size=2)
    prime = tone(0.01, frequencies=(300,))
    for streams, temperature, seed, primed in ((1, 0.0, None, True), (1, 1.0, 3, False), (3, 1.0, 4, True)):
        given = dict(num_streams=streams, temperature=temperature, seed=seed, prime=prime if primed else None)
        naive = models.generate_naive(model, 40, **given)
        for cores in (2, 3):
            net = models.IncrementalWaveNet(model, engine="numba", split_cores=cores)
            assert net._run.cores(streams) == cores
            split = np.concatenate(list(models.generate_chunks(net, 40, chunk_size=15, **given)), axis=1)
            np.testing.assert_allclose(split, naive, atol=1e-5)
        assert np.abs(naive).max() > 0


@pytest.mark.parametrize("head,loss", HEADS)
def test_an_embedded_input_generates_exactly_on_every_path(tiny_wavenet, head, loss):
    """The embedded mu-law input (`build_wavenet(input_embedding=True)`): the compiled kernel (blocks of streams and
    the split step), NumPy and bfloat16 all give what the full-history loop gives."""
    model = tiny_wavenet(head, loss, kernel_size=3, input_embedding=True)
    spec = models.wavenet_spec(model)
    assert spec.input_embedding and spec.input_kernel_size == 1 and spec.residual_channels == 8
    prime = tone(0.01, frequencies=(300,))
    for streams, temperature, seed, primed in ((1, 0.0, None, True), (3, 1.0, 4, True), (2, 1.0, 5, False)):
        given = dict(num_streams=streams, temperature=temperature, seed=seed, prime=prime if primed else None)
        naive = models.generate_naive(model, 40, **given)
        assert np.abs(naive).max() > 0
        for engine, cores in (("numba", 1), ("numba", 2), ("numpy", None)):
            net = models.IncrementalWaveNet(model, engine=engine, split_cores=cores)
            np.testing.assert_allclose(models.generate(net, 40, **given), naive, atol=1e-5, err_msg=engine)
        rounded = models.generate(model, 40, precision="bfloat16", **given)
        np.testing.assert_allclose(rounded, models.generate_naive(models.generation.reduced_model(model, "bfloat16"),
                                                                  40, **given), atol=1e-5)


@pytest.mark.parametrize("head,loss", HEADS[:2])
def test_bfloat16_weights_generate_what_the_rounded_model_does(tiny_wavenet, head, loss):
    model = tiny_wavenet(head, loss, kernel_size=3, input_kernel_size=2)
    reference = models.generation.reduced_model(model, "bfloat16")
    kernel = model.get_layer(models.wavenet_spec(model).blocks[0].name("dilated")).get_weights()[0]
    rounded = reference.get_layer(models.wavenet_spec(model).blocks[0].name("dilated")).get_weights()[0]
    assert 0 < np.abs(rounded - kernel).max() <= 2 ** -8 * np.abs(kernel).max()
    prime = tone(0.01, frequencies=(300,))
    for streams, cores in ((1, 2), (3, 1)):  # the split step and blocks of streams
        given = dict(num_streams=streams, temperature=1.0, seed=5, prime=prime)
        net = models.IncrementalWaveNet(model, engine="numba", split_cores=cores, precision="bfloat16")
        assert net.weights.gate_w.dtype == np.uint16 and net.weights.gate_b.dtype == np.float32
        fast = models.generate(net, 40, **given)
        np.testing.assert_allclose(fast, models.generate_naive(reference, 40, **given), atol=1e-5)
        portable = models.generate(model, 40, engine="numpy", precision="bfloat16", **given)
        np.testing.assert_allclose(portable, fast, atol=1e-5)
    with pytest.raises(ValueError, match="precision must be one of"):
        models.generate(model, 5, precision="float16")


def test_cores_per_stream_follow_the_thread_count(tiny_wavenet, monkeypatch):
    from models import kernels

    model = models.build_wavenet(stacks=1, layers=2, residual_channels=64, skip_channels=16)
    runner = models.IncrementalWaveNet(model, engine="numba")._run
    monkeypatch.setattr(kernels.numba, "get_num_threads", lambda: 2)
    assert [runner.cores(streams) for streams in (1, 2, 8)] == [2, 1, 1]  # one stream on both cores
    monkeypatch.setattr(kernels.numba, "get_num_threads", lambda: 8)
    assert [runner.cores(streams) for streams in (1, 7, 8)] == [4, 4, 1]  # at most one per 16 channels
    monkeypatch.setattr(kernels.numba, "get_num_threads", lambda: 1)
    assert runner.cores(1) == 1
    tiny = models.IncrementalWaveNet(tiny_wavenet(), engine="numba")._run  # 8 channels: no split
    monkeypatch.setattr(kernels.numba, "get_num_threads", lambda: 2)
    assert tiny.cores(1) == 1


def test_engine_is_chosen_by_argument_or_environment(tiny_wavenet, monkeypatch):
    model = tiny_wavenet()
    assert models.IncrementalWaveNet(model, engine="numpy").engine == "numpy"
    assert models.IncrementalWaveNet(model, engine="numba").engine == "numba"
    monkeypatch.setenv("WAVEGEN_ENGINE", "numpy")
    assert models.IncrementalWaveNet(model).engine == "numpy"
    monkeypatch.setenv("WAVEGEN_ENGINE", "fast")
    with pytest.raises(ValueError, match="engine must be one of"):
        models.IncrementalWaveNet(model)


def test_kernel_mu_law_matches_data_mulaw_on_every_code_and_edge():
    from data.mulaw import mu_law_bin_edges, mu_law_encode, mu_law_table
    from models import kernels

    edges, table = mu_law_bin_edges(), mu_law_table()
    # Every bin's centre, both its edges and the floats right beside them, and a dense sweep.
    values = np.concatenate([table, edges, np.nextafter(edges, np.float32(-2)), np.nextafter(edges, np.float32(2)),
                             np.linspace(-1, 1, 20_001, dtype=np.float32), [-1.5, 1.5]]).astype(np.float32)
    expected = mu_law_encode(values)
    assert set(expected.tolist()) == set(range(256))
    compiled = np.array([kernels.mu_law_code(float(v), edges) for v in values])
    np.testing.assert_array_equal(compiled, expected)
    from models.distributions import mu_law_codes

    normal = np.abs(values) >= np.finfo(np.float32).tiny  # TensorFlow's CPU kernels flush subnormals to zero
    np.testing.assert_array_equal(np.asarray(mu_law_codes(values[normal])), expected[normal])


def test_packing_follows_the_spec_not_layer_name_suffixes(tiny_wavenet):
    """Packed weights come from the layers the spec names, taps and gate halves where the kernel reads them."""
    model = tiny_wavenet()
    spec = models.wavenet_spec(model)
    weights = models.pack_weights(model)
    assert weights.gate_w.shape[0] == len(spec.blocks) == 6
    np.testing.assert_array_equal(weights.dilations, [1, 2, 4, 1, 2, 4])
    first = model.get_layer("s0_l0_dilated").get_weights()[0]  # (taps, 8, 16): filters 0-7, gates 8-15
    np.testing.assert_array_equal(weights.gate_w[0][:8, :8], first[0, :, :8])
    np.testing.assert_array_equal(weights.gate_w[0][16:24, 16:24], first[1, :, 8:])
    assert weights.num_outputs == 256 and weights.in_w.shape == (1, 16)  # 8 residual channels padded to 16


@pytest.mark.parametrize("prime,message", [
    (np.zeros((1, 50, 2), np.float32), "prime must be"),
    (np.zeros((3, 50), np.float32), "prime must be"),
    (np.zeros((2, 0), np.float32), "prime must be"),
    (np.array([0.1, np.nan], np.float32), "NaN"),
    (np.array(["a", "b"]), "audio samples"),
])
def test_bad_primes_are_clear_value_errors(tiny_wavenet, prime, message):
    model = tiny_wavenet()
    with pytest.raises(ValueError, match=message):
        models.generate(model, 5, num_streams=2, prime=prime)


def test_prime_conversions(tiny_wavenet):
    """`(streams, time, 1)` primes are squeezed; integer PCM is scaled by its full scale, as read from a file."""
    model = tiny_wavenet()
    floats = tone(0.01, frequencies=(300,))
    pcm = np.round(floats * 32768).astype(np.int16)
    reference = models.generate(model, 20, num_streams=2, temperature=0, prime=pcm.astype(np.float32) / 32768)
    np.testing.assert_array_equal(models.generate(model, 20, num_streams=2, temperature=0, prime=pcm), reference)
    stacked = np.stack([floats, floats])[..., None]
    np.testing.assert_array_equal(models.generate(model, 20, num_streams=2, temperature=0, prime=stacked),
                                  models.generate(model, 20, num_streams=2, temperature=0, prime=floats))
    uint8 = np.array([0, 128, 255], np.uint8)  # 8-bit WAV: 128 is silence, 255 is 127/128 of full scale
    from data.mulaw import mu_law_round_trip

    first = models.IncrementalWaveNet(model).reset(1, uint8)[0]
    assert first == mu_law_round_trip(np.array([127 / 128], np.float32))[0]


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.5, "hot"])
def test_temperature_must_be_finite_and_non_negative(tiny_wavenet, temperature):
    with pytest.raises(ValueError, match="temperature"):
        models.generate(tiny_wavenet(), 5, temperature=temperature)


@pytest.mark.parametrize("num_samples,num_streams", [(-1, 1), (2.5, 1), (5, 0), (5, 1.5)])
def test_lengths_and_stream_counts_must_be_whole(tiny_wavenet, num_samples, num_streams):
    with pytest.raises(ValueError, match="must be a whole number"):
        models.generate(tiny_wavenet(), num_samples, num_streams=num_streams)
