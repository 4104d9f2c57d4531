import numpy as np
import pytest

from data.mulaw import mu_law_bin_edges, mu_law_decode, mu_law_encode, mu_law_round_trip, mu_law_table


def test_every_code_is_reachable_and_in_range():
    x = np.linspace(-1, 1, 100_001, dtype=np.float32)
    codes = mu_law_encode(x)
    assert codes.min() == 0 and codes.max() == 255
    assert len(np.unique(codes)) == 256


def test_round_trip_stays_inside_the_bin():
    x = np.random.default_rng(0).uniform(-1, 1, 200_000).astype(np.float32)
    codes = mu_law_encode(x)
    edges = mu_law_bin_edges()
    assert np.all(edges[codes] <= x + 1e-6) and np.all(x <= edges[codes + 1] + 1e-6)
    decoded = mu_law_round_trip(x)
    assert np.all((edges[codes] <= decoded) & (decoded <= edges[codes + 1]))  # decoded inside the same bin
    step = edges[codes + 1] - edges[codes]
    assert np.all(np.abs(decoded - x) <= step)  # so within one step


@pytest.mark.parametrize("draw", ["uniform", "laplace", "quiet"])
def test_mean_bias_is_tiny(draw):
    rng = np.random.default_rng(1)
    x = {"uniform": rng.uniform(-1, 1, 500_000), "laplace": np.clip(rng.laplace(0, 0.1, 500_000), -1, 1),
         "quiet": rng.normal(0, 0.01, 500_000)}[draw].astype(np.float32)
    assert abs(float(np.mean(mu_law_round_trip(x) - x))) < 1e-3


def test_decode_then_encode_is_identity_and_table_is_symmetric():
    codes = np.arange(256)
    assert np.array_equal(mu_law_encode(mu_law_decode(codes)), codes)
    table = mu_law_table()
    np.testing.assert_allclose(table, -table[::-1], atol=1e-7)
    assert np.all(np.diff(table) > 0)


def test_graph_encoder_matches_numpy():
    from models.distributions import mu_law_codes

    x = np.random.default_rng(2).uniform(-1, 1, 50_000).astype(np.float32)
    assert np.array_equal(np.asarray(mu_law_codes(x)), mu_law_encode(x))


@pytest.mark.parametrize("channels", [256, 16])
def test_expansion_is_librosas(channels):
    import librosa

    from data.mulaw import mu_law_expand

    companded = np.linspace(-1, 1, 1001)
    np.testing.assert_array_equal(mu_law_expand(companded, channels),
                                  librosa.mu_expand(companded, mu=channels - 1.0, quantize=False))
    # and encoding inverts librosa's compression: the companded value of each code lies inside its bin
    codes = mu_law_encode(mu_law_decode(np.arange(channels), channels), channels)
    assert np.array_equal(codes, np.arange(channels))
    x = np.random.default_rng(3).uniform(-1, 1, 10_000).astype(np.float32)
    companded = librosa.mu_compress(x, mu=channels - 1.0, quantize=False)
    expected = np.clip(np.floor((companded + 1.0) * channels / 2.0), 0, channels - 1)
    assert np.mean(mu_law_encode(x, channels) == expected) > 0.999  # equal but for rounding at bin edges
