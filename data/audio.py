"""Reading, checking and writing audio.

Everything a trainer reads goes through `load_audio`, so every script rejects bad input the same way: an
`AudioError` whose message names the file and the problem in one line.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from data.files import replace_atomically

# Extensions soundfile (libsndfile) reads; a folder is searched recursively for these.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
     ".w64", ".rf64", ".caf"}
)


class AudioError(ValueError):
    """Bad input audio; the message is one line naming the file and the problem."""

    exit_status = 2  # what `cli.run` exits with after printing the message


@dataclass
class AudioCorpus:
    """Mono float32 signals in [-1, 1] at one sample rate, with the files they came from.

    Args:
        signals: one 1-D float32 array per file.
        sample_rate: the rate of every signal, in Hz.
        files: the source path of each signal.
        skipped: `(path, reason)` for each file that could not be used.
        labels: for a labelled corpus (`data.labels`), the class id of each signal; `None` when unlabelled.
        class_names: the name of each class id, sorted (empty when unlabelled).
    """

    signals: list
    sample_rate: int
    files: list
    skipped: list = field(default_factory=list)
    labels: Optional[list] = None
    class_names: tuple = ()

    @property
    def num_samples(self):
        return int(sum(len(s) for s in self.signals))

    @property
    def seconds(self):
        return self.num_samples / self.sample_rate


def find_audio_files(path):
    """Returns the audio files at `path`: the file itself, or every audio file below a folder, sorted."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise AudioError(f"{path}: folder contains no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return files


def read_audio(path, sample_rate=None):
    """Reads one file as mono float32 in [-1, 1], resampled to `sample_rate` when given.

    Integer formats are scaled by their full scale (16-bit 32767 -> ~1.0), never stretched to the signal's own
    range, so quiet recordings stay quiet and silence stays silence.

    Returns:
        `(signal, sample_rate)`.

    Raises:
        AudioError: unreadable, empty, silent, or holding NaN or Inf samples; or multichannel audio whose
            channels cancel out when mixed to mono (opposite phase).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        signal, file_rate = sf.read(str(path), dtype="float32")
    except Exception as error:  # soundfile raises several types; the user only needs the reason.
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        reason = re.sub(r"^Error opening .*?: ", "", reason)  # soundfile repeats the path; we name it once
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if signal.size == 0:
        raise AudioError(f"{path}: file holds no samples")
    if not np.all(np.isfinite(signal)):
        raise AudioError(f"{path}: file holds NaN or Inf samples")
    channels_peak = None
    if signal.ndim == 2:
        channels_peak = max(signal.max(), -signal.min())  # no temporary: files can be long
        signal = signal.mean(axis=1, dtype=np.float32)
    if sample_rate is not None and int(sample_rate) != int(file_rate):
        import librosa  # imported here: it is slow to import and only resampling needs it.

        signal = librosa.resample(signal, orig_sr=file_rate, target_sr=int(sample_rate)).astype(np.float32)
        file_rate = int(sample_rate)
    # Float files may exceed full scale; integer ones cannot. Clip (in place: no second copy of a long file)
    # rather than rescale.
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    np.clip(signal, -1.0, 1.0, out=signal)
    if max(signal.max(), -signal.min()) <= 1.0 / 32768:
        if channels_peak is not None and channels_peak > 1.0 / 32768:
            raise AudioError(f"{path}: the channels cancel out when mixed to mono (they are in opposite phase); "
                             "keep one channel, e.g. sox in.wav out.wav remix 1")
        raise AudioError(f"{path}: audio is silent (every sample is zero at 16-bit resolution)")
    return signal, int(file_rate)


def load_audio(path, sample_rate=None, min_samples=1, skip_bad_files=False, too_short_for="one frame"):
    """Loads a file, or every audio file below a folder, at one sample rate.

    Args:
        path: a file or a folder (searched recursively).
        sample_rate: resample everything to this rate; default: the rate of the first file.
        min_samples: files shorter than this (after resampling) are unusable.
        skip_bad_files: in a folder, report and skip unusable files instead of failing on the first one.
        too_short_for: what `min_samples` is, for the message about a file shorter than that.

    Returns:
        An `AudioCorpus`.

    Raises:
        AudioError: nothing usable at `path`.
    """
    if sample_rate is not None and sample_rate <= 0:
        raise AudioError(f"sample rate must be positive, got {sample_rate}")
    files = find_audio_files(path)
    signals, used, skipped, rate = read_files(files, sample_rate, min_samples, skip_bad_files, too_short_for)
    if not signals:
        raise AudioError(f"{path}: no usable audio ({len(skipped)} files skipped; first: {skipped[0][1]})")
    return AudioCorpus(signals=signals, sample_rate=int(rate), files=[files[i] for i in used], skipped=skipped)


def read_files(files, sample_rate=None, min_samples=1, skip_bad_files=False, too_short_for="one frame"):
    """Reads `files` in order at one rate (`sample_rate`, or the first readable file's), by `load_audio`'s rules.

    Returns:
        `(signals, used, skipped, rate)`: the usable signals, the index in `files` of each, `(path, reason)` of
        each skipped file, and the rate (`sample_rate` when nothing could be read).

    Raises:
        AudioError: an unusable file, unless `skip_bad_files` and there is more than one file.
    """
    signals, used, skipped = [], [], []
    rate = sample_rate
    for index, file in enumerate(files):
        try:
            signal, rate = read_audio(file, rate)
            if len(signal) < min_samples:
                raise AudioError(
                    f"{file}: {len(signal)} samples ({len(signal) / rate:.3f} s) is shorter than {too_short_for} "
                    f"({min_samples} samples)"
                )
        except AudioError as error:
            if not skip_bad_files or len(files) == 1:
                raise
            skipped.append((file, str(error)))
            continue
        signals.append(signal)
        used.append(index)
    return signals, used, skipped, rate


def split_validation(corpus, fraction=0.1):
    """Holds out the last `fraction` of the corpus's total duration as validation audio.

    The split is taken from the corpus as a whole, in file order: the files at the end go to validation whole,
    and one file is cut where the held-out part begins. So a folder of many short files keeps whole files on
    each side instead of cutting every one of them below a frame. A single file loses its last `fraction`.
    The pieces are views of the signals (no copy); an empty piece is left out, with its file. A labelled corpus
    (`labels` set) is split class by class, the last `fraction` of each class held out, so that validation has
    every class; each piece keeps its label.

    Returns:
        `(train_corpus, validation_corpus)`.

    Example:

    >>> corpus = AudioCorpus([np.zeros(60, "float32"), np.zeros(40, "float32")], 8000, ["a.wav", "b.wav"])
    >>> train, validation = split_validation(corpus, 0.5)
    >>> [len(s) for s in train.signals], [len(s) for s in validation.signals], validation.files
    ([50], [10, 40], ['a.wav', 'b.wav'])
    """
    if corpus.labels is None:
        train, validation = _split(corpus.signals, corpus.files, fraction)
        return (AudioCorpus(train[0], corpus.sample_rate, train[1]),
                AudioCorpus(validation[0], corpus.sample_rate, validation[1]))
    # A labelled corpus: the last `fraction` of each class, so that validation has every class.
    parts = ([], [], []), ([], [], [])
    for label in sorted(set(corpus.labels)):
        mine = [i for i, own in enumerate(corpus.labels) if own == label]
        pieces = _split([corpus.signals[i] for i in mine], [corpus.files[i] for i in mine], fraction)
        for part, (signals, files) in zip(parts, pieces):
            part[0].extend(signals)
            part[1].extend(files)
            part[2].extend([label] * len(signals))
    return tuple(AudioCorpus(signals, corpus.sample_rate, files, labels=labels, class_names=corpus.class_names)
                 for signals, files, labels in parts)


def _split(signals, files, fraction):
    """`((train signals, files), (validation signals, files))`: the last `fraction` of `signals` as a whole."""
    lengths = [len(signal) for signal in signals]
    cut = int(round(sum(lengths) * (1.0 - fraction)))  # where validation begins, in the joined corpus
    train, validation = ([], []), ([], [])
    start = 0
    for signal, file, length in zip(signals, files, lengths):
        here = min(max(cut - start, 0), length)  # this signal's samples before the cut
        for part, piece in ((train, signal[:here]), (validation, signal[here:])):
            if len(piece):
                part[0].append(piece)
                part[1].append(file)
        start += length
    return train, validation


def speed_perturb(corpus, speeds):
    """The corpus played at each of `speeds`: Kaldi's speed perturbation (0.9, 1, 1.1 triples a corpus of speech).

    Each signal is resampled so that, at the corpus's sample rate, it plays `speed` times as fast (tempo and pitch
    together: 1.1 is shorter and higher); a speed of 1 is the signal itself. The copies of a signal follow it in
    the order of `speeds`, each with its signal's file and label. Perturb training audio only: held-out audio is
    what a model is scored on.

    Args:
        corpus: an `AudioCorpus`.
        speeds: the speeds, e.g. `(0.9, 1.0, 1.1)`; `(1.0,)` returns `corpus` itself.

    Returns:
        An `AudioCorpus` of `len(speeds)` signals per signal of `corpus` (each copy as float32 in [-1, 1]).

    Example:

    >>> corpus = AudioCorpus([np.zeros(8000, "float32")], 8000, ["a.wav"])
    >>> [len(s) for s in speed_perturb(corpus, (0.9, 1.0, 1.1)).signals]
    [8889, 8000, 7273]
    """
    if tuple(speeds) == (1.0,):
        return corpus
    import librosa  # imported here: it is slow to import and only resampling needs it.

    signals, files, labels = [], [], []
    for index, signal in enumerate(corpus.signals):
        for speed in speeds:
            if speed == 1:
                copy = signal
            else:
                copy = librosa.resample(signal, orig_sr=corpus.sample_rate,
                                        target_sr=round(corpus.sample_rate / speed)).astype(np.float32, copy=False)
                np.clip(copy, -1.0, 1.0, out=copy)  # resampling can overshoot full scale
            signals.append(copy)
            files.append(corpus.files[index])
            if corpus.labels is not None:
                labels.append(corpus.labels[index])
    return AudioCorpus(signals, corpus.sample_rate, files, list(corpus.skipped),
                       labels if corpus.labels is not None else None, corpus.class_names)


def write_audio(path, signal, sample_rate, subtype="PCM_16"):
    """Writes a mono float signal in [-1, 1] as 16-bit audio, atomically."""
    signal = np.clip(np.asarray(signal, dtype=np.float32).reshape(-1), -1.0, 1.0)
    replace_atomically(lambda tmp: sf.write(str(tmp), signal, int(sample_rate), subtype=subtype), path)
