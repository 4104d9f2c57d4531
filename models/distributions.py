"""Output distributions of the WaveNet heads: losses, the bits-per-sample measure, and sampling.

Bits per sample are always reported over the 256 mu-law bins, whatever the head: the classifier's
cross-entropy in bits, the logistic mixture's probability mass inside each mu-law bin, and for the point
regressor a Gaussian around its prediction whose deviation is the batch's RMS error. The numbers are on one
scale, so heads can be compared.
"""

import math

import keras
from keras import ops

from data.mulaw import QUANTIZATION_CHANNELS, mu_law_bin_edges
from models.layers import PACKAGE, mu_law_codes

LOG2 = math.log(2.0)


def _log_sigmoid(x):
    return -ops.softplus(-x)


def logistic_mixture_log_prob(params, lower, upper, is_lowest, is_highest):
    """Log probability that a sample of the mixture falls in `[lower, upper]`, per target.

    The first and last bins take the whole tail below / above them, as in PixelCNN++.

    Args:
        params: `(..., 3K)` = `[logits, means, log_scales]`.
        lower, upper: `(...)` bin edges.
        is_lowest, is_highest: `(...)` booleans for the outer bins.

    Returns:
        `(...)` log probabilities in nats.
    """
    logits, means, log_scales = ops.split(params, 3, axis=-1)
    lower, upper = lower[..., None], upper[..., None]
    inverse_scale = ops.exp(-log_scales)
    upper_in = inverse_scale * (upper - means)
    lower_in = inverse_scale * (lower - means)
    cdf_delta = ops.sigmoid(upper_in) - ops.sigmoid(lower_in)
    # Narrow bins far from a component's centre: the density at the bin centre times the width is accurate
    # where the difference of two sigmoids underflows.
    centre_in = 0.5 * (upper_in + lower_in)
    log_pdf_centre = centre_in - log_scales - 2.0 * ops.softplus(centre_in)
    log_width = ops.log(ops.maximum(upper - lower, 1e-12))
    log_inner = ops.where(cdf_delta > 1e-5, ops.log(ops.maximum(cdf_delta, 1e-12)), log_pdf_centre + log_width)
    log_mass = ops.where(is_lowest[..., None], _log_sigmoid(upper_in),
                         ops.where(is_highest[..., None], _log_sigmoid(-lower_in), log_inner))
    return ops.logsumexp(log_mass + ops.log_softmax(logits, axis=-1), axis=-1)


def bits_per_sample(distribution, y_true, y_pred, num_classes=QUANTIZATION_CHANNELS):
    """Negative log2-likelihood of each target over the mu-law bins.

    Args:
        distribution: `"categorical"`, `"logistic_mixture"` or `"point"`.
        y_true: codes `(batch, time)` (categorical) or samples `(batch, time, 1)` (the regressors).
        y_pred: the model's output `(batch, time, channels)`.

    Returns:
        `(batch, time)` bits.
    """
    if distribution == "categorical":
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        log_probs = ops.log_softmax(y_pred, axis=-1)
        return -ops.take_along_axis(log_probs, y_true[..., None], axis=-1)[..., 0] / LOG2
    samples = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "float32")
    codes = mu_law_codes(samples, num_classes)
    edges = ops.convert_to_tensor(mu_law_bin_edges(num_classes))
    lower, upper = ops.take(edges, codes), ops.take(edges, codes + 1)
    is_lowest, is_highest = codes == 0, codes == num_classes - 1
    if distribution == "logistic_mixture":
        return -logistic_mixture_log_prob(y_pred, lower, upper, is_lowest, is_highest) / LOG2
    # Point regressor: a Gaussian centred on the prediction, deviation = this batch's RMS error.
    prediction = y_pred[..., 0]
    sigma = ops.sqrt(ops.mean(ops.square(samples - prediction))) + 1e-6

    def cdf(x):
        return 0.5 * (1.0 + ops.erf((x - prediction) / (sigma * math.sqrt(2.0))))

    mass = ops.where(is_lowest, cdf(upper), ops.where(is_highest, 1.0 - cdf(lower), cdf(upper) - cdf(lower)))
    return -ops.log(ops.maximum(mass, 1e-12)) / LOG2


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiscretizedLogisticMixtureLoss(keras.losses.Loss):
    """Negative log-likelihood of a discretised mixture of logistics (PixelCNN++, Parallel WaveNet).

    Targets are floats in [-1, 1]; the distribution is discretised to `2 ** bits` levels, 16-bit by default
    like the audio itself.

    Args:
        bits: resolution the continuous distribution is discretised to.
        **kwargs: standard loss arguments.

    Example:

    >>> loss = DiscretizedLogisticMixtureLoss()
    >>> params = np.zeros((1, 5, 30), "float32")
    >>> float(loss(np.zeros((1, 5, 1)), params)) > 0
    True
    """

    def __init__(self, bits=16, name="discretized_logistic_mixture", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bits = int(bits)

    def call(self, y_true, y_pred):
        samples = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), y_pred.dtype)
        half_bin = 1.0 / (2.0 ** self.bits - 1.0)
        return -logistic_mixture_log_prob(y_pred, samples - half_bin, samples + half_bin,
                                          samples < -0.999, samples > 0.999)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BitsPerSample(keras.metrics.Mean):
    """Mean negative log2-likelihood per sample over the mu-law bins; see `bits_per_sample`.

    Args:
        distribution: `"categorical"`, `"logistic_mixture"` or `"point"`.
        num_classes: mu-law bins.
        **kwargs: standard metric arguments.
    """

    def __init__(self, distribution="categorical", num_classes=QUANTIZATION_CHANNELS, name="bits_per_sample",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.distribution = distribution
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        bits = bits_per_sample(self.distribution, y_true, ops.cast(y_pred, "float32"), self.num_classes)
        return super().update_state(bits, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "distribution": self.distribution,
                "num_classes": self.num_classes}


def loss_for(distribution):
    """The training loss of a head."""
    if distribution == "categorical":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if distribution == "logistic_mixture":
        return DiscretizedLogisticMixtureLoss()
    return keras.losses.MeanSquaredError()
