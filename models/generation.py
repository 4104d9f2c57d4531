"""Sample-by-sample generation from a WaveNet, with cached per-layer state (the fast-WaveNet queues).

A dilated causal convolution with dilation `d` needs, at step `t`, its input at `t`, `t - d`, ...: each layer
keeps its last `(kernel_size - 1) * d` inputs in a ring buffer, so one step costs one matrix product per
layer instead of a forward pass over the whole receptive field. The weights are read once from the Keras
model, and a compiled loop (`models.kernels`) advances all streams together, many steps per call.

Buffers that hold no history yet hold zeros, exactly what a causal convolution pads with, so the result is
what the full model gives on the whole history (`generate_naive`, used by the tests and the benchmark).
"""

import functools

import numba
import numpy as np

from data.mulaw import mu_law_round_trip, mu_law_table
from models import gemm, kernels
from models.wavenet import dilated_layer_names, wavenet_spec

DISTRIBUTION_CODES = {"categorical": kernels.CATEGORICAL, "logistic_mixture": kernels.LOGISTIC_MIXTURE,
                      "point": kernels.POINT}
# Uniform numbers drawn per stream and step: the component (or class) and the logistic noise.
DRAWS_PER_STEP = 2


def _padded(size, multiple):
    return -(-size // multiple) * multiple


def _place(shape, *parts):
    """A float32 array of zeros of `shape` with each `(values, corner)` part copied in at its corner."""
    out = np.zeros(shape, np.float32)
    for values, corner in parts:
        out[tuple(slice(start, start + size) for start, size in zip(corner, values.shape))] = values
    return out


class IncrementalWaveNet:
    """A WaveNet's weights packed for the compiled generation loop, and the queues of a batch of streams.

    Args:
        model: a model made by `models.build_wavenet` (built or loaded).

    Example:

    >>> net = IncrementalWaveNet(model)
    >>> x = net.reset(num_streams=4, prime=None)
    >>> output, x = net.advance(x, steps=100, uniforms=np.random.default_rng(0).random((100, 4, 2)))
    """

    def __init__(self, model):
        self.model = model
        self.spec = wavenet_spec(model)

        def weights(name):
            kernel, bias = model.get_layer(name).get_weights()
            return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)

        def matrix(name):
            """A 1x1 layer's kernel as `(inputs, outputs)` (Dense, or a width-1 Conv1D)."""
            kernel, bias = weights(name)
            return kernel.reshape(-1, kernel.shape[-1]), bias

        in_kernel, in_bias = weights("input_conv")
        residual = in_kernel.shape[-1]
        names = dilated_layer_names(model)
        layer_names = {layer.name for layer in model.layers}
        skip = matrix(f"{names[0][:-len('_dilated')]}_skip")[0].shape[-1]
        post_kernel, post_bias = matrix("post_1")
        logit_kernel, logit_bias = matrix("logits")
        # Every width is padded with zeros to a multiple of the product's vector width (`models.gemm`). Zero
        # weights and biases keep the padding at zero all the way through (tanh(0) * sigmoid(0) = 0), so the
        # padded network computes exactly what the model does.
        pad = functools.partial(_padded, multiple=gemm.COLUMN_MULTIPLE)
        r, s, p, c = (pad(n) for n in (residual, skip, post_kernel.shape[1], logit_kernel.shape[1]))
        self.in_w, self.in_b = _place((in_kernel.shape[0], r), (in_kernel[:, 0, :], (0, 0))), \
            _place((r,), (in_bias, (0,)))
        taps = self.spec.kernel_size
        gate_w, gate_b, out_w, out_b = [], [], [], []
        for name in names:
            prefix = name[: -len("_dilated")]
            kernel, bias = weights(name)  # (taps, residual, 2 * residual), tap 0 the oldest
            gate_w.append(_place((taps * r, 2 * r), *[
                (kernel[tap, :, half * residual:(half + 1) * residual], (tap * r, half * r))
                for tap in range(taps) for half in (0, 1)]))
            gate_b.append(_place((2 * r,), (bias[:residual], (0,)), (bias[residual:], (r,))))
            # Skip and residual 1x1s as one product into the per-stream state [skip sum | residual path].
            skip_kernel, skip_bias = matrix(f"{prefix}_skip")
            parts_w, parts_b = [(skip_kernel, (0, 0))], [(skip_bias, (0,))]
            if f"{prefix}_residual" in layer_names:
                residual_kernel, residual_bias = matrix(f"{prefix}_residual")
                parts_w.append((residual_kernel, (0, s)))
                parts_b.append((residual_bias, (s,)))
            out_w.append(_place((r, s + r), *parts_w))
            out_b.append(_place((s + r,), *parts_b))
        self.gate_w, self.gate_b = np.stack(gate_w), np.stack(gate_b)
        self.out_w, self.out_b = np.stack(out_w), np.stack(out_b)
        self.dilations = np.array(self.spec.dilations, np.int64)
        self.queue_lengths = (taps - 1) * self.dilations
        self.queue_offsets = np.concatenate([[0], np.cumsum(self.queue_lengths)[:-1]]).astype(np.int64)
        self.post_w, self.post_b = _place((s, p), (post_kernel, (0, 0))), _place((p,), (post_bias, (0,)))
        self.logit_w, self.logit_b = _place((p, c), (logit_kernel, (0, 0))), _place((c,), (logit_bias, (0,)))
        self.num_outputs = logit_kernel.shape[1]
        self.table = mu_law_table(self.spec.num_classes).astype(np.float64)
        self.residual_channels, self.skip_channels = residual, skip
        self.feature_model = None
        self.num_streams = 0

    def _history_model(self):
        """A model that returns the input of every convolution with memory, for warming the queues."""
        if self.feature_model is None:
            import keras

            layers = [self.model.get_layer("audio")] + [
                self.model.get_layer(name) for name in dilated_layer_names(self.model)]
            outputs = [layers[0].output] + [layer.input for layer in layers[1:]]
            self.feature_model = keras.Model(self.model.inputs, outputs, name="history")
        return self.feature_model

    def reset(self, num_streams, prime=None):
        """Empties the queues of `num_streams` streams, then fills them from `prime` in one forward pass.

        Args:
            num_streams: streams to generate.
            prime: `None`, a 1-D signal shared by all streams, or `(num_streams, time)`; values in [-1, 1],
                mu-law round-tripped as in training. All but its last sample fill the queues.

        Returns:
            `(num_streams,)` float32: the input of the first step (the prime's last sample, or silence).
        """
        self.num_streams = int(num_streams)
        self.time = 0
        k_in = self.in_w.shape[0]
        self.in_queue = np.zeros((num_streams, k_in - 1), np.float32)
        # Time-major, so that one slot holds a row per stream: the kernel multiplies it in place.
        self.queues = np.zeros((int(self.queue_lengths.sum()), num_streams, self.in_w.shape[1]), np.float32)
        if prime is None:
            return np.full(num_streams, mu_law_round_trip(np.zeros(1))[0], np.float32)
        prime = np.asarray(prime, dtype=np.float32)
        prime = np.broadcast_to(prime, (num_streams, prime.shape[-1])) if prime.ndim == 1 else prime
        if prime.shape[0] != num_streams or prime.shape[1] < 1:
            raise ValueError(f"prime must be 1-D or ({num_streams}, time), got shape {prime.shape}")
        prime = mu_law_round_trip(prime)
        history = prime[:, :-1]
        if history.shape[1] > 0:
            self.time = history.shape[1]
            # The queues hold the last `queue length` inputs of each layer, and each of those depends on at most
            # a receptive field of samples before it: run the model on just that much of a long prime.
            keep = max(k_in - 1, int(self.queue_lengths.max())) + self.spec.receptive_field
            window = history[:, -min(history.shape[1], keep):]
            features = self._history_model().predict(window[..., None], verbose=0,
                                                     batch_size=max(1, min(num_streams, 64)))
            audio, features = features[0][..., 0], features[1:]
            if k_in > 1:  # the input queue is kept in time order, oldest first
                count = min(k_in - 1, audio.shape[1])
                self.in_queue[:, k_in - 1 - count:] = audio[:, audio.shape[1] - count:]
            for offset, length, feature in zip(self.queue_offsets, self.queue_lengths, features):
                # Ring slot of time tau is `offset + tau % length`; fill the last `length` times before now.
                count = min(length, feature.shape[1])
                times = np.arange(self.time - count, self.time)
                self.queues[offset + times % length, :, :self.residual_channels] = \
                    feature[:, feature.shape[1] - count:].transpose(1, 0, 2)
        return prime[:, -1].copy()

    def advance(self, x, steps, uniforms, temperature=1.0):
        """Runs `steps` steps of every stream from inputs `x`.

        Args:
            x: `(num_streams,)` the input of the first step.
            steps: steps to run.
            uniforms: `(steps, num_streams, 2)` uniform [0, 1) numbers for sampling.
            temperature: sampling temperature.

        Returns:
            `(output, x)`: `(num_streams, steps)` float32 samples, and the input of the next step.
        """
        streams = self.num_streams
        output = np.empty((streams, steps), np.float32)
        fed = np.empty(streams, np.float32)
        blocks = min(numba.get_num_threads(), streams)
        bounds = np.linspace(0, streams, blocks + 1).round().astype(np.int64)
        kernels.run(bounds, steps, self.time, np.asarray(x, np.float32), self.in_w, self.in_b, self.in_queue,
                    self.gate_w, self.gate_b, self.out_w, self.out_b, self.dilations, self.queue_offsets,
                    self.queue_lengths, self.queues, self.post_w, self.post_b, self.logit_w, self.logit_b,
                    self.num_outputs, np.ascontiguousarray(uniforms, np.float64), float(temperature),
                    DISTRIBUTION_CODES[self.spec.distribution], self.spec.num_mixtures, self.table, output, fed)
        self.time += steps
        return output, fed


def _check(num_samples, num_streams, temperature):
    if num_samples < 0 or num_streams < 1:
        raise ValueError("num_samples must be >= 0 and num_streams >= 1")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")


def generate_chunks(model, num_samples, *, num_streams=1, temperature=1.0, prime=None, seed=None,
                    chunk_size=4096):
    """Yields the generated audio in `(num_streams, <= chunk_size)` pieces, so long outputs need not fit in memory.

    Arguments as `generate`; `model` may also be an `IncrementalWaveNet`.
    """
    _check(num_samples, num_streams, temperature)
    net = model if isinstance(model, IncrementalWaveNet) else IncrementalWaveNet(model)
    rng = np.random.default_rng(seed)
    x = net.reset(num_streams, prime)
    done = 0
    while done < num_samples:
        size = min(chunk_size, num_samples - done)
        chunk, x = net.advance(x, size, rng.random((size, num_streams, DRAWS_PER_STEP)), temperature)
        done += size
        yield chunk


def generate(model, num_samples, *, num_streams=1, temperature=1.0, prime=None, seed=None):
    """Generates audio from a WaveNet, one sample at a time with cached state.

    Args:
        model: a WaveNet made by `models.build_wavenet`, or loaded from its `.keras` file.
        num_samples: samples to generate per stream.
        num_streams: independent streams, advanced together in one batch.
        temperature: sampling temperature; 0 takes the argmax (classifier) or the most likely component's
            mode (regressor).
        prime: optional audio in [-1, 1] (1-D, or one row per stream) that the generation continues.
        seed: integer seed; the same seed gives the same audio.

    Returns:
        `(num_streams, num_samples)` float32 in [-1, 1].

    Example:

    >>> audio = models.generate(model, 8000, num_streams=2, temperature=0.9, seed=1)
    >>> audio.shape
    (2, 8000)
    """
    chunks = list(generate_chunks(model, num_samples, num_streams=num_streams, temperature=temperature,
                                  prime=prime, seed=seed))
    return np.concatenate(chunks, axis=1) if chunks else np.zeros((num_streams, 0), np.float32)


def generate_naive(model, num_samples, *, num_streams=1, temperature=1.0, prime=None, seed=None):
    """The reference: runs the full model on the whole history for every sample. Slow; for tests and benches.

    It draws the same uniform numbers as `generate` and samples with the same function, so with a seed both
    give the same audio.
    """
    _check(num_samples, num_streams, temperature)
    spec = wavenet_spec(model)
    table = mu_law_table(spec.num_classes).astype(np.float64)
    code = DISTRIBUTION_CODES[spec.distribution]
    rng = np.random.default_rng(seed)
    if prime is None:
        history = np.full((num_streams, 1), mu_law_round_trip(np.zeros(1))[0], np.float32)
    else:
        prime = np.asarray(prime, np.float32)
        history = mu_law_round_trip(np.broadcast_to(prime, (num_streams, prime.shape[-1])).copy())
    output = np.empty((num_streams, num_samples), np.float32)
    for i in range(num_samples):
        params = np.asarray(model(history[..., None], training=False))[:, -1].astype(np.float32)
        uniforms = rng.random((1, num_streams, DRAWS_PER_STEP))[0]
        fed = np.empty(num_streams, np.float32)
        for stream in range(num_streams):
            output[stream, i], fed[stream] = kernels.sample(params[stream], float(temperature), uniforms[stream],
                                                            code, spec.num_mixtures, table)
        history = np.concatenate([history, fed[:, None]], axis=1)
    return output
