"""Log-mel spectrograms: the local conditioning of a WaveNet vocoder, and the anchor it is measured against.

The features are what TTS front ends (Tacotron 2, HiFi-GAN) produce: a magnitude (power 1) Slaney mel spectrogram
from librosa, centred frames, natural log after flooring at `log_floor`. Defaults: 80 bins, hop 12.5 ms, window
50 ms, FFT the next power of two (at 8 kHz: hop 100, window 400, FFT 512). A `MelSettings` is saved inside every
mel-conditioned model, so generation computes exactly the features the model was trained on.

Alignment (the one rule training, generation and evaluation follow): frame `k` is centred on sample `k * hop`;
sample `n` is conditioned by the upsampler's output at `n`, which reads frames `n // hop - CONTEXT_FRAMES` to
`n // hop + CONTEXT_FRAMES`. Features are padded with `CONTEXT_FRAMES` floor frames (silence) before frame 0 and
`CONTEXT_FRAMES + 1` after the last, once per file (`pad_features`), so that every sample has its context.
A spectrogram of `F` frames gives `(F - 1) * hop` samples: librosa's length for the same spectrogram.
"""

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np

# Frames of context on each side of a sample's own frame that the upsampler reads: one for the frame-level
# convolution (kernel 3), one for `models.layers.FrameUpsampler` (frames k - 1 and k + 1).
CONTEXT_FRAMES = 2
# The longest synthesis window, in hops, whose overlap-add is full over a sample's own frame and that context: a
# generator that predicts STFT frames (models.build_istft_generator) needs its window no longer.
MAX_WINDOW_HOPS = 2 * CONTEXT_FRAMES
NPZ_KEYS = ("mel",)
# The frames an istft generator (models.build_istft_generator) predicts: "mel", those of the spectrogram's own STFT;
# "vocos", Vocos' 4-hop frames.
ISTFT_LAYOUTS = ("mel", "vocos")


def istft_frame_sizes(settings, layout):
    """`(fft_length, window_length)` of the STFT frames an istft generator (models.build_istft_generator) of
    `layout` predicts: "mel", the spectrogram's own FFT and window; "vocos", 4 hops for both. Here, without the
    model, so that the trainer can check a run's settings before TensorFlow loads."""
    if layout == "mel":
        return settings.n_fft, settings.win_length
    if layout == "vocos":
        return 4 * settings.hop_length, 4 * settings.hop_length
    raise ValueError(f"layout must be one of {ISTFT_LAYOUTS}, not {layout!r}")


def stft_edge_frames(fft_length, hop_length):
    """Frames at each end of a centred STFT (frame k centred on sample k * hop) whose FFT reaches past the signal,
    into the padding."""
    return -(-(int(fft_length) // 2) // int(hop_length))


class FeatureError(ValueError):
    """A spectrogram that does not fit the model; the message is one line."""

    exit_status = 2


@dataclass(frozen=True)
class MelSettings:
    """How a log-mel spectrogram is computed.

    Args:
        sample_rate: the audio's rate in Hz.
        n_mels: mel bins.
        n_fft: FFT size in samples.
        hop_length: samples between frames.
        win_length: Hann window length in samples (<= n_fft).
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz; `None` is half the sample rate.
        log_floor: magnitudes are floored here before the natural log (`log(1e-5)` = -11.5 is silence).

    Example:

    >>> settings = mel_settings(8000)
    >>> settings.n_mels, settings.hop_length, settings.win_length, settings.n_fft
    (80, 100, 400, 512)
    """

    sample_rate: int
    n_mels: int = 80
    n_fft: int = 512
    hop_length: int = 100
    win_length: int = 400
    fmin: float = 0.0
    fmax: Optional[float] = None
    log_floor: float = 1e-5

    def __post_init__(self):
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length", "win_length"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"mel {name} must be positive, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise ValueError(f"mel window ({self.win_length}) must not be longer than the FFT ({self.n_fft})")
        top = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise ValueError(f"mel frequencies must satisfy 0 <= fmin < fmax <= {self.sample_rate / 2:g} Hz, "
                             f"got fmin {self.fmin:g}, fmax {top:g}")
        if not 0 < self.log_floor < 1:
            raise ValueError(f"mel log floor must be in (0, 1), got {self.log_floor}")

    @property
    def top_frequency(self):
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

    @property
    def floor_value(self):
        """The value of a silent bin: `log(log_floor)`."""
        return float(np.log(np.float32(self.log_floor)))

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in dict(values).items() if key in known})

    def describe(self):
        return (f"{self.n_mels} bins, FFT {self.n_fft}, hop {self.hop_length}, window {self.win_length}, "
                f"{self.fmin:g}-{self.top_frequency:g} Hz, floor {self.log_floor:g} at {self.sample_rate} Hz")


def samples_in(milliseconds, sample_rate):
    """Whole samples (at least one) in `milliseconds` at `sample_rate`: how durations become hop and window."""
    return max(1, int(round(int(sample_rate) * milliseconds / 1000.0)))


def mel_settings(sample_rate, n_mels=80, hop_ms=12.5, window_ms=50.0, n_fft=None, hop_length=None,
                 win_length=None, fmin=0.0, fmax=None, log_floor=1e-5):
    """`MelSettings` with TTS defaults: hop 12.5 ms, window 50 ms, FFT the next power of two at or above the window.

    Sample counts (`hop_length`, `win_length`, `n_fft`) override the durations when given.
    """
    sample_rate = int(sample_rate)
    hop = int(hop_length) if hop_length else samples_in(hop_ms, sample_rate)
    window = int(win_length) if win_length else samples_in(window_ms, sample_rate)
    fft = int(n_fft) if n_fft else 2 ** math.ceil(math.log2(window))
    return MelSettings(sample_rate=sample_rate, n_mels=int(n_mels), n_fft=fft, hop_length=hop,
                       win_length=min(window, fft), fmin=float(fmin), fmax=None if fmax is None else float(fmax),
                       log_floor=float(log_floor))


def mel_basis(settings):
    import librosa

    return librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels,
                               fmin=settings.fmin, fmax=settings.top_frequency)


def log_mel(signal, settings):
    """The log-mel spectrogram of a 1-D signal: `(frames, n_mels)` float32, `frames = 1 + len // hop`."""
    import librosa

    signal = np.asarray(signal, np.float32).reshape(-1)
    mel = librosa.feature.melspectrogram(
        y=signal, sr=settings.sample_rate, n_fft=settings.n_fft, hop_length=settings.hop_length,
        win_length=settings.win_length, window="hann", center=True, power=1.0, n_mels=settings.n_mels,
        fmin=settings.fmin, fmax=settings.top_frequency)
    return np.log(np.maximum(mel, settings.log_floor)).T.astype(np.float32)


def samples_for_frames(frames, settings):
    """Samples a spectrogram of `frames` frames stands for: `(frames - 1) * hop`."""
    return max(0, int(frames) - 1) * settings.hop_length


def frames_for_samples(num_samples, settings):
    """Frames of padded features (`pad_features`) that condition `num_samples` samples starting at a frame:
    the samples' own frames plus `CONTEXT_FRAMES` on each side."""
    return (max(1, int(num_samples)) - 1) // settings.hop_length + 1 + 2 * CONTEXT_FRAMES


def pad_features(mel, settings):
    """`mel` with `CONTEXT_FRAMES` silent frames before and `CONTEXT_FRAMES + 1` after (time is the
    second-to-last axis), so frame `k` is row `k + CONTEXT_FRAMES` and every sample has its context."""
    mel = np.asarray(mel, np.float32)
    widths = [(0, 0)] * (mel.ndim - 2) + [(CONTEXT_FRAMES, CONTEXT_FRAMES + 1), (0, 0)]
    return np.pad(mel, widths, constant_values=settings.floor_value)


def check_mel(mel, settings, name="mel"):
    """`mel` as float32 `(frames, n_mels)` or `(streams, frames, n_mels)` if it fits `settings`.

    Raises:
        FeatureError: wrong rank or bin count, no frames, NaN or Inf, or values that are not natural-log magnitudes
            floored at the model's `log_floor` (dB, power or linear spectrograms are named as such).
    """
    array = np.asarray(mel)
    if array.dtype.kind not in "fiu":
        raise FeatureError(f"{name}: a spectrogram must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.ndim not in (2, 3):
        raise FeatureError(f"{name}: a spectrogram must be (frames, {settings.n_mels}) or (streams, frames, "
                           f"{settings.n_mels}), got shape {array.shape}")
    if array.shape[-1] != settings.n_mels:
        hint = " (is it (bins, frames)? transpose it)" if array.shape[-2] == settings.n_mels else ""
        raise FeatureError(f"{name}: the model takes {settings.n_mels} mel bins, the spectrogram has "
                           f"{array.shape[-1]}{hint}; its settings: {settings.describe()}")
    if array.size == 0 and array.shape[-2] >= 2:
        raise FeatureError(f"{name}: the spectrogram stack holds no spectrograms (shape {array.shape})")
    if array.shape[-2] < 2:
        raise FeatureError(f"{name}: a spectrogram needs at least 2 frames, got {array.shape[-2]}")
    if not np.all(np.isfinite(array)):
        raise FeatureError(f"{name}: the spectrogram holds NaN or Inf values")
    lowest, highest = float(array.min()), float(array.max())
    if lowest < settings.floor_value - 1e-3:
        raise FeatureError(f"{name}: values down to {lowest:.1f} lie below log({settings.log_floor:g}) = "
                           f"{settings.floor_value:.1f}: not natural-log magnitudes floored as the model's "
                           f"(dB or another floor?); its settings: {settings.describe()}")
    if highest > 10.0:
        raise FeatureError(f"{name}: values up to {highest:.1f} are too large for natural-log magnitudes of audio "
                           f"in [-1, 1] (a dB or linear spectrogram?); its settings: {settings.describe()}")
    return array


def load_mel(path, settings):
    """Reads a spectrogram for `settings` from `.npy` (`(frames, n_mels)`) or `.npz` (`mel`, plus optional settings
    keys such as `hop_length`, `sample_rate`, each checked against the model's).

    Raises:
        FeatureError: unreadable, or not fitting the model (`check_mel`).
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise FeatureError(f"{path}: not a NumPy .npy or .npz file ({type(error).__name__})") from None
    if isinstance(loaded, np.ndarray):
        return check_mel(loaded, settings, str(path))
    with loaded:
        if "mel" not in loaded.files:
            raise FeatureError(f"{path}: an .npz spectrogram needs an array named 'mel' (has {loaded.files})")
        try:  # an .npz reads each array only when asked for it: a damaged or pickled one fails here
            arrays = {key: loaded[key] for key in loaded.files}
        except Exception as error:
            raise FeatureError(f"{path}: cannot read its arrays ({type(error).__name__}: "
                               f"{(str(error).splitlines() or [''])[0][:120]})") from None
    expected = settings.to_dict()
    for key, value in arrays.items():
        if key == "mel" or key not in expected:
            continue
        want = expected[key] if expected[key] is not None else settings.top_frequency
        try:
            given = float(value.reshape(-1)[0]) if value.size == 1 else None
        except (TypeError, ValueError):
            given = None
        if given is None:
            raise FeatureError(f"{path}: setting {key} must be one number, got an array of shape {value.shape}")
        if key == "fmax" and np.isnan(given):
            continue
        if not np.isclose(given, float(want)):
            raise FeatureError(f"{path}: {key} is {given:g} but the model was trained with {want}; "
                               f"its settings: {settings.describe()}")
    return check_mel(arrays["mel"], settings, str(path))


def save_mel(path, mel, settings):
    """Writes `mel` with its settings as `.npz` (atomically), the form `load_mel` checks in full."""
    from data.files import replace_atomically

    values = {key: (np.nan if value is None else value) for key, value in settings.to_dict().items()}
    values["fmax"] = settings.top_frequency

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, mel=np.asarray(mel, np.float32), **values)

    replace_atomically(write, path)


def griffin_lim(mel, settings, n_iter=32, seed=0):
    """librosa's Griffin-Lim inversion of a log-mel spectrogram (`(frames, n_mels)`) with the same settings:
    `(frames - 1) * hop` samples."""
    import librosa

    magnitude = np.exp(np.asarray(mel, np.float32)).T
    np.random.seed(seed)  # mel_to_audio starts from random phases drawn from NumPy's global generator
    audio = librosa.feature.inverse.mel_to_audio(
        magnitude, sr=settings.sample_rate, n_fft=settings.n_fft, hop_length=settings.hop_length,
        win_length=settings.win_length, window="hann", center=True, power=1.0, n_iter=int(n_iter),
        fmin=settings.fmin, fmax=settings.top_frequency)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
