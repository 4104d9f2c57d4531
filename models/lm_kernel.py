"""Compiled (numba) step of the token language model's cached decoder (`models.lm.CachedTokenLM`).

One call runs every block for every stream: layer norms, the query/key/value product, rotary embedding, attention
over the keys and values cached in each layer's ring, the output product, the feed-forward part and the logits,
with no Python in between. The NumPy path of `CachedTokenLM.step` computes the same in NumPy calls; at one stream
and these widths it spends most of its time calling NumPy, not computing. Products are written as rows of the
input times rows of the weight matrix, so that the inner loop runs along contiguous memory and vectorises.

One stream can also be split across cores (`SplitDecoder`): each core takes its share of the heads and of every
product's columns, and the cores meet at a spin barrier (`models.spin`) four times per block. Every value is
computed by the same operations in the same order as on one core, so the logits are the same bits.

Importing this module imports numba and compiles nothing; the first call compiles (and caches) the kernel.
"""

import math
import threading

import numba
import numpy as np

from models import spin

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
def _product(x, kernel, bias, out, start=0, stop=-1):
    # out[start:stop] = (x @ kernel + bias)[start:stop], row by row of the kernel: the inner loop is contiguous.
    # Each column's sum runs in the same order whichever columns are asked for (a split gives the same bits).
    # Unsigned indices: numba cannot prove `start + k` non-negative, and its check for negative indices inside
    # the loop would keep it from vectorising (nine times slower).
    count = (kernel.shape[1] if stop < 0 else stop) - start
    for k in range(count):
        j = np.uint64(start + k)
        out[j] = bias[j]
    for i in range(kernel.shape[0]):
        value = x[i]
        for k in range(count):
            j = np.uint64(start + k)
            out[j] += value * kernel[i, j]


@numba.njit(inline="always", **_JIT)
def _add_product(vector, kernel, bias, scratch, x, start, stop):
    # A residual update, columns start:stop of it: x += vector @ kernel + bias.
    _product(vector, kernel, bias, scratch, start, stop)
    for i in range(start, stop):
        x[i] += scratch[i]


@numba.njit(inline="always", **_JIT)
def _gelu(values, start, stop):
    for j in range(start, stop):
        values[j] = np.float32(0.5 * values[j] * (1.0 + math.erf(values[j] / math.sqrt(2.0))))


@numba.njit(inline="always", **_JIT)
def _attend(layer, s, head, qkv, position, cos, sin, keys, values, mixed, query, scores):
    """One head of one stream: rotates its query and key, stores its key and value in the ring, and writes the
    attention-weighted values to `mixed`."""
    heads, context, head_dim = values.shape[2:]
    half = head_dim // 2
    slot = position % context
    seen = min(position + 1, context)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    inner_width = heads * head_dim
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
    # Unsigned indices below: a vectorised inner loop (see `_product`).
    for i in range(head_dim):
        mixed[np.uint64(base + i)] = 0.0
    for c in range(seen):
        weight = scores[c] / norm
        for i in range(head_dim):
            mixed[np.uint64(base + i)] += weight * values[layer, s, head, c, i]


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
            for head in range(heads):
                _attend(layer, s, head, qkv, position, cos, sin, keys, values, mixed, query, scores)
            _add_product(mixed, output_kernels[layer], output_biases[layer], attended, x[s], 0, width)
            _layer_norm(x[s], ffn_norms[layer, 0], ffn_norms[layer, 1], h)
            _product(h, inner_kernels[layer], inner_biases[layer], inner)
            _gelu(inner, 0, inner.shape[0])
            _add_product(inner, outer_kernels[layer], outer_biases[layer], attended, x[s], 0, width)
        _layer_norm(x[s], final_norm[0], final_norm[1], final)
        _product(final, logits_kernel, logits_bias, logits[s])


_serial_step = numba.njit(**_JIT)(_step)
_parallel_step = numba.njit(**_PARALLEL)(_step)


def step(x, *args):
    """`_step` on one core for one stream (no threads to wake per token), on all cores for several."""
    return (_serial_step if x.shape[0] == 1 else _parallel_step)(x, *args)


@numba.njit(inline="always", **_JIT)
def _meet(flags, worker, workers, epoch):
    # The barrier after `epoch`: its epoch, or -1 when the run was stopped.
    return epoch + 1 if spin.wait(flags, worker, workers, epoch + 1) else -1


@numba.njit(inline="always", **_JIT)
def _share_and_add(own, shared, first, last, kernel, bias, scratch, x, start, stop, flags, worker, workers, epoch):
    # How both halves of a block end on each worker: its part `first:last` of a vector goes to the shared copy;
    # once all parts are there, it adds its columns `start:stop` of the vector's product to `x`; then all meet
    # again before anyone reads `x`. Returns the epoch, or -1 when the run was stopped.
    shared[first:last] = own[first:last]
    epoch = _meet(flags, worker, workers, epoch)
    if epoch < 0:
        return -1
    _add_product(shared, kernel, bias, scratch, x, start, stop)
    return _meet(flags, worker, workers, epoch)


@numba.njit(inline="always", **_JIT)
def _bounds(size, worker, workers):
    return size * worker // workers, size * (worker + 1) // workers


@numba.njit(nogil=True, **_JIT)
def _token_share(worker, workers, flags, epoch, position, x, cos, sin, weights, keys, values, logits, mixed, inner):
    """Worker `worker`'s share of one token of stream 0: its heads' attention and its columns of every product,
    meeting the others after each part whose output they all read. Returns the last barrier's epoch, or -1 when
    the run was stopped. `x`, `mixed`, `inner` and `logits` are shared; each worker writes only its share, and
    only once: sums build up in the worker's own buffers (a cache line holding both workers' columns would
    otherwise pass between the cores at every term)."""
    (attention_norms, qkv_kernels, qkv_biases, output_kernels, output_biases, ffn_norms, inner_kernels,
     inner_biases, outer_kernels, outer_biases, final_norm, logits_kernel, logits_bias) = weights
    layers, _, heads, context, head_dim = values.shape
    width, inner_width = x.shape[0], heads * head_dim
    first_head, last_head = _bounds(heads, worker, workers)
    start, stop = _bounds(width, worker, workers)
    inner_start, inner_stop = _bounds(inner.shape[0], worker, workers)
    logit_start, logit_stop = _bounds(logits.shape[0], worker, workers)
    h = np.empty(width, np.float32)
    qkv = np.empty(qkv_kernels.shape[2], np.float32)
    attended = np.empty(width, np.float32)
    own_mixed = np.empty(inner_width, np.float32)
    own_inner = np.empty(inner.shape[0], np.float32)
    own_logits = np.empty(logits.shape[0], np.float32)
    scores = np.empty(context, np.float32)
    query = np.empty(head_dim, np.float32)
    for layer in range(layers):
        _layer_norm(x, attention_norms[layer, 0], attention_norms[layer, 1], h)
        for part in range(3):  # this worker's heads' queries, keys and values
            _product(h, qkv_kernels[layer], qkv_biases[layer], qkv, part * inner_width + first_head * head_dim,
                     part * inner_width + last_head * head_dim)
        for head in range(first_head, last_head):
            _attend(layer, 0, head, qkv, position, cos, sin, keys, values, own_mixed, query, scores)
        epoch = _share_and_add(own_mixed, mixed, first_head * head_dim, last_head * head_dim,
                               output_kernels[layer], output_biases[layer], attended, x, start, stop, flags, worker,
                               workers, epoch)
        if epoch < 0:
            return -1
        _layer_norm(x, ffn_norms[layer, 0], ffn_norms[layer, 1], h)
        _product(h, inner_kernels[layer], inner_biases[layer], own_inner, inner_start, inner_stop)
        _gelu(own_inner, inner_start, inner_stop)
        epoch = _share_and_add(own_inner, inner, inner_start, inner_stop, outer_kernels[layer], outer_biases[layer],
                               attended, x, start, stop, flags, worker, workers, epoch)
        if epoch < 0:
            return -1
    _layer_norm(x, final_norm[0], final_norm[1], h)
    _product(h, logits_kernel, logits_bias, own_logits, logit_start, logit_stop)
    logits[logit_start:logit_stop] = own_logits[logit_start:logit_stop]
    return _meet(flags, worker, workers, epoch)


@numba.njit(nogil=True, **_JIT)
def _helper_loop(worker, workers, flags, control, x, cos, sin, weights, keys, values, logits, mixed, inner):
    """A helper thread's life: wait for each token (the barrier after `_lead_token` publishes it), take its share,
    until the run is stopped (`spin.abort`)."""
    epoch = control[0]
    while True:
        epoch = _meet(flags, worker, workers, epoch)
        if epoch < 0:
            return
        epoch = _token_share(worker, workers, flags, epoch, control[1], x, cos, sin, weights, keys, values, logits,
                             mixed, inner)
        if epoch < 0:
            return


@numba.njit(nogil=True, **_JIT)
def _lead_token(workers, flags, control, x, cos, sin, keys, values, logits, mixed, inner, *weights):
    """The calling thread's part of one token: publishes the inputs (`x`, `cos`, `sin`, `control[1]` = position,
    written before this call) at a barrier, then takes worker 0's share. False when the run was stopped. The
    weights come as separate arrays: numba's dispatcher checks a tuple of arrays in Python, about 100 us a call."""
    epoch = _meet(flags, 0, workers, control[0])
    if epoch < 0:
        return False
    epoch = _token_share(0, workers, flags, epoch, control[1], x, cos, sin, weights, keys, values, logits, mixed,
                         inner)
    if epoch < 0:
        return False
    control[0] = epoch
    return True


class SplitDecoder:
    """One stream's steps split across `workers` cores: this thread and `workers - 1` helper threads that stay in
    compiled code between steps, spinning (and yielding their core when someone else wants it) until `close()`.

    Args:
        weights: the decoder's weights, in `step`'s order (`models.lm.LMWeights`).
        keys, values: the decoder's caches for one stream (`step`'s layout).
        workers: threads sharing each step (at most the number of heads).
    """

    def __init__(self, weights, keys, values, workers):
        self.weights, self.keys, self.values, self.workers = tuple(weights), keys, values, int(workers)
        self.flags = np.zeros(spin.flags_size(self.workers), np.int64)
        self.control = np.zeros(2, np.int64)  # [epoch of the last barrier, position of the token]
        self.x = np.empty(weights.attention_norms.shape[2], np.float32)
        self.mixed = np.empty(keys.shape[2] * keys.shape[3], np.float32)  # heads x head_dim
        self.inner = np.empty(weights.inner_kernels.shape[2], np.float32)
        self.logits = np.empty(weights.logits_kernel.shape[1], np.float32)
        self.cos = np.empty(keys.shape[3] // 2, np.float32)
        self.sin = np.empty_like(self.cos)
        self.errors = []
        self.threads = [threading.Thread(target=self._helper, args=(worker,), daemon=True)
                        for worker in range(1, self.workers)]
        for thread in self.threads:
            thread.start()

    def _helper(self, worker):
        try:
            _helper_loop(worker, self.workers, self.flags, self.control, self.x, self.cos, self.sin, self.weights,
                         self.keys, self.values, self.logits, self.mixed, self.inner)
        except BaseException as error:  # the others would wait for this one forever: stop them
            self.errors.append(error)
            spin.abort(self.flags, self.workers)

    def step(self, x, position, cos, sin):
        """Logits `(vocabulary,)` of stream 0 after feeding embedding `x` at `position` (what `step` takes)."""
        self.x[:], self.cos[:], self.sin[:] = x, cos, sin
        self.control[1] = position
        if not _lead_token(self.workers, self.flags, self.control, self.x, self.cos, self.sin, self.keys,
                           self.values, self.logits, self.mixed, self.inner, *self.weights):
            raise RuntimeError(f"lm_kernel: a helper thread of the split decoder failed: {self.errors[:1]}")
        return self.logits.copy()

    def close(self):
        """Stops the helper threads (they are waiting for the next token)."""
        spin.abort(self.flags, self.workers)
        for thread in self.threads:
            thread.join()
        self.threads = []


@numba.njit(**_JIT)
def filtered_categorical(logits, temperature, uniforms, top_k, top_p):
    """`models.sampling.filtered_categorical` compiled: the same steps in the same order per row (sequential sums
    where NumPy sums pairwise, so a draw could differ only where a probability sits on a threshold to the last
    bit; tested equal on random rows). At one stream NumPy's thirty-odd calls cost as much as a third of a step.

    Args:
        logits: `(streams, classes)` float32.
        temperature, top_k, top_p, uniforms: as `models.sampling.filtered_categorical`.
    """
    streams, classes = logits.shape
    out = np.empty(streams, np.int64)
    for s in range(streams):
        scaled = logits[s].astype(np.float64)
        if temperature == 0.0:
            out[s] = np.argmax(scaled)
            continue
        scaled = scaled / temperature
        if 0 < top_k < classes:
            kth = np.sort(scaled)[classes - top_k]
            for c in range(classes):
                if scaled[c] < kth:
                    scaled[c] = -np.inf
        if top_p < 1.0:
            ordered = -np.sort(-scaled)
            probabilities = np.exp(ordered - ordered[0])
            probabilities = probabilities / probabilities.sum()
            kept, running = 0, 0.0
            for c in range(classes):  # the mass before class c, as NumPy's cumsum(p) - p gives it
                running += probabilities[c]
                if running - probabilities[c] < top_p:
                    kept += 1
            threshold = ordered[max(kept, 1) - 1]
            for c in range(classes):
                if scaled[c] < threshold:
                    scaled[c] = -np.inf
        best = np.argmax(scaled)
        cumulative = np.exp(scaled - scaled[best])
        for c in range(1, classes):
            cumulative[c] += cumulative[c - 1]
        draw = uniforms[s] * cumulative[classes - 1]
        below = 0
        for c in range(classes):
            if cumulative[c] < draw:
                below += 1
        out[s] = min(below, classes - 1)
    return out
