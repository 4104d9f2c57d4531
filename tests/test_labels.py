"""Labelled training audio (`data.labels`): class folders and CSV files, their bad inputs, and the per-class split."""

import numpy as np
import pytest

from data.audio import AudioCorpus, AudioError, split_validation
from data.labels import load_labelled_audio
from tests.conftest import TINY_FLAGS, run_main, tone, write_wav


def class_folders(root):
    """`root/` with classes `low` (one file, one nested) and `high` (one at 16 kHz), a loose file and a hidden
    folder."""
    write_wav(root / "low" / "a.wav", tone(0.5, frequencies=(300,)))
    write_wav(root / "low" / "deeper" / "b.wav", tone(0.25, frequencies=(310,)))
    write_wav(root / "high" / "c.wav", tone(0.5, rate=16000, frequencies=(1100,)), rate=16000)
    write_wav(root / "loose.wav", tone(0.5))
    write_wav(root / ".cache" / "d.wav", tone(0.5))
    (root / "high" / "notes.txt").write_text("not audio")
    return root


def test_class_folders_are_sorted_classes_with_files_at_any_depth(tmp_path):
    corpus = load_labelled_audio("folders", class_folders(tmp_path / "data"))
    assert corpus.class_names == ("high", "low")
    assert [(p.parent.name, p.name) for p in corpus.files] == [("high", "c.wav"), ("low", "a.wav"),
                                                                ("deeper", "b.wav")]
    assert corpus.labels == [0, 1, 1]
    # One rate for all: the first file's (16 kHz here), the others resampled, as load_audio does.
    assert corpus.sample_rate == 16000 and [len(s) for s in corpus.signals] == [8000, 8000, 4000]
    assert [str(file.name) for file, _ in corpus.skipped] == ["loose.wav"]  # no class: skipped with a note
    assert "not in a class subfolder" in corpus.skipped[0][1]
    assert load_labelled_audio("folders", tmp_path / "data", sample_rate=8000).sample_rate == 8000


def test_a_bad_file_in_a_class_is_skipped_and_reported(tmp_path):
    root = class_folders(tmp_path / "data")
    (root / "low" / "broken.wav").write_text("not a RIFF file")
    corpus = load_labelled_audio("folders", root, sample_rate=8000)
    assert corpus.labels == [0, 1, 1]
    assert any("broken.wav" in reason and "not a readable audio file" in reason for _, reason in corpus.skipped)


def test_csv_rows_relative_to_the_csv_or_absolute_with_an_optional_header(tmp_path):
    write_wav(tmp_path / "audio" / "one.wav", tone(0.5, frequencies=(300,)))
    two = write_wav(tmp_path / "elsewhere" / "two.wav", tone(0.5, frequencies=(900,)))
    write_wav(tmp_path / "audio" / "three.wav", tone(0.25, frequencies=(310,)))
    labels = tmp_path / "audio" / "labels.csv"
    labels.write_text(f"path,label\none.wav,piano\n{two},violin\n\n three.wav , piano \n")
    corpus = load_labelled_audio(labels, None)
    assert corpus.class_names == ("piano", "violin")
    assert [p.name for p in corpus.files] == ["one.wav", "two.wav", "three.wav"] and corpus.labels == [0, 1, 0]
    labels.write_text(f"one.wav,piano\n{two},violin\n")  # no header
    assert load_labelled_audio(labels, None).labels == [0, 1]
    one_class = tmp_path / "one_class.csv"
    one_class.write_text("audio/one.wav,solo\n")  # a single class is fine
    corpus = load_labelled_audio(one_class, None)
    assert corpus.class_names == ("solo",) and corpus.labels == [0]


def test_validation_labels_keep_the_training_ids(tmp_path):
    write_wav(tmp_path / "val" / "low" / "x.wav", tone(0.5, frequencies=(300,)))
    corpus = load_labelled_audio("folders", tmp_path / "val", class_names=("high", "low"))
    assert corpus.class_names == ("high", "low") and corpus.labels == [1]
    write_wav(tmp_path / "val" / "drums" / "y.wav", tone(0.5))
    with pytest.raises(AudioError, match="class 'drums' is not one the model was trained on"):
        load_labelled_audio("folders", tmp_path / "val", class_names=("high", "low"))


@pytest.mark.parametrize("kind,problem", [
    ("not_a_folder", "needs --train to be a folder"),
    ("missing", "no such folder"),
    ("no_subfolders", "found no subfolders"),
    ("class_without_audio", "class folder 'empty' contains no audio files"),
    ("class_all_bad", "class 'bad' has no usable audio"),
])
def test_bad_class_folders(tmp_path, kind, problem):
    root = tmp_path / "data"
    write_wav(root / "good" / "a.wav", tone(0.5))
    if kind == "not_a_folder":
        root = root / "good" / "a.wav"
    elif kind == "missing":
        root = tmp_path / "nowhere"
    elif kind == "no_subfolders":
        root = tmp_path / "flat"
        write_wav(root / "a.wav", tone(0.5))
    elif kind == "class_without_audio":
        (root / "empty").mkdir()
        (root / "empty" / "readme.txt").write_text("no audio")
    else:
        (root / "bad").mkdir()
        (root / "bad" / "x.wav").write_text("not audio")
    with pytest.raises(AudioError) as error:
        load_labelled_audio("folders", root)
    message = str(error.value)
    named = {"class_without_audio": root / "empty", "class_all_bad": root / "bad"}.get(kind, root)
    assert problem in message and message.startswith(str(named)) and "\n" not in message


@pytest.mark.parametrize("content,problem", [
    ("", "has no rows"),
    ("path,label\n", "has no rows"),
    ("a.wav\n", "line 1: expected 'path,label'"),
    ("path,label\na.wav,low\nb.wav,\n", "line 3: expected 'path,label'"),
    ("a.wav,low,extra\n", "line 1: expected 'path,label'"),
    ("a.wav,low\nmissing.wav,high\n", "line 2:"),
    ("a.wav,low\n./a.wav,high\n", "listed twice"),
    (b"\xff\xfe\x00\x81 not text", "cannot read the labels CSV"),
    (None, "no such labels file"),
])
def test_bad_csv(tmp_path, content, problem):
    write_wav(tmp_path / "a.wav", tone(0.5))
    labels = tmp_path / "labels.csv"
    if isinstance(content, bytes):
        labels.write_bytes(content)
    elif content is not None:
        labels.write_text(content)
    with pytest.raises(AudioError) as error:
        load_labelled_audio(labels, None)
    message = str(error.value)
    assert problem in message and str(labels) in message and "\n" not in message
    if isinstance(content, str) and "missing" in content:
        assert "missing.wav: no such file" in message


def test_labelled_split_holds_out_the_end_of_each_class():
    signals = [np.full(n, i, np.float32) for i, n in enumerate((100, 60, 40, 10))]
    corpus = AudioCorpus(signals, 8000, ["a", "b", "c", "d"], labels=[0, 1, 1, 2], class_names=("x", "y", "z"))
    train, validation = split_validation(corpus, 0.25)
    assert train.files == ["a", "b", "c", "d"] and [len(s) for s in train.signals] == [75, 60, 15, 8]
    assert train.labels == [0, 1, 1, 2] and train.class_names == ("x", "y", "z")
    assert validation.files == ["a", "c", "d"] and [len(s) for s in validation.signals] == [25, 25, 2]
    assert validation.labels == [0, 1, 2]  # every class is validated, each piece keeps its label
    assert all(np.all(s == int(f == "b") + 2 * (f == "c") + 3 * (f == "d")) for s, f in
               zip(validation.signals, validation.files))
    assert np.shares_memory(train.signals[0], signals[0])  # views, as without labels
    plain_train, plain_validation = split_validation(AudioCorpus(signals, 8000, ["a", "b", "c", "d"]), 0.25)
    assert plain_train.labels is None and [len(s) for s in plain_validation.signals] == [2, 40, 10]


@pytest.mark.parametrize("case,problem", [
    ("labels_on_a_file", "needs --train to be a folder"),
    ("no_class_folders", "found no subfolders"),
    ("class_without_audio", "class folder 'empty' contains no audio files"),
    ("csv_missing_file", "gone.wav: no such file"),
    ("csv_with_train", "leave out --train"),
    ("csv_validate_not_csv", "validation audio is labelled by a CSV"),
    ("window_longer_than_fft", "--mel-window-ms 50 is 400 samples at 8000 Hz, longer than --mel-fft 256"),
    ("fmax_above_nyquist", "--mel-fmax 5000 Hz is above the Nyquist frequency (4000 Hz"),
    ("fmin_above_fmax", "--mel-fmin 3000 Hz must be below --mel-fmax (2000 Hz)"),
    ("floor", "--mel-floor 2 must be below 1"),
])
def test_train_refuses_bad_labels_and_mel_settings_in_one_line_writing_nothing(tmp_path, case, problem):
    root = tmp_path / "data"
    write_wav(root / "low" / "a.wav", tone(1.0, frequencies=(300,)))
    write_wav(root / "high" / "b.wav", tone(1.0, frequencies=(1100,)))
    csv = tmp_path / "labels.csv"
    csv.write_text("data/low/a.wav,low\ndata/gone.wav,high\n")
    flags = {
        "labels_on_a_file": ["--train", root / "low" / "a.wav", "--labels", "folders"],
        "no_class_folders": ["--train", root / "low", "--labels", "folders"],
        "class_without_audio": ["--train", root, "--labels", "folders"],
        "csv_missing_file": ["--labels", csv],
        "csv_with_train": ["--labels", csv, "--train", root],
        "csv_validate_not_csv": ["--labels", csv, "--validate", root],
        "window_longer_than_fft": ["--train", root / "low", "--condition", "mel", "--mel-fft", "256"],
        "fmax_above_nyquist": ["--train", root / "low", "--condition", "mel", "--mel-fmax", "5000"],
        "fmin_above_fmax": ["--train", root / "low", "--condition", "mel", "--mel-fmin", "3000", "--mel-fmax",
                            "2000"],
        "floor": ["--train", root / "low", "--condition", "mel", "--mel-floor", "2"],
    }[case]
    if case == "class_without_audio":
        (root / "empty").mkdir()
    if case == "csv_validate_not_csv":
        csv.write_text("data/low/a.wav,low\n")
    run_dir = tmp_path / "run"
    result = run_main("train_wavenet.py", *flags, "--output-dir", run_dir, *TINY_FLAGS)
    status, lines = result.returncode, result.stderr.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and problem in lines[0], lines
    assert lines[0].startswith("train_wavenet.py: error: ")
    assert not run_dir.exists()
