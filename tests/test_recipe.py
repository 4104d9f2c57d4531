"""The training recipe (#16): the learning-rate schedule, the moving average of the weights, gradient clipping,
and an interrupted run with all of them resuming exactly."""

import json
import math
import time

import keras
import numpy as np
import pytest

from tests.conftest import ROOT, TINY_FLAGS, randomize, run_main, run_script, tone, write_wav
from tests.test_cli import assert_one_line_error


def toy_model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def toy_data(n=32):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")


class Record(keras.callbacks.Callback):
    """Records the learning rate each step ran with and the weights after each step."""

    def __init__(self):
        super().__init__()
        self.rates, self.weights = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([np.array(v.numpy()) for v in self.model.trainable_variables])


def test_learning_rate_at_chosen_steps():
    from run.callbacks import learning_rate_at

    # Warmup: (step + 1) / warmup of the peak.
    assert learning_rate_at(0, 2e-3, warmup_steps=4, decay_steps=20) == pytest.approx(5e-4)
    assert learning_rate_at(3, 2e-3, warmup_steps=4, decay_steps=20) == pytest.approx(2e-3)
    # Cosine from the peak at the warmup's end to floor x peak at decay_steps, halfway at the middle.
    assert learning_rate_at(4, 2e-3, warmup_steps=4, decay_steps=20, floor=0.1) == pytest.approx(2e-3)
    assert learning_rate_at(12, 2e-3, warmup_steps=4, decay_steps=20, floor=0.1) == pytest.approx(1.1e-3)
    assert learning_rate_at(20, 2e-3, warmup_steps=4, decay_steps=20, floor=0.1) == pytest.approx(2e-4)
    assert learning_rate_at(500, 2e-3, warmup_steps=4, decay_steps=20, floor=0.1) == pytest.approx(2e-4)
    assert learning_rate_at(9, 2e-3, warmup_steps=0, decay_steps=None) == 2e-3


def test_the_schedule_sets_each_steps_rate_from_the_step_count():
    from run.callbacks import LearningRateSchedule, learning_rate_at

    model = toy_model(keras.optimizers.Adam(1.0))
    record = Record()
    x, y = toy_data()
    schedule = LearningRateSchedule(lambda: 0.01, warmup_steps=3, decay_steps=10, floor=0.2)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[schedule, record], verbose=0, shuffle=False)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[schedule, record], verbose=0, shuffle=False)  # steps 8-15
    assert record.rates == pytest.approx([learning_rate_at(s, 0.01, 3, 10, 0.2) for s in range(16)], rel=1e-6)
    assert record.rates[-1] == pytest.approx(0.002)


def test_a_time_limited_decay_is_refitted_each_epoch_and_reported():
    from run.callbacks import LearningRateSchedule

    fitted = []
    model = toy_model(keras.optimizers.Adam(1e-3))
    x, y = toy_data()
    schedule = LearningRateSchedule(lambda: 1e-3, 0, decay_steps=10 ** 6, floor=0.1,
                                    deadline=time.monotonic() + 3600.0, on_fitted=fitted.append)
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[schedule], verbose=0)
    # An hour at the pace of 8 steps in well under a minute: far more steps than 16, fewer than the cap.
    assert len(fitted) == 2 and all(1000 < steps <= 10 ** 6 for steps in fitted) and schedule.decay_steps == fitted[-1]
    schedule = LearningRateSchedule(lambda: 1e-3, 0, decay_steps=100, deadline=time.monotonic() + 3600.0,
                                    on_fitted=fitted.append)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[schedule], verbose=0)
    assert fitted[-1] == 100  # never past the cap (--epochs x --steps-per-epoch)
    schedule = LearningRateSchedule(lambda: 1e-3, 0, decay_steps=100, deadline=time.monotonic() - 1.0,
                                    on_fitted=fitted.append)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[schedule], verbose=0)
    assert fitted[-1] == int(model.optimizer.iterations.numpy()) + 1  # out of time: the decay ends now


def test_the_moving_average_equals_its_definition_and_never_enters_the_weights(tmp_path):
    import models

    momentum = 0.8
    model = toy_model(models.AveragedAdam(ema_momentum=momentum, learning_rate=0.05, global_clipnorm=1.0))
    record = Record()
    x, y = toy_data()
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[record], verbose=0, shuffle=False)
    expected = record.weights[0]  # the first step copies the weights
    for weights in record.weights[1:]:
        expected = [momentum * a + (1 - momentum) * w for a, w in zip(expected, weights)]
    last = record.weights[-1]
    for variable, weights in zip(model.trainable_variables, last):  # fit left the weights themselves
        np.testing.assert_array_equal(variable.numpy(), weights)
    with models.averaged_weights(model):
        for variable, average in zip(model.trainable_variables, expected):
            np.testing.assert_allclose(variable.numpy(), average, rtol=1e-5, atol=1e-7)
        averaged_output = model.predict(x, verbose=0)
        model.save(tmp_path / "averaged.keras")
    for variable, weights in zip(model.trainable_variables, last):  # and has them back, bit for bit
        np.testing.assert_array_equal(variable.numpy(), weights)
    assert not np.allclose(model.predict(x, verbose=0), averaged_output)
    loaded = keras.saving.load_model(tmp_path / "averaged.keras")
    assert isinstance(loaded.optimizer, models.AveragedAdam) and loaded.optimizer.ema_momentum == momentum
    assert loaded.optimizer.global_clipnorm == 1.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), averaged_output, rtol=1e-6)


def test_a_model_without_an_average_is_left_alone():
    import models

    model = toy_model(keras.optimizers.Adam(1e-3))
    before = [v.numpy().copy() for v in model.trainable_variables]
    with models.averaged_weights(model) as inside:
        assert inside is model
    for variable, value in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_clipping_bounds_each_steps_update():
    """With a tiny clip norm, SGD moves the weights by at most learning rate x clip norm per step."""
    model = toy_model(keras.optimizers.SGD(1.0, global_clipnorm=1e-3))
    before = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    x, y = toy_data(4)
    model.fit(x, 100 * y, batch_size=4, epochs=1, verbose=0)
    after = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    assert np.linalg.norm(after - before) == pytest.approx(1e-3, rel=1e-3)


RECIPE = ["--schedule", "cosine", "--warmup-steps", "2", "--ema", "0.7", "--clip-norm", "5", "--input", "embedded",
          "--epochs", "3"]


@pytest.fixture(scope="module")
def chord(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("audio") / "chord.wav", tone(3.0, frequencies=(220, 330, 550)))


@pytest.mark.slow
def test_an_interrupted_run_with_the_whole_recipe_resumes_exactly_and_generates(tmp_path, chord):
    from tests.test_robust import history, load

    flags = ["--train", chord, *TINY_FLAGS, "--sample-every", "2", *RECIPE]
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    result = run_script("train_wavenet.py", *flags, "--output-dir", reference)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_script("train_wavenet.py", *flags, "--output-dir", run_dir,
                        env={"WAVEGEN_KILL_AT": "step-end:3:SIGINT"})
    assert result.returncode == 130, result.stderr[-3000:]
    result = run_script("train_wavenet.py", "--resume", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    got, expected = history(run_dir), history(reference)
    assert len(got) == len(expected) == 3
    for row, reference_row in zip(got, expected):  # validation (of the averaged weights) matches every epoch
        assert float(row["val_loss"]) == pytest.approx(float(reference_row["val_loss"]), rel=1e-5)
    model, straight = load(run_dir / "model.keras"), load(reference / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 6
    for mine, theirs in zip([*model.weights, *model.optimizer.variables],
                            [*straight.weights, *straight.optimizer.variables], strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-5, atol=1e-7, err_msg=mine.path)
    # The saved model holds the average, the last checkpoint the weights themselves beside it.
    checkpoint = load(run_dir / "checkpoints" / "epoch_0003" / "model.keras")
    averages = checkpoint.optimizer._model_variables_moving_average
    for variable, average in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(variable.numpy(), average.numpy())
    assert any(not np.array_equal(v.numpy(), a.numpy()) for v, a in zip(checkpoint.trainable_variables, averages))
    # The last step ran at the cosine's rate for step 5 of 6 (warmup 2).
    peak, floor = 2e-3, 0.05
    last_rate = peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert float(checkpoint.optimizer.learning_rate.numpy()) == pytest.approx(last_rate, rel=1e-6)
    # The embedded input's model generates in a fresh process (generate.py), as the API does.
    import models

    assert models.wavenet_spec(model).input_embedding
    result = run_script("generate.py", run_dir / "model.keras", "--seconds", "0.05", "--seed", "3",
                        "--output", tmp_path / "out.wav")
    assert result.returncode == 0, result.stderr[-3000:]
    from data.audio import read_audio

    audio, rate = read_audio(tmp_path / "out.wav")
    assert rate == 8000 and len(audio) == 400 and np.abs(audio).max() > 0


@pytest.mark.parametrize("flags, fragment", [
    (["--ema", "1"], "--ema: '1' must be at least 0 and below 1"),
    (["--decay-floor", "1.5"], "--decay-floor: '1.5' must be from 0 to 1"),
    (["--schedule", "linear"], "--schedule: invalid choice"),
    (["--clip-norm", "0"], "--clip-norm: '0' must be positive"),
    (["--speeds", "0.9,x"], "--speeds: '0.9,x' is not a comma-separated list of numbers"),
    (["--speeds", "1,3"], "--speeds: '1,3': each speed must be from 0.5 to 2"),
    (["--speeds", "1,1.0"], "--speeds: '1,1.0' names a speed twice"),
    (["--speeds", "1,1.0000001"], "--speeds: '1,1.0000001' names a speed twice"),  # the same once saved
])
def test_bad_recipe_flags_are_one_line_errors(tmp_path, flags, fragment):
    result = run_main("train_wavenet.py", *flags, "--output-dir", tmp_path / "run")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_another_average_or_clip(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"folder": "epoch_0001", "epoch": 1, "step": 0}))
    (run_dir / "config.json").write_text(json.dumps({"trainer": "wavenet", "ema": 0.99, "clip_norm": None}))
    for flags, fragment in ((["--ema", "0.9"], "--ema 0.9: the run was trained with 0.99"),
                            (["--clip-norm", "1"], "--clip-norm 1.0: the run was trained with None")):
        assert_one_line_error(run_main("train_wavenet.py", "--resume", "--output-dir", run_dir, *flags), fragment)


def test_resuming_a_run_from_before_the_recipe_keeps_its_recipe(tmp_path):
    import train_wavenet

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"folder": "epoch_0001", "epoch": 1, "step": 0}))
    (run_dir / "config.json").write_text(json.dumps({"trainer": "wavenet", "frame_size": 4096, "epochs": 8}))
    config, _ = train_wavenet.resolve(["--resume", "--output-dir", str(run_dir)])
    assert (config.input, config.schedule, config.warmup_steps, config.ema) == ("scalar", "constant", 0, 0.0)
    assert config.frame_size == 4096
    config, _ = train_wavenet.resolve(["--resume", "--output-dir", str(run_dir), "--schedule", "cosine"])
    assert config.schedule == "cosine"  # a flag given still counts
    fresh, _ = train_wavenet.resolve(["--output-dir", str(tmp_path / "new")])
    assert (fresh.input, fresh.schedule, fresh.warmup_steps, fresh.ema, fresh.frame_size) == (
        "embedded", "cosine", 50, 0.99, 1024)


def dominant_frequency(signal, rate):
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.argmax(spectrum) * rate / len(signal)


def test_speed_perturbation_plays_each_signal_faster_and_higher_at_each_speed():
    import librosa

    from data.audio import AudioCorpus, speed_perturb

    low, high = tone(1.0, frequencies=(400.0,)), tone(0.5, frequencies=(1000.0,))
    corpus = AudioCorpus([low, high], 8000, ["low.wav", "high.wav"], labels=[0, 1], class_names=("a", "b"))
    square = np.sign(tone(0.25, frequencies=(100.0,))).astype(np.float32)  # full scale: resampling overshoots it
    assert np.abs(librosa.resample(square, orig_sr=8000, target_sr=7273)).max() > 1.01
    clipped = speed_perturb(AudioCorpus([square], 8000, ["square.wav"]), (1.1,)).signals[0]
    assert np.abs(clipped).max() == 1.0
    played = speed_perturb(corpus, (0.9, 1.0, 1.1))
    assert played.files == ["low.wav"] * 3 + ["high.wav"] * 3 and played.labels == [0, 0, 0, 1, 1, 1]
    assert played.class_names == ("a", "b") and played.sample_rate == 8000
    assert [len(s) for s in played.signals] == [8889, 8000, 7273, 4445, 4000, 3637]
    assert played.signals[1] is low and played.signals[4] is high  # speed 1: the recording itself
    for copy, speed, frequency in zip(played.signals, (0.9, 1.0, 1.1) * 2, (400.0,) * 3 + (1000.0,) * 3):
        assert copy.dtype == np.float32 and np.abs(copy).max() <= 1.0
        assert dominant_frequency(copy, 8000) == pytest.approx(frequency * speed, abs=3.0)
    # librosa's own resampling (the README's measured run trained on files made by this call).
    np.testing.assert_allclose(played.signals[2], librosa.resample(low, orig_sr=8000, target_sr=7273), atol=1e-6)
    assert speed_perturb(corpus, (1.0,)) is corpus


def test_training_with_speeds_perturbs_the_training_audio_only(tmp_path):
    # Two classes of one file each; validation is the last 10% of each, held out before the perturbation.
    files = [tmp_path / "voices" / "a" / "x.wav", tmp_path / "voices" / "b" / "y.wav"]
    for path, frequency in zip(files, (300.0, 500.0)):
        path.parent.mkdir(parents=True)
        write_wav(path, tone(1.0, frequencies=(frequency,)))
    run_dir = tmp_path / "run"
    result = run_main("train_wavenet.py", "--train", tmp_path / "voices", "--labels", "folders", *TINY_FLAGS,
                      "--sample-every", "0", "--speeds", "0.9,1,1.1", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr
    played = 2 * (8001 + 7200 + 6546)  # each class's 7,200 recorded training samples at 0.9, 1 and 1.1
    assert (f"training audio: 1.8 s in 2 file(s) at 8000 Hz, {played / 8000:.1f} s played at speeds 0.9,1,1.1; "
            "validation: 0.2 s" in result.stdout)
    assert "classes (2, --labels folders): a (1 file), b (1 file)" in result.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["speeds"] == "0.9,1,1.1" and config["train_files"] == [str(f) for f in files]
    assert config["train_seconds"] == pytest.approx(1.8) and config["played_seconds"] == pytest.approx(played / 8000)
    assert config["validate_seconds"] == pytest.approx(0.2)
    assert (run_dir / "model.keras").is_file()


def test_validation_windows_bench_lines_each_target_up_with_its_whole_history_score(tmp_path):
    # bench/validation_windows.py explains why the per-epoch validation and evaluate.py differ (README, #16): it
    # scores each validation window's targets as training validates (history cut at the window's start) and looks
    # up the same targets in the whole-file pass. Beyond the receptive field the two must agree exactly; a target
    # looked up one sample off would not.
    import models
    from data.audio import load_audio
    from evaluation import signal_bits

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=3, residual_channels=8, skip_channels=8, sample_rate=8000,
                                 input_embedding=True)
    randomize(model)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"batch_size": 2, "frame_size": 128, "validation_steps": 3,
                                                 "head": "classifier", "seed": 0}))
    noisy = tone(1.0, frequencies=(300.0, 470.0)) + 0.05 * np.random.default_rng(0).normal(size=8000)
    audio = write_wav(tmp_path / "held_out.wav", noisy.astype("float32"))
    result = run_script("bench/validation_windows.py", run, "--validate", audio)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [float(cell.strip(" *")) for cell in line.split("|")[2:-1] if
                                         cell.strip(" *").replace(".", "").isdigit()]
            for line in result.stdout.splitlines() if line.startswith("| ")}
    cut, whole = rows["0-63"]
    assert abs(cut - whole) > 1e-3  # the first 7 targets of each window see silence instead of their history
    cut, whole = rows["64-127"]
    assert cut == pytest.approx(whole, abs=1e-4)  # beyond the receptive field (8)
    expected = signal_bits(models.load_model(run / "model.keras"), models.wavenet_spec(model),
                           load_audio(str(audio), 8000).signals[0]).mean()
    assert rows["the whole file"] == pytest.approx([expected], abs=1e-4)
    assert "6 validation windows of 128 targets (3 batches of 2)" in result.stdout
    # The run validated on part of its training audio (no "validate" in config.json): the bench asks for a file.
    refused = run_script("bench/validation_windows.py", run)
    assert refused.returncode == 2 and "name a held-out file with --validate" in refused.stderr


def test_fit_gap_bench_scores_the_model_and_the_predictor_on_both_files(tmp_path, monkeypatch):
    # bench/fit_gap.py tells underfitting from overfitting (README, #16): each row must be its predictor's score on
    # the training file and on the held-out file, in that order, and the last column their difference.
    import models
    from data.audio import load_audio
    from data.mulaw import mu_law_encode
    from evaluation import signal_bits

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from wavenet_quality import lpc_bits, unigram_entropy

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=3, residual_channels=8, skip_channels=8, sample_rate=8000)
    randomize(model)
    model.save(tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    files = [write_wav(tmp_path / f"{name}.wav", (tone(1.0, frequencies=pitches) + noise * rng.normal(size=8000))
                       .astype("float32"))
             for name, pitches, noise in (("train", (300.0, 470.0), 0.05), ("held_out", (350.0,), 0.15))]
    result = run_script("bench/fit_gap.py", tmp_path / "model.keras", "--train", files[0], "--validate", files[1])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "| bits/sample | train.wav (trained on) | held_out.wav (held out) | held out minus trained on |" in lines
    rows = {line.split("|")[1].strip(): [float(cell) for cell in line.split("|")[2:-1]]
            for line in lines if line.startswith("| ") and not line.startswith("| bits")}
    signals = [load_audio(str(file), 8000).signals[0] for file in files]
    spec = models.wavenet_spec(model)
    expected = {"the model": [float(signal_bits(model, spec, signal).mean()) for signal in signals],
                "linear prediction (LPC-32 fitted on the training file), Laplace residual":
                    [lpc_bits(signals[0], signal)["laplace"] for signal in signals],
                "unigram entropy of the file's own mu-law codes":
                    [unigram_entropy(mu_law_encode(signal[1:])) for signal in signals]}
    for label, (on_train, on_held_out) in expected.items():
        assert rows[label][:2] == pytest.approx([on_train, on_held_out], abs=6e-4), label
        assert rows[label][2] == pytest.approx(on_held_out - on_train, abs=1.1e-3), label
    assert rows["linear prediction (LPC-32 fitted on the training file), Laplace residual"][2] > 0.5  # more noise
    for args, message in (((files[0], "--train", files[0], "--validate", files[1]), "not a loadable .keras model"),
                          ((tmp_path / "model.keras", "--train", files[0], "--validate", tmp_path / "none.wav"),
                           "--validate")):
        assert_one_line_error(run_script("bench/fit_gap.py", *args), message)
