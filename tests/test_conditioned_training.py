"""Conditioned WaveNets learn what they are conditioned on (a class, a log-mel spectrogram), and train_wavenet.py
trains them end to end: `--labels folders` and `--condition mel`."""

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import tone, write_wav

RATE = 8000


def peak_frequency(audio, rate=RATE):
    """The frequency of the largest peak of `audio`'s spectrum (Hann window), in Hz."""
    audio = np.asarray(audio, np.float64) - np.mean(audio)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * rate / len(audio)


def stepped(pitches, seconds):
    """A continuous-phase sine stepping through `pitches`, `seconds` each, at amplitude 0.5."""
    pieces, phase = [], 0.0
    for pitch in pitches:
        n, step = int(seconds * RATE), 2 * np.pi * pitch / RATE
        pieces.append(np.sin(phase + step * np.arange(n)))
        phase = (phase + step * n) % (2 * np.pi)
    return (0.5 * np.concatenate(pieces)).astype(np.float32)


def fit(model, frames, learning_rate=0.01):
    import keras

    import models

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=models.loss_for("categorical"))
    model.fit(frames.as_dataset(), epochs=1, steps_per_epoch=len(frames), shuffle=False, verbose=0)
    return model


def test_class_conditioning_learns_each_class_pitch():
    """Two classes of tones (1100 Hz, 300 Hz): generated from silence, each class sings its own pitch."""
    import keras

    import models
    from data.frames import FrameGenerator

    pitches = {"high": 1100.0, "low": 300.0}
    signals = [tone(3.0, frequencies=(pitches[name],)) for name in sorted(pitches)]
    keras.utils.set_random_seed(0)
    model = models.build_wavenet("classifier", stacks=1, layers=4, residual_channels=16, skip_channels=16,
                                 sample_rate=RATE, class_names=sorted(pitches))
    fit(model, FrameGenerator(signals, 256, 8, 150, labels=[0, 1], seed=0))
    audio = models.generate(model, 4000, classes=["high", "low"], seed=1)
    for name, stream in zip(["high", "low"], audio):
        found = peak_frequency(stream[1000:])
        assert abs(found - pitches[name]) < 0.1 * pitches[name], (name, found)
        assert np.abs(stream[1000:]).max() > 0.2, name  # a tone, not silence


def test_mel_conditioning_follows_the_pitch_of_an_unseen_spectrogram():
    """Trained on tones stepping at random among four pitches, a vocoder given the log-mel of a step sequence it
    never saw follows it: the spectral peak of each generated segment is that segment's pitch."""
    import keras

    import models
    from data.features import log_mel, mel_settings, pad_features
    from data.frames import FrameGenerator

    pitches = (300.0, 500.0, 800.0, 1200.0)
    rng = np.random.default_rng(0)
    settings = mel_settings(RATE, n_mels=20)
    signals = [stepped(rng.choice(pitches, 24), 0.2) for _ in range(2)]
    features = [pad_features(log_mel(signal, settings), settings) for signal in signals]
    keras.utils.set_random_seed(0)
    model = models.build_wavenet("classifier", stacks=1, layers=4, residual_channels=16, skip_channels=16,
                                 sample_rate=RATE, mel=settings, mel_channels=16)
    fit(model, FrameGenerator(signals, 400, 8, 250, features=features, hop=settings.hop_length, seed=0))
    sequence, seconds = [1200.0, 300.0, 800.0, 500.0, 300.0, 1200.0], 0.25
    target = stepped(sequence, seconds)
    audio = models.generate(model, mel=log_mel(target, settings), seed=1)[0]
    assert len(audio) == len(target)  # (frames - 1) * hop, frames = 1 + len // hop
    segment = int(seconds * RATE)
    for index, pitch in enumerate(sequence):
        piece = audio[index * segment + 400:(index + 1) * segment - 200]  # away from the steps
        found = peak_frequency(piece)
        assert min(pitches, key=lambda p: abs(p - found)) == pitch, (index, pitch, found)
        assert abs(found - pitch) < 0.12 * pitch, (index, pitch, found)


def audio_summaries(log_dir):
    """`{tag: number of audio summaries}` in the TensorBoard event files under `log_dir`."""
    import tensorflow as tf

    tags = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "audio":
                    tags[value.tag] = tags.get(value.tag, 0) + 1
    return tags


def test_save_audio_writes_one_sample_per_class_up_to_the_limit_and_logs_them(tmp_path):
    import keras

    import models
    from callbacks import SaveAudio

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=2, residual_channels=8, skip_channels=8, sample_rate=RATE,
                                 class_names=("a b", "c", "d"))
    callback = SaveAudio(tmp_path / "samples", RATE, seconds=0.02, max_classes=2, log_dir=tmp_path / "logs")
    callback.set_model(model)
    callback.on_epoch_end(0)
    callback.on_train_end()
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == ["epoch_0001_a_b.png", "epoch_0001_a_b.wav", "epoch_0001_c.png", "epoch_0001_c.wav"]
    assert sf.info(str(tmp_path / "samples" / "epoch_0001_c.wav")).frames == 160
    assert audio_summaries(tmp_path / "logs") == {"sample/a b": 1, "sample/c": 1}
    # A log folder that cannot be written is a warning; the samples are still written.
    blocker = tmp_path / "blocked"
    blocker.write_text("a file")
    callback = SaveAudio(tmp_path / "more", RATE, seconds=0.01, log_dir=blocker / "logs")
    callback.set_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_epoch_end(0)
    assert any("could not log the sample to TensorBoard" in str(w.message) for w in caught)
    assert (tmp_path / "more" / "epoch_0001_a_b.wav").is_file()


TINY_RUN = ["--stacks", "1", "--layers", "3", "--residual-channels", "8", "--skip-channels", "8", "--frame-size",
            "256", "--batch-size", "2", "--steps-per-epoch", "2", "--validation-steps", "1", "--epochs", "1",
            "--sample-every", "1", "--sample-seconds", "0.1"]


def train(argv):
    import train_wavenet

    return train_wavenet.main([str(arg) for arg in argv])


def test_train_with_class_folders_end_to_end(tmp_path, capsys):
    import models

    root = tmp_path / "data"
    write_wav(root / "low" / "a.wav", tone(1.5, frequencies=(300,)))
    write_wav(root / "high" / "nested" / "b.wav", tone(1.5, frequencies=(1100,)))
    run_dir = train(["--train", root, "--labels", "folders", "--class-channels", "4", "--output-dir",
                     tmp_path / "run", *TINY_RUN])
    out = capsys.readouterr().out
    assert "classes (2, --labels folders): high (1 file), low (1 file)" in out
    assert f"python generate.py {run_dir / 'model.keras'} --seconds 5 --class high" in out
    spec = models.wavenet_spec(models.load_model(run_dir / "model.keras"))
    assert spec.class_names == ("high", "low") and spec.class_channels == 4 and spec.mel is None
    config = json.loads((run_dir / "config.json").read_text())
    assert config["class_names"] == ["high", "low"] and config["labels"] == "folders" and config["mel"] is None
    for name in ("epoch_0001_high.wav", "epoch_0001_low.wav", "epoch_0001_high.png"):
        assert (run_dir / "samples" / name).is_file(), name
    assert audio_summaries(run_dir / "logs" / "samples") == {"sample/high": 1, "sample/low": 1}
    assert list((run_dir / "logs" / "train").glob("events.out.tfevents.*"))  # the scalars, beside them
    # A resumed run keeps its classes and conditioning shape.
    from run import RunFolderError

    with pytest.raises(RunFolderError, match="--class-channels 8: the run was trained with 4"):
        train(["--resume", "--output-dir", run_dir, "--epochs", "2", "--class-channels", "8"])
    write_wav(root / "drums" / "c.wav", tone(1.5, frequencies=(600,)))
    with pytest.raises(RunFolderError, match=r"trained with classes \['high', 'low'\], the audio now has"):
        train(["--resume", "--output-dir", run_dir, "--epochs", "2"])
    (root / "drums" / "c.wav").unlink()
    (root / "drums").rmdir()
    train(["--resume", "--output-dir", run_dir, "--epochs", "2"])
    assert (run_dir / "samples" / "epoch_0002_low.wav").is_file()
    assert audio_summaries(run_dir / "logs" / "samples") == {"sample/high": 2, "sample/low": 2}


def test_train_mel_conditioned_end_to_end(tmp_path, capsys):
    import models
    from data.features import MelSettings

    audio = write_wav(tmp_path / "steps.wav", stepped([300, 800, 500, 1200], 0.5))
    run_dir = train(["--train", audio, "--condition", "mel", "--mel-bins", "16", "--mel-hop-ms", "10",
                     "--mel-window-ms", "40", "--mel-fmax", "3500", "--mel-channels", "8", "--output-dir",
                     tmp_path / "run", *TINY_RUN])
    out = capsys.readouterr().out
    settings = models.wavenet_spec(models.load_model(run_dir / "model.keras")).mel
    assert settings == MelSettings(sample_rate=8000, n_mels=16, n_fft=512, hop_length=80, win_length=320,
                                   fmin=0.0, fmax=3500.0, log_floor=1e-5)
    assert f"conditioned on log-mel spectrograms: {settings.describe()}" in out
    assert f"--mel-from {audio}" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert MelSettings.from_dict(config["mel"]) == settings and config["condition"] == "mel"
    assert config["class_names"] == []
    resynthesis, original = (sf.read(str(run_dir / "samples" / name)) for name in ("epoch_0001.wav", "original.wav"))
    assert resynthesis[1] == original[1] == 8000 and len(resynthesis[0]) == len(original[0]) == 800
    # The clip is the start of the validation audio (the file's last 10%: from sample 14400 of 16000).
    from data.audio import read_audio

    expected = read_audio(audio)[0][14400:15200]
    assert np.abs(original[0] - expected).max() <= 1.5 / 32768
    assert audio_summaries(run_dir / "logs" / "samples") == {"sample": 1, "original": 1}
    with pytest.raises(ValueError, match="spectrogram"):  # a vocoder cannot generate without one
        models.generate(models.load_model(run_dir / "model.keras"), 10)


def test_save_audio_numbers_classes_whose_file_names_would_collide(tmp_path):
    import keras

    import models
    from callbacks import SaveAudio

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=2, residual_channels=8, skip_channels=8, sample_rate=RATE,
                                 class_names=("a b", "a_b"))
    callback = SaveAudio(tmp_path / "samples", RATE, seconds=0.01)
    callback.set_model(model)
    callback.on_epoch_end(0)
    names = sorted(p.name for p in (tmp_path / "samples").glob("*.wav"))
    assert names == ["epoch_0001_1_a_b.wav", "epoch_0001_2_a_b.wav"]  # "a b" first: class ids are sorted names


def test_csv_labelled_run_resumes_after_the_checkout_moved(tmp_path, capsys):
    root = tmp_path / "data"
    write_wav(root / "a.wav", tone(1.5, frequencies=(300,)))
    write_wav(root / "b.wav", tone(1.5, frequencies=(1100,)))
    (root / "labels.csv").write_text("path,label\na.wav,low\nb.wav,high\n")
    run_dir = train(["--labels", root / "labels.csv", "--output-dir", tmp_path / "run", *TINY_RUN])
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["train"] = "/elsewhere/assets/speech/demo.wav"  # the default clip's path in another checkout
    config_path.write_text(json.dumps(config))
    train(["--resume", "--output-dir", run_dir, "--epochs", "2"])
    assert (run_dir / "samples" / "epoch_0002_high.wav").is_file()
