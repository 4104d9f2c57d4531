"""Compiled (numba) inner loop of WaveNet generation.

One call advances a block of streams by many steps with no Python in between. Per step and layer it does one
gate product over the kernel taps (the past taps read in place from per-layer ring buffers, the current one
from the residual path), the gated activation, and one fused skip + residual product added to the state. The
products are `models.gemm` register-tiled products on the whole block of streams (about twice BLAS's rate at
these sizes); with more than one block, blocks run on separate cores (streams are independent, so nothing is
shared between them but the weights).

The kernel takes the packed weights and the streams' state as two structured values (`models.generation`'s
`PackedWeights` and `StreamState` named tuples), so a new per-layer input is one more field, not one more
positional argument on every call. The gate, the output clamp and mu-law coding are the ones defined in
`models.layers` and `data.mulaw`, compiled here; only tanh is this module's own (a vectorisable rational
approximation). Sampling uses uniforms drawn beforehand by NumPy's seeded Generator, so results do not depend
on the number of threads and the NumPy path (`models.fallback`) draws the very same numbers.

Importing this module imports numba and compiles nothing; the first call compiles (and caches) the kernel.
"""

import math

import numba
import numpy as np

from models import gemm
from models.layers import floor_log_scale, gated
from models.sampling import LOGISTIC_MIXTURE, UNIFORM_MARGIN, CATEGORICAL

F32 = numba.float32
# IEEE division (inf, not an exception, on zero): Python's check is a branch that stops the compiler from
# vectorising any loop that divides, and made the gated activation 13 times slower.
_JIT = dict(cache=True, fastmath=True, error_model="numpy")


@numba.njit(inline="always", **_JIT)
def _tanh(x):
    # The rational approximation TensorFlow's CPU kernels use (Eigen's ptanh_float): a few ulp from tanh,
    # pure arithmetic, so the compiler vectorises it, and the generated audio matches the Keras model.
    x = min(max(x, F32(-7.90531110763549805)), F32(7.90531110763549805))
    x2 = x * x
    p = F32(-2.76076847742355e-16)
    p = p * x2 + F32(2.00018790482477e-13)
    p = p * x2 + F32(-8.60467152213735e-11)
    p = p * x2 + F32(5.12229709037114e-08)
    p = p * x2 + F32(1.48572235717979e-05)
    p = p * x2 + F32(6.37261928875436e-04)
    p = p * x2 + F32(4.89352455891786e-03)
    q = F32(1.19825839466702e-06)
    q = q * x2 + F32(1.18534705686654e-04)
    q = q * x2 + F32(2.26843463243900e-03)
    q = q * x2 + F32(4.89352518554385e-03)
    return x * p / q


@numba.njit(inline="always", **_JIT)
def _sigmoid(x):
    return F32(0.5) * _tanh(F32(0.5) * x) + F32(0.5)


@numba.njit(inline="always", cache=True)
def _maximum(a, b):
    return max(a, b)


_gated = numba.njit(inline="always", **_JIT)(gated)
_floor_log_scale = numba.njit(inline="always", cache=True)(floor_log_scale)


@numba.njit(cache=True, fastmath=True, inline="always")
def _relu(x, y):
    for s in range(x.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] = max(x[s, j], F32(0.0))


@numba.njit(cache=True)
def mu_law_code(value, edges):
    """`data.mulaw.mu_law_encode` of one sample: the bin of `edges` that holds it (float32, as there)."""
    code = np.searchsorted(edges, np.float32(value), side="right") - 1
    return min(max(code, 0), edges.shape[0] - 2)


@numba.njit(cache=True)
def _categorical(logits, temperature, uniform):
    best = 0
    for c in range(logits.shape[0]):
        if logits[c] > logits[best]:
            best = c
    if temperature == 0.0:
        return best
    top = logits[best] / temperature
    total = 0.0
    cumulative = np.empty(logits.shape[0], np.float64)
    for c in range(logits.shape[0]):
        total += math.exp(logits[c] / temperature - top)
        cumulative[c] = total
    draw = uniform * total
    index = 0  # the first class whose cumulative sum reaches the draw
    while index < logits.shape[0] - 1 and cumulative[index] < draw:
        index += 1
    return index


@numba.njit(cache=True)
def sample(params, temperature, uniforms, distribution, mixtures, edges, table):
    """One stream's next sample: `models.sampling.sample` for one row (see there).

    Returns:
        `(value written out, value fed back to the model)`.
    """
    if distribution == CATEGORICAL:
        value = table[_categorical(params, temperature, uniforms[0])]
        return value, value
    if distribution == LOGISTIC_MIXTURE:
        k = _categorical(params[:mixtures], temperature, uniforms[0])
        value = float(params[mixtures + k])
        if temperature > 0.0:
            u = UNIFORM_MARGIN + (1.0 - 2 * UNIFORM_MARGIN) * uniforms[1]
            scale = math.exp(_floor_log_scale(float(params[2 * mixtures + k]), _maximum))
            value += scale * temperature * (math.log(u) - math.log1p(-u))
    else:
        value = float(params[0])
    value = min(max(value, -1.0), 1.0)
    return value, table[mu_law_code(value, edges)]


@numba.njit(**_JIT)
def _run_block(first, last, steps, t0, weights, state, x0, uniforms, temperature, output, fed):
    w = weights
    streams = last - first
    k_in, residual = w.in_w.shape
    layers, taps_rows, gate_channels = w.gate_w.shape
    taps = taps_rows // residual
    skip = w.post_w.shape[0]
    in_queue, queues = state.in_queue, state.queues
    by_class = state.class_rows.shape[0] > 0
    by_mel = state.upsampled.shape[0] > 0
    by_rows = state.gate_rows.shape[0] > 0
    # Per stream: the sum of the skip outputs, then the residual path's current value.
    hidden_state = np.empty((streams, skip + residual), np.float32)
    no_bias = np.zeros(gate_channels, np.float32)
    gate = np.empty((streams, gate_channels), np.float32)
    z = np.empty((streams, residual), np.float32)
    skips = np.empty((streams, skip), np.float32)
    hidden = np.empty((streams, w.post_w.shape[1]), np.float32)
    params = np.empty((streams, w.logit_w.shape[1]), np.float32)
    x = np.empty(streams, np.float32)
    for s in range(streams):
        x[s] = x0[first + s]
    for step in range(steps):
        t = t0 + step
        # Input convolution: its queue holds the last k_in - 1 inputs, oldest first.
        for s in range(streams):
            for c in range(skip):
                hidden_state[s, c] = 0.0
            for c in range(residual):
                acc = w.in_b[c] + x[s] * w.in_w[k_in - 1, c]
                for tap in range(k_in - 1):
                    acc += in_queue[first + s, tap] * w.in_w[tap, c]
                hidden_state[s, skip + c] = acc
            for tap in range(k_in - 2):
                in_queue[first + s, tap] = in_queue[first + s, tap + 1]
            if k_in > 1:
                in_queue[first + s, k_in - 2] = x[s]
        h = hidden_state[:, skip:]
        for layer in range(layers):
            d = w.dilations[layer]
            offset = w.queue_offsets[layer]
            length = w.queue_lengths[layer]
            layer_w = w.gate_w[layer]
            # The gate reads the past taps straight from the queues (time-major, so a block's streams are
            # contiguous rows) and the current input from the state: no gathering copy.
            if taps == 1:
                gemm.matmul(h, layer_w, w.gate_b[layer], gate, False)
            else:
                past = queues[offset + (t - d) % length, first:last]
                gemm.matmul_pair(past, h, layer_w[(taps - 2) * residual:], w.gate_b[layer], gate, False)
                for tap in range(taps - 2):
                    past = queues[offset + (t - (taps - 1 - tap) * d) % length, first:last]
                    gemm.matmul(past, layer_w[tap * residual:(tap + 1) * residual], no_bias, gate, True)
                # Then this step's input replaces the oldest entry, which no tap needs any more.
                newest = queues[offset + t % length]
                for s in range(streams):
                    for c in range(residual):
                        newest[first + s, c] = h[s, c]
            # Conditioning, added to both halves of the gate: this step's upsampled spectrogram through the
            # layer's projection, and each stream's class row.
            if by_mel:
                gemm.matmul(state.upsampled[step, first:last], w.mel_w[layer], no_bias, gate, True)
            if by_rows:
                for s in range(streams):
                    row = state.gate_rows[first + s, step, layer]
                    for c in range(gate_channels):
                        gate[s, c] += row[c]
            if by_class:
                row = state.class_rows[layer]
                for s in range(streams):
                    for c in range(gate_channels):
                        gate[s, c] += row[first + s, c]
            for s in range(streams):
                g, zs = gate[s], z[s]
                for c in range(residual):  # filters in the first half, gates in the second (layers.gate_halves)
                    zs[c] = _gated(g[c], g[residual + c], _tanh, _sigmoid)
            # Skip and residual outputs added to the state in the same product.
            gemm.matmul(z, w.out_w[layer], w.out_b[layer], hidden_state, True)
        _relu(hidden_state, skips)
        gemm.matmul(skips, w.post_w, w.post_b, hidden, False)
        _relu(hidden, hidden)
        gemm.matmul(hidden, w.logit_w, w.logit_b, params, False)
        for s in range(streams):
            value, x[s] = sample(params[s, :w.num_outputs], temperature, uniforms[step, first + s], w.distribution,
                                 w.mixtures, w.edges, w.table)
            output[first + s, step] = value
    for s in range(streams):
        fed[first + s] = x[s]


@numba.njit(cache=True, parallel=True)
def _run(bounds, steps, t0, weights, state, x0, uniforms, temperature, output, fed):
    for block in numba.prange(bounds.shape[0] - 1):
        _run_block(bounds[block], bounds[block + 1], steps, t0, weights, state, x0, uniforms, temperature, output,
                   fed)


def run(weights, state, t0, x0, uniforms, temperature, output, fed):
    """Advances every stream `len(uniforms)` steps from inputs `x0`; blocks of streams run on separate cores.

    Args:
        weights: `models.generation.PackedWeights`; every width padded to a multiple of
            `models.generation.COLUMN_MULTIPLE`.
        state: `models.generation.StreamState`; `queues` is `(slots, streams, channels)`: layer `i` keeps its
            input of time `t` in slot `queue_offsets[i] + t % queue_lengths[i]`. Updated in place.
            `class_rows` `(layers, streams, gate channels)`, and either `upsampled` `(steps, streams, mel channels)`
            (through `weights.mel_w`) or `gate_rows` `(streams, steps, layers, gate channels)` (already through
            it, by `project`) are added to each gate before the activation; each is empty when not used.
        t0: the time of the first step.
        x0: `(streams,)` float32 inputs of the first step.
        uniforms: `(steps, streams, DRAWS_PER_STEP)` float64.
        temperature: sampling temperature.
        output: `(streams, steps)` float32, written.
        fed: `(streams,)` float32, written: the input of the next step.
    """
    streams = output.shape[0]
    blocks = max(1, min(numba.get_num_threads(), streams))
    bounds = np.linspace(0, streams, blocks + 1).round().astype(np.int64)
    _run(bounds, uniforms.shape[0], t0, weights, state, x0, uniforms, float(temperature), output, fed)


@numba.njit(cache=True)
def project(upsampled, weights, gate_rows):
    """`gate_rows[s] = upsampled[s] @ weights` for each stream, on this thread (a BLAS call here would leave its
    threads spinning on the cores the generation loop needs).

    Args:
        upsampled: `(streams, steps, mel channels)` float32.
        weights: `(mel channels, layers * gate channels)` float32: `PackedWeights.mel_w`, layers side by side.
        gate_rows: `(streams, steps, layers, gate channels)` float32, written.
    """
    streams, steps = upsampled.shape[0], upsampled.shape[1]
    no_bias = np.zeros(weights.shape[1], np.float32)
    for s in range(streams):
        gemm.matmul(upsampled[s], weights, no_bias, gate_rows[s].reshape(steps, weights.shape[1]), False)
