"""Custom layers. Every one is registered, so `import models` is all `keras.saving.load_model` needs."""

import keras
from keras import ops

PACKAGE = "wavegen"
DISTRIBUTIONS = ("categorical", "logistic_mixture", "point")
# Lower bound on a logistic component's log scale, as in PixelCNN++: keeps the likelihood finite.
MIN_LOG_SCALE = -7.0


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


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedActivation(keras.layers.Layer):
    """WaveNet's gate: splits the channels in two halves `(f, g)` and returns `tanh(f) * sigmoid(g)`.

    One convolution with twice the channels feeds both halves, which is faster than two convolutions.

    Args:
        **kwargs: standard layer arguments.

    Example:

    >>> GatedActivation()(np.zeros((1, 3, 8))).shape
    TensorShape([1, 3, 4])
    """

    def call(self, inputs):
        filters, gates = ops.split(inputs, 2, axis=-1)
        return ops.tanh(filters) * ops.sigmoid(gates)

    def compute_output_shape(self, input_shape):
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
        return ops.concatenate([logits, means, ops.maximum(log_scales, MIN_LOG_SCALE)], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "distribution": self.distribution, "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures}
