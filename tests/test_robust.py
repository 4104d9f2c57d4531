"""Training survives Ctrl-C, SIGTERM, kill -9, NaN losses and bad files, through the CLI."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_FLAGS, run_script, tone, write_wav

LONG = [*TINY_FLAGS, "--epochs", "40"]  # argparse keeps the last value of a repeated flag


@pytest.fixture(scope="module")
def speech_like(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("audio") / "chord.wav", tone(3.0, frequencies=(220, 330, 550)))


def start(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "train_wavenet.py"), *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def history_epochs(run_dir):
    if not (run_dir / "history.csv").exists():  # killed before its first whole epoch
        return []
    with (run_dir / "history.csv").open() as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def latest(run_dir):
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())


def predictions(model_path):
    import keras

    import models  # noqa: F401

    model = keras.saving.load_model(model_path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 300, 1)).astype(np.float32)
    return np.asarray(model(x))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_a_checkpoint_and_resume_finishes_the_run(tmp_path, speech_like, signum):
    run_dir = tmp_path / "run"
    process = start("--train", speech_like, "--output-dir", run_dir, *LONG, "--sample-every", "0")
    wait_for(run_dir / "checkpoints" / "epoch_0002")
    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 30
    assert process.returncode == 130, stderr[-2000:]
    assert f"--resume --output-dir {run_dir}" in stderr and "Resume with" in stderr
    state = latest(run_dir)
    assert (run_dir / "checkpoints" / state["folder"] / "model.keras").is_file()
    done = state["epoch"]
    assert history_epochs(run_dir) == list(range(done))

    target = done + 2
    result = run_script("train_wavenet.py", "--resume", "--output-dir", run_dir, "--epochs", target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert history_epochs(run_dir) == list(range(target))  # no gap, no repeat
    assert latest(run_dir) == {**latest(run_dir), "epoch": target, "step": 0}

    # The interrupted-and-resumed run ends where an uninterrupted one does.
    straight = tmp_path / "straight"
    result = run_script("train_wavenet.py", "--train", speech_like, "--output-dir", straight, *LONG,
                        "--sample-every", "0", "--epochs", target)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(predictions(run_dir / "model.keras"), predictions(straight / "model.keras"),
                               rtol=1e-4, atol=1e-5)


def test_second_interrupt_exits_at_once_and_keeps_the_checkpoint(tmp_path, speech_like):
    run_dir = tmp_path / "run"
    process = start("--train", speech_like, "--output-dir", run_dir, *LONG, "--sample-every", "0")
    wait_for(run_dir / "checkpoints" / "epoch_0001")
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    state = latest(run_dir)
    predictions(run_dir / "checkpoints" / state["folder"] / "model.keras")  # loads
    result = run_script("train_wavenet.py", "--resume", "--output-dir", run_dir, "--epochs", state["epoch"] + 1)
    assert result.returncode == 0, result.stderr[-2000:]


def test_resumed_losses_match_an_uninterrupted_run(tmp_path, speech_like):
    straight, split = tmp_path / "straight", tmp_path / "split"
    flags = ["--train", speech_like, *TINY_FLAGS, "--sample-every", "0", "--steps-per-epoch", "4"]
    assert run_script("train_wavenet.py", *flags, "--epochs", "4", "--output-dir", straight).returncode == 0
    assert run_script("train_wavenet.py", *flags, "--epochs", "2", "--output-dir", split).returncode == 0
    result = run_script("train_wavenet.py", "--resume", "--output-dir", split, "--epochs", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {}
    for name in (straight, split):
        with (name / "history.csv").open() as file:
            rows[name] = list(csv.DictReader(file))
    assert [r["epoch"] for r in rows[split]] == ["0", "1", "2", "3"]
    for column in ("loss", "val_loss", "bits_per_sample"):
        np.testing.assert_allclose([float(r[column]) for r in rows[split]],
                                   [float(r[column]) for r in rows[straight]], rtol=1e-5)


def test_kill_9_at_random_moments_never_breaks_the_run(tmp_path, speech_like):
    run_dir = tmp_path / "run"
    rng = random.Random(0)
    flags = ["--train", speech_like, *LONG, "--sample-every", "1", "--epochs", "12"]
    kills = 0
    for _ in range(6):
        resume = (run_dir / "checkpoints" / "latest.json").exists()
        process = start(*(["--resume", "--output-dir", run_dir, "--epochs", "12"] if resume
                          else [*flags, "--output-dir", run_dir]))
        time.sleep(rng.uniform(2.0, 7.0))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.communicate(timeout=30)
        if (run_dir / "checkpoints" / "latest.json").exists():
            state = latest(run_dir)
            predictions(run_dir / "checkpoints" / state["folder"] / "model.keras")  # the latest always loads
            assert history_epochs(run_dir) == list(range(len(history_epochs(run_dir))))
    assert kills >= 3
    result = run_script("train_wavenet.py", "--resume", "--output-dir", run_dir, "--epochs", "12")
    assert result.returncode == 0, result.stderr[-2000:]
    assert history_epochs(run_dir) == list(range(12))
    assert not list(run_dir.rglob("*.tmp*"))  # nothing half-written left behind by the finished run


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, speech_like):
    run_dir = tmp_path / "run"
    result = run_script("train_wavenet.py", "--train", speech_like, "--output-dir", run_dir, *TINY_FLAGS,
                        "--epochs", "3", "--learning-rate", "1e25")
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "NaN or Inf at epoch 1, step" in message and "epoch_0000" in message and "--on-nan lower-lr" in message
    assert latest(run_dir)["folder"] == "epoch_0000"
    assert not (run_dir / "model.keras").exists() and not (run_dir / "history.csv").exists()
    assert not list((run_dir / "samples").glob("*.wav")) if (run_dir / "samples").exists() else True


def test_nan_loss_with_lower_lr_continues_from_the_checkpoint(tmp_path, speech_like):
    run_dir = tmp_path / "run"
    result = run_script("train_wavenet.py", "--train", speech_like, "--output-dir", run_dir, *TINY_FLAGS,
                        "--epochs", "2", "--learning-rate", "1e25", "--on-nan", "lower-lr")
    lowered = [line for line in result.stderr.splitlines() if "continuing from it with learning rate" in line]
    assert lowered and "1e+24" in lowered[0]
    if result.returncode == 0:
        assert history_epochs(run_dir) == [0, 1]
    else:  # still NaN after three lowerings: it says so and keeps the checkpoint
        assert result.returncode == 1 and len(lowered) == 3
        assert json.loads((run_dir / "config.json").read_text())["learning_rate"] < 1e23


def test_fit_run_recovers_from_one_bad_batch(tmp_path):
    import keras

    import models
    from data.frames import FrameGenerator
    from run import fit_run, latest_checkpoint

    class Poisoned(FrameGenerator):
        poisoned = False

        def __getitem__(self, index):
            x, y = super().__getitem__(index)
            if self.position + index == 4 and not Poisoned.poisoned:  # epoch 2, step 2, the first time
                Poisoned.poisoned = True
                x = x * np.nan
            return x, y

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=2, residual_channels=4, skip_channels=4, sample_rate=8000)
    model.compile(keras.optimizers.Adam(1e-3), models.loss_for("categorical"))
    frames = Poisoned([tone(1.0)], 64, 2, 3, seed=0, epochs=3)
    rates = []

    def lower(m):
        m.optimizer.learning_rate.assign(m.optimizer.learning_rate * 0.1)
        rates.append(float(m.optimizer.learning_rate))
        return rates[-1]

    model = fit_run(model, frames, run_dir=tmp_path, epochs=3,
                    save=lambda m, folder: m.save(folder / "model.keras"),
                    restore=lambda folder: keras.saving.load_model(folder / "model.keras"), on_nan="lower-lr",
                    lower_learning_rate=lower, verbose=0)
    assert rates == [pytest.approx(1e-4)]
    assert history_epochs(tmp_path) == [0, 1, 2]
    assert latest_checkpoint(tmp_path)[1]["epoch"] == 3
    assert np.isfinite(np.asarray(model(np.zeros((1, 10, 1), np.float32)))).all()


def test_corrupt_file_in_a_folder_is_reported_once_and_skipped(tmp_path):
    folder = tmp_path / "audio"
    for i, f in enumerate((220, 330)):
        write_wav(folder / f"good_{i}.wav", tone(2.0, frequencies=(f,)))
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio")
    result = run_script("train_wavenet.py", "--train", folder, "--output-dir", tmp_path / "run", *TINY_FLAGS)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = [line for line in result.stderr.splitlines() if "broken.wav" in line]
    assert len(reports) == 1 and reports[0].count("broken.wav") == 1 and "skipped" in reports[0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [p.rsplit("/", 1)[-1] for p in config["train_files"]] == ["good_0.wav", "good_1.wav"]

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "a.wav").write_bytes(b"not audio at all")
    (only_bad / "b.flac").write_bytes(b"nor this")
    result = run_script("train_wavenet.py", "--train", only_bad, "--output-dir", tmp_path / "run2", *TINY_FLAGS)
    assert result.returncode == 2 and "no usable audio" in result.stderr
    assert not (tmp_path / "run2").exists()


def test_fresh_run_refuses_a_folder_that_holds_a_run(tmp_path, speech_like):
    run_dir = tmp_path / "run"
    assert run_script("train_wavenet.py", "--train", speech_like, "--output-dir", run_dir, *TINY_FLAGS).returncode == 0
    result = run_script("train_wavenet.py", "--train", speech_like, "--output-dir", run_dir, *TINY_FLAGS)
    assert result.returncode == 2 and "--resume" in result.stderr


def test_gan_interrupt_and_resume_through_the_cli(tmp_path, speech_like):
    run_dir = tmp_path / "gan"
    flags = ["--train", speech_like, "--slice-length", "4096", "--model-dim", "4", "--latent-dim", "16",
             "--steps-per-epoch", "2", "--batch-size", "2", "--sample-every", "0", "--output-dir", run_dir]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(ROOT / "train_gan.py"), *map(str, flags), "--epochs", "200"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run_dir / "checkpoints" / "epoch_0002")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and f"train_gan.py --resume --output-dir {run_dir}" in stderr
    state = latest(run_dir)
    folder = run_dir / "checkpoints" / state["folder"]
    for name in ("generator.keras", "discriminator.keras", "optimizers.npz", "latent_seed.npy"):
        assert (folder / name).is_file(), name
    target = state["epoch"] + 2
    result = run_script("train_gan.py", "--resume", "--output-dir", run_dir, "--epochs", target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert history_epochs(run_dir) == list(range(target))
    assert (run_dir / "generator.keras").is_file()
