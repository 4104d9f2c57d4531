"""Labelled training audio: a class (speaker, instrument, style) per file, for a class-conditioned WaveNet.

Two ways to label (`train_wavenet.py --labels`):

- `folders`: each immediate subfolder of the training folder is a class named after it; every audio file below
  it, at any depth, belongs to it. Audio files directly in the training folder belong to no class: they are
  skipped, each with a one-line note (like an unreadable file). Folders whose names start with "." are ignored.
- `FILE.csv`: one `path,label` row per file (an optional first row `path,label` is a header); a relative path
  is relative to the CSV's folder. Blank rows are ignored.

Class names are sorted, so class ids are stable whatever order the files are found in; a single class is
allowed. Files are read by `data.audio`'s rules (one sample rate, bad files reported and skipped when there is
more than one). Everything unusable is an `AudioError` (exit status 2) whose one-line message names the file or
folder: a training path that is not a folder, a folder without class subfolders, a class without usable audio, a
CSV that cannot be read, has no rows, a bad row, or names a missing file.

Example:

>>> corpus = load_labelled_audio("folders", "recordings/", sample_rate=16000)
>>> corpus.class_names, corpus.labels[:3]
(('alice', 'bob'), [0, 0, 1])
"""

import csv
from pathlib import Path

from data.audio import AUDIO_EXTENSIONS, AudioCorpus, AudioError, read_files

FOLDERS = "folders"


def folder_labels(path):
    """`(files, names, skipped)`: every audio file below the class subfolders of `path`, sorted by class then path,
    the class name of each, and `(file, reason)` for each audio file directly in `path` (no class).

    Raises:
        AudioError: `path` is not a folder, has no class subfolders, or a class folder holds no audio.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such folder")
    if not path.is_dir():
        raise AudioError(f"{path}: --labels folders needs --train to be a folder with one subfolder per class, "
                         "not a file")
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise AudioError(f"{path}: --labels folders needs one subfolder per class (its name is the class), "
                         "found no subfolders")
    files, names = [], []
    for folder in classes:
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not found:
            raise AudioError(f"{folder}: class folder '{folder.name}' contains no audio files")
        files.extend(found)
        names.extend([folder.name] * len(found))
    loose = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    skipped = [(file, f"{file}: not in a class subfolder of {path} (--labels folders)") for file in loose]
    return files, names, skipped


def csv_labels(path):
    """`(files, names)` from a `path,label` CSV, in row order; relative paths are relative to the CSV's folder.

    Raises:
        AudioError: the CSV cannot be read, has no rows, a row is not `path,label`, a file is missing or listed
            twice.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such labels file" + (" (a folder: did you mean --labels folders?)"
                                                            if path.is_dir() else ""))
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise AudioError(f"{path}: cannot read the labels CSV ({reason})") from None
    numbered = [(number, [cell.strip() for cell in row]) for number, row in enumerate(rows, 1)
                if any(cell.strip() for cell in row)]
    if numbered and [cell.lower() for cell in numbered[0][1]] == ["path", "label"]:
        numbered = numbered[1:]
    if not numbered:
        raise AudioError(f"{path}: the labels CSV has no rows (expected one 'path,label' row per audio file)")
    files, names, seen = [], [], {}
    for number, row in numbered:
        if len(row) != 2 or not row[0] or not row[1]:
            shown = ",".join(row)
            raise AudioError(f"{path}, line {number}: expected 'path,label', got {shown[:80]!r}")
        file = Path(row[0]).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise AudioError(f"{path}, line {number}: {file}: no such file")
        key = file.resolve()
        if key in seen:
            raise AudioError(f"{path}, line {number}: {file} is listed twice (first on line {seen[key]})")
        seen[key] = number
        files.append(file)
        names.append(row[1])
    return files, names


def load_labelled_audio(labels, path, sample_rate=None, min_samples=1, too_short_for="one frame",
                        class_names=None):
    """Loads labelled audio: `labels` is `"folders"` (the class subfolders of `path`) or a CSV file.

    Args:
        labels: `"folders"`, or the path of a `path,label` CSV.
        path: the folder of class subfolders (with `"folders"`); ignored with a CSV.
        sample_rate: resample everything to this rate; default: the first file's rate.
        min_samples: files shorter than this are unusable (reported and skipped).
        too_short_for: what `min_samples` is, for that message.
        class_names: the classes a model was trained on (validation audio): labels must be among them and keep
            their ids; default: this audio's own classes, sorted.

    Returns:
        An `AudioCorpus` with `labels` (a class id per signal) and `class_names`.

    Raises:
        AudioError: anything unusable (see the module docstring); a class whose every file was skipped; a label
            that is not one of `class_names`.
    """
    if sample_rate is not None and sample_rate <= 0:
        raise AudioError(f"sample rate must be positive, got {sample_rate}")
    if str(labels) == FOLDERS:
        files, names, loose = folder_labels(path)
        source = Path(path)
    else:
        (files, names), loose = csv_labels(labels), []
        source = Path(labels)
    if class_names is None:
        class_names = tuple(sorted(set(names)))
    else:
        class_names = tuple(class_names)
        unknown = sorted(set(names) - set(class_names))
        if unknown:
            raise AudioError(f"{source}: class {unknown[0]!r} is not one the model was trained on "
                             f"({', '.join(class_names)})")
    ids = {name: index for index, name in enumerate(class_names)}
    signals, used, skipped, rate = read_files(files, sample_rate, min_samples, skip_bad_files=True,
                                              too_short_for=too_short_for)
    present = {names[i] for i in used}
    for name in sorted(set(names) - present):
        first = next(reason for file, reason in skipped if names[files.index(file)] == name)
        where = source / name if str(labels) == FOLDERS else source
        raise AudioError(f"{where}: class '{name}' has no usable audio (first: {first})")
    return AudioCorpus(signals=signals, sample_rate=int(rate), files=[files[i] for i in used],
                       skipped=loose + skipped, labels=[ids[names[i]] for i in used], class_names=class_names)


__all__ = ["FOLDERS", "csv_labels", "folder_labels", "load_labelled_audio"]
