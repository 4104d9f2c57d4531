"""generate.py and evaluate.py with conditioned WaveNets (issue 11): classes (--class, repeated, --num cycling),
log-mel spectrograms (--mel-from, --mel .npy / .npz), both together, and every refusal: exit status 2, one line,
no traceback, nothing written.

Tiny untrained models are built and saved once per module. Refusals that come before TensorFlow loads and two
end-to-end runs (generation compared with the API in this process: a fresh-process `.keras` round trip; evaluation)
run the scripts as subprocesses; the rest call the script's `main` in this process through `cli.run`, as the
script itself does (`tests.conftest.run_main`), to keep the module under a minute on 2 cores.
"""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import run_main, run_script, write_wav
from tests.test_bad_input import files_under
from tests.test_cli import assert_one_line_error

RATE, HOP, BINS = 8000, 100, 16
CLASSES = ("alto", "bass", "cello")
SPEECH_SAMPLES = 1234  # not a multiple of the hop: 13 frames, 1200 samples resynthesised


def speech_like(samples=SPEECH_SAMPLES):
    t = np.arange(samples) / RATE
    envelope = 0.2 + 0.6 * np.abs(np.sin(2 * np.pi * 3 * t))
    return (0.5 * envelope * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Saved tiny models (`both`: classes and mel; `classes`; `vocoder`: mel only; `plain`) and inputs."""
    import keras

    import models
    from data.features import log_mel, mel_settings, save_mel

    folder = tmp_path_factory.mktemp("conditioned")
    mel = mel_settings(RATE, n_mels=BINS)
    tiny = dict(stacks=1, layers=2, residual_channels=8, skip_channels=8, sample_rate=RATE)
    paths = {}
    for seed, (name, extra) in enumerate({"both": dict(class_names=CLASSES, mel=mel),
                                          "classes": dict(class_names=CLASSES), "vocoder": dict(mel=mel),
                                          "plain": {}}.items()):
        keras.utils.set_random_seed(seed)
        paths[name] = folder / f"{name}.keras"
        models.build_wavenet(**tiny, **extra).save(paths[name])
    from data.audio import read_audio

    paths["speech"] = write_wav(folder / "speech.wav", speech_like())
    signal = read_audio(paths["speech"])[0]  # as the scripts read it (16-bit)
    spectrogram = log_mel(signal, mel)
    paths["mel_npy"] = folder / "speech_mel.npy"
    np.save(paths["mel_npy"], spectrogram)
    paths["mel_npz"] = folder / "speech_mel.npz"
    save_mel(paths["mel_npz"], spectrogram, mel)
    paths["mel_two"] = folder / "two.npy"
    np.save(paths["mel_two"], np.stack([spectrogram, spectrogram[::-1]]))
    paths["mel_20_bins"] = folder / "twenty.npy"
    np.save(paths["mel_20_bins"], log_mel(signal, mel_settings(RATE, n_mels=20)))
    paths["mel_hop_80"] = folder / "hop80.npz"
    save_mel(paths["mel_hop_80"], log_mel(signal, mel_settings(RATE, n_mels=BINS, hop_length=80)),
             mel_settings(RATE, n_mels=BINS, hop_length=80))
    paths["mel_db"] = folder / "decibels.npy"
    np.save(paths["mel_db"], 20 * spectrogram / np.log(10))
    paths["mel"], paths["signal"] = spectrogram, signal
    return paths


def pcm(signal):
    """`signal` as the 16-bit samples generate.py writes: through soundfile's own float-to-PCM conversion."""
    import io

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(signal, np.float32), RATE, subtype="PCM_16", format="WAV")
    buffer.seek(0)
    return sf.read(buffer, dtype="int16")[0]


def written(path):
    audio, rate = sf.read(str(path), dtype="int16")
    assert rate == RATE and sf.info(str(path)).subtype == "PCM_16"
    return audio


def load(path):
    import keras

    import models  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(path)


def same_audio(file, expected):
    """The file holds exactly `expected`, as 16-bit PCM."""
    got = written(file)
    np.testing.assert_array_equal(got, pcm(expected))
    assert np.abs(got).max() > 0


# Generation that works.

def test_one_class_and_repeated_classes_write_one_file_each(tmp_path, kit):
    import models

    result = run_main("generate.py", kit["classes"], "--class", "bass", "--seconds", "0.05", "--output",
                      tmp_path / "bass.wav", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert "class bass" in result.stdout
    same_audio(tmp_path / "bass.wav", models.generate(load(kit["classes"]), 400, classes=["bass"], seed=2)[0])
    result = run_main("generate.py", kit["classes"], "--class", "cello", "--class", "alto", "--seconds", "0.05",
                      "--output-dir", tmp_path / "many", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "many") == ["sample_001_cello.wav", "sample_002_alto.wav"]
    expected = models.generate(load(kit["classes"]), 400, classes=["cello", "alto"], seed=3)
    for file, stream in zip(["sample_001_cello.wav", "sample_002_alto.wav"], expected):
        same_audio(tmp_path / "many" / file, stream)


def test_num_cycles_the_models_classes_or_the_classes_given(tmp_path, kit):
    result = run_main("generate.py", kit["classes"], "--num", "4", "--seconds", "0.02", "--output-dir",
                      tmp_path / "cycle")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "cycle") == ["sample_001_alto.wav", "sample_002_bass.wav", "sample_003_cello.wav",
                                               "sample_004_alto.wav"]
    assert all(len(written(path)) == 160 for path in (tmp_path / "cycle").iterdir())
    result = run_main("generate.py", kit["classes"], "--class", "cello", "--class", "bass", "--num", "3",
                      "--seconds", "0.02", "--output-dir", tmp_path / "given")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "given") == ["sample_001_cello.wav", "sample_002_bass.wav", "sample_003_cello.wav"]


@pytest.mark.parametrize("flag,source", [("--mel-from", "speech"), ("--mel", "mel_npy"), ("--mel", "mel_npz")])
def test_a_spectrogram_sets_the_length(tmp_path, kit, flag, source):
    import models

    out = tmp_path / "out" / "resynth.wav"
    result = run_main("generate.py", kit["vocoder"], flag, kit[source], "--output", out, "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert "13 frames" in result.stdout
    samples = (SPEECH_SAMPLES // HOP) * HOP  # 13 frames: (13 - 1) x 100
    # Without --temperature a vocoder samples at 0.7, the temperature bench/vocoder.py measured best.
    same_audio(out, models.generate(load(kit["vocoder"]), mel=kit["mel"], seed=4, temperature=0.7)[0])
    assert len(written(out)) == samples


def test_a_spectrogram_per_stream_gives_one_file_per_row(tmp_path, kit):
    result = run_main("generate.py", kit["vocoder"], "--mel", kit["mel_two"], "--num", "2", "--output-dir",
                      tmp_path / "rows", "--seed", "4")
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "rows").iterdir())
    assert [f.name for f in files] == ["sample_001.wav", "sample_002.wav"]
    assert [len(written(f)) for f in files] == [1200, 1200]
    import models

    # Row i of the spectrogram stack conditions file i (the second row is the first reversed in time).
    expected = models.generate(load(kit["vocoder"]), mel=np.load(kit["mel_two"]), seed=4, temperature=0.7)
    for file, stream in zip(files, expected):
        same_audio(file, stream)


def test_classes_and_spectrogram_in_a_fresh_process_equal_generation_here(tmp_path, kit):
    """The saved model, loaded by generate.py in a new interpreter, makes what the API makes here with the seed."""
    import models

    result = run_script("generate.py", kit["both"], "--class", "cello", "--class", "alto", "--mel-from",
                        kit["speech"], "--output-dir", tmp_path / "both", "--seed", "11", "--temperature", "0.8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"wrote 2 file\(s\) of 0\.15 s at 8000 Hz, classes cello, alto, from the log-mel", result.stdout)
    expected = models.generate(load(kit["both"]), mel=kit["mel"], classes=["cello", "alto"], seed=11,
                               temperature=0.8)
    assert expected.shape == (2, 1200)
    for file, stream in zip(["sample_001_cello.wav", "sample_002_alto.wav"], expected):
        same_audio(tmp_path / "both" / file, stream)
    assert not np.array_equal(written(tmp_path / "both" / "sample_001_cello.wav"),
                              written(tmp_path / "both" / "sample_002_alto.wav"))


# Refusals: one line, exit status 2, nothing written.

REFUSED_AFTER_LOADING = [
    ("classes", ["--class", "tuba"], ["--class: unknown class 'tuba'", "alto, bass, cello"]),
    ("both", ["--class", "alto", "--class", "tuba", "--mel-from", "@speech"], ["unknown class 'tuba'"]),
    ("plain", ["--class", "alto"], ["plain.keras is not conditioned on classes", "leave --class out"]),
    ("vocoder", ["--class", "alto", "--mel-from", "@speech"], ["not conditioned on classes"]),
    ("classes", [], ["classes.keras is conditioned on classes", "give --class NAME (one of: alto, bass, cello)",
                     "--num N"]),
    ("classes", ["--class", "alto", "--mel-from", "@speech"], ["--mel-from: ", "not conditioned on spectrograms"]),
    ("plain", ["--mel", "@mel_npy"], ["--mel: ", "plain.keras is not conditioned on spectrograms"]),
    ("vocoder", [], ["vocoder.keras is a vocoder conditioned on log-mel spectrograms (16 bins",
                     "give --mel-from AUDIO or --mel FILE"]),
    ("both", ["--class", "bass"], ["is a vocoder conditioned on log-mel spectrograms"]),
    ("vocoder", ["--mel", "@mel_20_bins"], ["twenty.npy", "the model takes 16 mel bins, the spectrogram has 20"]),
    ("vocoder", ["--mel", "@mel_hop_80"], ["hop80.npz", "hop_length is 80 but the model was trained with 100"]),
    ("vocoder", ["--mel", "@mel_db"], ["decibels.npy", "not natural-log magnitudes"]),
    ("vocoder", ["--mel", "@mel_two"], ["holds 2 spectrograms", "--num 2"]),
    ("vocoder", ["--mel-from", "@missing"], ["missing.wav", "no such file"]),
]


@pytest.mark.parametrize("model,flags,fragments", REFUSED_AFTER_LOADING,
                         ids=[f"{m}:{' '.join(f)}" for m, f, _ in REFUSED_AFTER_LOADING])
def test_conditioning_that_does_not_fit_the_model_is_refused(tmp_path, kit, model, flags, fragments):
    flags = [str(kit[f[1:]]) if f.startswith("@") and f[1:] in kit else
             str(tmp_path / "missing.wav") if f == "@missing" else f for f in flags]
    several = flags.count("--class") > 1
    target = ["--output-dir", tmp_path / "new" / "dir"] if several else ["--output", tmp_path / "new" / "a.wav"]
    result = run_main("generate.py", kit[model], *flags, *target)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "new").exists()


REFUSED_BEFORE_LOADING = [
    (["--prime", "@speech", "--mel-from", "@speech", "--output", "@out"],
     ["--prime cannot be combined with --mel-from: the spectrogram sets the whole output"]),
    (["--mel", "@mel_npy", "--seconds", "2", "--output", "@out"],
     ["--seconds cannot be combined with --mel: the spectrogram sets the length", "leave --seconds out"]),
    (["--mel", "@mel_npy", "--mel-from", "@speech", "--output", "@out"],
     ["argument --mel-from: not allowed with argument --mel"]),
    (["--class", "alto", "--class", "bass", "--output", "@out"],
     ["2 --class values write one file each: give --output-dir DIR"]),
]


@pytest.mark.parametrize("flags,fragments", REFUSED_BEFORE_LOADING, ids=lambda value: str(value)[:40])
def test_flags_that_no_model_accepts_are_refused_before_loading(tmp_path, kit, flags, fragments):
    out = tmp_path / "new" / "a.wav"
    flags = [out if f == "@out" else kit[f[1:]] if f.startswith("@") else f for f in flags]
    result = run_script("generate.py", kit["both"], *flags, timeout=60)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "new").exists()


# Evaluation.

def test_evaluate_scores_a_conditioned_model_with_its_conditioning(tmp_path, kit):
    import models
    from evaluation import signal_bits

    result = run_script("evaluate.py", kit["both"], kit["speech"], "--class", "bass", "--json", "--chunk", "500")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    model = load(kit["both"])
    bits = signal_bits(model, models.wavenet_spec(model), kit["signal"], class_id="bass")
    assert report["class"] == "bass" and report["mel"]["n_mels"] == BINS
    assert report["samples"] == SPEECH_SAMPLES - 1
    assert report["bits_per_sample"] == pytest.approx(float(bits.mean()), abs=1e-3)
    text = run_main("evaluate.py", kit["both"], kit["speech"], "--class", "cello")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0] == "conditioned on class cello and each file's own log-mel spectrogram"
    assert re.fullmatch(r"\d+\.\d{3} bits/sample", lines[-1])
    assert abs(float(lines[-1].split()[0]) - report["bits_per_sample"]) > 1e-4  # another class, another score


@pytest.mark.parametrize("model,flags,fragments", [
    ("both", [], ["both.keras is conditioned on classes: give --class NAME (one of: alto, bass, cello)"]),
    ("classes", ["--class", "tuba"], ["--class: unknown class 'tuba'; the model's classes: alto, bass, cello"]),
    ("vocoder", ["--class", "alto"], ["--class: ", "vocoder.keras is not conditioned on classes"]),
])
def test_evaluate_refuses_a_class_that_does_not_fit(kit, model, flags, fragments):
    result = run_main("evaluate.py", kit[model], kit["speech"], *flags)
    assert_one_line_error(result, *fragments)
