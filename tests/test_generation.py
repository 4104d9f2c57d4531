import numpy as np
import pytest

import models
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
