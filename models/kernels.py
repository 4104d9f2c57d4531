"""Compiled (numba) inner loop of WaveNet generation.

One call advances a block of streams by many steps with no Python in between. Per step and layer it does one
gate product over the kernel taps (the past taps read in place from per-layer ring buffers, the current one
from the residual path), the gated activation, and one fused skip + residual product added to the state. The
products are `models.gemm` register-tiled products on the whole block of streams (about twice BLAS's rate at
these sizes); with more than one block, blocks run on separate cores (streams are independent, so nothing is
shared between them but the weights).

Sampling uses uniforms drawn beforehand by NumPy's seeded Generator, so results do not depend on the number
of threads and `models.generation.generate_naive` can draw the very same numbers.
"""

import math

import numba
import numpy as np

from models import gemm
from models.layers import MIN_LOG_SCALE as LAYER_MIN_LOG_SCALE

CATEGORICAL, LOGISTIC_MIXTURE, POINT = 0, 1, 2
MIN_LOG_SCALE = np.float32(LAYER_MIN_LOG_SCALE)  # the same bound the model's output layer applies
F32 = numba.float32


# IEEE division (inf, not an exception, on zero): Python's check is a branch that stops the compiler from
# vectorising any loop that divides, and made the gated activation 13 times slower.
@numba.njit(cache=True, fastmath=True, inline="always", error_model="numpy")
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


@numba.njit(cache=True, fastmath=True, inline="always")
def _relu(x, y):
    for s in range(x.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] = max(x[s, j], F32(0.0))


@numba.njit(cache=True)
def mu_law_code(value, channels):
    """`data.mulaw.mu_law_encode` for one sample."""
    mu = channels - 1.0
    value = min(max(value, -1.0), 1.0)
    companded = math.copysign(math.log1p(mu * abs(value)) / math.log1p(mu), value)
    code = math.floor((companded + 1.0) * (channels / 2.0))
    return int(min(max(code, 0), channels - 1))


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
    index = 0
    while index < logits.shape[0] - 1 and cumulative[index] < draw:
        index += 1
    return index


@numba.njit(cache=True)
def sample(params, temperature, uniforms, distribution, mixtures, table):
    """One stream's next sample from its distribution parameters.

    Args:
        params: the model's output for this step, `(channels,)`.
        temperature: 0 for the most likely value.
        uniforms: two uniform [0, 1) numbers drawn for this stream and step.
        distribution: CATEGORICAL, LOGISTIC_MIXTURE or POINT.
        mixtures: logistic components.
        table: the mu-law decoding table.

    Returns:
        `(value written out, value fed back to the model)`; the model is trained on mu-law round-tripped
        input, so that is what it is fed.
    """
    channels = table.shape[0]
    if distribution == CATEGORICAL:
        value = table[_categorical(params, temperature, uniforms[0])]
        return value, value
    if distribution == LOGISTIC_MIXTURE:
        k = _categorical(params[:mixtures], temperature, uniforms[0])
        value = float(params[mixtures + k])
        if temperature > 0.0:
            u = 1e-5 + (1.0 - 2e-5) * uniforms[1]
            scale = math.exp(max(float(params[2 * mixtures + k]), float(MIN_LOG_SCALE)))
            value += scale * temperature * (math.log(u) - math.log1p(-u))
    else:
        value = float(params[0])
    value = min(max(value, -1.0), 1.0)
    return value, table[mu_law_code(value, channels)]


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _run_block(first, last, steps, t0, x0, in_w, in_b, in_queue, gate_w, gate_b, out_w, out_b, dilations,
               queue_offsets, queue_lengths, queues, post_w, post_b, logit_w, logit_b, num_outputs, uniforms,
               temperature, distribution, mixtures, table, output, fed):
    streams = last - first
    k_in, residual = in_w.shape
    layers, taps_rows, gate_channels = gate_w.shape
    taps = taps_rows // residual
    skip = post_w.shape[0]
    # Per stream: the sum of the skip outputs, then the residual path's current value.
    state = np.empty((streams, skip + residual), np.float32)
    no_bias = np.zeros(gate_channels, np.float32)
    gate = np.empty((streams, gate_channels), np.float32)
    z = np.empty((streams, residual), np.float32)
    skips = np.empty((streams, skip), np.float32)
    hidden = np.empty((streams, post_w.shape[1]), np.float32)
    params = np.empty((streams, logit_w.shape[1]), np.float32)
    x = np.empty(streams, np.float32)
    for s in range(streams):
        x[s] = x0[first + s]
    for step in range(steps):
        t = t0 + step
        # Input convolution: its queue holds the last k_in - 1 inputs, oldest first.
        for s in range(streams):
            for c in range(skip):
                state[s, c] = 0.0
            for c in range(residual):
                acc = in_b[c] + x[s] * in_w[k_in - 1, c]
                for tap in range(k_in - 1):
                    acc += in_queue[first + s, tap] * in_w[tap, c]
                state[s, skip + c] = acc
            for tap in range(k_in - 2):
                in_queue[first + s, tap] = in_queue[first + s, tap + 1]
            if k_in > 1:
                in_queue[first + s, k_in - 2] = x[s]
        h = state[:, skip:]
        for layer in range(layers):
            d = dilations[layer]
            offset = queue_offsets[layer]
            length = queue_lengths[layer]
            weights = gate_w[layer]
            # The gate reads the past taps straight from the queues (time-major, so a block's streams are
            # contiguous rows) and the current input from the state: no gathering copy.
            if taps == 1:
                gemm.matmul(h, weights, gate_b[layer], gate, False)
            else:
                past = queues[offset + (t - d) % length, first:last]
                gemm.matmul_pair(past, h, weights[(taps - 2) * residual:], gate_b[layer], gate, False)
                for tap in range(taps - 2):
                    past = queues[offset + (t - (taps - 1 - tap) * d) % length, first:last]
                    gemm.matmul(past, weights[tap * residual:(tap + 1) * residual], no_bias, gate, True)
                # Then this step's input replaces the oldest entry, which no tap needs any more.
                newest = queues[offset + t % length]
                for s in range(streams):
                    for c in range(residual):
                        newest[first + s, c] = h[s, c]
            for s in range(streams):
                g, zs = gate[s], z[s]
                for c in range(residual):
                    zs[c] = _tanh(g[c]) * (F32(0.5) * _tanh(F32(0.5) * g[residual + c]) + F32(0.5))
            # Skip and residual outputs added to the state in the same product.
            gemm.matmul(z, out_w[layer], out_b[layer], state, True)
        _relu(state, skips)
        gemm.matmul(skips, post_w, post_b, hidden, False)
        _relu(hidden, hidden)
        gemm.matmul(hidden, logit_w, logit_b, params, False)
        for s in range(streams):
            if distribution == LOGISTIC_MIXTURE:
                for c in range(2 * mixtures, 3 * mixtures):
                    params[s, c] = max(params[s, c], MIN_LOG_SCALE)
            value, x[s] = sample(params[s, :num_outputs], temperature, uniforms[step, first + s], distribution,
                                 mixtures, table)
            output[first + s, step] = value
    for s in range(streams):
        fed[first + s] = x[s]


@numba.njit(cache=True, parallel=True)
def run(bounds, steps, t0, x0, in_w, in_b, in_queue, gate_w, gate_b, out_w, out_b, dilations, queue_offsets,
        queue_lengths, queues, post_w, post_b, logit_w, logit_b, num_outputs, uniforms, temperature, distribution,
        mixtures, table, output, fed):
    """Advances every stream `steps` steps; blocks of streams `bounds[i]:bounds[i + 1]` run in parallel.

    Every width of the weights is padded to a multiple of `models.gemm.COLUMN_MULTIPLE`; `num_outputs` is the
    model's true number of outputs. `queues` is `(slots, streams, channels)`: layer `i` keeps its input of time
    `t` in slot `queue_offsets[i] + t % queue_lengths[i]`.
    """
    for block in numba.prange(bounds.shape[0] - 1):
        _run_block(bounds[block], bounds[block + 1], steps, t0, x0, in_w, in_b, in_queue, gate_w, gate_b, out_w,
                   out_b, dilations, queue_offsets, queue_lengths, queues, post_w, post_b, logit_w, logit_b,
                   num_outputs, uniforms, temperature, distribution, mixtures, table, output, fed)
