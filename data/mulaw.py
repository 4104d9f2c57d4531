"""8-bit mu-law coding: 256 equal-width bins in the companded domain, decoded at bin centres.

librosa's `mu_compress(..., quantize=True)` reaches code -128 only at exactly -1.0, so its 256 codes are not all
usable; we use its companding curve and quantise with equal bins, which makes every code reachable, keeps the
round trip within half a step and leaves the mean bias near zero.
"""

import librosa
import numpy as np

QUANTIZATION_CHANNELS = 256


def _mu(channels):
    return float(channels - 1)


def mu_law_encode(signal, channels=QUANTIZATION_CHANNELS):
    """Maps floats in [-1, 1] to integer codes in [0, channels - 1] (int32)."""
    companded = librosa.mu_compress(np.clip(np.asarray(signal, dtype=np.float32), -1.0, 1.0),
                                    mu=_mu(channels), quantize=False)
    codes = np.floor((companded + 1.0) * (channels / 2.0))
    return np.clip(codes, 0, channels - 1).astype(np.int32)


def mu_law_decode(codes, channels=QUANTIZATION_CHANNELS):
    """Maps integer codes in [0, channels - 1] to the float32 amplitude at the centre of each bin."""
    return mu_law_table(channels)[np.asarray(codes, dtype=np.int64)]


def mu_law_table(channels=QUANTIZATION_CHANNELS):
    """The decoded amplitude of every code, as a float32 array of length `channels`."""
    centres = (np.arange(channels, dtype=np.float64) + 0.5) * (2.0 / channels) - 1.0
    return librosa.mu_expand(centres, mu=_mu(channels), quantize=False).astype(np.float32)


def mu_law_bin_edges(channels=QUANTIZATION_CHANNELS):
    """The `channels + 1` amplitudes that bound the bins; the outer two are -1 and 1."""
    edges = np.linspace(-1.0, 1.0, channels + 1)
    return librosa.mu_expand(edges, mu=_mu(channels), quantize=False).astype(np.float32)


def mu_law_round_trip(signal, channels=QUANTIZATION_CHANNELS):
    """What a mu-law model sees of `signal`: encoded then decoded."""
    return mu_law_decode(mu_law_encode(signal, channels), channels)
