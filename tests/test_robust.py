"""Training survives Ctrl-C, SIGTERM, kill -9, NaN losses and bad files, through the CLI.

Interrupts and kills happen at exact points of a run (the `WAVEGEN_KILL_AT` test hook, `data/faults.py`): the
process signals itself there, so each test knows the one state the run folder must be left in, and every
resumed run must end exactly where one uninterrupted reference run ends.
"""

import csv
import json
import re
import shutil
import signal

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import TINY_FLAGS, run_script, tone, write_wav

EPOCHS = 3
FLAGS = [*TINY_FLAGS, "--epochs", str(EPOCHS), "--sample-every", "2"]  # 2 steps an epoch; a 0.1 s sample after the 2nd
LOGGED = ("loss", "val_loss", "bits_per_sample", "val_bits_per_sample")  # history.csv's columns but timings


@pytest.fixture(scope="module")
def speech_like(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("audio") / "chord.wav", tone(3.0, frequencies=(220, 330, 550)))


def train(*args, script="train_wavenet.py", kill_at=None, timeout=300):
    """Runs a trainer through `run_script`; `kill_at` sets `WAVEGEN_KILL_AT` (see data/faults.py)."""
    return run_script(script, *args, timeout=timeout, env={"WAVEGEN_KILL_AT": kill_at} if kill_at else None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, speech_like):
    """One uninterrupted run of `EPOCHS` epochs, which every interrupted and resumed run must match."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def history(run_dir):
    with (run_dir / "history.csv").open() as file:
        return list(csv.DictReader(file))


def history_epochs(run_dir):
    return [int(row["epoch"]) for row in history(run_dir)]


def latest(run_dir):
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())


def load(model_path):
    """The model of a `.keras` file, checked to load and to give finite outputs."""
    import keras

    import models  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(model_path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 300, 1)).astype(np.float32)
    assert np.isfinite(np.asarray(model(x))).all(), model_path
    return model


def files(run_dir, *folders):
    """The files under `folders` of the run, relative, with a temporary's random part written as `*`."""
    return sorted(re.sub(r"\.[^./]+\.tmp\.", ".*.tmp.", str(path.relative_to(run_dir)))
                  for folder in folders for path in (run_dir / folder).rglob("*") if path.is_file())


def assert_same_run(run_dir, reference, split_epochs=(), sampled=(2,)):
    """The run ended where the uninterrupted reference did: the same history (timings aside; for an epoch split
    by a mid-epoch stop only its validation, since its training loss averages the steps after the stop), the
    same weights and optimiser state, the newest two checkpoints, whole samples of the epochs `sampled`, and no
    temporary left."""
    got, expected = history(run_dir), history(reference)
    assert [row["epoch"] for row in got] == [str(epoch) for epoch in range(EPOCHS)]
    for row, reference_row in zip(got, expected):
        for column in ("val_loss", "val_bits_per_sample") if int(row["epoch"]) in split_epochs else LOGGED:
            assert float(row[column]) == pytest.approx(float(reference_row[column]), rel=1e-5), (row, column)
    model, straight = load(run_dir / "model.keras"), load(reference / "model.keras")
    for mine, theirs in zip([*model.weights, *model.optimizer.variables],
                            [*straight.weights, *straight.optimizer.variables], strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-5, atol=1e-7, err_msg=mine.path)
    assert latest(run_dir) == {**latest(run_dir), "folder": f"epoch_{EPOCHS:04d}", "epoch": EPOCHS, "step": 0}
    assert files(run_dir, "checkpoints") == files(reference, "checkpoints") == checkpoint_files(EPOCHS - 1, EPOCHS)
    assert files(run_dir, "samples") == sample_files(*sampled)
    for path in (run_dir / "samples").glob("*.wav"):
        assert sf.info(str(path)).frames == 800, path  # 0.1 s at 8 kHz: whole
    assert not list(run_dir.rglob(".*.tmp*"))


def checkpoint_files(*epochs):
    return [f"checkpoints/epoch_{epoch:04d}/model.keras" for epoch in epochs] + ["checkpoints/latest.json"]


def sample_files(*epochs):
    return [f"samples/epoch_{epoch:04d}.{kind}" for epoch in epochs for kind in ("png", "wav")]


# kill -9 at each moment that writes something, counted from the process's start (the epoch-0 checkpoint is
# the first checkpoint, model.keras and latest.json written). For each point: the epoch latest.json names after
# the kill, the epochs in history.csv (written before the checkpoint, so it may be one epoch ahead), the files
# the kill leaves in checkpoints/ and samples/, and the epochs sampled once the run is resumed and finished: a
# kill after a checkpoint is named and before its sample is written loses that sample (samplers run after the
# checkpoint, and the resume goes on from it); training loses nothing.
KILLS = {
    "step-end:3": (1, [0], checkpoint_files(0, 1), [2]),  # mid-epoch: epoch 2, after its first step
    "temporary-written/model.keras:3": (1, [0, 1], sorted(checkpoint_files(0, 1) + [
        "checkpoints/epoch_0002/.model.*.tmp.keras"]), [2]),  # epoch 2's checkpoint half-written
    "temporary-written/latest.json:3": (1, [0, 1], sorted(checkpoint_files(0, 1, 2) + [
        "checkpoints/.latest.*.tmp.json"]), [2]),  # the checkpoint whole, the pointer to it half-written
    "pointer-switched:3": (2, [0, 1], checkpoint_files(0, 1, 2), []),  # named; epoch 0's not yet removed
    "temporary-written/epoch_0002.wav:1": (2, [0, 1], checkpoint_files(1, 2) + [
        "samples/.epoch_0002.*.tmp.wav"], []),  # the epoch's sample half-written
}


def test_kill_hook_signals_at_the_planned_occurrence_and_refuses_a_typo(monkeypatch):
    from data import faults

    assert faults._plan("checkpoint-saved:2, step-end:3:SIGINT,temporary-written/model.keras:1") == {
        "checkpoint-saved": [(2, signal.SIGKILL)], "step-end": [(3, signal.SIGINT)],
        "temporary-written/model.keras": [(1, signal.SIGKILL)]}
    for bad in ("step-end", "step_end:1", "step-end:0", "step-end:1:SIGFOO", "temporary-written/a/b:1"):
        with pytest.raises(ValueError, match="WAVEGEN_KILL_AT"):
            faults._plan(bad)
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        monkeypatch.setattr(faults, "_counts", {})
        monkeypatch.setattr(faults, "PLAN", {"temporary-written/model.keras": [(2, signal.SIGUSR1)]})
        for name in ("model.keras", "history.csv", "model.keras", "model.keras"):
            faults.reached("temporary-written", name)
            received.append(name)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == ["model.keras", "history.csv", signal.SIGUSR1, "model.keras", "model.keras"]


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILLS))
def test_kill_9_at_each_point_leaves_a_run_that_resumes_to_the_same_result(tmp_path, speech_like, reference, point):
    latest_epoch, epochs_logged, left, sampled = KILLS[point]
    run_dir = tmp_path / "run"
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS, kill_at=point)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    state = latest(run_dir)
    assert (state["folder"], state["epoch"], state["step"]) == (f"epoch_{latest_epoch:04d}", latest_epoch, 0)
    load(run_dir / "checkpoints" / state["folder"] / "model.keras")  # the latest names a whole checkpoint
    assert history_epochs(run_dir) == epochs_logged  # no gap, no repeat; at most one epoch past the checkpoint
    assert files(run_dir, "checkpoints", "samples") == left
    assert not (run_dir / "model.keras").exists()

    result = train("--resume", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(run_dir, reference, sampled=sampled)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_a_checkpoint_and_resume_finishes_the_run(tmp_path, speech_like, reference, signum):
    run_dir = tmp_path / "run"
    name = signal.Signals(signum).name
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS, kill_at=f"step-end:3:{name}")
    assert result.returncode == 130, result.stderr[-2000:]
    assert f"{name}: finishing the current step" in result.stderr
    assert "interrupted; checkpoint epoch_0001_step_0001 written (epoch 1, step 1)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"  python train_wavenet.py --resume --output-dir {run_dir}"
    assert latest(run_dir) == {**latest(run_dir), "folder": "epoch_0001_step_0001", "epoch": 1, "step": 1}
    load(run_dir / "checkpoints" / "epoch_0001_step_0001" / "model.keras")
    assert history_epochs(run_dir) == [0]  # the cut-short epoch is not logged

    result = train("--resume", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(run_dir, reference, split_epochs={1})


@pytest.mark.slow
def test_second_interrupt_exits_at_once_and_keeps_the_checkpoint(tmp_path, speech_like, reference):
    # The first Ctrl-C in epoch 2; the second while its interrupt checkpoint (the run's third) is written, before
    # latest.json names it.
    run_dir = tmp_path / "run"
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS,
                   kill_at="step-end:3:SIGINT,checkpoint-saved:3:SIGINT")
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "second interrupt: exiting now; the last checkpoint is intact"
    assert latest(run_dir) == {**latest(run_dir), "folder": "epoch_0001", "epoch": 1, "step": 0}
    load(run_dir / "checkpoints" / "epoch_0001" / "model.keras")
    assert history_epochs(run_dir) == [0]
    assert files(run_dir, "checkpoints") == sorted(checkpoint_files(0, 1) + [
        "checkpoints/epoch_0001_step_0001/model.keras"])  # written, never named

    result = train("--resume", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_resumed_losses_match_an_uninterrupted_run(tmp_path, speech_like, reference):
    run_dir = tmp_path / "run"
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS, "--epochs", EPOCHS - 1)
    assert result.returncode == 0, result.stderr[-2000:]
    result = train("--resume", "--output-dir", run_dir, "--epochs", EPOCHS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == EPOCHS
    assert_same_run(run_dir, reference)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, speech_like):
    run_dir = tmp_path / "run"
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS, "--sample-every", "1",
                   "--learning-rate", "1e25")
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("train_wavenet.py: error: ")
    assert "NaN or Inf at epoch 1, step 2" in message and "epoch_0000" in message and "--on-nan lower-lr" in message
    assert latest(run_dir)["folder"] == "epoch_0000"
    assert not (run_dir / "model.keras").exists() and not (run_dir / "history.csv").exists()
    assert not (run_dir / "samples").exists()  # no sample of a broken epoch


@pytest.mark.slow
def test_nan_loss_with_lower_lr_gives_up_after_three_lowerings(tmp_path, speech_like):
    """At a learning rate of 1e25 the second step overflows, and still does at 1e24, 1e23 and 1e22."""
    run_dir = tmp_path / "run"
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS, "--epochs", "2", "--sample-every", "1",
                   "--learning-rate", "1e25", "--on-nan", "lower-lr")
    assert result.returncode == 1, result.stderr[-2000:]
    lowered = [line for line in result.stderr.splitlines() if "continuing from it with learning rate" in line]
    assert [line.rsplit(" ", 1)[-1] for line in lowered] == ["1e+24", "1e+23", "1e+22"]
    for line in lowered:
        assert "NaN or Inf at epoch 1, step 2" in line and "the last good checkpoint epoch_0000 is kept" in line
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("train_wavenet.py: error: ") and "NaN or Inf at epoch 1, step 2" in message
    assert "epoch_0000" in message and "--on-nan" not in message and "continuing" not in message
    assert json.loads((run_dir / "config.json").read_text())["learning_rate"] == pytest.approx(1e22)
    assert latest(run_dir)["folder"] == "epoch_0000"
    assert not (run_dir / "history.csv").exists() and not (run_dir / "model.keras").exists()
    assert not (run_dir / "samples").exists()


def test_nan_loss_with_lower_lr_continues_from_the_checkpoint(tmp_path, capsys):
    """One poisoned batch (the first step of epoch 3, the first time it is read): `fit_run` goes back to epoch
    2's checkpoint once, at a tenth of the learning rate (in the optimiser and in config.json, as the trainers
    do), and trains to the end."""
    import dataclasses

    import keras

    import models
    from cli import RunSettings
    from data.files import write_json
    from data.frames import FrameGenerator
    from run import fit_run, latest_checkpoint, lower_learning_rate

    class Poisoned(FrameGenerator):
        poisoned = False

        def __getitem__(self, index):
            x, y = super().__getitem__(index)
            if self.position + index == 4 and not Poisoned.poisoned:  # epoch 3, step 1, the first time
                Poisoned.poisoned = True
                x = x * np.nan
            return x, y

    @dataclasses.dataclass
    class Config(RunSettings):
        learning_rate: float = 1e-3

    config = Config()
    write_json(tmp_path / "config.json", dataclasses.asdict(config))
    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=2, residual_channels=4, skip_channels=4, sample_rate=8000)
    model.compile(keras.optimizers.Adam(config.learning_rate), models.loss_for("categorical"))
    frames = Poisoned([tone(1.0)], 64, 2, 2, seed=0, epochs=3)
    model = fit_run(model, frames, run_dir=tmp_path, epochs=3,
                    save=lambda m, folder: m.save(folder / "model.keras"),
                    restore=lambda folder: keras.saving.load_model(folder / "model.keras"), on_nan="lower-lr",
                    lower_learning_rate=lambda m: lower_learning_rate(config, tmp_path, [m.optimizer]), verbose=0)
    lowered = [line for line in capsys.readouterr().err.splitlines() if "continuing from it with learning rate" in line]
    assert len(lowered) == 1 and lowered[0].endswith("learning rate 0.0001")
    assert "NaN or Inf at epoch 3, step 1" in lowered[0] and "the last good checkpoint epoch_0002 is kept" in lowered[0]
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)
    assert json.loads((tmp_path / "config.json").read_text())["learning_rate"] == pytest.approx(1e-4)
    assert history_epochs(tmp_path) == [0, 1, 2]
    assert all(np.isfinite(float(row["loss"])) for row in history(tmp_path))
    assert latest_checkpoint(tmp_path)[1]["epoch"] == 3
    assert np.isfinite(np.asarray(model(np.zeros((1, 10, 1), np.float32)))).all()


def test_corrupt_file_in_a_folder_is_reported_once_and_skipped(tmp_path):
    folder = tmp_path / "audio"
    for i, f in enumerate((220, 330)):
        write_wav(folder / f"good_{i}.wav", tone(2.0, frequencies=(f,)))
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio")
    result = train("--train", folder, "--output-dir", tmp_path / "run", *TINY_FLAGS)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = [line for line in result.stderr.splitlines() if "broken.wav" in line]
    assert len(reports) == 1 and reports[0].count("broken.wav") == 1 and "skipped" in reports[0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [p.rsplit("/", 1)[-1] for p in config["train_files"]] == ["good_0.wav", "good_1.wav"]

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "a.wav").write_bytes(b"not audio at all")
    (only_bad / "b.flac").write_bytes(b"nor this")
    result = train("--train", only_bad, "--output-dir", tmp_path / "run2", *TINY_FLAGS)
    assert result.returncode == 2 and "no usable audio" in result.stderr
    assert not (tmp_path / "run2").exists()


def test_fresh_run_refuses_a_folder_that_holds_a_run(tmp_path, speech_like, reference):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    result = train("--train", speech_like, "--output-dir", run_dir, *FLAGS)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"train_wavenet.py: error: {run_dir} already holds a run: continue it with --resume, or choose another "
        "--output-dir"]
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before  # untouched


@pytest.mark.slow
def test_gan_interrupt_and_resume_through_the_cli(tmp_path, speech_like):
    run_dir = tmp_path / "gan"
    flags = ["--train", speech_like, "--slice-length", "4096", "--model-dim", "4", "--latent-dim", "16",
             "--steps-per-epoch", "2", "--batch-size", "2", "--sample-every", "0", "--epochs", "3",
             "--loss", "bce"]  # a third of wgan-gp's start-up time; test_gan.py resumes a wgan-gp run
    result = train(*flags, "--output-dir", run_dir, script="train_gan.py", kill_at="step-end:3:SIGINT")
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"  python train_gan.py --resume --output-dir {run_dir}"
    assert latest(run_dir) == {**latest(run_dir), "folder": "epoch_0001_step_0001", "epoch": 1, "step": 1}
    folder = run_dir / "checkpoints" / "epoch_0001_step_0001"
    for name in ("generator.keras", "discriminator.keras", "optimizers.npz", "latent_seed.npy"):
        assert (folder / name).is_file(), name
    assert history_epochs(run_dir) == [0]
    result = train("--resume", "--output-dir", run_dir, script="train_gan.py")
    assert result.returncode == 0, result.stderr[-2000:]
    assert history_epochs(run_dir) == [0, 1, 2]
    assert latest(run_dir) == {**latest(run_dir), "folder": "epoch_0003", "epoch": 3, "step": 0}
    import keras

    import models  # noqa: F401

    generator = keras.saving.load_model(run_dir / "generator.keras")
    assert np.isfinite(np.asarray(generator(np.zeros((1, 16), np.float32)))).all()
    assert not list(run_dir.rglob(".*.tmp*"))
