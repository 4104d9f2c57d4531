"""The scripts as a user runs them: bad input, a whole tiny run on awkward audio, generation, evaluation."""

import argparse
import csv
import json
import re

import numpy as np
import pytest
import soundfile as sf

from tests import forked
from tests.conftest import ROOT, TINY_FLAGS, run_main, run_script, script_env, tone, write_wav
from tests.test_audio import BAD_KINDS, make_bad


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("kind", BAD_KINDS + ["short"])
def test_train_rejects_bad_audio_and_leaves_nothing(tmp_path, kind):
    if kind == "short":
        path, problem = write_wav(tmp_path / "short.wav", tone(0.02)), "shorter than one frame"
    else:
        path, problem = make_bad(tmp_path, kind)
    run_dir = tmp_path / "run"
    result = run_script("train_wavenet.py", "--train", path, "--output-dir", run_dir, *TINY_FLAGS)
    assert_one_line_error(result, str(path), problem)
    assert not run_dir.exists()


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--frame-size", "-5"), ("--sample-rate", "0"),
                                        ("--learning-rate", "0"), ("--epochs", "two"), ("--head", "mixture")])
def test_train_rejects_non_positive_sizes_and_rates(tmp_path, flag, value):
    result = run_script("train_wavenet.py", flag, value, "--output-dir", tmp_path / "run")
    assert_one_line_error(result, flag)
    assert not (tmp_path / "run").exists()


def test_train_rejects_a_loss_that_does_not_fit_the_head(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(1.0))
    result = run_script("train_wavenet.py", "--train", path, "--head", "classifier", "--loss", "mse",
                        "--output-dir", tmp_path / "run", *TINY_FLAGS)
    assert_one_line_error(result, "does not fit")
    assert not (tmp_path / "run").exists()


def test_generate_and_evaluate_reject_bad_input(tmp_path):
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("not a zip")
    result = run_script("generate.py", tmp_path / "missing.keras", "--output", tmp_path / "x.wav")
    assert_one_line_error(result, "missing.keras", "no such model file")
    result = run_script("generate.py", not_a_model, "--seconds", "0", "--output", tmp_path / "x.wav")
    assert_one_line_error(result, "--seconds")
    result = run_script("generate.py", not_a_model, "--output", tmp_path / "x.wav")
    assert result.returncode == 2 and "not a loadable .keras model" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and not (tmp_path / "x.wav").exists()
    result = run_script("evaluate.py", tmp_path / "missing.keras", tmp_path / "a.wav")
    assert_one_line_error(result, "no such model file")


def help_entries(text):
    """`{invocation: help}` of argparse's `--help` text: each argument's line in the "positional arguments" and
    "options" sections and the more indented lines under it, joined by single spaces."""
    entries, current, in_section = {}, None, False
    for line in text.splitlines():
        if not line.startswith(" "):  # a section's heading, or an empty line between entries or sections
            heading = re.fullmatch(r"(positional arguments|options|optional arguments):", line)
            in_section, current = bool(heading) or (in_section and not line), None
        elif in_section and re.match(r"  \S", line):
            invocation, _, text_part = line.strip().partition("  ")
            current = invocation
            entries[current] = [text_part.strip()]
        elif current is not None and re.match(r" {3,}\S", line):
            entries[current].append(line.strip())
    return {invocation: " ".join(part for part in parts if part) for invocation, parts in entries.items()}


def flag_of(invocation):
    """`--train` of `--train TRAIN`, `--head` of `--head {a,b}`, `--help` of `-h, --help`, `model` of `model`."""
    words = invocation.split()
    flags = [word.rstrip(",") for word in words if word.startswith("-")]
    return flags[-1] if flags else words[0]


def squeezed(text):
    return re.sub(r"\s+", "", text)  # argparse wraps help text at spaces and after hyphens


KEY_FLAGS = {"train_wavenet.py": ["--train", "--resume", "--output-dir", "--epochs", "--learning-rate", "--on-nan",
                                  "--layers", "--time-limit"],
             "train_gan.py": ["--train", "--resume", "--output-dir", "--epochs", "--slice-length", "--on-nan"],
             "generate.py": ["model", "--seconds", "--num", "--output", "--output-dir", "--prime", "--temperature"],
             "evaluate.py": ["model", "audio", "--json", "--num", "--train", "--chunk"]}


@pytest.mark.parametrize("script", ["train_wavenet.py", "train_gan.py", "generate.py", "evaluate.py"])
def test_help_explains_the_flags(script):
    """`--help` names the script, explains every argument its parser defines (and only those), and shows the
    trainers' defaults; it exits 0 with nothing on stderr."""
    import dataclasses
    import importlib

    module = importlib.import_module(script[:-3])
    parser = module.build_parser()
    expected = {action.option_strings[-1] if action.option_strings else action.dest: action
                for action in parser._actions}
    result = run_script(script, "--help", fresh=True)  # fresh: nothing on stderr from the start up
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert result.stdout.startswith(f"usage: {script} [-h]")
    entries = {flag_of(invocation): text for invocation, text in help_entries(result.stdout).items()}
    assert set(entries) == set(expected)  # every argument the parser defines, and nothing else
    assert set(KEY_FLAGS[script]) <= set(entries)
    for flag, text in entries.items():  # a sentence of help, not nothing, one word or a bare default
        assert len(re.sub(r"\(default: [^)]*\)$", "", text).split()) >= 2, (flag, text)
    if script.startswith("train_"):
        fields = dataclasses.fields(getattr(module, "WaveNetConfig" if script == "train_wavenet.py" else "GANConfig"))
        assert set(entries) == {"--help"} | {"--" + field.name.replace("_", "-") for field in fields}
        for field in fields:
            text = entries["--" + field.name.replace("_", "-")]
            if field.type is bool:
                assert "(default:" not in text, field.name
                continue
            shown = "bundled clip" if field.name == "train" else field.default
            assert squeezed(text).endswith(squeezed(f"(default: {shown})")), (field.name, text)
    else:
        for flag, action in expected.items():
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "(default: " in entries[flag], (flag, entries[flag])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run on stereo, 24-bit, 44.1 kHz FLAC: all of it must simply work."""
    tmp = tmp_path_factory.mktemp("run")
    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 330 * t), 0.3 * np.sin(2 * np.pi * 550 * t)], axis=1)
    audio = tmp / "stereo.flac"
    sf.write(str(audio), stereo, 44100, format="FLAC", subtype="PCM_24")
    run_dir = tmp / "run"
    result = run_script("train_wavenet.py", "--train", audio, "--sample-rate", "8000", "--output-dir", run_dir,
                        *TINY_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, audio, result


def test_training_run_folder(trained_run):
    run_dir, audio, result = trained_run
    assert "receptive field 15 samples" in result.stdout
    for name in ("model.keras", "config.json", "history.csv", "checkpoints/latest.json",
                 "checkpoints/epoch_0001/model.keras", "samples/epoch_0001.wav", "samples/epoch_0001.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "logs").rglob("events.out.tfevents.*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["receptive_field"] == 15 and config["sample_rate"] == 8000 and config["layers"] == 3
    assert config["train_files"] == [str(audio)]
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert len(rows) == 1
    for column in ("loss", "val_loss", "bits_per_sample", "val_bits_per_sample", "targets_per_second",
                   "seconds_per_epoch"):
        assert float(rows[0][column]) > 0, column
    info = sf.info(str(run_dir / "samples" / "epoch_0001.wav"))
    assert (info.samplerate, info.frames) == (8000, 800)


def test_generate_single_file_and_batch(trained_run, tmp_path):
    run_dir, audio, _ = trained_run
    out = tmp_path / "one.wav"
    result = run_script("generate.py", run_dir / "model.keras", "--seconds", "0.25", "--output", out, "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    info = sf.info(str(out))
    assert (info.samplerate, info.frames, info.subtype) == (8000, 2000, "PCM_16")
    assert "samples/s" in result.stdout
    # The seed fixes the audio: the file is what the API makes with the same seed (to 16-bit rounding).
    import keras

    import models

    expected = models.generate(keras.saving.load_model(run_dir / "model.keras"), 2000, seed=1)[0]
    written = sf.read(str(out), dtype="float32")[0]
    assert np.abs(written - expected).max() <= 2.0 / 32768 and np.abs(written).max() > 0
    # bfloat16 weights: what the API makes with them
    result = run_main("generate.py", run_dir / "model.keras", "--seconds", "0.25", "--output", tmp_path / "bf16.wav",
                      "--seed", "1", "--precision", "bfloat16")
    assert result.returncode == 0, result.stderr[-2000:]
    expected = models.generate(keras.saving.load_model(run_dir / "model.keras"), 2000, seed=1,
                               precision="bfloat16")[0]
    assert np.abs(sf.read(str(tmp_path / "bf16.wav"), dtype="float32")[0] - expected).max() <= 2.0 / 32768
    result = run_script("generate.py", run_dir / "model.keras", "--seconds", "0.1", "--num", "3", "--output-dir",
                        tmp_path / "many", "--prime", audio, "--temperature", "0.5")
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert names == ["sample_001.wav", "sample_002.wav", "sample_003.wav"]


def test_evaluate_prints_bits_per_sample(trained_run, tmp_path):
    run_dir, audio, _ = trained_run
    held_out = write_wav(tmp_path / "held_out.wav", tone(0.5, frequencies=(330, 550)))
    result = run_script("evaluate.py", run_dir / "model.keras", held_out)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+\.\d{3} bits/sample", last)
    bits = float(last.split()[0])
    assert 0 < bits < 9
    result = run_main("evaluate.py", run_dir / "model.keras", held_out, "--json")  # (fresh process: above)
    report = json.loads(result.stdout)
    assert report["samples"] == 3999 and abs(report["bits_per_sample"] - bits) < 1e-3


def test_resume_continues_the_epochs(trained_run, tmp_path):
    import shutil

    run_dir, audio, _ = trained_run
    copy = tmp_path / "resumed"
    shutil.copytree(run_dir, copy)
    result = run_script("train_wavenet.py", "--resume", "--output-dir", copy, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader((copy / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert (copy / "samples" / "epoch_0002.wav").is_file()
    result = run_script("train_wavenet.py", "--resume", "--output-dir", copy, "--epochs", "3", "--layers", "4")
    assert_one_line_error(result, "--layers")


@pytest.mark.slow
@pytest.mark.parametrize("script,flags,loss_column", [
    ("train_wavenet.py", ["--epochs", "1", *TINY_FLAGS], "loss"),
    ("train_gan.py", ["--slice-length", "4096", "--model-dim", "4", "--latent-dim", "16", "--epochs", "1",
                      "--steps-per-epoch", "1", "--batch-size", "2", "--sample-every", "0"], "d_loss"),
])
def test_mixed_bfloat16_training_through_the_cli(tmp_path, script, flags, loss_column):
    """bfloat16 compute (the WaveNet's hand-written convolution gradient included), float32 weights and loss."""
    audio = write_wav(tmp_path / "tones.wav", tone(3.0, frequencies=(300, 600)))
    run_dir = tmp_path / "run"
    result = run_script(script, "--train", audio, "--precision", "mixed_bfloat16", "--output-dir", run_dir, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "config.json").read_text())["precision"] == "mixed_bfloat16"
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert rows and all(np.isfinite(float(row[loss_column])) for row in rows)
    saved = "model.keras" if script == "train_wavenet.py" else "generator.keras"
    check = ("import sys, keras, models; m = keras.saving.load_model(sys.argv[1]); "
             "print(sorted({w.dtype for w in m.weights}))")
    loaded = forked.run_code(check, run_dir / saved, cwd=ROOT, env=script_env())
    assert loaded.stdout.strip().splitlines()[-1] == "['float32']", loaded.stderr[-2000:]
