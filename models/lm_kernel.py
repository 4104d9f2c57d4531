"""Compiled (numba) step of the token language model's cached decoder (`models.lm.CachedTokenLM`).

One call runs every block for every stream: layer norms, the query/key/value product, rotary embedding, attention
over the keys and values cached in each layer's ring, the output product, the feed-forward part and the logits,
with no Python in between. The NumPy path of `CachedTokenLM.step` computes the same in NumPy calls; at one stream
and these widths it spends most of its time calling NumPy, not computing. Products are written as rows of the
input times rows of the weight matrix, so that the inner loop runs along contiguous memory and vectorises.

Importing this module imports numba and compiles nothing; the first call compiles (and caches) the kernel.
"""

import math

import numba
import numpy as np

_JIT = dict(cache=True, fastmath=False, error_model="numpy")
# Streams are independent: with several, they are shared out among the cores.
_PARALLEL = dict(_JIT, parallel=True)


@numba.njit(inline="always", **_JIT)
def _layer_norm(x, gamma, beta, out):
    mean = 0.0
    for i in range(x.shape[0]):
        mean += x[i]
    mean /= x.shape[0]
    variance = 0.0
    for i in range(x.shape[0]):
        variance += (x[i] - mean) ** 2
    variance /= x.shape[0]
    scale = 1.0 / math.sqrt(variance + 1e-5)
    for i in range(x.shape[0]):
        out[i] = np.float32((x[i] - mean) * scale) * gamma[i] + beta[i]


@numba.njit(inline="always", **_JIT)
def _product(x, kernel, bias, out):
    # out = x @ kernel + bias, row by row of the kernel: the inner loop is contiguous.
    out[:] = bias
    for i in range(kernel.shape[0]):
        value = x[i]
        for j in range(kernel.shape[1]):
            out[j] += value * kernel[i, j]


def _step(x, position, cos, sin, attention_norms, qkv_kernels, qkv_biases, output_kernels, output_biases,
         ffn_norms, inner_kernels, inner_biases, outer_kernels, outer_biases, final_norm, logits_kernel,
         logits_bias, keys, values, logits):
    """Advances every stream by one token (`step` compiles this twice: for one stream, and in parallel for more).

    Args:
        x: `(streams, width)` float32 embeddings of the tokens fed; overwritten.
        position: the tokens' position (0 for the first).
        cos, sin: `(head_dim // 2,)` float32 rotary angles of `position`.
        attention_norms, ffn_norms: `(layers, 2, width)` gamma and beta of each block's norms.
        qkv_kernels, qkv_biases, output_kernels, output_biases: each block's attention weights.
        inner_kernels, inner_biases, outer_kernels, outer_biases: each block's feed-forward weights.
        final_norm: `(2, width)`.
        logits_kernel, logits_bias: the output layer.
        keys: `(layers, streams, heads, head_dim, context)` float32 rings (transposed: a query's scores are
            then contiguous products); values: `(layers, streams, heads, context, head_dim)`. This token's go to
            slot `position % context`.
        logits: `(streams, vocabulary)` float32 output.
    """
    layers, streams, heads, context, head_dim = values.shape
    width = x.shape[1]
    half = head_dim // 2
    slot = position % context
    seen = min(position + 1, context)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for s in numba.prange(streams):
        h = np.empty(width, np.float32)
        qkv = np.empty(qkv_kernels.shape[2], np.float32)
        mixed = np.empty(heads * head_dim, np.float32)
        attended = np.empty(width, np.float32)
        inner = np.empty(inner_kernels.shape[2], np.float32)
        scores = np.empty(context, np.float32)
        query = np.empty(head_dim, np.float32)
        final = np.empty(width, np.float32)
        for layer in range(layers):
            _layer_norm(x[s], attention_norms[layer, 0], attention_norms[layer, 1], h)
            _product(h, qkv_kernels[layer], qkv_biases[layer], qkv)
            inner_width = heads * head_dim
            for head in range(heads):
                base = head * head_dim
                for i in range(half):
                    q1, q2 = qkv[base + i], qkv[base + half + i]
                    query[i] = q1 * cos[i] - q2 * sin[i]
                    query[half + i] = q2 * cos[i] + q1 * sin[i]
                    k1, k2 = qkv[inner_width + base + i], qkv[inner_width + base + half + i]
                    keys[layer, s, head, i, slot] = k1 * cos[i] - k2 * sin[i]
                    keys[layer, s, head, half + i, slot] = k2 * cos[i] + k1 * sin[i]
                for i in range(head_dim):
                    values[layer, s, head, slot, i] = qkv[2 * inner_width + base + i]
                for c in range(seen):
                    scores[c] = 0.0
                for i in range(head_dim):
                    value = query[i] * scale
                    for c in range(seen):
                        scores[c] += value * keys[layer, s, head, i, c]
                top = -np.inf
                for c in range(seen):
                    top = max(top, scores[c])
                norm = np.float32(0.0)
                for c in range(seen):
                    scores[c] = np.exp(scores[c] - top)
                    norm += scores[c]
                for i in range(head_dim):
                    mixed[base + i] = 0.0
                for c in range(seen):
                    weight = scores[c] / norm
                    for i in range(head_dim):
                        mixed[base + i] += weight * values[layer, s, head, c, i]
            _product(mixed, output_kernels[layer], output_biases[layer], attended)
            for i in range(width):
                x[s, i] += attended[i]
            _layer_norm(x[s], ffn_norms[layer, 0], ffn_norms[layer, 1], h)
            _product(h, inner_kernels[layer], inner_biases[layer], inner)
            for j in range(inner.shape[0]):
                inner[j] = np.float32(0.5 * inner[j] * (1.0 + math.erf(inner[j] / math.sqrt(2.0))))
            _product(inner, outer_kernels[layer], outer_biases[layer], attended)
            for i in range(width):
                x[s, i] += attended[i]
        _layer_norm(x[s], final_norm[0], final_norm[1], final)
        _product(final, logits_kernel, logits_bias, logits[s])


_serial_step = numba.njit(**_JIT)(_step)
_parallel_step = numba.njit(**_PARALLEL)(_step)


def step(x, *args):
    """`_step` on one core for one stream (no threads to wake per token), on all cores for several."""
    return (_serial_step if x.shape[0] == 1 else _parallel_step)(x, *args)
