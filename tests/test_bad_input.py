"""Bad input and edge cases through the four scripts (issue 10, items 4 and 5): each refusal is exit status 2 and
one line naming the file and the problem, and leaves nothing behind; each debatable case does what the README
says.

Refusals that come before TensorFlow loads run the scripts as subprocesses (about a second each); those that need
a loaded model call the script's `main` in this process through `cli.run`, exactly as the script does. Two tiny
runs (a WaveNet on a folder of 500 short files, a GAN) are trained once per module and copied where a test
damages them.
"""

import csv
import json
import shutil
import signal
import time

import numpy as np
import pytest

from tests import forked
from tests.conftest import ROOT, TINY_FLAGS, run_main, run_script, script_env, tone, write_wav
from tests.test_cli import assert_one_line_error

GAN_FLAGS = ["--slice-length", "4096", "--model-dim", "4", "--latent-dim", "16", "--loss", "bce", "--batch-size", "2",
             "--steps-per-epoch", "1", "--sample-every", "0"]
# A place no file can be created in, even by root (who ignores permission bits): /proc takes no new files.
UNWRITABLE = "/proc/wavegen_test"


def files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def history_epochs(run_dir):
    with (run_dir / "history.csv").open(newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def latest(run_dir):
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("audio") / "tone.wav", tone(3.0, frequencies=(220, 330)))


@pytest.fixture(scope="module")
def wavenet_run(tmp_path_factory):
    """A two-epoch tiny WaveNet run on 500 files of 320 samples: 10% of each file (32 samples) is far below a
    256-sample frame, so this run exists only because validation is held out from the corpus as a whole."""
    tmp = tmp_path_factory.mktemp("wavenet")
    for i in range(500):
        write_wav(tmp / "short" / f"clip_{i:03d}.wav", tone(0.04, frequencies=(200 + i,)))
    run_dir = tmp / "run"
    result = run_script("train_wavenet.py", "--train", tmp / "short", "--output-dir", run_dir, *TINY_FLAGS,
                        "--epochs", "2", "--sample-every", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, audio):
    run_dir = tmp_path_factory.mktemp("gan") / "run"
    result = run_script("train_gan.py", "--train", audio, "--output-dir", run_dir, *GAN_FLAGS, "--epochs", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


# Item 4: refused before anything is written.

def test_a_receptive_field_longer_than_the_audio_is_refused_before_writing(tmp_path, audio):
    run_dir = tmp_path / "run"
    result = run_script("train_wavenet.py", "--train", audio, "--output-dir", run_dir, *TINY_FLAGS, "--layers", "40")
    assert_one_line_error(result, str(audio), "receptive field", "--layers 40", "2,199,023,255,551 samples")
    assert not run_dir.exists()  # no config.json or checkpoint: a rerun with fewer layers just works


def test_the_memory_rule_counts_padding_and_generation_queues():
    import models
    from train_wavenet import WaveNetConfig, machine_memory, shape_problem

    config = WaveNetConfig(layers=20, stacks=2, batch_size=4, frame_size=4096, residual_channels=64)
    rf = models.receptive_field(2, 20)
    # 4 x (4096 + 2^19) x 64 x 4 bytes of padded activation and 2 x 2^20 x 64 x 4 of queues: 1.0 GiB.
    assert shape_problem(config, rf, "long.wav", 10 ** 9, memory_bytes=1 << 40) is None
    problem = shape_problem(config, rf, "long.wav", 10 ** 9, memory_bytes=1 << 30)
    assert "--layers 20" in problem and "1.0 GiB" in problem and "half of this machine's 1.0 GiB" in problem
    assert "long.wav" in shape_problem(config, rf, "long.wav", rf - 1, memory_bytes=None)
    assert shape_problem(config, rf, "long.wav", rf, memory_bytes=None) is None
    assert machine_memory() > 0


@pytest.mark.parametrize("script", ["train_wavenet.py", "train_gan.py"])
@pytest.mark.parametrize("case", ["is_a_file", "under_a_file", "unwritable"])
def test_trainers_refuse_an_output_dir_that_cannot_be_written(tmp_path, audio, script, case):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    output, problem = {"is_a_file": (notes, "is a file, not a run folder"),
                       "under_a_file": (notes / "run", "notes.txt is a file, not a folder"),
                       "unwritable": (f"{UNWRITABLE}/run", "cannot create files in /proc")}[case]
    result = run_script(script, "--train", audio, "--output-dir", output)
    assert_one_line_error(result, str(output), problem)
    assert files_under(tmp_path) == ["notes.txt"] and notes.read_text() == "mine"


@pytest.mark.parametrize("kind", ["wavenet", "gan"])
@pytest.mark.parametrize("case", ["under_a_file", "unwritable"])
def test_generate_refuses_an_output_that_cannot_be_written(tmp_path, wavenet_run, gan_run, kind, case):
    model = wavenet_run / "model.keras" if kind == "wavenet" else gan_run / "generator.keras"
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    folder, problem = {"under_a_file": (notes, "notes.txt is a file, not a folder"),
                       "unwritable": (UNWRITABLE, "cannot create files in /proc")}[case]
    result = run_script("generate.py", model, "--output", f"{folder}/out.wav")
    assert_one_line_error(result, f"{folder}/out.wav", problem)
    result = run_script("generate.py", model, "--num", "2", "--output-dir", f"{folder}/clips")
    assert_one_line_error(result, f"{folder}/clips", problem)
    assert files_under(tmp_path) == ["notes.txt"]


def test_resume_refuses_the_other_trainers_run(tmp_path, wavenet_run, gan_run):
    before = {path: files_under(path) for path in (wavenet_run, gan_run)}
    result = run_script("train_gan.py", "--resume", "--output-dir", wavenet_run)
    assert_one_line_error(result, str(wavenet_run), "is a WaveNet run", "train_wavenet.py")
    result = run_script("train_wavenet.py", "--resume", "--output-dir", gan_run, "--epochs", "3")
    assert_one_line_error(result, str(gan_run), "is a GAN run", "train_gan.py")
    assert json.loads((gan_run / "config.json").read_text())["trainer"] == "gan"
    assert {path: files_under(path) for path in (wavenet_run, gan_run)} == before
    # A run made before config.json recorded its trainer is known by what its checkpoints hold.
    old = tmp_path / "old_gan"
    shutil.copytree(gan_run, old)
    config = json.loads((old / "config.json").read_text())
    del config["trainer"]
    (old / "config.json").write_text(json.dumps(config))
    result = run_script("train_wavenet.py", "--resume", "--output-dir", old, "--epochs", "3")
    assert_one_line_error(result, "is a GAN run")


def test_resume_falls_back_from_a_damaged_wavenet_checkpoint(tmp_path, wavenet_run):
    run_dir = tmp_path / "run"
    shutil.copytree(wavenet_run, run_dir)
    assert latest(run_dir)["folder"] == "epoch_0002" and history_epochs(run_dir) == [0, 1]
    damaged = run_dir / "checkpoints" / "epoch_0002" / "model.keras"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # a disk that filled up
    result = run_script("train_wavenet.py", "--resume", "--output-dir", run_dir, "--epochs", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "damaged" in warnings[0]
    assert "epoch_0001" in warnings[0]
    # Epoch 2 is trained again from epoch 1's checkpoint, and logged once.
    assert history_epochs(run_dir) == [0, 1, 2]
    assert latest(run_dir)["folder"] == "epoch_0003"


def test_resume_falls_back_from_a_damaged_gan_checkpoint(tmp_path, gan_run):
    run_dir = tmp_path / "run"
    shutil.copytree(gan_run, run_dir)
    damaged = run_dir / "checkpoints" / "epoch_0002" / "generator.keras"
    damaged.write_bytes(b"")
    result = run_script("train_gan.py", "--resume", "--output-dir", run_dir, "--epochs", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "epoch_0001" in warnings[0]
    assert history_epochs(run_dir) == [0, 1, 2] and latest(run_dir)["folder"] == "epoch_0003"


def test_resume_with_no_checkpoint_that_loads_exits_2_and_changes_nothing(tmp_path, gan_run):
    run_dir = tmp_path / "run"
    shutil.copytree(gan_run, run_dir)
    (run_dir / "checkpoints" / "epoch_0002" / "optimizers.npz").write_bytes(b"not an archive")
    generator = run_dir / "checkpoints" / "epoch_0001" / "generator.keras"
    data = bytearray(generator.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # damaged inside: the zip's checksum catches it
    generator.write_bytes(bytes(data))
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    result = run_script("train_gan.py", "--resume", "--output-dir", run_dir, "--epochs", "3")
    assert_one_line_error(result, "no checkpoint loads", "epoch_0002/optimizers.npz is damaged",
                          "epoch_0001/generator.keras is damaged")
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


def test_restore_checkpoint_takes_the_newest_that_loads_and_points_latest_at_it(tmp_path, capsys):
    from run import RunFolderError, latest_checkpoint, restore_checkpoint, write_checkpoint

    for epoch in (1, 2):
        write_checkpoint(tmp_path, lambda folder, epoch=epoch: (folder / "state.txt").write_text(f"epoch {epoch}"),
                         epoch)
    (tmp_path / "checkpoints" / "epoch_0003").mkdir()  # a newer folder a killed run left half-written

    def restore(folder):
        text = (folder / "state.txt").read_text()
        if "damaged" in text:
            raise ValueError("cannot parse")
        return text

    assert restore_checkpoint(tmp_path, restore, latest_checkpoint(tmp_path))[0] == "epoch 2"
    assert capsys.readouterr().err == ""
    (tmp_path / "checkpoints" / "epoch_0002" / "state.txt").write_text("damaged")
    assert restore_checkpoint(tmp_path, restore, latest_checkpoint(tmp_path))[0] == "epoch 1"
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "epoch_0002 does not load (ValueError: cannot parse)" in warning[0]
    assert latest_checkpoint(tmp_path)[1]["epoch"] == 1
    (tmp_path / "checkpoints" / "epoch_0001" / "state.txt").write_text("damaged")
    with pytest.raises(RunFolderError, match="no checkpoint loads: .*epoch_0001 does not load"):
        restore_checkpoint(tmp_path, restore, latest_checkpoint(tmp_path))


def test_sigterm_during_generate_removes_the_half_written_file(tmp_path, wavenet_run):
    out = tmp_path / "new" / "long.wav"
    process = forked.launch(ROOT / "generate.py", wavenet_run / "model.keras", "--seconds", "100000", "--output", out,
                            cwd=ROOT, env=script_env({"WAVEGEN_ENGINE": "numpy"}))
    try:
        deadline = time.monotonic() + 120
        while True:  # until audio is being written into the hidden temporary file
            temporary = list(out.parent.glob(".long.*.tmp.wav")) if out.parent.exists() else []
            if temporary and temporary[0].stat().st_size > 4096:
                break
            assert process.poll() is None and time.monotonic() < deadline, "generation did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, process.stderr[-2000:]
    assert process.stderr.strip().splitlines() == ["generate.py: terminated (SIGTERM)"]
    assert not out.parent.exists()  # no temporary, no output, and the folder it made is gone too


# Item 5: the debatable cases, as decided.

@pytest.mark.parametrize("flag,value", [("--seconds", "2"), ("--temperature", "0.5"), ("--prime", None)])
def test_a_gan_generator_refuses_wavenet_only_flags(tmp_path, gan_run, audio, flag, value):
    out = tmp_path / "clips" / "one.wav"
    result = run_main("generate.py", gan_run / "generator.keras", "--output", out, flag, value or audio)
    assert_one_line_error(result, "generator.keras", "a GAN generator makes clips of its fixed length (4096 samples",
                          f"{flag} applies to WaveNets only")
    assert not (tmp_path / "clips").exists()


def test_seconds_must_give_at_least_one_sample_and_fit_a_wav(tmp_path, wavenet_run):
    model = wavenet_run / "model.keras"
    result = run_main("generate.py", model, "--seconds", "0.00001", "--output", tmp_path / "out" / "a.wav")
    assert_one_line_error(result, "--seconds 1e-05 is less than one sample at the model's 8000 Hz", "0.000125 s")
    result = run_main("generate.py", model, "--seconds", "300000", "--output", tmp_path / "out" / "a.wav")
    assert_one_line_error(result, "2,400,000,000 samples", "more than a 16-bit WAV holds (4 GiB: 268,435 s)")
    assert not (tmp_path / "out").exists()


def test_an_error_after_the_model_loads_leaves_no_output_folder(tmp_path, wavenet_run):
    result = run_main("generate.py", wavenet_run / "model.keras", "--prime", tmp_path / "missing.wav",
                      "--output", tmp_path / "new" / "deeper" / "a.wav")
    assert_one_line_error(result, "missing.wav", "no such file")
    import keras

    other = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(other)
    result = run_main("generate.py", other, "--num", "2", "--output-dir", tmp_path / "new" / "clips")
    assert_one_line_error(result, "dense.keras", "is not a WaveNet")
    assert files_under(tmp_path) == ["dense.keras"]


def test_generate_makes_the_folders_it_writes_into(tmp_path, wavenet_run, gan_run):
    result = run_main("generate.py", wavenet_run / "model.keras", "--seconds", "0.01", "--output",
                      tmp_path / "a" / "b" / "one.wav")
    assert result.returncode == 0, result.stderr
    result = run_main("generate.py", gan_run / "generator.keras", "--num", "2", "--output-dir", tmp_path / "clips")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path) == ["a", "a/b", "a/b/one.wav", "clips", "clips/sample_001.wav",
                                     "clips/sample_002.wav"]


def test_evaluate_says_when_it_resamples(tmp_path, wavenet_run):
    at_48k = write_wav(tmp_path / "at_48k.wav", tone(0.25, rate=48000), rate=48000)
    at_8k = write_wav(tmp_path / "at_8k.wav", tone(0.25))
    result = run_main("evaluate.py", wavenet_run / "model.keras", at_48k, at_8k)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"note: {at_48k} resampled from 48000 Hz to 8000 Hz, the model's rate"]
    assert result.stdout.strip().endswith("bits/sample")


def test_opposite_phase_stereo_is_said_to_cancel_out(tmp_path):
    from data.audio import AudioError, read_audio

    signal = tone(0.5)
    path = write_wav(tmp_path / "opposite.wav", np.stack([signal, -signal], axis=1))
    with pytest.raises(AudioError, match="channels cancel out when mixed to mono .* keep one channel"):
        read_audio(path)
    silent = write_wav(tmp_path / "silent.wav", np.zeros((800, 2), np.float32))
    with pytest.raises(AudioError, match="audio is silent"):
        read_audio(silent)
    result = run_script("train_wavenet.py", "--train", path, "--output-dir", tmp_path / "run")
    assert_one_line_error(result, str(path), "channels cancel out")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["text", "empty", "folder"])
def test_a_keras_path_that_is_not_a_model_says_so(tmp_path, kind):
    import models

    path = tmp_path / "model.keras"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_text("not a model" if kind == "text" else "")
    with pytest.raises(models.ModelFileError) as error:
        models.load_model(path)
    message = str(error.value)
    assert str(path) in message and "File not found" not in message and "\n" not in message
    assert ("is a folder, not a .keras model file" if kind == "folder" else
            "not a loadable .keras model (the file is not a zip archive") in message
    result = run_main("evaluate.py", path, tmp_path / "x.wav")
    assert_one_line_error(result, str(path), "folder" if kind == "folder" else "not a loadable .keras model")


def test_validation_is_held_out_from_the_corpus_as_a_whole(wavenet_run):
    from data.audio import AudioCorpus, split_validation

    config = json.loads((wavenet_run / "config.json").read_text())
    assert len(config["validate_files"]) == 50 and len(config["train_files"]) == 450
    assert config["validate_files"][0].endswith("clip_450.wav") and config["trainer"] == "wavenet"
    corpus = AudioCorpus([np.full(n, i, np.float32) for i, n in enumerate((30, 50, 20))], 8000, ["a", "b", "c"])
    train, validation = split_validation(corpus, 0.25)  # the last 25 of 100 samples
    assert [len(s) for s in train.signals] == [30, 45] and train.files == ["a", "b"]
    assert [len(s) for s in validation.signals] == [5, 20] and validation.files == ["b", "c"]
    joined = np.concatenate(train.signals + validation.signals)
    np.testing.assert_array_equal(joined, np.concatenate(corpus.signals))


@pytest.mark.parametrize("samples,problem", [
    (1, "1 samples (0.000 s) is shorter than a quarter of a clip of --slice-length 4096 (1024 samples)"),
    (2000, "2000 samples in all is less than one clip (--slice-length 4096)")])
def test_train_gan_refuses_audio_too_short_to_learn_clips_from(tmp_path, samples, problem):
    path = write_wav(tmp_path / "short.wav", tone(1.0)[1:1 + samples])  # sample 0 of a sine is 0
    result = run_script("train_gan.py", "--train", path, "--slice-length", "4096", "--output-dir", tmp_path / "run")
    assert_one_line_error(result, str(path), problem)
    assert not (tmp_path / "run").exists()


def test_a_diverged_run_fails_like_a_nan(tmp_path, audio):
    run_dir = tmp_path / "run"
    result = run_script("train_wavenet.py", "--train", audio, "--output-dir", run_dir, *TINY_FLAGS,
                        "--learning-rate", "1e10")
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "training diverged" in message and "beyond the limit of 10000" in message and "epoch_0000" in message
    assert latest(run_dir)["folder"] == "epoch_0000"
    assert not (run_dir / "history.csv").exists() and not (run_dir / "model.keras").exists()


def test_a_time_limit_before_the_first_whole_epoch_says_so(tmp_path, audio):
    run_dir = tmp_path / "run"
    result = run_script("train_wavenet.py", "--train", audio, "--output-dir", run_dir, *TINY_FLAGS,
                        "--steps-per-epoch", "100000", "--time-limit", "0.01")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "no whole epoch was trained" in result.stdout
    assert "into epoch 1 of 1; continue it with:" in result.stdout
    assert f"python train_wavenet.py --resume --output-dir {run_dir}" in result.stdout
    assert not (run_dir / "history.csv").exists() and (run_dir / "model.keras").is_file()
    assert latest(run_dir)["epoch"] == 0 and latest(run_dir)["step"] > 0


def test_folder_problem_names_what_is_in_the_way(tmp_path):
    from data.files import folder_problem

    (tmp_path / "notes.txt").write_text("mine")
    assert folder_problem(tmp_path / "new" / "deeper") is None
    assert folder_problem(tmp_path / "notes.txt" / "run") == f"{tmp_path / 'notes.txt'} is a file, not a folder"
    assert folder_problem(f"{UNWRITABLE}/run").startswith("cannot create files in /proc")
    assert files_under(tmp_path) == ["notes.txt"]  # the probe file is gone
