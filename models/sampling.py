"""Drawing the next sample from a WaveNet's output, for a batch of streams at once (NumPy).

The compiled kernel (`models.kernels.sample`) does the same per stream; both take the same uniform numbers
(drawn beforehand by NumPy's seeded Generator), so every generation path gives the same audio for a seed.
"""

import numpy as np

from models.layers import floor_log_scale

CATEGORICAL, LOGISTIC_MIXTURE, POINT = 0, 1, 2
DISTRIBUTION_CODES = {"categorical": CATEGORICAL, "logistic_mixture": LOGISTIC_MIXTURE, "point": POINT}
# Uniform numbers drawn per stream and step: the component (or class), then the logistic noise.
DRAWS_PER_STEP = 2
# The logistic noise's uniform is kept this far from 0 and 1, so its logit stays finite.
UNIFORM_MARGIN = 1e-5


def categorical(logits, temperature, uniforms):
    """Indices drawn from `softmax(logits / temperature)` per row by inverse CDF; argmax at temperature 0.

    Args:
        logits: `(streams, classes)`.
        temperature: >= 0.
        uniforms: `(streams,)` in [0, 1).
    """
    best = np.argmax(logits, axis=1)
    if temperature == 0.0:
        return best
    scaled = logits.astype(np.float64) / temperature
    top = scaled[np.arange(len(scaled)), best]
    cumulative = np.cumsum(np.exp(scaled - top[:, None]), axis=1)  # sequential sums, as the kernel adds
    draw = uniforms * cumulative[:, -1]
    return np.minimum((cumulative < draw[:, None]).sum(axis=1), logits.shape[1] - 1)


def sample(params, temperature, uniforms, distribution, mixtures, edges, table):
    """The next sample of every stream from its distribution parameters.

    Args:
        params: `(streams, channels)` the model's output for this step.
        temperature: 0 for the most likely value.
        uniforms: `(streams, DRAWS_PER_STEP)` uniform [0, 1) numbers.
        distribution: CATEGORICAL, LOGISTIC_MIXTURE or POINT.
        mixtures: logistic components.
        edges: `data.mulaw.mu_law_bin_edges`.
        table: `data.mulaw.mu_law_table`, float64.

    Returns:
        `(values written out, values fed back to the model)`, float64 `(streams,)`; the model is trained on
        mu-law round-tripped input, so that is what it is fed.
    """
    rows = np.arange(len(params))
    if distribution == CATEGORICAL:
        value = table[categorical(params, temperature, uniforms[:, 0])]
        return value, value
    if distribution == LOGISTIC_MIXTURE:
        k = categorical(params[:, :mixtures], temperature, uniforms[:, 0])
        value = params[rows, mixtures + k].astype(np.float64)
        if temperature > 0.0:
            u = UNIFORM_MARGIN + (1.0 - 2 * UNIFORM_MARGIN) * uniforms[:, 1]
            log_scale = floor_log_scale(params[rows, 2 * mixtures + k].astype(np.float64), np.maximum)
            value = value + np.exp(log_scale) * temperature * (np.log(u) - np.log1p(-u))
    else:
        value = params[:, 0].astype(np.float64)
    value = np.clip(value, -1.0, 1.0)
    codes = np.clip(np.searchsorted(edges, value.astype(np.float32), side="right") - 1, 0, len(table) - 1)
    return value, table[codes]


def filtered_categorical(logits, temperature, uniforms, top_k=0, top_p=1.0):
    """`categorical` after keeping, per row, only the `top_k` largest logits (0: all) and the smallest set of most
    likely classes whose probabilities (at `temperature`) add up to at least `top_p` (1: all): top-k and nucleus
    sampling. Temperature 0 takes the argmax.

    Args:
        logits: `(streams, classes)`.
        temperature: >= 0.
        uniforms: `(streams,)` in [0, 1).
        top_k: classes kept per row; 0 keeps all.
        top_p: probability mass kept per row, in (0, 1].
    """
    logits = np.asarray(logits, np.float64)
    if temperature == 0.0:
        return np.argmax(logits, axis=1)
    scaled = logits / temperature
    if 0 < top_k < scaled.shape[1]:
        kth = np.partition(scaled, -top_k, axis=1)[:, -top_k]
        scaled = np.where(scaled < kth[:, None], -np.inf, scaled)
    if top_p < 1.0:
        ordered = -np.sort(-scaled, axis=1)
        probabilities = np.exp(ordered - ordered[:, :1])
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        # Keep a class while the mass of the classes before it is below top_p (the first is always kept).
        before = np.cumsum(probabilities, axis=1) - probabilities
        kept = np.maximum((before < top_p).sum(axis=1), 1)
        threshold = ordered[np.arange(len(ordered)), kept - 1]
        scaled = np.where(scaled < threshold[:, None], -np.inf, scaled)
    return categorical(scaled, 1.0, uniforms)
