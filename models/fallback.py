"""The portable generation path: the compiled kernel's loop in NumPy, with BLAS products.

Used when the compiled kernel (`models.kernels`, numba) cannot be imported or built, or when asked for
(`engine="numpy"`, or `WAVEGEN_ENGINE=numpy`). Same packed weights, same queues, same gate, clamp, mu-law and
sampling rule: the same audio, at a few thousand steps per second instead of tens of thousands.
"""

import numpy as np

from data.mulaw import mu_law_encode
from models.layers import gate_halves, gated
from models.sampling import sample


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def run(weights, state, t0, x0, uniforms, temperature, output, fed):
    """`models.kernels.run` in NumPy: advances every stream `len(uniforms)` steps (same arguments)."""
    w = weights
    k_in, residual = w.in_w.shape
    layers, taps_rows, _ = w.gate_w.shape
    taps = taps_rows // residual
    skip = w.post_w.shape[0]
    filters, gates = gate_halves(residual)
    x = np.asarray(x0, np.float32).copy()
    for step in range(uniforms.shape[0]):
        t = t0 + step
        if w.in_table.shape[0]:  # an embedded input: the row of each sample's mu-law code
            h = w.in_table[mu_law_encode(x)]
        else:
            h = w.in_b + x[:, None] * w.in_w[k_in - 1]
        if k_in > 1:
            h = h + state.in_queue @ w.in_w[:k_in - 1]
            state.in_queue[:, :-1] = state.in_queue[:, 1:]
            state.in_queue[:, -1] = x
        h = h.astype(np.float32)
        skip_sum = np.zeros((len(x), skip), np.float32)
        for layer in range(layers):
            d, offset, length = w.dilations[layer], w.queue_offsets[layer], w.queue_lengths[layer]
            layer_w = w.gate_w[layer]
            gate = h @ layer_w[(taps - 1) * residual:] + w.gate_b[layer]
            for tap in range(taps - 1):  # tap i reads the input of time t - (taps - 1 - i) * d
                gate += state.queues[offset + (t - (taps - 1 - tap) * d) % length] @ \
                    layer_w[tap * residual:(tap + 1) * residual]
            if state.upsampled.shape[0]:  # conditioning: the spectrogram's and the class's rows of this layer
                gate += state.upsampled[step] @ w.mel_w[layer]
            if state.gate_rows.shape[0]:
                gate += state.gate_rows[:, step, layer]
            if state.class_rows.shape[0]:
                gate += state.class_rows[layer]
            if taps > 1:
                state.queues[offset + t % length] = h
            z = gated(gate[:, filters], gate[:, gates], np.tanh, _sigmoid)
            out = z @ w.out_w[layer] + w.out_b[layer]
            skip_sum += out[:, :skip]
            h = h + out[:, skip:]
        hidden = np.maximum(np.maximum(skip_sum, 0.0) @ w.post_w + w.post_b, 0.0)
        params = (hidden @ w.logit_w + w.logit_b)[:, :w.num_outputs]
        value, x = sample(params, temperature, uniforms[step], w.distribution, w.mixtures, w.edges, w.table)
        output[:, step] = value
        x = x.astype(np.float32)
    fed[:] = x


def project(upsampled, weights, gate_rows):
    """`models.kernels.project` in NumPy: `gate_rows[s] = upsampled[s] @ weights` for each stream."""
    gate_rows[...] = (upsampled @ weights).reshape(gate_rows.shape)
