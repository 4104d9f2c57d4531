"""Sample-by-sample generation from a WaveNet, with cached per-layer state (the fast-WaveNet queues).

A dilated causal convolution with dilation `d` needs, at step `t`, its input at `t`, `t - d`, ...: each layer
keeps its last `(kernel_size - 1) * d` inputs in a ring buffer, so one step costs one matrix product per
layer instead of a forward pass over the whole receptive field. The weights are read once from the Keras
model into NumPy, and all streams advance together as the rows of each product.

Buffers that hold no history yet hold zeros, exactly what a causal convolution pads with, so the result is
what the full model gives on the whole history (`generate_naive`, used by the tests).
"""

import numpy as np

from data.mulaw import mu_law_decode, mu_law_round_trip
from models.distributions import sample_categorical, sample_logistic_mixture
from models.layers import MIN_LOG_SCALE
from models.wavenet import dilated_layer_names, wavenet_spec


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


class IncrementalWaveNet:
    """A WaveNet's weights as NumPy arrays, and the per-layer queues of a batch of streams.

    Args:
        model: a model made by `models.build_wavenet` (built or loaded).

    Example:

    >>> net = IncrementalWaveNet(model)
    >>> net.reset(num_streams=4, prime=None)
    >>> params = net.step(np.zeros(4, "float32"))   # distribution of each stream's next sample
    """

    def __init__(self, model):
        self.model = model
        self.spec = wavenet_spec(model)

        def weights(name):
            return [w.astype(np.float32) for w in model.get_layer(name).get_weights()]

        self.input_kernel, self.input_bias = weights("input_conv")
        self.residual_channels = self.input_kernel.shape[-1]
        self.blocks = []
        layer_names = {layer.name for layer in model.layers}
        for name in dilated_layer_names(model):
            prefix = name[: -len("_dilated")]
            kernel, bias = weights(name)
            k, r, _ = kernel.shape
            # Stack the taps so that [x[t - (k-1)d], ..., x[t - d], x[t]] @ kernel is one product.
            stacked = kernel.reshape(k * r, 2 * r)
            skip_kernel, skip_bias = weights(f"{prefix}_skip")
            out_kernel, out_bias = skip_kernel[0], skip_bias
            if f"{prefix}_residual" in layer_names:
                residual_kernel, residual_bias = weights(f"{prefix}_residual")
                out_kernel = np.concatenate([out_kernel, residual_kernel[0]], axis=1)
                out_bias = np.concatenate([out_bias, residual_bias])
            self.blocks.append((model.get_layer(name).dilation_rate[0], stacked, bias, out_kernel, out_bias))
        self.skip_channels = skip_kernel.shape[-1]
        post_kernel, self.post_bias = weights("post_1")
        logits_kernel, self.logits_bias = weights("logits")
        self.post_kernel, self.logits_kernel = post_kernel[0], logits_kernel[0]
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
        k_in = self.input_kernel.shape[0]
        self.input_queue = np.zeros((num_streams, k_in - 1), np.float32)
        self.queues = [np.zeros((num_streams, (stacked.shape[0] // self.residual_channels - 1) * d,
                                 self.residual_channels), np.float32)
                       for d, stacked, *_ in self.blocks]
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
            keep = max(k_in - 1, *(q.shape[1] for q in self.queues)) + self.spec.receptive_field
            window = history[:, -min(history.shape[1], keep):]
            features = self._history_model().predict(window[..., None], verbose=0,
                                                     batch_size=max(1, min(num_streams, 64)))
            audio, features = features[0][..., 0], features[1:]
            if k_in > 1:  # the input queue is kept in time order, oldest first
                count = min(k_in - 1, audio.shape[1])
                self.input_queue[:, k_in - 1 - count:] = audio[:, audio.shape[1] - count:]
            for queue, feature in zip(self.queues, features):
                self._fill(queue, feature)
        return prime[:, -1].copy()

    def _fill(self, queue, values):
        """Puts the last entries of `values`, which end at `self.time - 1`, into their ring slots `time % length`."""
        length = queue.shape[1]
        if length == 0:
            return
        count = min(length, values.shape[1])
        times = np.arange(self.time - count, self.time)
        queue[:, times % length] = values[:, values.shape[1] - count:]

    def step(self, x):
        """Feeds one input sample per stream; returns the next sample's distribution parameters."""
        x = np.asarray(x, dtype=np.float32)
        k_in = self.input_kernel.shape[0]
        if k_in > 1:
            taps = np.concatenate([self.input_queue, x[:, None]], axis=1)
            h = taps @ self.input_kernel[:, 0, :] + self.input_bias
            self.input_queue = taps[:, 1:]
        else:
            h = x[:, None] * self.input_kernel[0] + self.input_bias
        r = self.residual_channels
        skip = self.skip_channels
        skips = 0.0
        t = self.time
        for (dilation, stacked, bias, out_kernel, out_bias), queue in zip(self.blocks, self.queues):
            length = queue.shape[1]
            taps = length // dilation
            if taps:
                slots = (t - dilation * np.arange(taps, 0, -1)) % length
                past = queue[:, slots].reshape(len(x), taps * r)
                queue[:, t % length] = h
                gate = np.concatenate([past, h], axis=1) @ stacked + bias
            else:
                gate = h @ stacked + bias
            z = np.tanh(gate[:, :r]) * _sigmoid(gate[:, r:])
            out = z @ out_kernel + out_bias
            skips = skips + out[:, :skip]
            if out.shape[1] > skip:
                h = h + out[:, skip:]
        self.time = t + 1
        hidden = np.maximum(np.maximum(skips, 0.0) @ self.post_kernel + self.post_bias, 0.0)
        params = hidden @ self.logits_kernel + self.logits_bias
        if self.spec.distribution == "logistic_mixture":
            m = self.spec.num_mixtures
            params[:, 2 * m:] = np.maximum(params[:, 2 * m:], MIN_LOG_SCALE)
        return params


def _next_sample(spec, params, temperature, rng):
    """Draws each stream's next sample; returns `(output value, value fed back)`."""
    if spec.distribution == "categorical":
        value = mu_law_decode(sample_categorical(params, temperature, rng), spec.num_classes)
        return value, value
    if spec.distribution == "logistic_mixture":
        value = sample_logistic_mixture(params, temperature, rng).astype(np.float32)
    else:
        value = np.clip(params[:, 0], -1.0, 1.0)
    # The model was trained on mu-law round-tripped input: feed back what it knows.
    return value, mu_law_round_trip(value, spec.num_classes)


def generate_chunks(model, num_samples, *, num_streams=1, temperature=1.0, prime=None, seed=None,
                    chunk_size=4096):
    """Yields the generated audio in `(num_streams, <= chunk_size)` pieces, so long outputs need not fit in memory.

    Arguments as `generate`.
    """
    if num_samples < 0 or num_streams < 1:
        raise ValueError("num_samples must be >= 0 and num_streams >= 1")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    net = model if isinstance(model, IncrementalWaveNet) else IncrementalWaveNet(model)
    rng = np.random.default_rng(seed)
    x = net.reset(num_streams, prime)
    done = 0
    while done < num_samples:
        size = min(chunk_size, num_samples - done)
        chunk = np.empty((num_streams, size), np.float32)
        for i in range(size):
            chunk[:, i], x = _next_sample(net.spec, net.step(x), temperature, rng)
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
    """The reference: runs the full model on the whole history for every sample. Slow; for tests and benches."""
    spec = wavenet_spec(model)
    rng = np.random.default_rng(seed)
    if prime is None:
        history = np.full((num_streams, 1), mu_law_round_trip(np.zeros(1))[0], np.float32)
    else:
        prime = np.asarray(prime, np.float32)
        history = mu_law_round_trip(np.broadcast_to(prime, (num_streams, prime.shape[-1])).copy())
    output = np.empty((num_streams, num_samples), np.float32)
    for i in range(num_samples):
        params = np.asarray(model(history[..., None], training=False))[:, -1].astype(np.float32)
        output[:, i], fed = _next_sample(spec, params, temperature, rng)
        history = np.concatenate([history, fed[:, None]], axis=1)
    return output
