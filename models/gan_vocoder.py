"""A convolutional GAN vocoder: a log-mel spectrogram to its waveform in one parallel pass.

The generator is MelGAN's (Kumar et al., 2019): a convolution over the frames, then one transposed convolution per
factor of the hop (kernel twice the factor), each followed by a stack of dilated residual blocks (dilations 1, 3, 9),
and a tanh. MelGAN's shape rather than HiFi-GAN's multi-receptive-field fusion because it costs a third of the
multiply-adds per sample for the same upsampling, and on two CPU cores both training time and the 100x real time
goal are bound by them. The losses are HiFi-GAN's (Kong et al., 2020): least-squares adversarial terms from
discriminators that look at the waveform at several scales (MelGAN's) and periods (HiFi-GAN's), feature matching on
their layers, and a reconstruction term, here the multi-resolution STFT loss of Parallel WaveGAN (Yamamoto et al.,
2020), that gives the generator a signal from the first step.

Alignment follows `data.features`: the generator takes padded log-mel rows (`pad_features`: frame `k` is row
`k + CONTEXT_FRAMES`) and returns the samples of the rows between the `CONTEXT_FRAMES` of context on each side:
`rows - 2 * CONTEXT_FRAMES` frames of `hop` samples, sample `n` lying in frame `n // hop`. `vocode` runs a
spectrogram of any length in chunks with overlap.
"""

from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from data.features import CONTEXT_FRAMES
from models.gan import TwoOptimizerGAN
from models.layers import PACKAGE, AudioInput, MelFeatures

RESIDUAL_DILATIONS = (1, 3, 9)
PERIODS = (2, 3, 5, 7, 11)
SCALES = 3
# Chunks of this many frames, each with this many frames of context on either side (more than the generator's
# receptive field, `receptive_frames`), give the same audio as one pass over the whole spectrogram.
CHUNK_FRAMES = 1600
OVERLAP_FRAMES = 16


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
    """`inputs[:, samples : length - samples]`: drops the audio of the context frames at both ends.

    Args:
        samples: time steps dropped at each end.
        **kwargs: standard layer arguments.

    Example:

    >>> TrimEdges(2)(np.arange(8.0).reshape(1, 8, 1)).numpy().ravel().tolist()
    [2.0, 3.0, 4.0, 5.0]
    """

    def __init__(self, samples, **kwargs):
        super().__init__(**kwargs)
        self.samples = int(samples)

    def call(self, inputs):
        return inputs[:, self.samples:ops.shape(inputs)[1] - self.samples]

    def compute_output_shape(self, input_shape):
        time = None if input_shape[1] is None else input_shape[1] - 2 * self.samples
        return (input_shape[0], time, *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "samples": self.samples}


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


class VocoderGAN(TwoOptimizerGAN):
    """Trains a mel-to-waveform generator against its discriminators with `fit`.

    Each batch is `(mel, audio)`: padded log-mel rows `(batch, frames + 2 * CONTEXT_FRAMES, n_mels)` and the audio
    they stand for, `(batch, frames * hop, 1)` (`data.frames.FrameGenerator(mode="vocoder")`). One step computes
    the generator's audio and every discriminator's view of the real and the generated audio once, then updates
    both sides from it (the discriminators with the least-squares loss, the generator with
    `stft_weight` x multi-resolution STFT loss + `adversarial_weight` x (least-squares adversarial loss +
    `feature_weight` x feature matching)). With `adversarial_weight=0` only the STFT loss trains the generator
    and the discriminators are not run at all.

    Args:
        generator: from `build_vocoder_generator`.
        discriminator: from `build_vocoder_discriminator`.
        stft_weight: weight of the STFT loss (HiFi-GAN weighs its mel L1 loss 45).
        feature_weight: weight of feature matching within the adversarial part (HiFi-GAN: 2).
        adversarial_weight: weight of the adversarial part; 0 turns the discriminators off.

    Example:

    >>> gan = VocoderGAN(build_vocoder_generator(settings), build_vocoder_discriminator(8000))
    >>> gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, 0.8, 0.99),
    ...             g_optimizer=keras.optimizers.Adam(2e-4, 0.8, 0.99))
    >>> gan.fit(FrameGenerator(signals, 6400, 8, 100, mode="vocoder", features=padded, hop=100), epochs=10)
    """

    def __init__(self, generator, discriminator, stft_weight=45.0, feature_weight=2.0, adversarial_weight=1.0,
                 **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        self.stft_weight = float(stft_weight)
        self.feature_weight = float(feature_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.resolutions = stft_resolutions(vocoder_settings(generator))
        names = ("d_loss", "g_loss", "stft_loss", "adversarial_loss", "feature_loss")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def losses_of(self, mel, audio, training=True):
        """`(g_loss, d_loss, parts)` of one batch, the parts by name."""
        fake = self.generator(mel, training=training)
        real = ops.cast(audio, "float32")
        stft = stft_loss(real[..., 0], ops.cast(fake, "float32")[..., 0], self.resolutions)
        parts = {"stft_loss": stft}
        g_loss, d_loss = self.stft_weight * stft, ops.zeros(())
        if self.adversarial_weight:
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
            parts.update(adversarial_loss=adversarial, feature_loss=feature)
            g_loss = g_loss + self.adversarial_weight * (adversarial + self.feature_weight * feature)
        return g_loss, d_loss, parts

    def train_step(self, data):
        import tensorflow as tf  # the step is backend-specific, as in Keras' "customizing fit" guide

        mel, audio = data[0], data[1]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            g_loss, d_loss, parts = self.losses_of(mel, audio)
            g_scaled = self.g_optimizer.scale_loss(self._per_replica(g_loss))
            d_scaled = self.d_optimizer.scale_loss(self._per_replica(d_loss))
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_scaled, variables), variables))
        if self.adversarial_weight:
            # Both sides step from the same forward pass: the discriminators see the audio made before this update.
            variables = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_scaled, variables), variables))
        for name, value in {"d_loss": d_loss, "g_loss": g_loss, **parts}.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def build_vocoder_gan(settings, generator_channels=128, discriminator_channels=16, learning_rate=2e-4,
                      stft_weight=45.0, feature_weight=2.0, adversarial_weight=1.0, generator=None,
                      discriminator=None):
    """A compiled `VocoderGAN` around given (restored) networks or fresh ones; Adam (beta 0.8, 0.99) for both,
    as HiFi-GAN."""
    generator = generator or build_vocoder_generator(settings, generator_channels)
    discriminator = discriminator or build_vocoder_discriminator(settings.sample_rate, discriminator_channels)
    gan = VocoderGAN(generator, discriminator, stft_weight, feature_weight, adversarial_weight)
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


def vocode(generator, mel, chunk_frames=CHUNK_FRAMES, overlap_frames=OVERLAP_FRAMES):
    """Turns an unpadded log-mel spectrogram into audio with a GAN vocoder, in chunks of `chunk_frames` frames, each
    computed with `overlap_frames` frames of context on either side and cut to its own samples, so memory does not
    grow with the length and chunk borders match one pass over the whole.

    Args:
        generator: from `build_vocoder_generator`, or loaded from its `.keras` file.
        mel: `(frames, n_mels)` or `(streams, frames, n_mels)`, computed with `vocoder_settings(generator)`.
        chunk_frames: frames per chunk.
        overlap_frames: frames of context on each side of a chunk.

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


def vocode_chunks(generator, mel, chunk_frames=CHUNK_FRAMES, overlap_frames=OVERLAP_FRAMES):
    """Yields `vocode`'s audio chunk by chunk, `(streams, chunk_frames * hop)` (the last one shorter)."""
    from data.features import check_mel, pad_features

    settings = vocoder_settings(generator)
    mel = check_mel(mel, settings)
    mel = mel[None] if mel.ndim == 2 else mel
    hop, frames = settings.hop_length, mel.shape[1] - 1  # F frames stand for (F - 1) * hop samples
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
