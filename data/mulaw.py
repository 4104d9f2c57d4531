"""8-bit mu-law coding: 256 equal-width bins in the companded domain, decoded at bin centres.

librosa's `mu_compress(..., quantize=True)` reaches code -128 only at exactly -1.0, so its 256 codes are not all
usable; we use its companding curve and quantise with equal bins, which makes every code reachable, keeps the
round trip within half a step and leaves the mean bias near zero.

The curve is librosa's `mu_expand` (unquantised), written out here in NumPy rather than called: importing
librosa's audio module imports numba, and loading a model or generating on the portable path must not need
numba. A test holds the two equal.

One definition serves every place that encodes: the bin edges (`mu_law_bin_edges`, the expansion of equally
spaced companded values) and the rule that a sample's code is the bin that holds it,
`searchsorted(edges, x, side="right") - 1` clipped to the codes. NumPy (`mu_law_encode`), the Keras graph
(`models.layers.mu_law_codes`) and the compiled generation kernel all apply that rule to that array, so
they agree on every sample, bin edges included.
"""

import functools

import numpy as np

QUANTIZATION_CHANNELS = 256


def _mu(channels):
    return float(channels - 1)


def mu_law_expand(companded, channels=QUANTIZATION_CHANNELS):
    """librosa's `mu_expand(companded, mu=channels - 1, quantize=False)`: companded values in [-1, 1] back to
    amplitudes."""
    companded = np.asarray(companded)
    mu = _mu(channels)
    return np.sign(companded) / mu * (np.power(1 + mu, np.abs(companded)) - 1)


@functools.lru_cache(maxsize=8)
def _edges(channels):
    edges = np.linspace(-1.0, 1.0, channels + 1)
    edges = mu_law_expand(edges, channels).astype(np.float32)
    edges.setflags(write=False)
    return edges


@functools.lru_cache(maxsize=8)
def _table(channels):
    centres = (np.arange(channels, dtype=np.float64) + 0.5) * (2.0 / channels) - 1.0
    table = mu_law_expand(centres, channels).astype(np.float32)
    table.setflags(write=False)
    return table


def mu_law_bin_edges(channels=QUANTIZATION_CHANNELS):
    """The `channels + 1` float32 amplitudes that bound the bins; the outer two are -1 and 1.

    Code `c` holds the samples `x` with `edges[c] <= x < edges[c + 1]` (the last code also holds 1.0).
    """
    return _edges(int(channels)).copy()


def mu_law_table(channels=QUANTIZATION_CHANNELS):
    """The decoded amplitude of every code, as a float32 array of length `channels`."""
    return _table(int(channels)).copy()


def mu_law_encode(signal, channels=QUANTIZATION_CHANNELS):
    """Maps floats in [-1, 1] to integer codes in [0, channels - 1] (int32); values outside are clipped."""
    signal = np.asarray(signal, dtype=np.float32)
    codes = np.searchsorted(_edges(int(channels)), signal, side="right") - 1
    return np.clip(codes, 0, channels - 1).astype(np.int32)


def mu_law_decode(codes, channels=QUANTIZATION_CHANNELS):
    """Maps integer codes in [0, channels - 1] to the float32 amplitude at the centre of each bin."""
    return _table(int(channels))[np.asarray(codes, dtype=np.int64)]


def mu_law_round_trip(signal, channels=QUANTIZATION_CHANNELS):
    """What a mu-law model sees of `signal`: encoded then decoded."""
    return mu_law_decode(mu_law_encode(signal, channels), channels)
