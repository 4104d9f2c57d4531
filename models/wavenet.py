"""The WaveNet builder."""

from dataclasses import dataclass
from typing import Optional

import keras

from data.features import CONTEXT_FRAMES, MelSettings
from models.layers import (AudioInput, CausalConv1D, ClassEmbedding, CropToLength, GatedActivation, MelFeatures,
                           FrameUpsampler, MuLawEmbedding, OutputDistribution)

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


@dataclass(frozen=True)
class Block:
    """One gated residual block of a WaveNet, and the names of its layers.

    Args:
        stack: which repetition of the dilation pattern.
        layer: position in the stack; the dilation is `2 ** layer`.
        has_residual: whether a 1x1 residual convolution follows (the last block has none: nothing reads it).
    """

    stack: int
    layer: int
    has_residual: bool

    @property
    def dilation(self):
        return 2 ** self.layer

    def name(self, part):
        """The layer name of one part of the block: `"dilated"`, `"gate"`, `"skip"`, `"residual"` or `"add"`, and
        the conditioning projected into its gate: `"class"` and `"mel"`."""
        return f"s{self.stack}_l{self.layer}_{part}"


@dataclass(frozen=True)
class WaveNetSpec:
    """The one description of a WaveNet's structure.

    `build_wavenet` builds a model from it, `wavenet_spec` reads it back off a built or loaded model, and
    generation (`models.generation`) and evaluation find every weight through it, by the layer names it gives.

    Args:
        distribution: `"categorical"`, `"logistic_mixture"` or `"point"`.
        stacks: repetitions of the dilation pattern.
        layers: blocks per stack; dilations 1, 2, ..., 2^(layers-1).
        residual_channels: channels of the residual stream.
        skip_channels: channels of the skip connections and the post-processing.
        kernel_size: taps of each dilated convolution.
        input_kernel_size: taps of the input convolution.
        input_embedding: the input as a mu-law code with a learned vector per code (`MuLawEmbedding`, in place of
            the input convolution; one tap) instead of the sample's value.
        num_classes: mu-law classes (and the bins bits per sample are counted over).
        num_mixtures: logistic components.
        sample_rate: the training audio's rate.
        class_names: global conditioning: the names of the classes (speakers, instruments, styles); empty for
            none. A learned `class_channels` vector per class is projected into every gate.
        class_channels: size of each class's vector.
        mel: local conditioning: the `data.features.MelSettings` of the log-mel spectrogram the model is
            conditioned on; `None` for none. The spectrogram is upsampled to the sample rate (a frame-level
            convolution to `mel_channels` channels, then a learned stretch over the hop: `mel_upsampler`), then
            projected into every gate.
        mel_channels: channels of the upsampled spectrogram.

    Example:

    >>> spec = WaveNetSpec(stacks=1, layers=3)
    >>> [block.name("dilated") for block in spec.blocks]
    ['s0_l0_dilated', 's0_l1_dilated', 's0_l2_dilated']
    """

    distribution: str = "categorical"
    stacks: int = 2
    layers: int = 10
    residual_channels: int = 64
    skip_channels: int = 128
    kernel_size: int = 2
    input_kernel_size: int = 1
    input_embedding: bool = False
    num_classes: int = 256
    num_mixtures: int = 10
    sample_rate: int = 16000
    class_names: tuple = ()
    class_channels: int = 16
    mel: Optional[MelSettings] = None
    mel_channels: int = 64

    # Names of the inputs and of the layers outside the blocks.
    WAVEFORM = "waveform"
    CLASS_ID = "class_id"
    MEL = "mel"
    CLASS_EMBEDDING = "class_embedding"
    MEL_FEATURES = "mel_features"
    MEL_CONV = "mel_conv"
    MEL_UPSAMPLE = "mel_upsample"  # the upsampler's output: one row per sample
    MEL_CROP = "mel_crop"
    AUDIO = "audio"
    INPUT_CONV = "input_conv"
    INPUT_EMBEDDING = "input_embedding"
    SKIP_SUM = "skip_sum"
    SKIP_RELU = "skip_relu"
    POST = "post_1"
    LOGITS = "logits"
    OUTPUT = "distribution"

    @property
    def blocks(self):
        """Every block, in the order the signal passes them."""
        last = (self.stacks - 1, self.layers - 1)
        return tuple(Block(stack, layer, (stack, layer) != last)
                     for stack in range(self.stacks) for layer in range(self.layers))

    @property
    def dilations(self):
        return tuple(block.dilation for block in self.blocks)

    @property
    def receptive_field(self):
        return receptive_field(self.stacks, self.layers, self.kernel_size, self.input_kernel_size)

    @property
    def head(self):
        return "classifier" if self.distribution == "categorical" else "regressor"

    @property
    def conditioned(self):
        return bool(self.class_names) or self.mel is not None

    @property
    def input_names(self):
        """The model's inputs, in order: the waveform, then `class_id` and `mel` when conditioned so."""
        return (self.WAVEFORM,) + ((self.CLASS_ID,) if self.class_names else ()) + (
            (self.MEL,) if self.mel is not None else ())

    @property
    def output_channels(self):
        return {"categorical": self.num_classes, "logistic_mixture": 3 * self.num_mixtures, "point": 1}[
            self.distribution]


def build_wavenet(head="classifier", loss=None, stacks=2, layers=10, residual_channels=64, skip_channels=128,
                  kernel_size=2, input_kernel_size=1, quantization_channels=256, num_mixtures=10,
                  sample_rate=16000, class_names=(), class_channels=16, mel=None, mel_channels=64,
                  input_embedding=False, name="wavenet"):
    """Builds a WaveNet as a functional `keras.Model`.

    Input `(batch, time, 1)` floats in [-1, 1], any length; output `(batch, time, channels)` where step `t`
    parameterises the distribution of sample `t + 1`. Every convolution is causal, so no output sees its future.

    Layout: causal input convolution -> `stacks` x `layers` gated residual blocks (dilated causal convolution to
    `2 * residual_channels`, `tanh * sigmoid`, 1x1 skip to `skip_channels`, 1x1 residual added back), dilations
    1, 2, ..., 2^(layers-1) in each stack -> sum of skips -> ReLU -> 1x1 -> ReLU -> 1x1 -> distribution.
    The last block has no residual convolution: nothing reads it. The structure is a `WaveNetSpec`, which
    names every layer; `build_from_spec` builds it.

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
        class_names: names of the classes to condition on (saved with the model); empty for none. Adds the input
            `class_id`, `(batch, 1)` int32.
        class_channels: size of each class's learned vector.
        mel: a `data.features.MelSettings` to condition on log-mel spectrograms (saved with the model); `None` for
            none. Adds the input `mel`, `(batch, frames, n_mels)`: the padded frames
            (`data.features.pad_features`) from `CONTEXT_FRAMES` before the first target's frame on, at least
            `data.features.frames_for_samples(time)` of them.
        mel_channels: channels of the upsampled spectrogram.
        input_embedding: feed each sample as its mu-law code, a learned vector per code (the WaveNet paper's
            one-hot input), instead of its value through the input convolution; needs `input_kernel_size` 1.
        name: the model's name.

    Example:

    >>> model = build_wavenet(stacks=1, layers=3, residual_channels=8, skip_channels=8)
    >>> model(np.zeros((2, 100, 1), "float32")).shape
    TensorShape([2, 100, 256])
    """
    for argument, value in (("stacks", stacks), ("layers", layers), ("residual_channels", residual_channels),
                            ("skip_channels", skip_channels), ("kernel_size", kernel_size),
                            ("input_kernel_size", input_kernel_size), ("sample_rate", sample_rate),
                            ("class_channels", class_channels), ("mel_channels", mel_channels)):
        if int(value) <= 0:
            raise ValueError(f"{argument} must be positive, got {value}")
    if input_embedding and int(input_kernel_size) != 1:
        raise ValueError(f"an embedded input has one tap; got input_kernel_size {input_kernel_size}")
    spec = WaveNetSpec(distribution=distribution_for(head, loss), stacks=int(stacks), layers=int(layers),
                       residual_channels=int(residual_channels), skip_channels=int(skip_channels),
                       kernel_size=int(kernel_size), input_kernel_size=int(input_kernel_size),
                       num_classes=int(quantization_channels), num_mixtures=int(num_mixtures),
                       sample_rate=int(sample_rate), class_names=tuple(str(c) for c in class_names),
                       class_channels=int(class_channels), mel=mel, mel_channels=int(mel_channels),
                       input_embedding=bool(input_embedding))
    if mel is not None and mel.sample_rate != spec.sample_rate:
        raise ValueError(f"the mel settings' sample rate ({mel.sample_rate}) differs from the model's "
                         f"({spec.sample_rate})")
    return build_from_spec(spec, name=name)


def build_from_spec(spec, name="wavenet"):
    """Builds the functional `keras.Model` a `WaveNetSpec` describes (see `build_wavenet`)."""
    # The distribution (and so the loss) stays float32 under a mixed-precision policy.
    output = OutputDistribution(spec.distribution, num_classes=spec.num_classes, num_mixtures=spec.num_mixtures,
                                name=spec.OUTPUT, dtype="float32")
    waveform = keras.Input(shape=(None, 1), name=spec.WAVEFORM)
    inputs = [waveform]
    x = AudioInput(spec.sample_rate, name=spec.AUDIO)(waveform)
    class_vector = upsampled = None
    if spec.class_names:
        class_id = keras.Input(shape=(1,), dtype="int32", name=spec.CLASS_ID)
        inputs.append(class_id)
        class_vector = ClassEmbedding(spec.class_names, spec.class_channels, name=spec.CLASS_EMBEDDING)(class_id)
    if spec.mel is not None:
        mel = keras.Input(shape=(None, spec.mel.n_mels), name=spec.MEL)
        inputs.append(mel)
        upsampled = mel_upsampler(spec, mel)
        upsampled = CropToLength(CONTEXT_FRAMES * spec.mel.hop_length, name=spec.MEL_CROP)([upsampled, waveform])
    if spec.input_embedding:
        x = MuLawEmbedding(spec.residual_channels, spec.num_classes, name=spec.INPUT_EMBEDDING)(x)
    else:
        x = keras.layers.Conv1D(spec.residual_channels, spec.input_kernel_size, padding="causal",
                                name=spec.INPUT_CONV)(x)
    skips = []
    for block in spec.blocks:
        h = CausalConv1D(2 * spec.residual_channels, spec.kernel_size, dilation_rate=block.dilation,
                         name=block.name("dilated"))(x)
        terms = [h]
        # Conditioning projected into this layer's gate (no bias: the dilated convolution has one).
        if class_vector is not None:
            terms.append(keras.layers.Dense(2 * spec.residual_channels, use_bias=False,
                                            name=block.name("class"))(class_vector))
        if upsampled is not None:
            terms.append(keras.layers.Dense(2 * spec.residual_channels, use_bias=False,
                                            name=block.name("mel"))(upsampled))
        z = GatedActivation(name=block.name("gate"))(terms if len(terms) > 1 else h)
        # 1x1 convolutions as Dense layers: the same product, run as one plain matrix multiply (faster).
        skips.append(keras.layers.Dense(spec.skip_channels, name=block.name("skip"))(z))
        if block.has_residual:
            residual = keras.layers.Dense(spec.residual_channels, name=block.name("residual"))(z)
            x = keras.layers.Add(name=block.name("add"))([x, residual])
    h = keras.layers.Add(name=spec.SKIP_SUM)(skips) if len(skips) > 1 else skips[0]
    h = keras.layers.ReLU(name=spec.SKIP_RELU)(h)
    h = keras.layers.Dense(spec.skip_channels, activation="relu", name=spec.POST)(h)
    h = keras.layers.Dense(spec.output_channels, name=spec.LOGITS)(h)
    return keras.Model(inputs if len(inputs) > 1 else waveform, output(h), name=name)


def mel_upsampler(spec, mel):
    """The spectrogram's path to the sample rate: `(batch, frames, n_mels)` -> `(batch, frames * hop, channels)`.

    Stretch plus convolution rather than transposed convolutions: a transposed convolution with stride `hop`
    (100 at 8 kHz) and a kernel that is not a multiple of it makes a checkerboard pattern at the frame rate, and
    one mixing all channels learns `hop` full matrices. Here a frame-level convolution (kernel 3, so each frame sees
    its neighbours) maps the bins to `mel_channels`, then `FrameUpsampler` stretches each frame over its hop and
    smooths across frame boundaries with a learned depthwise filter (one frame either side, polyphase form),
    starting from linear interpolation: smooth from the first step, 3 multiply-adds per sample and channel. This
    is r9y9/wavenet_vocoder's stretch-and-convolve upsampler, computed without materialising the stretched frames.
    """
    x = MelFeatures(spec.mel, name=spec.MEL_FEATURES)(mel)
    x = keras.layers.Conv1D(spec.mel_channels, 3, padding="same", activation="tanh", name=spec.MEL_CONV)(x)
    return FrameUpsampler(spec.mel.hop_length, name=spec.MEL_UPSAMPLE)(x)


def wavenet_spec(model):
    """Reads the `WaveNetSpec` off a model made by `build_wavenet` (built or loaded).

    Raises:
        ValueError: the model is not a WaveNet of this project.
    """
    names = {layer.name for layer in model.layers}
    if not ({WaveNetSpec.AUDIO, WaveNetSpec.OUTPUT, WaveNetSpec.POST} <= names
            and names & {WaveNetSpec.INPUT_CONV, WaveNetSpec.INPUT_EMBEDDING}):
        raise ValueError(f"model {model.name!r} is not a WaveNet built by models.build_wavenet")
    stacks = 0
    while Block(stacks, 0, True).name("dilated") in names:
        stacks += 1
    layers = 0
    while Block(0, layers, True).name("dilated") in names:
        layers += 1
    if not stacks or not layers:
        raise ValueError(f"model {model.name!r} has no dilated convolutions")
    first = model.get_layer(Block(0, 0, True).name("dilated"))
    output = model.get_layer(WaveNetSpec.OUTPUT)
    class_names, class_channels, mel, mel_channels = (), WaveNetSpec.class_channels, None, WaveNetSpec.mel_channels
    if WaveNetSpec.CLASS_EMBEDDING in names:
        embedding = model.get_layer(WaveNetSpec.CLASS_EMBEDDING)
        class_names, class_channels = tuple(embedding.class_names), embedding.output_dim
    if WaveNetSpec.MEL_FEATURES in names:
        mel = model.get_layer(WaveNetSpec.MEL_FEATURES).settings
        mel_channels = int(model.get_layer(WaveNetSpec.MEL_CONV).filters)
    embedded = WaveNetSpec.INPUT_EMBEDDING in names
    if embedded:
        residual, input_taps = model.get_layer(WaveNetSpec.INPUT_EMBEDDING).output_dim, 1
    else:
        conv = model.get_layer(WaveNetSpec.INPUT_CONV)
        residual, input_taps = conv.filters, conv.kernel_size[0]
    spec = WaveNetSpec(distribution=output.distribution, stacks=stacks, layers=layers,
                       residual_channels=int(residual), skip_channels=int(model.get_layer(WaveNetSpec.POST).units),
                       kernel_size=int(first.kernel_size), input_kernel_size=int(input_taps), input_embedding=embedded,
                       num_classes=output.num_classes, num_mixtures=output.num_mixtures,
                       sample_rate=model.get_layer(WaveNetSpec.AUDIO).sample_rate, class_names=class_names,
                       class_channels=class_channels, mel=mel, mel_channels=mel_channels)
    for block in spec.blocks:  # every block the spec names is there, with the dilation it says
        layer = model.get_layer(block.name("dilated")) if block.name("dilated") in names else None
        if layer is None or layer.dilation_rate != block.dilation:
            raise ValueError(f"model {model.name!r} does not have the blocks of a {stacks} x {layers} WaveNet")
    return spec
