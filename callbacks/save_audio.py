"""SaveAudio: listenable samples and their spectrograms, written while a model trains."""

import re
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
    `prime` (validation audio). A class-conditioned model instead generates one stream per class, its first
    `max_classes` classes (or `classes`), written as `epoch_NNNN_<class>.wav`. A mel-conditioned model (a vocoder)
    resynthesises a fixed clip from its log-mel spectrogram `mel` (computed once by the trainer), written as
    `epoch_NNNN.wav`, with the clip itself (`original`) written once as `original.wav` to compare with. In `"gan"`
    mode the model's `generator` turns the fixed `latents`, chosen once at the start, into clips that are joined
    with short silences, so epochs sound comparable. In `"lm"` mode a token language model continues the tokens of
    `prime` for `seconds`, and Griffin-Lim renders the frames of its tokens (`models.lm.render_frames`).

    With `log_dir`, every sample also goes to TensorBoard as audio (`tf.summary.audio`, step = the epoch), in its
    own event files there (the trainer gives `<run>/logs/samples`, beside the scalars of `logs/train`).

    Nothing this callback does can end a run: a sample that cannot be generated (a model that will not pack, a
    kernel that will not build) or written (a folder that cannot be written) gives a warning and training goes
    on. The run driver (`run.fit_run`) calls samplers after the epoch's checkpoint is written, so even an
    interrupt during a sample loses nothing.

    Args:
        directory: where the samples go (created if missing).
        sample_rate: the audio's rate in Hz.
        every: epochs between samples; 0 turns the callback off.
        seconds: length of a WaveNet sample (not of a resynthesis: the spectrogram sets that).
        mode: `"wavenet"`, `"gan"` (a WaveGAN: one file of clips, or one per class), `"vocoder"` (a GAN
            vocoder's resynthesis of `mel`) or `"lm"` (a token language model's continuation of `prime`).
        prime: audio that WaveNet (and token LM) samples continue (1-D, in [-1, 1]); unused with classes or a
            spectrogram.
        latents: `(clips, latent_dim)` latent vectors for GAN samples.
        temperature: WaveNet (or token) sampling temperature.
        seed: seed for WaveNet sampling, so the same epoch gives the same sample.
        classes: the classes to sample, one stream each; default: a class-conditioned model's own classes.
        max_classes: at most this many classes are sampled.
        mel: the unpadded log-mel spectrogram `(frames, n_mels)` a mel-conditioned model resynthesises.
        original: the audio `mel` was computed from, written once as `original.wav`.
        log_dir: a TensorBoard log folder for the samples as audio; `None` for none.

    Example:

    >>> model.fit(frames, epochs=10, callbacks=[SaveAudio("run/samples", 8000, every=2, seconds=1.0)])
    """

    def __init__(self, directory, sample_rate, every=1, seconds=1.0, mode="wavenet", prime=None, latents=None,
                 temperature=1.0, seed=0, classes=None, max_classes=4, mel=None, original=None, log_dir=None):
        super().__init__()
        if mode not in ("wavenet", "gan", "vocoder", "lm"):
            raise ValueError(f"mode must be 'wavenet', 'gan', 'vocoder' or 'lm', got {mode!r}")
        self.directory = Path(directory)
        self.sample_rate = int(sample_rate)
        self.every = int(every)
        self.seconds = float(seconds)
        self.mode = mode
        self.prime = prime
        self.latents = latents
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.classes = None if classes is None else [str(name) for name in classes]
        self.max_classes = int(max_classes)
        self.mel = mel
        self.original = original
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.writer = None

    def samples(self):
        """The audio this callback would write now: `[(name, audio)]`, `name` being `""` or a class's name."""
        if self.mode == "vocoder":
            from models.gan_vocoder import vocode

            return [("", vocode(self.model.generator, self.mel)[0])]
        if self.mode == "lm":
            from models.lm import detokenize, generate_tokens, lm_spec, render_frames, tokenize

            settings = lm_spec(self.model).mel
            count = max(1, int(round(self.seconds * self.sample_rate / settings.hop_length)))
            tokens = generate_tokens(self.model, count + 1, prime=tokenize(self.model, self.prime),
                                     temperature=self.temperature, seed=self.seed)
            return [("", render_frames(detokenize(self.model, tokens), settings, seed=self.seed)[0])]
        if self.mode == "gan":
            from models.gan import gan_class_names
            from models.generation import class_ids

            generator, latents = self.model.generator, self.latents
            names = gan_class_names(generator)
            if not names:
                return [("", self._joined(np.asarray(generator(latents, training=False))[..., 0]))]
            # One file per class, each with every latent vector: the classes compare clip for clip.
            files = []
            for name in self._class_list(names):
                ids = np.repeat(class_ids(names, [name]), len(latents))[:, None]
                files.append((name, self._joined(np.asarray(generator([latents, ids], training=False))[..., 0])))
            return files
        from models.generation import generate  # models imports callbacks' users, not the reverse
        from models.wavenet import wavenet_spec

        spec = wavenet_spec(self.model)
        num_samples = max(1, int(round(self.seconds * self.sample_rate)))
        if spec.mel is not None:
            audio = generate(self.model, temperature=self.temperature, seed=self.seed, mel=self.mel,
                             classes=self._classes(spec)[:1] if spec.class_names else None)
            return [("", audio[0])]
        if spec.class_names:
            classes = self._classes(spec)
            audio = generate(self.model, num_samples, num_streams=len(classes), temperature=self.temperature,
                             seed=self.seed, classes=classes)
            return list(zip(classes, audio))
        return [("", generate(self.model, num_samples, temperature=self.temperature, prime=self.prime,
                              seed=self.seed)[0])]

    def _joined(self, clips):
        """GAN clips one after another, each followed by 0.1 s of silence."""
        gap = np.zeros((len(clips), self.sample_rate // 10), np.float32)
        return np.concatenate([clips, gap], axis=1).reshape(-1)

    def _classes(self, spec):
        return self._class_list(spec.class_names)

    def _class_list(self, names):
        return list(self.classes if self.classes is not None else names)[:max(1, self.max_classes)]

    def sample(self):
        """The first (or only) audio this callback would write now, as a 1-D float32 array."""
        return self.samples()[0][1]

    def _log(self, tag, audio, step):
        """Writes `audio` to TensorBoard as `tag` at `step`."""
        import tensorflow as tf

        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.log_dir))
        with self.writer.as_default():
            tf.summary.audio(tag, np.asarray(audio, np.float32).reshape(1, -1, 1), self.sample_rate, step=step)
        self.writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        # An epoch cut short (interrupt, NaN loss, time limit) stops training: no sample of a half-done epoch.
        if self.every <= 0 or (epoch + 1) % self.every or getattr(self.model, "stop_training", False):
            return
        try:
            samples = self.samples()
        except Exception as error:  # a lost sample must not lose the run
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"SaveAudio: could not generate the sample for epoch {epoch + 1} "
                          f"({type(error).__name__}: {first_line}); training goes on", stacklevel=2)
            return
        written = []
        parts = [_file_part(name) if name else "" for name, _ in samples]
        if len(set(parts)) < len(parts):  # names that differ only in unsafe characters: number them
            parts = [f"{index + 1}_{part}" for index, part in enumerate(parts)]
        for (name, audio), part in zip(samples, parts):
            path = self.directory / f"epoch_{epoch + 1:04d}{'_' + part if part else ''}.wav"
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                write_audio(path, audio, self.sample_rate)
                save_spectrogram(path.with_suffix(".png"), audio, self.sample_rate,
                                 title=f"epoch {epoch + 1}" + (f", {name}" if name else ""))
                written.append((f"sample/{name}" if name else "sample", audio))
            except Exception as error:
                warnings.warn(f"SaveAudio: could not write {path}: {error}", stacklevel=2)
        if self.original is not None and written:
            path = self.directory / "original.wav"
            try:
                if not path.is_file():
                    write_audio(path, self.original, self.sample_rate)
                    save_spectrogram(path.with_suffix(".png"), self.original, self.sample_rate, title="original")
                    written.append(("original", self.original))
            except Exception as error:
                warnings.warn(f"SaveAudio: could not write {path}: {error}", stacklevel=2)
        if self.log_dir is not None:
            try:
                for tag, audio in written:
                    self._log(tag, audio, epoch + 1)
            except Exception as error:
                first_line = (str(error).strip().splitlines() or [""])[0][:300]
                warnings.warn(f"SaveAudio: could not log the sample to TensorBoard in {self.log_dir} "
                              f"({type(error).__name__}: {first_line}); training goes on", stacklevel=2)
        if written:
            faults.reached("sample-written")

    def on_train_end(self, logs=None):
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # closing can only fail on a folder that is gone; nothing is lost
                pass
            self.writer = None


def _file_part(name):
    """A class name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "class"
