"""SaveAudio: listenable samples and their spectrograms, written while a model trains."""

import warnings
from pathlib import Path

import keras
import numpy as np

from data import faults
from data.audio import write_audio
from data.files import replace_atomically


def save_spectrogram(path, audio, sample_rate, title=None):
    """Writes a log-mel spectrogram of `audio` as a PNG, atomically."""
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    n_fft = min(1024, max(64, 2 ** int(np.log2(max(len(audio), 64)))))
    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=n_fft, hop_length=n_fft // 4,
                                         n_mels=min(80, n_fft // 4))
    figure, axes = plt.subplots(figsize=(8, 3), dpi=100)
    image = librosa.display.specshow(librosa.power_to_db(mel, ref=np.max, top_db=80.0), sr=sample_rate,
                                     hop_length=n_fft // 4, x_axis="time", y_axis="mel", ax=axes)
    figure.colorbar(image, ax=axes, format="%+2.0f dB")
    axes.set_title(title or Path(path).stem)
    figure.tight_layout()
    try:
        replace_atomically(lambda tmp: figure.savefig(tmp, format="png"), path)
    finally:
        plt.close(figure)


class SaveAudio(keras.callbacks.Callback):
    """Every `every` epochs, writes `samples/epoch_NNNN.wav` (16-bit) and a log-mel spectrogram PNG beside it.

    In `"wavenet"` mode the model in training generates `seconds` of audio with `models.generate`, primed with
    `prime` (validation audio). In `"gan"` mode the model's `generator` turns the fixed `latents`, chosen once
    at the start, into clips that are joined with short silences, so epochs sound comparable.

    Nothing this callback does can end a run: a sample that cannot be generated (a model that will not pack, a
    kernel that will not build) or written (a folder that cannot be written) gives a warning and training goes
    on. The run driver (`run.fit_run`) calls samplers after the epoch's checkpoint is written, so even an
    interrupt during a sample loses nothing.

    Args:
        directory: where the samples go (created if missing).
        sample_rate: the audio's rate in Hz.
        every: epochs between samples; 0 turns the callback off.
        seconds: length of a WaveNet sample.
        mode: `"wavenet"` or `"gan"`.
        prime: audio that WaveNet samples continue (1-D, in [-1, 1]).
        latents: `(clips, latent_dim)` latent vectors for GAN samples.
        temperature: WaveNet sampling temperature.
        seed: seed for WaveNet sampling, so the same epoch gives the same sample.

    Example:

    >>> model.fit(frames, epochs=10, callbacks=[SaveAudio("run/samples", 8000, every=2, seconds=1.0)])
    """

    def __init__(self, directory, sample_rate, every=1, seconds=1.0, mode="wavenet", prime=None, latents=None,
                 temperature=1.0, seed=0):
        super().__init__()
        if mode not in ("wavenet", "gan"):
            raise ValueError(f"mode must be 'wavenet' or 'gan', got {mode!r}")
        self.directory = Path(directory)
        self.sample_rate = int(sample_rate)
        self.every = int(every)
        self.seconds = float(seconds)
        self.mode = mode
        self.prime = prime
        self.latents = latents
        self.temperature = float(temperature)
        self.seed = int(seed)

    def sample(self):
        """The audio this callback would write now, as a 1-D float32 array."""
        if self.mode == "gan":
            clips = np.asarray(self.model.generator(self.latents, training=False))[..., 0]
            gap = np.zeros((len(clips), self.sample_rate // 10), np.float32)
            return np.concatenate([clips, gap], axis=1).reshape(-1)
        from models.generation import generate  # models imports callbacks' users, not the reverse

        num_samples = max(1, int(round(self.seconds * self.sample_rate)))
        return generate(self.model, num_samples, temperature=self.temperature, prime=self.prime,
                        seed=self.seed)[0]

    def on_epoch_end(self, epoch, logs=None):
        # An epoch cut short (interrupt, NaN loss, time limit) stops training: no sample of a half-done epoch.
        if self.every <= 0 or (epoch + 1) % self.every or getattr(self.model, "stop_training", False):
            return
        path = self.directory / f"epoch_{epoch + 1:04d}.wav"
        try:
            audio = self.sample()
        except Exception as error:  # a lost sample must not lose the run
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"SaveAudio: could not generate the sample for epoch {epoch + 1} "
                          f"({type(error).__name__}: {first_line}); training goes on", stacklevel=2)
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_audio(path, audio, self.sample_rate)
            save_spectrogram(path.with_suffix(".png"), audio, self.sample_rate, title=f"epoch {epoch + 1}")
            faults.reached("sample-written")
        except Exception as error:
            warnings.warn(f"SaveAudio: could not write {path}: {error}", stacklevel=2)
