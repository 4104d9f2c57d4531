"""The WaveNet builder."""

from dataclasses import dataclass

import keras

from models.layers import AudioInput, CausalConv1D, GatedActivation, OutputDistribution

HEADS = ("classifier", "regressor")
LOSSES = {"classifier": ("crossentropy",), "regressor": ("logistic-mixture", "mse")}


def distribution_for(head, loss=None):
    """Maps a `--head` and `--loss` to an output distribution; `loss=None` picks the head's default."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    loss = loss or LOSSES[head][0]
    if loss not in LOSSES[head]:
        raise ValueError(f"loss {loss!r} does not fit head {head!r}; choose one of {LOSSES[head]}")
    return {"crossentropy": "categorical", "logistic-mixture": "logistic_mixture", "mse": "point"}[loss]


def receptive_field(stacks=2, layers=10, kernel_size=2, input_kernel_size=1):
    """Samples of input that one output depends on: `1 + sum((k - 1) * dilation)` over every convolution."""
    return 1 + (input_kernel_size - 1) + stacks * (kernel_size - 1) * (2 ** layers - 1)


def build_wavenet(head="classifier", loss=None, stacks=2, layers=10, residual_channels=64, skip_channels=128,
                  kernel_size=2, input_kernel_size=1, quantization_channels=256, num_mixtures=10,
                  sample_rate=16000, name="wavenet"):
    """Builds a WaveNet as a functional `keras.Model`.

    Input `(batch, time, 1)` floats in [-1, 1], any length; output `(batch, time, channels)` where step `t`
    parameterises the distribution of sample `t + 1`. Every convolution is causal, so no output sees its future.

    Layout: causal input convolution -> `stacks` x `layers` gated residual blocks (dilated causal convolution to
    `2 * residual_channels`, `tanh * sigmoid`, 1x1 skip to `skip_channels`, 1x1 residual added back), dilations
    1, 2, ..., 2^(layers-1) in each stack -> sum of skips -> ReLU -> 1x1 -> ReLU -> 1x1 -> distribution.
    The last block has no residual convolution: nothing reads it.

    Layer names (`input_conv`, `s{stack}_l{layer}_dilated`, `..._gate`, `..._skip`, `..._residual`, `post_1`,
    `logits`, ...) are stable: `models.generation` reads the weights by name.

    Args:
        head: `"classifier"` (mu-law classes) or `"regressor"` (continuous samples).
        loss: `"crossentropy"` (classifier), `"logistic-mixture"` or `"mse"` (regressor); default per head.
        stacks: repetitions of the dilation pattern.
        layers: blocks per stack.
        residual_channels: channels of the residual stream.
        skip_channels: channels of the skip connections and the post-processing.
        kernel_size: taps of each dilated convolution.
        input_kernel_size: taps of the input convolution (1 keeps the receptive field at 2047 by default).
        quantization_channels: mu-law classes.
        num_mixtures: logistic components (regressor).
        sample_rate: the training audio's rate, saved with the model.
        name: the model's name.

    Example:

    >>> model = build_wavenet(stacks=1, layers=3, residual_channels=8, skip_channels=8)
    >>> model(np.zeros((2, 100, 1), "float32")).shape
    TensorShape([2, 100, 256])
    """
    distribution = distribution_for(head, loss)
    for argument, value in (("stacks", stacks), ("layers", layers), ("residual_channels", residual_channels),
                            ("skip_channels", skip_channels), ("kernel_size", kernel_size),
                            ("input_kernel_size", input_kernel_size), ("sample_rate", sample_rate)):
        if int(value) <= 0:
            raise ValueError(f"{argument} must be positive, got {value}")
    # The distribution (and so the loss) stays float32 under a mixed-precision policy.
    output = OutputDistribution(distribution, num_classes=quantization_channels, num_mixtures=num_mixtures,
                                name="distribution", dtype="float32")

    waveform = keras.Input(shape=(None, 1), name="waveform")
    x = AudioInput(sample_rate, name="audio")(waveform)
    x = keras.layers.Conv1D(residual_channels, input_kernel_size, padding="causal", name="input_conv")(x)
    skips = []
    for stack in range(stacks):
        for layer in range(layers):
            prefix = f"s{stack}_l{layer}"
            h = CausalConv1D(2 * residual_channels, kernel_size, dilation_rate=2 ** layer,
                             name=f"{prefix}_dilated")(x)
            z = GatedActivation(name=f"{prefix}_gate")(h)
            # 1x1 convolutions as Dense layers: the same product, run as one plain matrix multiply (faster).
            skips.append(keras.layers.Dense(skip_channels, name=f"{prefix}_skip")(z))
            if (stack, layer) != (stacks - 1, layers - 1):
                residual = keras.layers.Dense(residual_channels, name=f"{prefix}_residual")(z)
                x = keras.layers.Add(name=f"{prefix}_add")([x, residual])
    h = keras.layers.Add(name="skip_sum")(skips) if len(skips) > 1 else skips[0]
    h = keras.layers.ReLU(name="skip_relu")(h)
    h = keras.layers.Dense(skip_channels, activation="relu", name="post_1")(h)
    h = keras.layers.Dense(output.channels, name="logits")(h)
    return keras.Model(waveform, output(h), name=name)


@dataclass(frozen=True)
class WaveNetSpec:
    """What generation and evaluation need to know about a built or loaded WaveNet."""

    sample_rate: int
    distribution: str
    num_classes: int
    num_mixtures: int
    dilations: tuple
    kernel_size: int
    input_kernel_size: int

    @property
    def receptive_field(self):
        return 1 + (self.input_kernel_size - 1) + (self.kernel_size - 1) * sum(self.dilations)

    @property
    def head(self):
        return "classifier" if self.distribution == "categorical" else "regressor"


def dilated_layer_names(model):
    """Names of the dilated convolutions, in the order the signal passes them."""
    return [layer.name for layer in model.layers if layer.name.endswith("_dilated")]


def wavenet_spec(model):
    """Reads a `WaveNetSpec` off a model made by `build_wavenet`.

    Raises:
        ValueError: the model is not a WaveNet of this project.
    """
    try:
        audio = model.get_layer("audio")
        output = model.get_layer("distribution")
        input_conv = model.get_layer("input_conv")
    except ValueError:
        raise ValueError(f"model {model.name!r} is not a WaveNet built by models.build_wavenet") from None
    dilated = [model.get_layer(name) for name in dilated_layer_names(model)]
    if not dilated:
        raise ValueError(f"model {model.name!r} has no dilated convolutions")
    return WaveNetSpec(sample_rate=audio.sample_rate, distribution=output.distribution,
                       num_classes=output.num_classes, num_mixtures=output.num_mixtures,
                       dilations=tuple(layer.dilation_rate for layer in dilated),
                       kernel_size=dilated[0].kernel_size,
                       input_kernel_size=int(input_conv.kernel_size[0]))
