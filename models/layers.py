"""Custom layers. Every one is registered, so `import models` is all `keras.saving.load_model` needs."""

import keras
import numpy as np
from keras import ops

from data.mulaw import QUANTIZATION_CHANNELS, mu_law_bin_edges

PACKAGE = "wavegen"
DISTRIBUTIONS = ("categorical", "logistic_mixture", "point")
# Lower bound on a logistic component's log scale, as in PixelCNN++: keeps the likelihood finite.
MIN_LOG_SCALE = -7.0


# The formulas below are written once and take their element-wise primitives as arguments, so the Keras layers,
# the NumPy generation path and the compiled kernel (`models.kernels`, which passes its vectorisable tanh) all
# compute the same thing from the same definition.
def gate_halves(channels):
    """`(filters, gates)` slices of a dilated convolution's `2 * channels` outputs: filters first."""
    return slice(0, channels), slice(channels, 2 * channels)


def gated(filters, gates, tanh, sigmoid):
    """WaveNet's gated activation `tanh(filters) * sigmoid(gates)`."""
    return tanh(filters) * sigmoid(gates)


def floor_log_scale(log_scale, maximum):
    """A logistic component's log scale, bounded below by `MIN_LOG_SCALE` (the output clamp)."""
    return maximum(log_scale, MIN_LOG_SCALE)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AudioInput(keras.layers.Layer):
    """Clips a waveform to [-1, 1] and records the sample rate it was trained at.

    The sample rate travels with the saved model, so `generate.py` writes files at the right rate.

    Args:
        sample_rate: the audio's sample rate in Hz.
        **kwargs: standard layer arguments.

    Example:

    >>> layer = AudioInput(sample_rate=8000)
    >>> layer(np.array([[[2.0], [-0.5]]])).numpy().ravel().tolist()
    [1.0, -0.5]
    """

    def __init__(self, sample_rate, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)

    def call(self, inputs):
        return ops.clip(inputs, -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate}


def mu_law_codes(samples, channels=QUANTIZATION_CHANNELS):
    """`data.mulaw.mu_law_encode` in `keras.ops`, for use inside a graph: the same edges, the same rule."""
    edges = ops.convert_to_tensor(mu_law_bin_edges(channels))
    codes = ops.searchsorted(edges, ops.reshape(ops.cast(samples, "float32"), (-1,)), side="right") - 1
    return ops.reshape(ops.cast(ops.clip(codes, 0, channels - 1), "int32"), ops.shape(samples))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MuLawEmbedding(keras.layers.Layer):
    """The WaveNet paper's input: each sample as its mu-law code, one of `num_classes`, and a learned vector per code
    (a one-hot input times a matrix), in place of the sample's value times one vector.

    Input `(batch, time, 1)` samples in [-1, 1]; output `(batch, time, output_dim)`. The codes are
    `data.mulaw.mu_law_encode`'s, computed with the same bin edges and rule (`mu_law_codes`), as generation's
    kernels compute them too, so every sample gets the same code in training and in generation.

    Args:
        output_dim: size of each code's vector (the residual channels).
        num_classes: mu-law codes.
        **kwargs: standard layer arguments.

    Example:

    >>> layer = MuLawEmbedding(output_dim=8)
    >>> layer(np.zeros((2, 100, 1), "float32")).shape
    TensorShape([2, 100, 8])
    """

    def __init__(self, output_dim, num_classes=QUANTIZATION_CHANNELS, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        # Glorot over (codes, channels): the scale of a causal convolution over one-hot codes.
        self.embeddings = self.add_weight(name="embeddings", shape=(self.num_classes, self.output_dim),
                                          initializer="glorot_uniform")

    def call(self, inputs):
        codes = mu_law_codes(inputs[..., 0], self.num_classes)
        return ops.take(ops.convert_to_tensor(self.embeddings), codes, axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "num_classes": self.num_classes}


def _delayed(x, steps):
    """`x` delayed by `steps` time steps, zeros first (all zeros when `steps` >= the length)."""
    if steps == 0:
        return x
    return ops.pad(x, [[0, 0], [steps, 0], [0, 0]])[:, : ops.shape(x)[1]]


def _advanced(x, steps):
    """`x` moved `steps` time steps earlier, zeros last: the adjoint of `_delayed`."""
    if steps == 0:
        return x
    return ops.pad(x, [[0, 0], [0, steps], [0, 0]])[:, steps:]


@keras.saving.register_keras_serializable(package=PACKAGE)
class CausalConv1D(keras.layers.Layer):
    """A causal dilated 1-D convolution computed as one matrix product, with a hand-written gradient.

    Output `t` is `bias + sum_i x[t - (kernel_size - 1 - i) * dilation_rate] @ kernel[i]`, exactly Keras'
    `Conv1D(padding="causal")` with the same kernel layout `(kernel_size, in, filters)`. The taps are
    stacked along the channels and multiplied in one product; the gradient reuses that stack for the
    kernel (one product over all time steps, where TensorFlow's convolution gradient runs at half the
    speed on a CPU) and takes the input's gradient as one product per tap. Training the default
    WaveNet is about 10% faster this way.

    Args:
        filters: output channels.
        kernel_size: taps.
        dilation_rate: spacing of the taps in time steps.
        **kwargs: standard layer arguments.

    Example:

    >>> layer = CausalConv1D(8, 2, dilation_rate=4)
    >>> layer(np.zeros((1, 10, 3), "float32")).shape
    TensorShape([1, 10, 8])
    """

    def __init__(self, filters, kernel_size, dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, input_shape[-1], self.filters),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        channels, filters = inputs.shape[-1], self.filters
        shifts = [(self.kernel_size - 1 - tap) * self.dilation_rate for tap in range(self.kernel_size)]

        @ops.custom_gradient
        def convolve(x, kernel, bias):
            batch, time = ops.shape(x)[0], ops.shape(x)[1]
            taps = ops.concatenate([_delayed(x, shift) for shift in shifts], axis=-1) if len(shifts) > 1 else x
            taps = ops.reshape(taps, (-1, len(shifts) * channels))
            y = ops.matmul(taps, ops.reshape(kernel, (-1, filters))) + bias

            def gradient(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                dy = ops.reshape(upstream, (-1, filters))
                d_kernel = ops.reshape(ops.matmul(ops.transpose(taps), dy), ops.shape(kernel))
                d_x = 0
                for tap, shift in enumerate(shifts):
                    part = ops.reshape(ops.matmul(dy, ops.transpose(kernel[tap])), (batch, time, channels))
                    d_x = d_x + _advanced(part, shift)
                return d_x, d_kernel, ops.sum(dy, axis=0)

            return ops.reshape(y, (batch, time, filters)), gradient

        # Read the weights outside the function (a copy, cast to the compute dtype), so that the custom
        # gradient sees tensors, not variables.
        return convolve(inputs, ops.copy(self.kernel), ops.copy(self.bias))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "dilation_rate": self.dilation_rate}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedActivation(keras.layers.Layer):
    """WaveNet's gate: splits the channels in two halves `(f, g)` and returns `tanh(f) * sigmoid(g)`.

    One convolution with twice the channels feeds both halves, which is faster than two convolutions. Given a
    list, the gate sums it first: the dilated convolution's output plus the conditioning projected into this
    layer (a class's `(batch, 1, 2 * channels)`, broadcast over time, or a spectrogram's `(batch, time, ...)`).

    Args:
        **kwargs: standard layer arguments.

    Example:

    >>> GatedActivation()(np.zeros((1, 3, 8))).shape
    TensorShape([1, 3, 4])
    """

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):  # conditioning: added to both halves before tanh and sigmoid
            total = inputs[0]
            for term in inputs[1:]:
                total = total + ops.cast(term, total.dtype)
            inputs = total
        # Filters first, gates second (`gate_halves`). A split, whose gradient is one concatenation, not two
        # strided slices, whose gradients scatter into zeros (a fifth of a training step on a CPU).
        filters, gates = ops.split(inputs, 2, axis=-1)
        return gated(filters, gates, ops.tanh, ops.sigmoid)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        return (*input_shape[:-1], input_shape[-1] // 2)


@keras.saving.register_keras_serializable(package=PACKAGE)
class OutputDistribution(keras.layers.Layer):
    """Marks what the network's last channels parameterise, and constrains them where needed.

    - `"categorical"`: `num_classes` logits over mu-law codes (passed through).
    - `"logistic_mixture"`: `3 * num_mixtures` channels, `[logits, means, log_scales]`; log scales are
      clipped below at -7 as in PixelCNN++.
    - `"point"`: one channel, the predicted sample (the original script's regressor, trained with MSE).

    Args:
        distribution: one of `"categorical"`, `"logistic_mixture"`, `"point"`.
        num_classes: mu-law classes (categorical) and the scale on which bits per sample are reported.
        num_mixtures: logistic components (logistic_mixture).
        **kwargs: standard layer arguments.
    """

    def __init__(self, distribution="categorical", num_classes=256, num_mixtures=10, **kwargs):
        super().__init__(**kwargs)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        self.distribution = distribution
        self.num_classes = int(num_classes)
        self.num_mixtures = int(num_mixtures)

    @property
    def channels(self):
        return {"categorical": self.num_classes, "logistic_mixture": 3 * self.num_mixtures, "point": 1}[
            self.distribution]

    def call(self, inputs):
        if self.distribution != "logistic_mixture":
            return inputs
        logits, means, log_scales = ops.split(inputs, 3, axis=-1)
        return ops.concatenate([logits, means, floor_log_scale(log_scales, ops.maximum)], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "distribution": self.distribution, "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassEmbedding(keras.layers.Layer):
    """A learned vector per class (speaker, instrument, style), and the class names, saved with the model.

    Input `(batch, 1)` integer class ids; output `(batch, 1, output_dim)`, which broadcasts over time.

    Args:
        class_names: the name of each class, in id order.
        output_dim: size of each class's vector.
        **kwargs: standard layer arguments.

    Example:

    >>> layer = ClassEmbedding(["low", "high"], output_dim=4)
    >>> layer(np.array([[1], [0]])).shape
    TensorShape([2, 1, 4])
    """

    def __init__(self, class_names, output_dim=16, **kwargs):
        super().__init__(**kwargs)
        self.class_names = [str(name) for name in class_names]
        self.output_dim = int(output_dim)
        if not self.class_names:
            raise ValueError("a class embedding needs at least one class name")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique, got {self.class_names}")

    def build(self, input_shape):
        self.embeddings = self.add_weight(name="embeddings", shape=(len(self.class_names), self.output_dim),
                                          initializer=keras.initializers.RandomNormal(stddev=1.0))

    def call(self, inputs):
        ids = ops.clip(ops.cast(inputs, "int32"), 0, len(self.class_names) - 1)
        return ops.take(ops.convert_to_tensor(self.embeddings), ids, axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        return {**super().get_config(), "class_names": list(self.class_names), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MelFeatures(keras.layers.Layer):
    """Takes a log-mel spectrogram `(batch, frames, n_mels)`, scales it to about [-1, 1] (silence, the log floor,
    is -1; a full-scale bin, log 1 = 0, is +1), and keeps the settings it was computed with, so that they are
    saved inside the model (`data.features.MelSettings`).

    Args:
        settings: a `MelSettings` or its `to_dict()`.
        **kwargs: standard layer arguments.

    Example:

    >>> from data.features import mel_settings
    >>> layer = MelFeatures(mel_settings(8000).to_dict())
    >>> layer(np.full((1, 5, 80), np.log(1e-5), "float32")).numpy().max()
    -1.0
    """

    def __init__(self, settings, **kwargs):
        super().__init__(**kwargs)
        from data.features import MelSettings

        self.settings = settings if isinstance(settings, MelSettings) else MelSettings.from_dict(settings)

    def call(self, inputs):
        floor = self.settings.floor_value
        return (ops.cast(inputs, self.compute_dtype) - floor) / (-floor) * 2.0 - 1.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "settings": self.settings.to_dict()}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FrameUpsampler(keras.layers.Layer):
    """Learned upsampling in time by `factor`: a nearest-neighbour stretch followed by a depthwise convolution
    over one frame on either side, computed in its polyphase form.

    Output step `k * factor + j` (phase `j` of frame `k`) is, per channel `c`,
    `sum_o kernel[j, o, c] * frames[k + o - 1, c]` over the frames before, at and after `k` (zeros beyond the
    ends). A depthwise convolution with `2 * factor + 1` taps over the stretched frames is this with each phase's
    three weights tied to sums of its taps; here each phase has its own, and the cost is 3 multiply-adds per
    output step and channel instead of `2 * factor + 1` (training the default vocoder ran 1.3x slower with the
    convolution written out). The kernel starts as linear interpolation between frame centres.

    Args:
        factor: output steps per input step (the spectrogram's hop).
        **kwargs: standard layer arguments.

    Example:

    >>> FrameUpsampler(4)(np.zeros((2, 5, 3), "float32")).shape
    TensorShape([2, 20, 3])
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def build(self, input_shape):
        # Frame k is centred on step k * factor: phase j lies j / factor of the way to frame k + 1.
        position = np.arange(self.factor, dtype=np.float32) / self.factor
        start = np.stack([np.zeros_like(position), 1.0 - position, position], axis=1)  # (factor, 3)
        initial = np.repeat(start[:, :, None], input_shape[-1], axis=2)
        self.kernel = self.add_weight(name="kernel", shape=(self.factor, 3, input_shape[-1]),
                                      initializer=lambda shape, dtype=None: ops.cast(initial, dtype))

    def call(self, inputs):
        batch, frames, channels = ops.shape(inputs)[0], ops.shape(inputs)[1], inputs.shape[-1]
        kernel = ops.cast(self.kernel, inputs.dtype)
        output = 0
        for offset, neighbour in enumerate((_delayed(inputs, 1), inputs, _advanced(inputs, 1))):
            output = output + neighbour[:, :, None, :] * kernel[None, None, :, offset, :]
        return ops.reshape(output, (batch, frames * self.factor, channels))

    def compute_output_shape(self, input_shape):
        time = None if input_shape[1] is None else input_shape[1] * self.factor
        return (input_shape[0], time, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropToLength(keras.layers.Layer):
    """`inputs[0][:, offset : offset + length]`, where `length` is the time length of `inputs[1]`: the
    upsampled conditioning cut to the samples of the waveform window it conditions.

    Args:
        offset: time steps skipped at the start (the context before the window's first target).
        **kwargs: standard layer arguments.

    Example:

    >>> CropToLength(2)([np.arange(6.0).reshape(1, 6, 1), np.zeros((1, 3, 1))]).numpy().ravel().tolist()
    [2.0, 3.0, 4.0]
    """

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = int(offset)

    def call(self, inputs):
        features, reference = inputs
        return features[:, self.offset:self.offset + ops.shape(reference)[1]]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[1][1], input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


def class_ids(spec, classes):
    """The integer ids of `classes` (names, or ids) for a model whose `WaveNetSpec` is `spec` (or whose class names,
    in id order, are `spec`: a WaveGAN's).

    Raises:
        ValueError: the model has no classes, or a name or id it does not know (the message lists its classes).
    """
    names = tuple(getattr(spec, "class_names", spec))
    if not names:
        raise ValueError("this model was not trained with classes")
    known = ", ".join(names)
    ids = []
    for value in np.atleast_1d(np.asarray(classes, dtype=object)).tolist():
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(names):
                raise ValueError(f"class id {value} is out of range: the model has {len(names)} classes ({known})")
            ids.append(int(value))
        elif str(value) in names:
            ids.append(names.index(str(value)))
        else:
            raise ValueError(f"unknown class {value!r}; the model's classes: {known}")
    return np.array(ids, np.int32)
