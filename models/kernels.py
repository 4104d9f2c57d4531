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
import threading
from typing import NamedTuple

import numba
import numpy as np

from models import gemm, spin
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


# Cephes' exp: exp(x) = 2^k exp(r), r = x - k ln 2 in two parts, exp(r) by a Pade approximant (about 1 ulp).
_EXP_P = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
_EXP_Q = (3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1, 2.0)
_LN2_HIGH, _LN2_LOW = 6.93145751953125e-1, 1.42860682030941723212e-6
_ROUND_MAGIC = 6755399441055744.0  # 2^52 + 2^51: adding it leaves a small whole number in a double's low bits


# Not fastmath, and said so: numba gives a callee that does not set it its caller's fastmath (the kernel's), and
# reassociation would undo the two-part reduction (a hundred ulps near exp(-700)).
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _exp_nonpositive(x, out):
    """`out = exp(x)` for `x <= 0` (below -708, exp(-708)), in float64 and in loops the compiler vectorises: the
    kernel's softmax takes 256 of these per sample, which as `math.exp` calls cost as much as a layer."""
    powers = np.empty(x.shape[0], np.float64)
    for c in range(x.shape[0]):
        v = max(x[c], -708.0)
        k = math.floor(v * 1.4426950408889634 + 0.5)
        r = (v - k * _LN2_HIGH) - k * _LN2_LOW
        r2 = r * r
        p = r * ((_EXP_P[0] * r2 + _EXP_P[1]) * r2 + _EXP_P[2])
        q = ((_EXP_Q[0] * r2 + _EXP_Q[1]) * r2 + _EXP_Q[2]) * r2 + _EXP_Q[3]
        out[c] = 1.0 + 2.0 * p / (q - p)
        powers[c] = k + (_ROUND_MAGIC + 1023.0)  # low bits: k + 1023, the biased exponent of 2^k
    bits = powers.view(np.int64)
    for c in range(x.shape[0]):
        bits[c] = bits[c] << 52  # into the exponent field, mantissa zero: 2^k
    for c in range(x.shape[0]):
        out[c] *= powers[c]


@numba.njit(cache=True)
def _categorical(logits, temperature, uniform):
    best = 0
    for c in range(logits.shape[0]):
        if logits[c] > logits[best]:
            best = c
    if temperature == 0.0:
        return best
    top = logits[best] / temperature
    cumulative = np.empty(logits.shape[0], np.float64)
    for c in range(logits.shape[0]):
        cumulative[c] = logits[c] / temperature - top
    _exp_nonpositive(cumulative, cumulative)
    total = 0.0
    for c in range(logits.shape[0]):
        total += cumulative[c]
        cumulative[c] = total
    # The first class whose cumulative sum reaches the draw.
    return min(np.searchsorted(cumulative, uniform * total, side="left"), logits.shape[0] - 1)


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


@numba.njit(inline="always", **_JIT)
def _input_step(x, in_queue, in_w, in_b, in_table, edges, h):
    """The input of one step for each stream: `h` from `x` and `in_queue` (the last `k_in - 1` inputs, oldest
    first), which then takes `x` in; with an embedded input (`in_table` has rows) the row of `x`'s mu-law code."""
    k_in, residual = in_w.shape
    for s in range(x.shape[0]):
        if in_table.shape[0] > 0:
            h[s, :] = in_table[mu_law_code(x[s], edges)]
            continue
        for c in range(residual):
            acc = in_b[c] + x[s] * in_w[k_in - 1, c]
            for tap in range(k_in - 1):
                acc += in_queue[s, tap] * in_w[tap, c]
            h[s, c] = acc
        for tap in range(k_in - 2):
            in_queue[s, tap] = in_queue[s, tap + 1]
        if k_in > 1:
            in_queue[s, k_in - 2] = x[s]


@numba.njit(inline="always", **_JIT)
def _gate_product(queues, h, layer_w, bias, gate, t, d, offset, length, first, last, no_bias):
    """`gate = [h(t - (taps-1) d), ..., h(t - d), h] @ layer_w + bias` for streams `first:last`. The past taps are
    read in place from the layer's ring buffer (time-major, so a block's streams are contiguous rows): no gathering
    copy."""
    residual = h.shape[1]
    taps = layer_w.shape[0] // residual
    if taps == 1:
        gemm.matmul(h, layer_w, bias, gate, False)
        return
    past = queues[offset + (t - d) % length, first:last]
    gemm.matmul_pair(past, h, layer_w[(taps - 2) * residual:], bias, gate, False)
    for tap in range(taps - 2):
        past = queues[offset + (t - (taps - 1 - tap) * d) % length, first:last]
        gemm.matmul(past, layer_w[tap * residual:(tap + 1) * residual], no_bias, gate, True)


@numba.njit(inline="always", **_JIT)
def _remember(queues, h, t, offset, length, first):
    """This step's layer input `h` replaces the oldest entry of the layer's ring buffer (no tap needs it any more)."""
    newest = queues[offset + t % length]
    for s in range(h.shape[0]):
        for c in range(h.shape[1]):
            newest[first + s, c] = h[s, c]


@numba.njit(inline="always", **_JIT)
def _condition(gate, state, step, layer, first, mel_w, columns, no_bias):
    """Adds the conditioning to both halves of the gate of streams `first:`: this step's upsampled spectrogram
    through the layer's projection `mel_w` (already in `gate`'s columns), and each stream's precomputed rows (class,
    projected spectrogram), whose column `columns[c]` is `gate`'s column `c` (none where it is negative)."""
    streams, gate_channels = gate.shape
    if state.upsampled.shape[0] > 0:
        gemm.matmul(state.upsampled[step, first:first + streams], mel_w, no_bias, gate, True)
    if state.gate_rows.shape[0] > 0:
        for s in range(streams):
            row = state.gate_rows[first + s, step, layer]
            for c in range(gate_channels):
                if columns[c] >= 0:
                    gate[s, c] += row[columns[c]]
    if state.class_rows.shape[0] > 0:
        row = state.class_rows[layer]
        for s in range(streams):
            for c in range(gate_channels):
                if columns[c] >= 0:
                    gate[s, c] += row[first + s, columns[c]]


@numba.njit(inline="always", **_JIT)
def _activate(gate, z):
    """The gated activation: filters in the first half of each row, gates in the second (`layers.gate_halves`)."""
    half = z.shape[1]
    for s in range(gate.shape[0]):
        g, zs = gate[s], z[s]
        for c in range(half):
            zs[c] = _gated(g[c], g[half + c], _tanh, _sigmoid)


@numba.njit(inline="always", **_JIT)
def _sample_step(params, step, first, x, weights, uniforms, temperature, output, write):
    """Samples each stream's next value from `params`; `x` takes the values fed back, `output` (when `write`) the
    values written out."""
    w = weights
    for s in range(x.shape[0]):
        value, x[s] = sample(params[s, :w.num_outputs], temperature, uniforms[step, first + s], w.distribution,
                             w.mixtures, w.edges, w.table)
        if write:
            output[first + s, step] = value


@numba.njit(**_JIT)
def _run_block(first, last, steps, t0, weights, state, x0, uniforms, temperature, output, fed):
    w = weights
    streams = last - first
    residual = w.in_w.shape[1]
    layers, _, gate_channels = w.gate_w.shape
    skip = w.post_w.shape[0]
    queues = state.queues
    in_queue = state.in_queue[first:last]
    # Per stream: the sum of the skip outputs, then the residual path's current value.
    hidden_state = np.empty((streams, skip + residual), np.float32)
    no_bias = np.zeros(gate_channels, np.float32)
    gate = np.empty((streams, gate_channels), np.float32)
    z = np.empty((streams, residual), np.float32)
    skips = np.empty((streams, skip), np.float32)
    hidden = np.empty((streams, w.post_w.shape[1]), np.float32)
    params = np.empty((streams, w.logit_w.shape[1]), np.float32)
    x = x0[first:last].copy()
    h = hidden_state[:, skip:]
    columns = np.arange(gate_channels)
    for step in range(steps):
        t = t0 + step
        hidden_state[:, :skip] = 0.0
        _input_step(x, in_queue, w.in_w, w.in_b, w.in_table, w.edges, h)
        for layer in range(layers):
            d, offset, length = w.dilations[layer], w.queue_offsets[layer], w.queue_lengths[layer]
            _gate_product(queues, h, w.gate_w[layer], w.gate_b[layer], gate, t, d, offset, length, first, last,
                          no_bias)
            if length > 0:
                _remember(queues, h, t, offset, length, first)
            _condition(gate, state, step, layer, first, w.mel_w[layer], columns, no_bias)
            _activate(gate, z)
            # Skip and residual outputs added to the state in the same product.
            gemm.matmul(z, w.out_w[layer], w.out_b[layer], hidden_state, True)
        _relu(hidden_state, skips)
        gemm.matmul(skips, w.post_w, w.post_b, hidden, False)
        _relu(hidden, hidden)
        gemm.matmul(hidden, w.logit_w, w.logit_b, params, False)
        _sample_step(params, step, first, x, w, uniforms, temperature, output, True)
    for s in range(streams):
        fed[first + s] = x[s]


class SplitWeights(NamedTuple):
    """`PackedWeights` cut into column shares, one per core (leading axis: the worker), for `run_split`.

    Worker `k` owns columns `k * share ... (k + 1) * share - 1` of the filters and of the gates (`columns` maps
    each of its gate columns to the full gate layout, -1 for zero padding when the width does not divide), the
    same rows of each layer's skip and residual 1x1s, and a share of the post layer's columns with the same rows
    of the logits. Biases of row-shared products are worker 0's alone, so that the shares add up to the whole.
    """

    gate_w: np.ndarray  # (workers, layers, taps * residual, 2 * share): filters | gates of the share
    gate_b: np.ndarray  # (workers, layers, 2 * share)
    skip_w: np.ndarray  # (workers, layers, share, skip): the share's rows of the skip 1x1s
    skip_b: np.ndarray  # (workers, layers, skip): worker 0's is the bias, the others' zero
    residual_w: np.ndarray  # (workers, layers, share, residual)
    residual_b: np.ndarray  # (workers, layers, residual)
    post_w: np.ndarray  # (workers, skip, post share)
    post_b: np.ndarray  # (workers, post share)
    logit_w: np.ndarray  # (workers, post share, outputs)
    logit_b: np.ndarray  # (workers, outputs)
    mel_w: np.ndarray  # (workers, layers, mel channels, 2 * share)
    columns: np.ndarray  # (workers, 2 * share) int64


def _share(size, workers, multiple=16):
    return -(-size // (workers * multiple)) * multiple


def split_weights(weights, workers):
    """Cuts `weights` (`models.generation.PackedWeights`) into `workers` shares: `SplitWeights`; the weight
    matrices keep their type (float32, or bfloat16 bits)."""
    w = weights
    layers, taps_rows, gate_channels = w.gate_w.shape
    residual = gate_channels // 2
    skip, post = w.post_w.shape
    share, post_share = _share(residual, workers), _share(post, workers)
    # Full-layout column of each worker's filter and gate columns; zero padding (-1) past the layer's width.
    local = np.arange(workers)[:, None] * share + np.arange(share)[None, :]
    local = np.where(local < residual, local, -1)
    columns = np.concatenate([local, np.where(local >= 0, local + residual, -1)], axis=1)

    # Padding is zeros of each array's own type (float32, or bfloat16 bits, where 0 is also 0.0).
    def take_columns(matrix):  # (..., 2 * residual) -> (workers, ..., 2 * share)
        padded = np.concatenate([matrix, np.zeros((*matrix.shape[:-1], 1), matrix.dtype)], axis=-1)
        return np.ascontiguousarray(np.moveaxis(padded[..., columns], -2, 0))

    def take_rows(matrix, size, share_, axis):  # rows `size` of `matrix` along `axis` -> (workers, ..., share_)
        padded = np.concatenate([matrix, np.zeros((*matrix.shape[:axis], workers * share_ - size,
                                                   *matrix.shape[axis + 1:]), matrix.dtype)], axis=axis)
        parts = np.split(padded, workers, axis=axis)
        return np.ascontiguousarray(np.stack(parts))

    def first_only(bias):
        return np.stack([bias] + [np.zeros_like(bias)] * (workers - 1)).astype(np.float32)

    out_w = w.out_w  # (layers, residual, skip + residual)
    post_w = take_rows(w.post_w.T, post, post_share, 0).transpose(0, 2, 1)  # column shares of the post layer
    return SplitWeights(
        gate_w=take_columns(w.gate_w), gate_b=take_columns(w.gate_b),
        skip_w=take_rows(out_w[:, :, :skip], residual, share, 1), skip_b=first_only(w.out_b[:, :skip]),
        residual_w=take_rows(out_w[:, :, skip:], residual, share, 1), residual_b=first_only(w.out_b[:, skip:]),
        post_w=np.ascontiguousarray(post_w), post_b=take_rows(w.post_b, post, post_share, 0),
        logit_w=take_rows(w.logit_w, post, post_share, 0), logit_b=first_only(w.logit_b),
        mel_w=take_columns(w.mel_w), columns=columns.astype(np.int64))


class SplitBuffers(NamedTuple):
    """What the workers of `run_split` exchange at their barriers; the partial sums by barrier parity (a worker
    writes one copy while the others may still read the other)."""

    flags: np.ndarray  # models.spin flags
    residual_parts: np.ndarray  # (2, workers, streams, residual): each worker's share of the residual update
    skip_parts: np.ndarray  # (workers, streams, skip): each worker's share of the skip sum
    logit_parts: np.ndarray  # (workers, streams, outputs)


@numba.njit(inline="always", **_JIT)
def _sum_parts(parts, out, add):
    """`out (+)= parts[0] + parts[1] + ...`, in that order on every worker (so every worker gets the same bits)."""
    for s in range(out.shape[0]):
        for c in range(out.shape[1]):
            total = parts[0, s, c]
            for k in range(1, parts.shape[0]):
                total += parts[k, s, c]
            out[s, c] = out[s, c] + total if add else total


@numba.njit(nogil=True, **_JIT)
def _split_worker(worker, steps, t0, weights, split, state, x0, uniforms, temperature, output, fed, buffers):
    """Worker `worker`'s share of every step of every stream (see `run_split`). Returns False when aborted."""
    w, p, b = weights, split, buffers
    workers = p.gate_w.shape[0]
    streams = x0.shape[0]
    residual = w.in_w.shape[1]
    layers, _, gate_channels = p.gate_w.shape[1:]
    skip = w.post_w.shape[0]
    queues, columns = state.queues, p.columns[worker]
    in_queue = state.in_queue.copy()  # each worker runs the (small) input convolution on its own copy
    h = np.empty((streams, residual), np.float32)
    skip_sum = np.empty((streams, skip), np.float32)
    no_bias = np.zeros(max(gate_channels, skip, residual), np.float32)
    gate = np.empty((streams, gate_channels), np.float32)
    z = np.empty((streams, gate_channels // 2), np.float32)
    skips = np.empty((streams, skip), np.float32)
    hidden = np.empty((streams, p.post_w.shape[2]), np.float32)
    params = np.empty((streams, p.logit_w.shape[2]), np.float32)
    x = x0.copy()
    epoch = 0
    for step in range(steps):
        t = t0 + step
        _input_step(x, in_queue, w.in_w, w.in_b, w.in_table, w.edges, h)
        skip_sum[:] = 0.0
        for layer in range(layers):
            d, offset, length = w.dilations[layer], w.queue_offsets[layer], w.queue_lengths[layer]
            _gate_product(queues, h, p.gate_w[worker, layer], p.gate_b[worker, layer], gate, t, d, offset, length,
                          0, streams, no_bias)
            _condition(gate, state, step, layer, 0, p.mel_w[worker, layer], columns, no_bias)
            _activate(gate, z)
            gemm.matmul(z, p.skip_w[worker, layer], p.skip_b[worker, layer], skip_sum, True)
            parts = b.residual_parts[epoch % 2]
            gemm.matmul(z, p.residual_w[worker, layer], p.residual_b[worker, layer], parts[worker], False)
            if layer == layers - 1:
                b.skip_parts[worker, :, :] = skip_sum
            epoch += 1
            if not spin.wait(b.flags, worker, workers, epoch):
                return False
            # Every worker has read this layer's ring buffer: worker 0 stores the layer's input in it.
            if worker == 0 and length > 0:
                _remember(queues, h, t, offset, length, 0)
            _sum_parts(parts, h, True)
        _sum_parts(b.skip_parts, skips, False)
        _relu(skips, skips)
        gemm.matmul(skips, p.post_w[worker], p.post_b[worker], hidden, False)
        _relu(hidden, hidden)
        gemm.matmul(hidden, p.logit_w[worker], p.logit_b[worker], b.logit_parts[worker], False)
        epoch += 1
        if not spin.wait(b.flags, worker, workers, epoch):
            return False
        _sum_parts(b.logit_parts, params, False)
        _sample_step(params, step, 0, x, w, uniforms, temperature, output, worker == 0)
    if worker == 0:
        fed[:] = x
        state.in_queue[:, :] = in_queue
    return True


def run_split(split, weights, state, t0, x0, uniforms, temperature, output, fed):
    """`run` with every step's products split across cores: one thread per share of `split` (`split_weights`),
    each keeping its share of every layer's weights in its own cache; the threads meet at a spin barrier once per
    layer (to add up the shares of the residual update) and once per step (the logits). Every worker computes the
    same sums in the same order, so all agree on every sample. Same arguments as `run`, `split` first."""
    workers, streams = split.gate_w.shape[0], x0.shape[0]
    residual, skip = weights.in_w.shape[1], weights.post_w.shape[0]
    buffers = SplitBuffers(flags=np.zeros(spin.flags_size(workers), np.int64),
                           residual_parts=np.empty((2, workers, streams, residual), np.float32),
                           skip_parts=np.empty((workers, streams, skip), np.float32),
                           logit_parts=np.empty((workers, streams, split.logit_w.shape[2]), np.float32))
    errors = []

    def work(worker):
        try:
            _split_worker(worker, uniforms.shape[0], t0, weights, split, state, x0, uniforms, temperature, output,
                          fed, buffers)
        except BaseException as error:  # the others would wait for this worker forever: stop them
            errors.append(error)
            spin.abort(buffers.flags, workers)

    threads = [threading.Thread(target=work, args=(worker,), daemon=True) for worker in range(1, workers)]
    for thread in threads:
        thread.start()
    work(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


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


class Runner:
    """`run` for one model's packed weights, choosing how to use the cores: `run_split` when there are fewer
    streams than threads (one stream on two cores), else blocks of streams on separate cores (measured on 2 cores:
    2 streams ran 1.5 times faster as two blocks than split). Keeps the weights' shares for `run_split`, cut once per
    worker count.

    Args:
        weights: `models.generation.PackedWeights`.
        split_cores: cores that share each step's products; `None` chooses: numba's thread count
            (`numba.get_num_threads()`, at most one per 16 residual channels) for fewer streams than threads, else 1
            (blocks of streams).

    Example:

    >>> runner = Runner(pack_weights(model))
    >>> runner(runner.weights, state, 0, x0, uniforms, 1.0, output, fed)  # same arguments as `run`
    """

    def __init__(self, weights, split_cores=None):
        self.weights = weights
        self.split_cores = split_cores
        self._splits = {}

    def cores(self, streams):
        """Cores that share each step's products for `streams` streams (1: no split)."""
        if self.split_cores is not None:
            return self.split_cores
        threads = numba.get_num_threads()
        residual = self.weights.in_w.shape[1]
        # Shares narrower than 16 columns would be mostly padding.
        return max(1, min(threads, residual // 16)) if streams < threads else 1

    def __call__(self, weights, state, t0, x0, uniforms, temperature, output, fed):
        if weights is not self.weights:
            raise ValueError("Runner: these are not the weights it was made for")
        cores = self.cores(x0.shape[0])
        if cores <= 1:
            run(weights, state, t0, x0, uniforms, temperature, output, fed)
            return
        if cores not in self._splits:
            self._splits[cores] = split_weights(weights, cores)
        run_split(self._splits[cores], weights, state, t0, x0, uniforms, float(temperature), output, fed)
