"""A convolutional GAN vocoder: a log-mel spectrogram to its waveform in one parallel pass.

Two generators (`GENERATORS`). `build_istft_generator` (Vocos, Siuzdak 2023; the trainer's default) works at the
frame rate: ConvNeXt blocks predict each frame's STFT, phases and a correction to the magnitudes that the mel
filterbank's pseudo-inverse gives, optionally Griffin-Lim iterations inside the network make the phases of
overlapping frames agree (`GriffinLimPhases`), and the inverse STFT makes the audio; at equal training time it came
far closer to held-out speech than MelGAN's. `build_vocoder_generator` is MelGAN's (Kumar et al., 2019): a
convolution over the frames, then one transposed convolution per factor of the hop (kernel twice the factor), each
followed by a stack of dilated residual blocks (dilations 1, 3, 9), and a tanh. MelGAN's shape rather than
HiFi-GAN's multi-receptive-field fusion because it costs a third of the multiply-adds per sample for the same
upsampling, and on two CPU cores both training time and the 100x real time goal are bound by them. The losses are
HiFi-GAN's (Kong et al., 2020): least-squares adversarial terms from discriminators that look at the waveform at
several scales (MelGAN's) and periods (HiFi-GAN's), feature matching on their layers, and a reconstruction term,
here the multi-resolution STFT loss of Parallel WaveGAN (Yamamoto et al., 2020), that gives the generator a signal
from the first step.

Alignment follows `data.features`: the generator takes padded log-mel rows (`pad_features`: frame `k` is row
`k + CONTEXT_FRAMES`) and returns the samples of the rows between the `CONTEXT_FRAMES` of context on each side:
`rows - 2 * CONTEXT_FRAMES` frames of `hop` samples, sample `n` lying in frame `n // hop`. `vocode` runs a
spectrogram of any length in chunks with overlap.
"""

import dataclasses
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from data.features import CONTEXT_FRAMES, MAX_WINDOW_HOPS, istft_frame_sizes, stft_edge_frames
from models.gan import TwoOptimizerGAN
from models.layers import PACKAGE, AudioInput, MelFeatures

RESIDUAL_DILATIONS = (1, 3, 9)
ISTFT_BLOCKS = 8
PERIODS = (2, 3, 5, 7, 11)
SCALES = 3
# Chunks of this many frames, each with this many frames of context on either side (more than either generator's
# receptive field: MelGAN's about 8 frames, the iSTFT generator's 30 with 8 blocks; `context_frames` adds what
# Griffin-Lim iterations add), give the same audio as one pass over the whole spectrogram.
CHUNK_FRAMES = 1600
OVERLAP_FRAMES = 32


def upsample_factors(hop, largest=8):
    """The hop as a product of upsampling factors of at most `largest` where it can be (a larger prime stays one
    factor), largest first: 100 -> (5, 5, 4), 200 -> (8, 5, 5), 256 -> (4, 4, 4, 4).

    Example:

    >>> upsample_factors(100)
    (5, 5, 4)
    """
    hop, factors, prime = int(hop), [], 2
    if hop < 1:
        raise ValueError(f"hop must be positive, got {hop}")
    while hop > 1:
        while hop % prime == 0:
            factors.append(prime)
            hop //= prime
        prime += 1
    while len(factors) > 1:  # merge the two smallest while the product stays small
        factors.sort()
        if factors[0] * factors[1] > largest:
            break
        factors[:2] = [factors[0] * factors[1]]
    return tuple(sorted(factors, reverse=True)) or (1,)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TrimEdges(keras.layers.Layer):
    """`inputs[:, samples : length - end_samples]`: drops the audio of the context frames at both ends.

    Args:
        samples: time steps dropped at the start (and at the end, unless `end_samples` is given).
        end_samples: time steps dropped at the end; None: `samples`.
        **kwargs: standard layer arguments.

    Example:

    >>> TrimEdges(2)(np.arange(8.0).reshape(1, 8, 1)).numpy().ravel().tolist()
    [2.0, 3.0, 4.0, 5.0]
    """

    def __init__(self, samples, end_samples=None, **kwargs):
        super().__init__(**kwargs)
        self.samples = int(samples)
        self.end_samples = None if end_samples is None else int(end_samples)

    @property
    def _end(self):
        return self.samples if self.end_samples is None else self.end_samples

    def call(self, inputs):
        return inputs[:, self.samples:ops.shape(inputs)[1] - self._end]

    def compute_output_shape(self, input_shape):
        time = None if input_shape[1] is None else input_shape[1] - self.samples - self._end
        return (input_shape[0], time, *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "samples": self.samples, "end_samples": self.end_samples}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeriodFold(keras.layers.Layer):
    """Folds a waveform `(batch, time, 1)` into `(batch, ceil(time / period), period, 1)`, zero-padding the end, so
    that a 2-D convolution with kernels `(k, 1)` looks at every `period`-th sample (HiFi-GAN's period discriminator).

    Args:
        period: samples per row.
        **kwargs: standard layer arguments.

    Example:

    >>> PeriodFold(3)(np.arange(7.0).reshape(1, 7, 1)).shape
    TensorShape([1, 3, 3, 1])
    """

    def __init__(self, period, **kwargs):
        super().__init__(**kwargs)
        self.period = int(period)

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        padding = (self.period - length % self.period) % self.period
        padded = ops.pad(inputs, [[0, 0], [0, padding], [0, 0]])
        return ops.reshape(padded, (ops.shape(inputs)[0], -1, self.period, ops.shape(inputs)[2]))

    def compute_output_shape(self, input_shape):
        rows = None if input_shape[1] is None else -(-input_shape[1] // self.period)
        return (input_shape[0], rows, self.period, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "period": self.period}


def build_vocoder_generator(settings, channels=128, name="vocoder"):
    """The GAN vocoder's generator: padded log-mel rows `(batch, rows, n_mels)` to the audio of the rows between
    the context frames, `(batch, (rows - 2 * CONTEXT_FRAMES) * hop, 1)`.

    Args:
        settings: the `data.features.MelSettings` of its spectrograms, saved inside the model.
        channels: channels after the first convolution; each upsampling halves them (at least 8).
        name: the model's name.

    Example:

    >>> from data.features import mel_settings
    >>> generator = build_vocoder_generator(mel_settings(8000), channels=16)
    >>> generator(np.zeros((2, 9, 80), "float32")).shape
    TensorShape([2, 500, 1])
    """
    mel = keras.Input(shape=(None, settings.n_mels), name="mel")
    x = MelFeatures(settings, name="mel_features")(mel)
    x = keras.layers.Conv1D(channels, 7, padding="same", name="mel_conv")(x)
    width = int(channels)
    for i, factor in enumerate(upsample_factors(settings.hop_length)):
        width = max(8, width // 2)
        x = keras.layers.LeakyReLU(0.2, name=f"upsample_{i}_lrelu")(x)
        x = keras.layers.Conv1DTranspose(width, 2 * factor, strides=factor, padding="same", name=f"upsample_{i}")(x)
        for j, dilation in enumerate(RESIDUAL_DILATIONS):
            y = keras.layers.LeakyReLU(0.2, name=f"block_{i}_{j}_lrelu_1")(x)
            y = keras.layers.Conv1D(width, 3, dilation_rate=dilation, padding="same", name=f"block_{i}_{j}_dilated")(y)
            y = keras.layers.LeakyReLU(0.2, name=f"block_{i}_{j}_lrelu_2")(y)
            y = keras.layers.Conv1D(width, 1, name=f"block_{i}_{j}_mix")(y)
            x = keras.layers.Add(name=f"block_{i}_{j}_add")([x, y])
    x = keras.layers.LeakyReLU(0.2, name="output_lrelu")(x)
    x = keras.layers.Conv1D(1, 7, padding="same", name="output_conv")(x)
    x = keras.layers.Activation("tanh", name="output_tanh", dtype="float32")(x)
    x = TrimEdges(CONTEXT_FRAMES * settings.hop_length, name="trim_context")(x)
    return keras.Model(mel, AudioInput(settings.sample_rate, name="audio", dtype="float32")(x), name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerScale(keras.layers.Layer):
    """Multiplies each channel by a learned scale that starts small (ConvNeXt's layer scale), so each residual block
    starts close to the identity.

    Args:
        init_value: every channel's scale at the start.
        **kwargs: standard layer arguments.

    Example:

    >>> LayerScale(0.5)(np.ones((1, 2, 3), "float32")).numpy().ravel().tolist()
    [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    """

    def __init__(self, init_value=0.1, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), name="scale",
                                     initializer=keras.initializers.Constant(self.init_value))

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


# The largest log-magnitude a frame is made from: e^7 is far above a full-scale sine's (fft_length / 4) at any size
# used here.
LOG_MAGNITUDE_CAP = 7.0


def _basis_at(settings, fft_length):
    """The mel filterbank of `settings` at FFT `fft_length` (its window no longer than the FFT), `(n_mels, bins)`."""
    from data.features import mel_basis

    return mel_basis(dataclasses.replace(settings, n_fft=fft_length, win_length=min(settings.win_length, fft_length)))


def _magnitudes_and_phases(inputs, fft_length):
    """Frames of log-magnitude then phase (`InverseSTFT`'s input) as float32 `(log_magnitude, magnitude, phase)`."""
    # A split, not two slices: a slice's gradient scatters into zeros, a split's is one concatenation.
    log_magnitude, phase = ops.split(ops.cast(inputs, "float32"), [fft_length // 2 + 1], axis=-1)
    return log_magnitude, ops.exp(ops.minimum(log_magnitude, LOG_MAGNITUDE_CAP)), phase


def _overlap_add(magnitude, cos, sin, fft_length, hop_length, window_length):
    """The audio of frames given as magnitudes and unit phasors: inverse FFT, Hann window (`window_length` samples
    centred in the frame), overlap-add."""
    return ops.istft((magnitude * cos, magnitude * sin), window_length, hop_length, fft_length, window="hann",
                     center=False)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ParallelPhase(keras.layers.Layer):
    """Each bin's phase as the angle of a learned complex number (APNet's parallel phase estimation, Ai and Ling,
    2023): the input's last axis holds the real parts, then the imaginary parts. A phase given by one linear output
    must jump by 2 pi somewhere as its input moves round the circle; the angle of two smooth outputs need not.

    Args:
        **kwargs: standard layer arguments.

    Example:

    >>> ParallelPhase()(np.array([[1.0, 0.0, 0.0, 1.0]], "float32")).numpy().round(4)  # the bins 1 and i
    array([[0.    , 1.5708]], dtype=float32)
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")  # angles need float32 under a mixed global policy
        super().__init__(**kwargs)

    def call(self, inputs):
        # At (or next to) the origin the angle and its gradient are undefined: `_unit_phasors` gives phase 0 there.
        cos, sin = _unit_phasors(*ops.split(ops.cast(inputs, "float32"), 2, axis=-1))
        return ops.cast(ops.arctan2(sin, cos), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], None if input_shape[-1] is None else input_shape[-1] // 2)


def _unit_phasors(real, imag):
    """`(cos, sin)` of complex values' phases; a silent bin (exactly zero in padding) gets phase 0, on both sides of a
    `where`, so that no infinite gradient reaches it through the branch not taken."""
    power = real * real + imag * imag
    audible = power > 1e-20
    inverse_norm = 1.0 / ops.sqrt(ops.where(audible, power, 1.0))
    return ops.where(audible, real * inverse_norm, 1.0), ops.where(audible, imag * inverse_norm, 0.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InverseSTFT(keras.layers.Layer):
    """Frames of log-magnitude and phase to a waveform by the inverse STFT (Hann window, overlap-add; Vocos).

    Input `(batch, frames, 2 * (fft_length // 2 + 1))`: each frame's log-magnitudes, then its phases in radians
    (any real value: only their cosine and sine are used). Output `(batch, (frames - 1) * hop_length + fft_length, 1)`
    float32, frame `k` centred on sample `k * hop_length + fft_length // 2`. The overlap-add is normalised for a
    full overlap, which holds from sample `(fft_length + window_length) // 2 - hop_length` to
    `frames * hop_length + (fft_length - window_length) // 2`.

    Args:
        fft_length: FFT length in samples (even).
        hop_length: samples between frames.
        window_length: the Hann window's length, centred in each frame (None: `fft_length`).
        **kwargs: standard layer arguments.

    Example:

    >>> InverseSTFT(400, 100)(np.zeros((1, 5, 402), "float32")).shape
    TensorShape([1, 800, 1])
    """

    def __init__(self, fft_length, hop_length, window_length=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # phases and exponentials need float32 under a mixed global policy
        super().__init__(**kwargs)
        self.fft_length = int(fft_length)
        self.hop_length = int(hop_length)
        self.window_length = self.fft_length if window_length is None else int(window_length)

    def call(self, inputs):
        _, magnitude, phase = _magnitudes_and_phases(inputs, self.fft_length)
        audio = _overlap_add(magnitude, ops.cos(phase), ops.sin(phase), self.fft_length, self.hop_length,
                             self.window_length)
        return ops.cast(audio[..., None], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        time = None if input_shape[1] is None else (input_shape[1] - 1) * self.hop_length + self.fft_length
        return (input_shape[0], time, 1)

    def get_config(self):
        return {**super().get_config(), "fft_length": self.fft_length, "hop_length": self.hop_length,
                "window_length": self.window_length}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GriffinLimPhases(keras.layers.Layer):
    """Frames of log-magnitude and phase, their phases made consistent by Griffin-Lim iterations (Griffin and Lim,
    1984), unrolled inside the network as in Deep Griffin-Lim Iteration (Masuyama et al., 2019).

    Each iteration turns the frames into audio (`InverseSTFT`'s transform) and analyses the audio again with the same
    window, keeping the new phases and the given magnitudes. Phases predicted frame by frame do not fit their
    overlapping neighbours: overlap-add then cancels part of each frame, and the audio's spectrum is not the one
    predicted. The iterations remove that mismatch, and gradients flow through them, so the phase head learns a
    starting point for them. More iterations when generating than in training bring the phases closer still to
    agreeing at a cost in speed alone. Input and output as `InverseSTFT`'s input; the log-magnitudes pass through
    unchanged. Each iteration widens the receptive field by `ceil(window_length / hop_length) - 1` frames on either
    side (`reach`).

    Args:
        fft_length: FFT length in samples (even), as the `InverseSTFT` after it.
        hop_length: samples between frames.
        iterations: Griffin-Lim iterations in training (0: the input unchanged).
        generation_iterations: iterations outside training (None: `iterations`).
        momentum: the fast Griffin-Lim's momentum (Perraudin et al., 2013; librosa's default is 0.99): each
            iteration's phases step further along the change from the last one's (0: plain Griffin-Lim). A
            consistent spectrum is still a fixed point.
        window_length: the Hann window's length, centred in each frame (None: `fft_length`), as the `InverseSTFT`.
        **kwargs: standard layer arguments.

    Example:

    >>> GriffinLimPhases(400, 100, 4)(np.zeros((1, 5, 402), "float32")).shape
    TensorShape([1, 5, 402])
    """

    def __init__(self, fft_length, hop_length, iterations, generation_iterations=None, momentum=0.0,
                 window_length=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # phases and exponentials need float32 under a mixed global policy
        super().__init__(**kwargs)
        self.fft_length = int(fft_length)
        self.hop_length = int(hop_length)
        self.iterations = int(iterations)
        self.generation_iterations = None if generation_iterations is None else int(generation_iterations)
        self.momentum = float(momentum)
        self.window_length = self.fft_length if window_length is None else int(window_length)
        # A window of whole hops takes the faster round trip by blocks of a hop when generating
        # (`_round_trip_by_blocks`).
        self._by_blocks = self.window_length % self.hop_length == 0
        if self._by_blocks:
            window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.window_length) / self.window_length)  # periodic Hann
            overlaps = self.window_length // self.hop_length
            self._analysis = window.astype(np.float32)
            # The inverse STFT's window (TensorFlow's inverse_stft_window_fn): over the sum of the squared windows
            # that overlap each sample.
            self._synthesis = (window / np.tile((window ** 2).reshape(overlaps, self.hop_length).sum(0),
                                                overlaps)).astype(np.float32)
            # Bin b's phase measured from the window's start instead of the frame's (which lies `left` samples
            # before it): plus 2 pi b left / fft.
            left = (self.fft_length - self.window_length) // 2
            self._shift = (2 * np.pi * left / self.fft_length * np.arange(self.fft_length // 2 + 1)).astype(np.float32)

    @property
    def most_iterations(self):
        """The larger of the two counts: what sets the receptive field."""
        return max(self.iterations, self.generation_iterations or 0)

    @property
    def reach(self):
        """Frames on either side that one iteration couples a frame with: those its window overlaps."""
        return -(-self.window_length // self.hop_length) - 1

    def call(self, inputs, training=False):
        iterations = self.iterations if training or self.generation_iterations is None else self.generation_iterations
        if not iterations:
            return ops.cast(inputs, self.compute_dtype)
        log_magnitude, magnitude, phase = _magnitudes_and_phases(inputs, self.fft_length)
        # By blocks only outside training: there its gradients ran a tenth slower than those of ops.stft's way.
        by_blocks = self._by_blocks and not training
        if by_blocks:
            phase = phase + self._shift
        cos, sin = ops.cos(phase), ops.sin(phase)
        step = self.momentum / (1.0 + self.momentum)  # librosa's form of the momentum
        previous = None
        for _ in range(iterations):
            if by_blocks:
                rebuilt = self._round_trip_by_blocks(magnitude, cos, sin)
            else:
                audio = _overlap_add(magnitude, cos, sin, self.fft_length, self.hop_length, self.window_length)
                rebuilt = ops.stft(audio, self.window_length, self.hop_length, self.fft_length, window="hann",
                                   center=False)
            real, imag = rebuilt
            if previous is not None and step:
                real, imag = real - step * previous[0], imag - step * previous[1]
            previous = rebuilt
            cos, sin = _unit_phasors(real, imag)
        phase = ops.arctan2(sin, cos)
        if by_blocks:
            phase = phase - self._shift
        return ops.cast(ops.concatenate([log_magnitude, phase], axis=-1), self.compute_dtype)

    def _round_trip_by_blocks(self, magnitude, cos, sin):
        """The STFT of the inverse STFT of frames whose window spans whole hops, with phases measured from the
        window's start: only the window's samples of each inverse FFT are kept, and the overlap-add and the
        framing are sums and concatenations of hop-long blocks, where `ops.istft` and `ops.stft` overlap-add and
        gather whole FFT frames (the same values; faster when generating, README "The three vocoders side by
        side")."""
        overlaps, hop = self.window_length // self.hop_length, self.hop_length
        frames = ops.irfft((magnitude * cos, magnitude * sin), self.fft_length)[..., :self.window_length]
        frames = frames * self._synthesis
        batch, count = ops.shape(frames)[0], ops.shape(frames)[1]
        blocks = ops.reshape(frames, (batch, count, overlaps, hop))
        audio = blocks[:, :, 0]
        audio = ops.pad(audio, [[0, 0], [0, overlaps - 1], [0, 0]])  # (batch, count + overlaps - 1, hop)
        for j in range(1, overlaps):
            audio = audio + ops.pad(blocks[:, :, j], [[0, 0], [j, overlaps - 1 - j], [0, 0]])
        again = ops.concatenate([audio[:, j:j + count] for j in range(overlaps)], axis=-1) * self._analysis
        return ops.rfft(again, self.fft_length)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fft_length": self.fft_length, "hop_length": self.hop_length,
                "iterations": self.iterations, "generation_iterations": self.generation_iterations,
                "momentum": self.momentum, "window_length": self.window_length}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LinearMagnitudes(keras.layers.Layer):
    """Log-mel frames to log linear-frequency magnitudes at FFT `fft_length`, through the pseudo-inverse of the mel
    filterbank, floored at the spectrogram's `log_floor`: a first guess of the magnitudes, as Griffin-Lim starts
    from, on which the iSTFT generator learns a correction.

    Args:
        settings: the `data.features.MelSettings` of the spectrograms (or its `to_dict()`).
        fft_length: FFT size of the magnitudes (`fft_length // 2 + 1` bins). At another size than the spectrogram's
            `n_fft` they come out `n_fft / fft_length` times too large (a mel band sums that many times more bins
            there), which the generator's learned correction takes off.
        subtract_floor: take `log_floor` off the mel values before inverting, so a silent frame stays silent.
            False (as librosa's Griffin-Lim) treats the floor as sound, which keeps quiet bins closer to the
            recording's own low noise.
        **kwargs: standard layer arguments.

    Example:

    >>> from data.features import mel_settings
    >>> LinearMagnitudes(mel_settings(8000), 400)(np.zeros((1, 3, 80), "float32")).shape
    TensorShape([1, 3, 201])
    """

    def __init__(self, settings, fft_length, subtract_floor=True, **kwargs):
        from data.features import MelSettings

        kwargs.setdefault("dtype", "float32")  # exponentials and logarithms, under a mixed global policy too
        super().__init__(**kwargs)
        self.settings = settings if isinstance(settings, MelSettings) else MelSettings.from_dict(settings)
        self.fft_length = int(fft_length)
        self.subtract_floor = bool(subtract_floor)
        basis = _basis_at(self.settings, self.fft_length)
        self.inverse = np.linalg.pinv(basis).T.astype(np.float32)  # (n_mels, bins)

    def call(self, inputs):
        mel = ops.exp(ops.cast(inputs, "float32"))
        if self.subtract_floor:
            mel = mel - self.settings.log_floor
        linear = ops.matmul(mel, self.inverse)
        return ops.cast(ops.log(ops.maximum(linear, self.settings.log_floor)), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.fft_length // 2 + 1)

    def get_config(self):
        return {**super().get_config(), "settings": self.settings.to_dict(), "fft_length": self.fft_length,
                "subtract_floor": self.subtract_floor}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MelProjection(keras.layers.Layer):
    """Rescales log linear-frequency magnitudes so that their mel spectrogram comes closer to the given one:
    `iterations` multiplicative updates, each bin times the filterbank-weighted mean, over the mel bands it falls
    in, of the band's ratio of wanted to made mel magnitude (Lee and Seung's update for the generalised
    Kullback-Leibler divergence, with the filterbank fixed). Magnitudes whose mel spectrogram is already the
    given one pass unchanged, and a bin's shape within its bands is kept, so a learned correction of the
    pseudo-inverse (`LinearMagnitudes`) keeps the band energies the spectrogram fixes. Bins outside every band pass
    unchanged. The target is the spectrogram as given, floor included: a silent band's bins are brought to the
    floor's level, as the pseudo-inverse that keeps the floor (the mel layout's) puts them.

    Inputs: `[log_magnitudes (batch, frames, fft_length // 2 + 1), log_mel (batch, frames, n_mels)]`.

    Args:
        settings: the `data.features.MelSettings` of the spectrograms (or its `to_dict()`).
        fft_length: FFT size of the magnitudes; the spectrogram's own `n_fft` (the mel layout), so that a band
            sums the same bins as the spectrogram's.
        iterations: updates (0: the magnitudes pass unchanged).
        **kwargs: standard layer arguments.

    Example:

    >>> from data.features import mel_settings
    >>> layer = MelProjection(mel_settings(8000), 512, 5)
    >>> layer([np.zeros((1, 3, 257), "float32"), np.zeros((1, 3, 80), "float32")]).shape
    TensorShape([1, 3, 257])
    """

    def __init__(self, settings, fft_length, iterations=5, **kwargs):
        from data.features import MelSettings

        kwargs.setdefault("dtype", "float32")  # exponentials and ratios, under a mixed global policy too
        super().__init__(**kwargs)
        self.settings = settings if isinstance(settings, MelSettings) else MelSettings.from_dict(settings)
        self.fft_length = int(fft_length)
        self.iterations = int(iterations)
        if self.iterations < 0:
            raise ValueError(f"iterations must be 0 or more, not {iterations}")
        basis = _basis_at(self.settings, self.fft_length)
        self.basis = basis.astype(np.float32)  # (n_mels, bins)
        covered = basis.sum(axis=0)
        # 1 / a bin's total weight over the bands, and bins in no band (above fmax) kept as they are.
        self.normaliser = np.where(covered > 0, 1.0 / np.maximum(covered, 1e-30), 0.0).astype(np.float32)
        self.outside = (covered <= 0).astype(np.float32)

    def call(self, inputs):
        log_magnitude, log_mel = (ops.cast(x, "float32") for x in inputs)
        magnitude = ops.exp(ops.minimum(log_magnitude, LOG_MAGNITUDE_CAP))
        wanted = ops.exp(log_mel)
        for _ in range(self.iterations):
            made = ops.matmul(magnitude, ops.transpose(self.basis))
            ratio = wanted / ops.maximum(made, 1e-12)
            magnitude = magnitude * (ops.matmul(ratio, self.basis) * self.normaliser + self.outside)
        # Capped as `_magnitudes_and_phases` caps, so what a loss sees is what the audio is made from.
        return ops.minimum(ops.log(ops.maximum(magnitude, 1e-30)), LOG_MAGNITUDE_CAP)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "settings": self.settings.to_dict(), "fft_length": self.fft_length,
                "iterations": self.iterations}


PHASE_HEADS = ("direct", "parallel")


def build_istft_generator(settings, channels=256, blocks=ISTFT_BLOCKS, phase_iterations=0,
                          generation_phase_iterations=None, phase_momentum=0.0, layout="mel", phase_head="direct",
                          mel_projection=0, linear_context=0, name="vocoder"):
    """A Vocos-style generator (Siuzdak, 2023): every layer runs at the frame rate, and the last one predicts each
    frame's STFT (log-magnitude and phase), turned into audio by `InverseSTFT`. Same inputs and outputs as
    `build_vocoder_generator`.

    A convolution over the frames (kernel 7), `blocks` ConvNeXt blocks (depthwise convolution of kernel 7, layer
    normalisation, a pointwise expansion to 3 x channels with GELU and a projection back, layer scale, residual),
    a layer normalisation and a dense layer to the spectrum. Nothing is upsampled by convolutions, so a sample costs
    a hop's share of a frame's work, and the magnitudes, which the mel spectrogram nearly fixes, are one learned
    correction away from the filterbank's pseudo-inverse (`LinearMagnitudes`). With `linear_context`, that
    correction also has a linear term in the mel frames around each frame and in the pseudo-inverse's own
    log-magnitudes, outside the layer normalisations (which take each frame's level out): what a ridge regression
    of the magnitudes on the same inputs learns (bench/magnitudes.py), and on 5 minutes of speech it generalises
    better than the blocks, which fit the training audio and not held-out audio (README, "The three vocoders side
    by side").

    `layout` "mel" predicts the frames of the spectrogram's own STFT (its `n_fft`, its Hann window of `win_length`),
    so that the pseudo-inverse is on the right scale and Griffin-Lim's phases come as they do for librosa; the
    pseudo-inverse keeps the floor as sound (`subtract_floor=False`), as librosa does. "vocos", the layout before,
    uses FFT and window 4 x hop and takes the floor off; it stays for generators saved with it.

    Args:
        settings: the `data.features.MelSettings` of its spectrograms, saved inside the model.
        channels: width of the ConvNeXt blocks.
        blocks: ConvNeXt blocks (0: none: the first convolution, then the heads).
        phase_iterations: Griffin-Lim iterations on the predicted frames before the inverse STFT in training
            (`GriffinLimPhases`; 0: none).
        generation_phase_iterations: the iterations outside training (None: `phase_iterations`).
        phase_momentum: the iterations' momentum (`GriffinLimPhases`; 0: plain Griffin-Lim).
        layout: "mel" or "vocos", as above.
        phase_head: "direct" (a dense layer gives each bin's phase) or "parallel" (a dense layer gives a complex
            number per bin and the phase is its angle, `ParallelPhase`), both named "phase".
        mel_projection: `MelProjection` updates on the corrected magnitudes, so their mel spectrogram is the
            input's (0: none; the mel layout only).
        linear_context: the linear term's mel frames either side of each frame (a convolution of kernel
            `2 * linear_context + 1` on the scaled log-mel, "magnitude_linear", and a dense layer on the
            pseudo-inverse's log-magnitudes, "magnitude_from_inverse", both starting at zero; 0: no linear term).
        name: the model's name.

    Example:

    >>> from data.features import mel_settings
    >>> generator = build_istft_generator(mel_settings(8000), channels=16, blocks=2)
    >>> generator(np.zeros((2, 9, 80), "float32")).shape
    TensorShape([2, 500, 1])
    """
    hop = settings.hop_length
    fft, window = istft_frame_sizes(settings, layout)  # (refuses a layout not in data.features.ISTFT_LAYOUTS)
    subtract_floor = layout == "vocos"
    if phase_head not in PHASE_HEADS:
        raise ValueError(f"phase_head must be one of {PHASE_HEADS}, not {phase_head!r}")
    if mel_projection and layout != "mel":
        raise ValueError("mel_projection needs the mel layout: a band of the spectrogram sums its own FFT's bins")
    if window > MAX_WINDOW_HOPS * hop:  # a longer window would leave the kept edge samples short of a full overlap
        raise ValueError(f"the istft generator needs a window of at most {MAX_WINDOW_HOPS} hops "
                         f"({MAX_WINDOW_HOPS * hop} samples), not {window}")
    mel = keras.Input(shape=(None, settings.n_mels), name="mel")
    features = x = MelFeatures(settings, name="mel_features")(mel)
    x = keras.layers.Conv1D(channels, 7, padding="same", name="mel_conv")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="mel_norm")(x)
    for i in range(blocks):
        y = keras.layers.DepthwiseConv1D(7, padding="same", name=f"block_{i}_depthwise")(x)
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{i}_norm")(y)
        y = keras.layers.Dense(3 * channels, name=f"block_{i}_expand")(y)
        y = keras.layers.Activation("gelu", name=f"block_{i}_gelu")(y)
        y = keras.layers.Dense(channels, name=f"block_{i}_project")(y)
        y = LayerScale(1.0 / blocks, name=f"block_{i}_scale")(y)
        x = keras.layers.Add(name=f"block_{i}_add")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="output_norm")(x)
    bins = fft // 2 + 1
    magnitude = keras.layers.Dense(bins, name="magnitude")(x)
    inverse = LinearMagnitudes(settings, fft, subtract_floor, name="linear_magnitudes")(mel)
    terms = [magnitude, inverse]
    if linear_context:
        # Linear in the mel frames around each frame and in the inverse's own log-magnitudes, with no normalisation
        # between (the blocks' layer normalisations take each frame's level out), starting at zero.
        # float32 under a mixed policy too: the log-magnitudes reach -11.5, where bfloat16's steps are 0.06 nats.
        terms.append(keras.layers.Conv1D(bins, 2 * linear_context + 1, padding="same", kernel_initializer="zeros",
                                         dtype="float32", name="magnitude_linear")(features))
        terms.append(keras.layers.Dense(bins, use_bias=False, kernel_initializer="zeros", dtype="float32",
                                        name="magnitude_from_inverse")(inverse))
    magnitude = keras.layers.Add(name="magnitude_add", dtype="float32")(terms)
    if mel_projection:
        magnitude = MelProjection(settings, fft, mel_projection, name="mel_projection")([magnitude, mel])
    if phase_head == "parallel":
        phase = ParallelPhase(name="phase")(keras.layers.Dense(2 * bins, name="phase_parts")(x))
    else:
        phase = keras.layers.Dense(bins, name="phase")(x)
    x = keras.layers.Concatenate(name="spectrum", dtype="float32")([magnitude, phase])
    if phase_iterations or generation_phase_iterations:
        x = GriffinLimPhases(fft, hop, phase_iterations, generation_phase_iterations, phase_momentum, window,
                             name="griffin_lim_phases")(x)
    x = InverseSTFT(fft, hop, window, name="inverse_stft")(x)
    # Row r's frame is centred on sample r * hop + fft / 2; the kept audio starts at frame 0 (row CONTEXT_FRAMES).
    start = CONTEXT_FRAMES * hop + fft // 2
    x = TrimEdges(start, fft - hop - start + 2 * CONTEXT_FRAMES * hop, name="trim_context")(x)
    return keras.Model(mel, AudioInput(settings.sample_rate, name="audio", dtype="float32")(x), name=name)


GENERATORS = {"melgan": build_vocoder_generator, "istft": build_istft_generator}


def build_vocoder_discriminator(sample_rate, channels=16, scales=SCALES, periods=PERIODS,
                                name="vocoder_discriminator"):
    """Discriminators of a waveform at several scales (MelGAN: the audio, then average-pooled by 2 each time) and
    periods (HiFi-GAN: every p-th sample, folded into 2-D), in one model.

    Output: one list per discriminator, its layers' activations (for feature matching) then its score map.

    Args:
        sample_rate: the audio's rate, saved with the model.
        channels: channels of each discriminator's first layer (then x2, x4, x8).
        scales: scale discriminators (0 for none).
        periods: the periods of the period discriminators (empty for none).
        name: the model's name.

    Example:

    >>> discriminator = build_vocoder_discriminator(8000, channels=4)
    >>> len(discriminator(np.zeros((1, 800, 1), "float32")))
    8
    """
    if not scales and not periods:
        raise ValueError("the vocoder needs at least one scale or period discriminator")
    waveform = keras.Input(shape=(None, 1), name="waveform")
    audio = AudioInput(sample_rate, name="audio")(waveform)
    outputs = []
    scaled = audio
    for s in range(scales):
        if s:
            scaled = keras.layers.AveragePooling1D(4, strides=2, padding="same", name=f"scale_{s}_pool")(scaled)
        x, features = scaled, []
        for i, (width, kernel, stride) in enumerate(((channels, 15, 1), (2 * channels, 41, 4),
                                                     (4 * channels, 41, 4), (8 * channels, 41, 4),
                                                     (8 * channels, 5, 1))):
            x = keras.layers.Conv1D(width, kernel, strides=stride, padding="same", name=f"scale_{s}_conv_{i}")(x)
            x = keras.layers.LeakyReLU(0.2, name=f"scale_{s}_lrelu_{i}")(x)
            features.append(x)
        score = keras.layers.Conv1D(1, 3, padding="same", name=f"scale_{s}_score", dtype="float32")(x)
        outputs.append(features + [score])
    for period in periods:
        x, features = PeriodFold(period, name=f"period_{period}_fold")(audio), []
        for i, (width, stride) in enumerate(((channels, 3), (2 * channels, 3), (4 * channels, 3),
                                             (8 * channels, 3), (8 * channels, 1))):
            x = keras.layers.Conv2D(width, (5, 1), strides=(stride, 1), padding="same",
                                    name=f"period_{period}_conv_{i}")(x)
            x = keras.layers.LeakyReLU(0.2, name=f"period_{period}_lrelu_{i}")(x)
            features.append(x)
        score = keras.layers.Conv2D(1, (3, 1), padding="same", name=f"period_{period}_score", dtype="float32")(x)
        outputs.append(features + [score])
    return keras.Model(waveform, outputs, name=name)


def stft_resolutions(settings):
    """`(fft, hop, window)` of the multi-resolution STFT loss: half, once and twice the mel FFT, hop a quarter."""
    return tuple((fft, fft // 4, fft) for fft in (settings.n_fft // 2, settings.n_fft, settings.n_fft * 2))


def stft_loss(real, fake, resolutions):
    """Parallel WaveGAN's multi-resolution STFT loss of `(batch, time)` signals: per resolution, spectral
    convergence (`|| |S| - |S'| ||_F / || |S| ||_F`) plus the mean absolute log-magnitude difference, averaged."""
    total = 0.0
    for fft, hop, window in resolutions:
        magnitudes = []
        for signal in (real, fake):
            re, im = ops.stft(signal, window, hop, fft, window="hann", center=True)
            magnitudes.append(ops.sqrt(ops.maximum(re * re + im * im, 1e-7)))
        true, made = magnitudes
        convergence = ops.sqrt(ops.sum(ops.square(true - made))) / ops.sqrt(ops.sum(ops.square(true)) + 1e-7)
        log_magnitude = ops.mean(ops.abs(ops.log(true) - ops.log(made)))
        total = total + convergence + log_magnitude
    return total / len(resolutions)


def _wrapped(angle):
    """The distance of an angle from the nearest multiple of 2 pi (APNet's anti-wrapping function)."""
    return ops.abs(angle - 2.0 * np.pi * ops.round(angle / (2.0 * np.pi)))


def phase_loss(true_real, true_imag, phase):
    """APNet's anti-wrapping phase losses (Ai and Ling, 2023) of predicted phases against a true STFT's, both
    `(batch, frames, bins)`: the instantaneous phase, the group delay (the phase's difference between neighbouring
    bins) and the instantaneous angular frequency (its difference between neighbouring frames), summed. Each error
    is weighted by the true magnitude over its example's mean (a difference by the smaller of its two), so bins
    that carry the sound count and silent ones, whose phase is noise, do not, and a quiet example counts as much as
    a loud one."""
    true_phase = ops.arctan2(true_imag, true_real)
    weight = ops.sqrt(true_real * true_real + true_imag * true_imag)
    weight = weight / (ops.mean(weight, axis=(1, 2), keepdims=True) + 1e-7)
    instantaneous = ops.mean(weight * _wrapped(phase - true_phase))
    group_delay = ops.mean(ops.minimum(weight[..., 1:], weight[..., :-1]) * _wrapped(
        (phase[..., 1:] - phase[..., :-1]) - (true_phase[..., 1:] - true_phase[..., :-1])))
    frequency = ops.mean(ops.minimum(weight[:, 1:], weight[:, :-1]) * _wrapped(
        (phase[:, 1:] - phase[:, :-1]) - (true_phase[:, 1:] - true_phase[:, :-1])))
    return instantaneous + group_delay + frequency


def spectrum_model(generator, with_audio=False):
    """The istft generator's predicted frames (its "spectrum" layer: log-magnitudes then phases, with the context
    rows, before any Griffin-Lim iterations) as a model of the same layers and weights; with `with_audio`, the audio
    first and the frames second. The phase and magnitude losses and bench/magnitudes.py read them."""
    if "spectrum" not in {layer.name for layer in generator.layers}:
        raise ValueError(f"only the istft generator predicts frames (a 'spectrum' layer); {generator.name} has none")
    spectrum = generator.get_layer("spectrum").output
    if with_audio:
        return keras.Model(generator.input, [generator.outputs[0], spectrum], name="generator_with_spectrum")
    return keras.Model(generator.input, spectrum, name="generator_spectrum")


class VocoderGAN(TwoOptimizerGAN):
    """Trains a mel-to-waveform generator against its discriminators with `fit`.

    Each batch is `(mel, audio)`: padded log-mel rows `(batch, frames + 2 * CONTEXT_FRAMES, n_mels)` and the audio
    they stand for, `(batch, frames * hop, 1)` (`data.frames.FrameGenerator(mode="vocoder")`). One step computes
    the generator's audio and every discriminator's view of the real and the generated audio once, then updates
    both sides from it (the discriminators with the least-squares loss, the generator with
    `stft_weight` x multi-resolution STFT loss + `adversarial_weight` x (least-squares adversarial loss +
    `feature_weight` x feature matching) + `phase_weight` x `phase_loss` + `magnitude_weight` x the magnitude
    loss). With `adversarial_weight=0` the discriminators are not run at all; with no STFT loss either (or before
    they join), a step computes only the istft generator's predicted frames, not its audio.

    Args:
        generator: from `build_vocoder_generator`.
        discriminator: from `build_vocoder_discriminator`.
        stft_weight: weight of the STFT loss (HiFi-GAN weighs its mel L1 loss 45).
        feature_weight: weight of feature matching within the adversarial part (HiFi-GAN: 2).
        adversarial_weight: weight of the adversarial part; 0 turns the discriminators off.
        adversarial_start: generator steps trained on the spectral losses alone before the discriminators join
            (Parallel WaveGAN's warm start); until then they are not run and do not change.
        phase_weight: weight of `phase_loss` between the istft generator's predicted phases (before any Griffin-Lim
            iterations) and the phases of the real audio's STFT in the same frames; 0: none.
        magnitude_weight: weight of the mean absolute difference between the istft generator's predicted
            log-magnitudes and those of the real audio's STFT in the same frames (floored at the spectrogram's
            `log_floor`); 0: none.

    Example:

    >>> gan = VocoderGAN(build_vocoder_generator(settings), build_vocoder_discriminator(8000))
    >>> gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, 0.8, 0.99),
    ...             g_optimizer=keras.optimizers.Adam(2e-4, 0.8, 0.99))
    >>> gan.fit(FrameGenerator(signals, 6400, 8, 100, mode="vocoder", features=padded, hop=100), epochs=10)
    """

    def __init__(self, generator, discriminator, stft_weight=45.0, feature_weight=2.0, adversarial_weight=1.0,
                 adversarial_start=0, phase_weight=0.0, magnitude_weight=0.0, **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        self.stft_weight = float(stft_weight)
        self.feature_weight = float(feature_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.adversarial_start = int(adversarial_start)
        self.phase_weight = float(phase_weight)
        self.magnitude_weight = float(magnitude_weight)
        self.resolutions = stft_resolutions(vocoder_settings(generator))
        names = ("d_loss", "g_loss") + ("stft_loss",) * bool(self.stft_weight) + ("adversarial_loss", "feature_loss")
        names += ("phase_loss",) * bool(self.phase_weight) + ("magnitude_loss",) * bool(self.magnitude_weight)
        if self.phase_weight or self.magnitude_weight:
            # The frames alone serve the steps whose losses are all on them (no STFT loss, no discriminators yet):
            # those skip the Griffin-Lim iterations, the inverse STFT and the STFT loss, which they would not train.
            self.with_spectrum = spectrum_model(generator, with_audio=True)
            self.spectrum_only = spectrum_model(generator)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self._joined = None  # set by the train function before each step (`make_train_function`)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def make_train_function(self, force=False):
        """Keras' train function, as two: one compiled step before the discriminators join and one after, chosen
        before each step from the generator's step count. Each traces only what it runs; one step with a graph
        conditional traced both sides and their gradients, which made the first step of a small vocoder take
        about twice as long (and the default run never reaches the join)."""
        if self.train_function is not None and not force:
            return self.train_function
        if not (self.adversarial_weight and self.adversarial_start) or self.steps_per_execution != 1:
            self._joined = None  # decided in the graph (several steps per call may cross the join)
            super().make_train_function(force=True)
            return self.train_function
        made = {}

        def function(iterator):
            # The generator's step count decides, so a resumed run joins them at the same step.
            joined = self._joined = int(self.g_optimizer.iterations) >= self.adversarial_start
            try:
                if joined not in made:
                    super(VocoderGAN, self).make_train_function(force=True)
                    made[joined], self.train_function = self.train_function, function
                return made[joined](iterator)
            finally:
                self._joined = None  # a direct train_step call decides in the graph

        self.train_function = function
        return function

    def losses_of(self, mel, audio, training=True, adversarial=True):
        """`(g_loss, d_loss, parts)` of one batch, the parts by name. `adversarial`: a boolean tensor (or bool)
        saying whether the discriminators take part; where false they are not run and their terms are zero."""
        real = ops.cast(audio, "float32")
        g_loss, d_loss, parts = ops.zeros(()), ops.zeros(()), {}
        on_frames = self.phase_weight or self.magnitude_weight
        on_audio = self.stft_weight or (self.adversarial_weight and adversarial is not False)
        if on_frames and not on_audio:
            fake, spectrum = None, self.spectrum_only(mel, training=training)
        elif on_frames:
            fake, spectrum = self.with_spectrum(mel, training=training)
        else:
            fake = self.generator(mel, training=training)
        if self.stft_weight:
            parts["stft_loss"] = stft_loss(real[..., 0], ops.cast(fake, "float32")[..., 0], self.resolutions)
            g_loss = self.stft_weight * parts["stft_loss"]
        if on_frames:
            aligned = self._aligned_frames(real[..., 0], spectrum)  # one STFT of the real audio for both
        if self.phase_weight:
            parts["phase_loss"] = self.phase_loss_of(real[..., 0], spectrum, aligned)
            g_loss = g_loss + self.phase_weight * parts["phase_loss"]
        if self.magnitude_weight:
            parts["magnitude_loss"] = self.magnitude_loss_of(real[..., 0], spectrum, aligned)
            g_loss = g_loss + self.magnitude_weight * parts["magnitude_loss"]
        if self.adversarial_weight:
            if adversarial is True:
                terms = self.adversarial_terms(real, fake, training)
            elif adversarial is False:
                terms = (ops.zeros(()),) * 3
            else:
                import tensorflow as tf  # a graph conditional: the discriminators cost nothing before they join

                terms = tf.cond(adversarial, lambda: self.adversarial_terms(real, fake, training),
                                lambda: (ops.zeros(()),) * 3)
            adversarial_loss, feature, d_loss = terms
            parts.update(adversarial_loss=adversarial_loss, feature_loss=feature)
            g_loss = g_loss + self.adversarial_weight * (adversarial_loss + self.feature_weight * feature)
        return g_loss, d_loss, parts

    def phase_loss_of(self, real, spectrum, aligned=None):
        """`phase_loss` of the predicted frames `spectrum` (log-magnitudes then phases, with the context rows)
        against the STFT of the real audio `(batch, samples)` in the same frames (`aligned`: `_aligned_frames`'
        result, when already computed)."""
        real_part, imag_part, predicted = aligned or self._aligned_frames(real, spectrum)
        fft = self.generator.get_layer("inverse_stft").fft_length
        return phase_loss(real_part, imag_part, predicted[..., fft // 2 + 1:])

    def magnitude_loss_of(self, real, spectrum, aligned=None):
        """The mean absolute difference between the predicted frames' log-magnitudes and the log-magnitudes of the
        real audio's STFT in the same frames, floored at the spectrogram's `log_floor` (`aligned` as in
        `phase_loss_of`)."""
        real_part, imag_part, predicted = aligned or self._aligned_frames(real, spectrum)
        floor = float(np.log(vocoder_settings(self.generator).log_floor))
        true = ops.maximum(0.5 * ops.log(real_part * real_part + imag_part * imag_part + 1e-30), floor)
        made = predicted[..., :real_part.shape[-1]]
        # Floored only where the truth is at the floor: a bin predicted below it where the audio is louder still
        # gets a gradient back up.
        made = ops.where(true > floor, made, ops.maximum(made, floor))
        return ops.mean(ops.abs(made - true))

    def _aligned_frames(self, real, spectrum):
        """`(real part, imaginary part, predicted rows)`: the STFT of the real audio `(batch, samples)` and the
        predicted frames at the same places, leaving out the frames whose FFT reaches past either end."""
        inverse = self.generator.get_layer("inverse_stft")
        fft, hop, window = inverse.fft_length, inverse.hop_length, inverse.window_length
        # Frame k of a centred STFT is centred on sample k * hop, as the generator's row CONTEXT_FRAMES + k.
        real_part, imag_part = ops.stft(real, window, hop, fft, window="hann", center=True)
        last = real_part.shape[1] - 1
        # The frames whose FFT lies inside the audio: those nearer the ends see the centred STFT's padding.
        edge = stft_edge_frames(fft, hop)
        if last - 2 * edge < 1:  # a difference between frames needs two
            raise ValueError(f"the phase and magnitude losses need segments of at least {2 * edge + 1} frames, "
                             f"not {last}")
        predicted = ops.cast(spectrum, "float32")[:, CONTEXT_FRAMES + edge:CONTEXT_FRAMES + last - edge + 1]
        return real_part[:, edge:last - edge + 1], imag_part[:, edge:last - edge + 1], predicted

    def adversarial_terms(self, real, fake, training=True):
        """`(adversarial, feature matching, d_loss)`: the least-squares terms of every discriminator's view."""
        real_views = self.discriminator(real, training=training)
        fake_views = self.discriminator(fake, training=training)
        adversarial = feature = d_loss = 0.0
        for real_view, fake_view in zip(real_views, fake_views):
            real_score = ops.cast(real_view[-1], "float32")
            fake_score = ops.cast(fake_view[-1], "float32")
            d_loss = d_loss + ops.mean(ops.square(real_score - 1.0)) + ops.mean(ops.square(fake_score))
            adversarial = adversarial + ops.mean(ops.square(fake_score - 1.0))
            for real_feature, fake_feature in zip(real_view[:-1], fake_view[:-1]):
                feature = feature + ops.mean(ops.abs(ops.cast(ops.stop_gradient(real_feature), "float32")
                                                     - ops.cast(fake_feature, "float32")))
        return adversarial, feature, d_loss

    def train_step(self, data):
        import tensorflow as tf  # the step is backend-specific, as in Keras' "customizing fit" guide

        mel, audio = data[0], data[1]
        joined = self._joined
        if not self.adversarial_start:
            joined = True
        elif joined is None:  # (make_train_function: a graph conditional)
            joined = self.g_optimizer.iterations >= self.adversarial_start
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            g_loss, d_loss, parts = self.losses_of(mel, audio, adversarial=joined)
            g_scaled = self.g_optimizer.scale_loss(self._per_replica(g_loss))
            d_scaled = self.d_optimizer.scale_loss(self._per_replica(d_loss))
        # Gradients of None (variables no loss reaches: every discriminator before they join, the generator under
        # no loss at all) are zeros, and Adam's zero-gradient steps from zero moments move nothing.
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(_zeros_for_none(g_tape.gradient(g_scaled, variables), variables),
                                             variables))
        if self.adversarial_weight:
            # Both sides step from the same forward pass: the discriminators see the audio made before this update.
            variables = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(zip(_zeros_for_none(d_tape.gradient(d_scaled, variables), variables),
                                                 variables))
        for name, value in {"d_loss": d_loss, "g_loss": g_loss, **parts}.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def _zeros_for_none(gradients, variables):
    return [ops.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(gradients, variables)]


def build_vocoder_gan(settings, generator_channels=None, discriminator_channels=16, learning_rate=2e-4,
                      stft_weight=45.0, feature_weight=2.0, adversarial_weight=1.0, generator=None,
                      discriminator=None, generator_kind="melgan", adversarial_start=0, phase_iterations=0,
                      generation_phase_iterations=None, phase_momentum=0.0, istft_layout="mel", phase_head="direct",
                      phase_weight=0.0, mel_projection=0, magnitude_weight=0.0, generator_blocks=None,
                      linear_context=0):
    """A compiled `VocoderGAN` around given (restored) networks or fresh ones (`generator_kind`: a key of
    `GENERATORS`; `generator_channels` None: that builder's default width; `phase_iterations`,
    `generation_phase_iterations`, `phase_momentum`, `istft_layout`, `phase_head`, `mel_projection`,
    `generator_blocks` (None: the builder's default) and `linear_context`: the istft generator's; `phase_weight`
    and `magnitude_weight`: `VocoderGAN`'s); Adam (beta 0.8, 0.99) for both, as HiFi-GAN."""
    if generator is None:
        options = {} if generator_channels is None else {"channels": generator_channels}
        if generator_kind == "istft":
            if generator_blocks is not None:
                options["blocks"] = generator_blocks
            options.update(linear_context=linear_context, phase_iterations=phase_iterations,
                           generation_phase_iterations=generation_phase_iterations, phase_momentum=phase_momentum,
                           layout=istft_layout, phase_head=phase_head, mel_projection=mel_projection)
        elif phase_iterations or generation_phase_iterations or mel_projection or linear_context or generator_blocks:
            raise ValueError(f"Griffin-Lim iterations, the mel projection, blocks and the linear context are the "
                             f"istft generator's, not {generator_kind!r}'s")
        generator = GENERATORS[generator_kind](settings, **options)
    discriminator = discriminator or build_vocoder_discriminator(settings.sample_rate, discriminator_channels)
    gan = VocoderGAN(generator, discriminator, stft_weight, feature_weight, adversarial_weight, adversarial_start,
                     phase_weight, magnitude_weight)
    adam = dict(learning_rate=learning_rate, beta_1=0.8, beta_2=0.99)
    gan.compile(d_optimizer=keras.optimizers.Adam(**adam), g_optimizer=keras.optimizers.Adam(**adam))
    return gan


def is_gan_vocoder(model):
    """Whether `model` is a GAN vocoder's generator: log-mel rows in (with their settings), audio out."""
    names = {layer.name for layer in model.layers}
    return len(model.inputs) == 1 and {"mel_features", "audio", "trim_context"} <= names


def vocoder_settings(generator):
    """The `MelSettings` saved in a GAN vocoder."""
    return generator.get_layer("mel_features").settings


class VocoderSpec(NamedTuple):
    """What generation needs to know of a GAN vocoder (the counterpart of a WaveNet's `WaveNetSpec`)."""

    sample_rate: int
    mel: object  # data.features.MelSettings
    class_names: tuple = ()


def vocoder_spec(generator):
    """The `VocoderSpec` of a GAN vocoder's generator."""
    settings = vocoder_settings(generator)
    return VocoderSpec(settings.sample_rate, settings)


def vocoder_request(generator, num_samples=None, num_streams=None, prime=None, classes=None, mel=None):
    """`vocode_chunks` for `models.generate`'s arguments, refusing those a GAN vocoder does not take.

    Raises:
        ValueError: no spectrogram, a prime or classes, a stream count other than the spectrogram's.
    """
    if mel is None:
        raise ValueError("a GAN vocoder needs a log-mel spectrogram (mel=...)")
    if prime is not None:
        raise ValueError("a GAN vocoder takes no prime: the spectrogram sets the whole output")
    if classes is not None:
        raise ValueError("this GAN vocoder is not conditioned on classes")
    chunks = vocode_chunks(generator, mel)
    streams = 1 if np.ndim(mel) == 2 else len(mel)
    if num_streams is not None and int(num_streams) != streams and np.ndim(mel) == 3:
        raise ValueError(f"{len(mel)} spectrograms for {num_streams} streams")
    done, limit = 0, None if num_samples is None else int(num_samples)
    for chunk in chunks:
        if np.ndim(mel) == 2 and num_streams is not None:
            chunk = np.repeat(chunk, int(num_streams), axis=0)
        if limit is not None:
            chunk = chunk[:, :max(0, limit - done)]
        if chunk.shape[1]:
            yield chunk
        done += chunk.shape[1]


def context_frames(generator):
    """Frames of context a chunk needs on either side: `OVERLAP_FRAMES`, plus `GriffinLimPhases.reach` for each
    Griffin-Lim iteration inside the generator (each couples a frame with the neighbours its window overlaps), and
    the half-kernel of the istft generator's linear term, which a wide `linear_context` could take past the overlap
    (conservative: the default's 2 frames lie within it)."""
    extra = sum(layer.most_iterations * layer.reach for layer in generator.layers
                if isinstance(layer, GriffinLimPhases))
    extra += sum(layer.kernel_size[0] // 2 for layer in generator.layers if layer.name == "magnitude_linear")
    return OVERLAP_FRAMES + extra


def vocode(generator, mel, chunk_frames=CHUNK_FRAMES, overlap_frames=None):
    """Turns an unpadded log-mel spectrogram into audio with a GAN vocoder, in chunks of `chunk_frames` frames, each
    computed with `overlap_frames` frames of context on either side and cut to its own samples, so memory does not
    grow with the length and chunk borders match one pass over the whole.

    Args:
        generator: from `build_vocoder_generator`, or loaded from its `.keras` file.
        mel: `(frames, n_mels)` or `(streams, frames, n_mels)`, computed with `vocoder_settings(generator)`.
        chunk_frames: frames per chunk.
        overlap_frames: frames of context on each side of a chunk (None: `context_frames(generator)`).

    Returns:
        `(streams, (frames - 1) * hop)` float32 in [-1, 1].

    Raises:
        data.features.FeatureError: a spectrogram that does not fit the model (`check_mel`).

    Example:

    >>> audio = vocode(generator, log_mel(recording, vocoder_settings(generator)))
    """
    chunks = list(vocode_chunks(generator, mel, chunk_frames, overlap_frames))
    return np.concatenate(chunks, axis=1) if chunks else np.zeros((1 if np.ndim(mel) == 2 else len(mel), 0),
                                                                  np.float32)


def vocode_chunks(generator, mel, chunk_frames=CHUNK_FRAMES, overlap_frames=None):
    """Yields `vocode`'s audio chunk by chunk, `(streams, chunk_frames * hop)` (the last one shorter)."""
    from data.features import check_mel, pad_features

    settings = vocoder_settings(generator)
    mel = check_mel(mel, settings)
    mel = mel[None] if mel.ndim == 2 else mel
    hop, frames = settings.hop_length, mel.shape[1] - 1  # F frames stand for (F - 1) * hop samples
    if overlap_frames is None:
        overlap_frames = context_frames(generator)
    chunk, overlap = max(1, min(int(chunk_frames), frames)), max(0, int(overlap_frames))
    # Every chunk gets the same shape, so the compiled call is traced once: `overlap` silent frames before the first
    # and after the last, and the last chunk filled up with silence. Beyond the receptive field none of it matters,
    # so a sample comes out the same whatever the chunking.
    chunks = -(-frames // chunk)
    padded = np.pad(pad_features(mel, settings), [(0, 0), (overlap, overlap + chunks * chunk - frames), (0, 0)],
                    constant_values=settings.floor_value)
    rows = chunk + 2 * overlap + 2 * CONTEXT_FRAMES  # the samples of frames start - overlap .. start + chunk + overlap
    for start in range(0, frames, chunk):
        # predict_on_batch: a compiled call, 3 to 6 times faster than an eager one on a CPU.
        made = np.asarray(generator.predict_on_batch(padded[:, start:start + rows]))[..., 0]
        yield made[:, overlap * hop:(overlap + min(chunk, frames - start)) * hop].astype(np.float32)
