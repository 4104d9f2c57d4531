"""The token language model (train_lm.py): tokens, layers, causality, cached decoding, sampling, n-gram baselines,
the learning test (a melody longer than a WaveNet's receptive field), and the command line with its refusals."""

import json

import keras
import numpy as np
import pytest

import models
from data.features import mel_settings
from data.frames import FrameGenerator
from data.tokens import (Codebook, decode_tokens, encode_frames, fit_codebook, residual_codebooks,
                         residual_rebuild)
from evaluation import NGram, token_bits
from evaluation.melody import continuation_matched, melody, melody_lm, train_melody_lm
from models.lm import MelCodebook, RotaryCausalAttention, TokenInput
from models.sampling import filtered_categorical
from tests.conftest import run_main, run_script, tone, write_wav
from tests.test_cli import assert_one_line_error
from tests.test_layers import run_layer_test

RATE = 8000
SETTINGS = mel_settings(RATE)  # hop 100: 80 tokens per second
HOP = SETTINGS.hop_length


def random_codebook(size=16, bins=80, seed=0):
    rng = np.random.default_rng(seed)
    return Codebook(rng.normal(-5, 1, bins).astype(np.float32), rng.uniform(0.5, 2, bins).astype(np.float32),
                    rng.normal(0, 1, (size, bins)).astype(np.float32))


def tiny_lm(context=32, size=16, seed=0, layers=2, heads=2, **kwargs):
    keras.utils.set_random_seed(seed)
    lm = models.build_token_lm(SETTINGS, size, context, model_dim=16, layers=layers, heads=heads, dropout=0.0,
                               **kwargs)
    models.set_codebook(lm, random_codebook(size, seed=seed))
    for layer in lm.layers:  # random biases and norms too, so no test passes by zeros
        if layer.weights and layer.name != "codebook":
            layer.set_weights([w + np.random.default_rng(seed).normal(0, 0.2, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])
    return lm


def test_codebook_fits_encodes_and_decodes():
    rng = np.random.default_rng(0)
    centres = rng.normal(-4, 2, (6, 10))
    frames = (centres[rng.integers(0, 6, 600)] + rng.normal(0, 0.01, (600, 10))).astype(np.float32)
    codebook = fit_codebook(frames, 6, seed=0)
    tokens = encode_frames(frames, *codebook)
    assert tokens.shape == (600,) and tokens.dtype == np.int32 and len(np.unique(tokens)) == 6
    rebuilt = decode_tokens(tokens, *codebook)
    assert np.abs(rebuilt - frames).mean() < 0.02  # six clusters, six entries: only the noise is lost
    floored = decode_tokens(tokens, *codebook, floor=-3.0)
    assert floored.min() >= -3.0
    first, stages = residual_codebooks(frames, (3, 3), seed=0)
    rebuilt = residual_rebuild(frames, first, stages)
    assert len(rebuilt) == 2 and np.abs(rebuilt[1] - frames).mean() < np.abs(rebuilt[0] - frames).mean()
    with pytest.raises(ValueError, match="distinct frames"):
        fit_codebook(np.zeros((50, 10), np.float32), 4)


def test_token_frame_generator_shifts_by_one():
    tokens = np.arange(100, dtype=np.int32) % 7
    frames = FrameGenerator([tokens], 10, 3, 5, mode="tokens", seed=0)
    x, y = frames[0]
    assert x.shape == y.shape == (3, 10) and x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y[:, -1], (x[:, -1] + 1) % 7)
    batches = list(frames.as_dataset().take(2))
    np.testing.assert_array_equal(batches[0][0].numpy(), x)
    with pytest.raises(ValueError, match="tokens mode"):
        FrameGenerator([tokens], 10, 3, 5, mode="tokens", labels=[0])


def test_layers_round_trip_and_compute():
    run_layer_test(RotaryCausalAttention, {"heads": 2, "head_dim": 4, "window": 3}, (2, 6, 8), (2, 6, 8), 4)
    layer = TokenInput(16, 64)
    assert TokenInput.from_config(layer.get_config()).get_config() == layer.get_config()
    np.testing.assert_array_equal(np.asarray(layer(np.array([[3, 20, -1]]))), [[3, 15, 0]])
    codebook = MelCodebook(SETTINGS, 16)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(codebook), safe_mode=True)
    assert revived.get_config() == codebook.get_config() and revived.settings == SETTINGS
    codebook.set_codebook(random_codebook())
    assert not codebook.trainable_weights
    np.testing.assert_allclose(np.asarray(codebook(np.array([[2, 5]]))), random_codebook().centroids[[2, 5]][None])
    mixed = MelCodebook(SETTINGS, 16, dtype="mixed_bfloat16")
    assert keras.backend.standardize_dtype(mixed(np.array([[1]])).dtype) == "bfloat16"
    with pytest.raises(ValueError, match="even"):
        RotaryCausalAttention(2, 3)


def test_model_is_causal_banded_and_round_trips(tmp_path):
    lm = tiny_lm(context=8)
    spec = models.lm_spec(lm)
    assert (spec.vocabulary, spec.context, spec.layers, spec.heads, spec.head_dim) == (16, 8, 2, 2, 8)
    tokens = np.random.default_rng(0).integers(0, 16, (2, 30)).astype(np.int32)
    logits = np.asarray(lm(tokens))
    assert logits.shape == (2, 30, 16) and logits.dtype == np.float32
    changed = tokens.copy()
    changed[:, 20] = (changed[:, 20] + 1) % 16
    after = np.asarray(lm(changed))
    np.testing.assert_allclose(after[:, :20], logits[:, :20], atol=1e-5)  # the past does not see the future
    assert np.abs(after[:, 20:] - logits[:, 20:]).max() > 1e-3
    # Two layers of a band of 8: a change at position 5 reaches at most 2 x 7 positions on.
    longer = np.concatenate([tokens, tokens], axis=1)
    far = longer.copy()
    far[:, 5] = (far[:, 5] + 3) % 16
    np.testing.assert_allclose(np.asarray(lm(far))[:, 5 + 2 * 7 + 1:], np.asarray(lm(longer))[:, 5 + 2 * 7 + 1:],
                               atol=1e-5)
    path = tmp_path / "lm.keras"
    lm.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(tokens)), logits, atol=1e-6)
    np.testing.assert_array_equal(models.codebook_of(loaded).centroids, random_codebook().centroids)
    assert models.lm_spec(loaded) == spec


def test_cached_logits_equal_uncached_past_the_context():
    lm = tiny_lm(context=8, layers=3)
    tokens = np.random.default_rng(1).integers(0, 16, (3, 40))
    uncached = np.asarray(lm(tokens.astype(np.int32)))
    for engine in ("numpy", "numba"):  # the compiled step and its portable NumPy path
        decoder = models.CachedTokenLM(lm, engine=engine)
        decoder.reset(3)
        cached = np.stack([decoder.step(tokens[:, t]) for t in range(40)], axis=1)
        np.testing.assert_allclose(cached, uncached, atol=2e-5, rtol=1e-4, err_msg=engine)
        decoder.reset(1)  # one stream runs the kernel's serial build, several its parallel one
        np.testing.assert_allclose(decoder.feed(tokens[:1]), uncached[:1, -1], atol=2e-5, rtol=1e-4, err_msg=engine)
    sampled = [models.generate_tokens(models.CachedTokenLM(lm, engine=engine), 30, num_streams=2, seed=5)
               for engine in ("numpy", "numba")]
    np.testing.assert_array_equal(sampled[0], sampled[1])


@pytest.mark.parametrize("cores", [2, 3])
def test_one_stream_split_across_cores_gives_the_same_logits_to_the_bit(cores):
    """Heads and product columns shared out among helper threads (3 cores: uneven shares of 4 heads and 16
    columns) give the serial kernel's logits and caches exactly, past the ring's wrap; the helpers stop on
    close(), and generate_tokens closes its decoder."""
    lm = tiny_lm(context=8, layers=3, heads=4)
    tokens = np.random.default_rng(2).integers(0, 16, 30)
    serial, split = (models.CachedTokenLM(lm, engine="numba", split_cores=n) for n in (1, cores))
    assert models.CachedTokenLM(lm, engine="numba").cores() == 1  # 16 wide: below SPLIT_WIDTH (32)
    serial.reset(1)
    split.reset(1)
    assert split.cores() == cores
    for token in tokens:
        np.testing.assert_array_equal(split.step([token]), serial.step([token]))
    np.testing.assert_array_equal(split.keys, serial.keys)
    np.testing.assert_array_equal(split.values, serial.values)
    helpers = split._split.threads
    assert len(helpers) == cores - 1 and all(thread.is_alive() for thread in helpers)
    split.close()
    assert not any(thread.is_alive() for thread in helpers)
    same = [models.generate_tokens(decoder, 25, prime=tokens[:5], seed=3, temperature=0.9, top_p=0.9)
            for decoder in (serial, split)]
    np.testing.assert_array_equal(same[0], same[1])
    assert split._split is None


def test_compiled_sampling_draws_what_numpy_draws():
    """lm_kernel.filtered_categorical (what generate_tokens uses with the compiled step) against the NumPy
    reference, row by row, over temperatures, top-k and top-p, including logits with ties and a dominant class."""
    from models import lm_kernel

    rng = np.random.default_rng(7)
    logits = (rng.normal(0, 3, (300, 64))).astype(np.float32)
    logits[0] = 0.0  # every class tied
    logits[1, 5] = 40.0  # one class holds nearly all the mass
    uniforms = rng.random(300)
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 0, 0.9), (1.3, 10, 1.0), (0.9, 20, 0.5), (0.0, 0, 0.9),
                                      (1.0, 1, 1.0), (0.5, 0, 0.01)):
        expected = filtered_categorical(logits, temperature, uniforms, top_k, top_p)
        drawn = lm_kernel.filtered_categorical(logits, temperature, uniforms, top_k, top_p)
        np.testing.assert_array_equal(drawn, expected, err_msg=f"{temperature} {top_k} {top_p}")
    # The last setting keeps only the most likely class of each row (the tied row keeps all: none is below the top).
    np.testing.assert_array_equal(drawn[1:], np.argmax(logits[1:], axis=1))
    assert drawn[0] == int(uniforms[0] * 64)


def test_sampling_filters_and_repeats():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 2000))
    uniforms = np.random.default_rng(0).random(2000)
    counts = np.bincount(filtered_categorical(logits, 1.0, uniforms), minlength=4) / 2000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    assert set(filtered_categorical(logits, 1.0, uniforms, top_k=2)) == {0, 1}
    assert set(filtered_categorical(logits, 1.0, uniforms, top_p=0.7)) == {0, 1}  # 0.5 + 0.3 reaches 0.7
    assert set(filtered_categorical(logits, 1.0, uniforms, top_p=0.81)) == {0, 1, 2}
    assert set(filtered_categorical(logits, 0.0, uniforms)) == {0}
    lm = tiny_lm()
    first = models.generate_tokens(lm, 20, num_streams=2, seed=3, top_k=5)
    assert first.shape == (2, 20) and first.dtype == np.int32 and first.max() < 16
    np.testing.assert_array_equal(models.generate_tokens(lm, 20, num_streams=2, seed=3, top_k=5), first)
    assert not np.array_equal(models.generate_tokens(lm, 20, num_streams=2, seed=4, top_k=5), first)
    greedy = models.generate_tokens(lm, 5, prime=np.array([3, 4, 5]), temperature=0.0)
    decoder = models.CachedTokenLM(lm)
    decoder.reset(1)
    assert greedy[0, 0] == np.argmax(decoder.feed(np.array([[3, 4, 5]]))[0])


def test_ngram_baselines_are_distributions_and_learn_order():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 5, 300), np.tile([0, 1, 2, 3, 4, 0, 2, 4], 40)]
    for order in (1, 2, 3):
        model = NGram(order, 5).fit(train)
        for history in ([0, 1], [4, 4], [2, 0]):  # probabilities of every next token add up to one
            total = sum(model.probabilities(np.array([*history, w]))[-1] for w in range(5))
            assert total == pytest.approx(1.0, abs=1e-9), (order, history)
    pattern = np.tile([0, 1, 2, 3, 4, 0, 2, 4], 10)
    bits = [NGram(order, 5).fit(train).bits(pattern).mean() for order in (1, 2, 3)]
    assert bits[2] < bits[1] < bits[0] <= np.log2(5) + 0.1  # each order sees more of the pattern


def test_token_bits_match_one_pass_of_the_model():
    lm = tiny_lm(context=8)
    tokens = np.random.default_rng(2).integers(0, 16, 30).astype(np.int32)
    logits = np.asarray(lm(tokens[None, :-1]), np.float64)[0]
    logits -= logits.max(axis=1, keepdims=True)
    expected = -(logits[np.arange(29), tokens[1:]] - np.log(np.exp(logits).sum(axis=1))) / np.log(2)
    np.testing.assert_allclose(token_bits(lm, tokens), expected, atol=1e-4)  # 30 tokens, a band of 8


@pytest.mark.slow
def test_token_lm_continues_a_melody_longer_than_a_receptive_field():
    """A melody of eight 0.25 s notes repeats every 2 s (160 tokens; a default WaveNet sees 0.26 s). Primed with
    3 s of it, the trained model's 4 s continuation plays the melody's next notes. Measured on the AVX2 EPYC: all
    16 notes matched after 150, 200, 250 and 300 steps."""
    lm, tokens = melody_lm(seed=0)
    before = continuation_matched(lm)
    after = continuation_matched(train_melody_lm(lm, tokens, 200))
    assert before < 0.5 and after >= 0.8, (before, after)


@pytest.fixture(scope="module")
def melody_clip(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("lm_audio") / "melody.wav", melody(6.0, RATE))


TINY_FLAGS = ["--codebook-size", "8", "--context", "64", "--model-dim", "16", "--layers", "1", "--heads", "2",
              "--batch-size", "2", "--steps-per-epoch", "2", "--validation-steps", "1", "--sample-seconds", "0.5"]


@pytest.mark.slow
def test_train_interrupt_resume_generate_and_evaluate(tmp_path, melody_clip):
    run_dir = tmp_path / "lm"
    result = run_script("train_lm.py", "--train", melody_clip, "--output-dir", run_dir, "--epochs", "3",
                        "--sample-every", "1", *TINY_FLAGS, env={"WAVEGEN_KILL_AT": "step-end:3:SIGINT"})
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"  python train_lm.py --resume --output-dir {run_dir}"
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["folder"] == "epoch_0001_step_0001"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["trainer"] == "lm" and config["mel"]["hop_length"] == HOP and config["context_seconds"] == 0.8
    result = run_main("train_lm.py", "--resume", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert len(rows) == 4 and "val_bits_per_token" in rows[0]
    assert (run_dir / "samples" / "epoch_0003.wav").is_file() and list((run_dir / "logs" / "samples").iterdir())
    model = run_dir / "lm.keras"
    assert model.is_file() and (run_dir / "best.keras").is_file()
    out = tmp_path / "out"  # a fresh process: the model loads with the codebook and settings inside
    result = run_script("generate.py", model, "--seconds", "0.5", "--num", "2", "--output-dir", out, "--seed", "1",
                        "--prime", melody_clip, "--top-k", "4", "--top-p", "0.9")
    assert result.returncode == 0, result.stderr[-2000:]
    import soundfile as sf

    audio, rate = sf.read(out / "sample_001.wav")
    assert rate == RATE and len(audio) == RATE // 2 and np.abs(audio).max() > 0.01
    assert "tokens/s" in result.stdout and "x real time" in result.stdout
    result = run_main("evaluate.py", model, melody_clip, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout)
    assert set(scores["bits_per_token"]) == {"token LM", "unigram", "bigram", "trigram"}
    assert scores["tokens"] == 6 * 80 and scores["training_tokens"] > 0
    assert all(np.isfinite(value) for value in scores["bits_per_token"].values())


def test_bad_input_is_refused_in_one_line(tmp_path, melody_clip):
    short = write_wav(tmp_path / "short.wav", melody(0.5, RATE))
    result = run_main("train_lm.py", "--train", short, "--output-dir", tmp_path / "run", *TINY_FLAGS)
    assert_one_line_error(result, "short.wav: the longest training file gives 37 tokens",
                          "fewer than one context (--context 64) plus one")
    assert not (tmp_path / "run").exists()
    lm = tiny_lm()
    lm.save(tmp_path / "lm.keras")
    tiny_prime = write_wav(tmp_path / "tiny.wav", tone(0.005))
    result = run_main("generate.py", tmp_path / "lm.keras", "--prime", tiny_prime, "--output", tmp_path / "a.wav")
    assert_one_line_error(result, "--prime", "40 samples is shorter than one frame", "100 samples")
    other = models.build_vocoder_generator(mel_settings(RATE, n_mels=40), channels=8)
    other.save(tmp_path / "other_vocoder.keras")
    result = run_main("generate.py", tmp_path / "lm.keras", "--vocoder", tmp_path / "other_vocoder.keras",
                      "--output", tmp_path / "b.wav")
    assert_one_line_error(result, "mel settings (40 bins", "differ from the language model's (80 bins")
    result = run_main("generate.py", tmp_path / "lm.keras", "--vocoder", tmp_path / "lm.keras",
                      "--output", tmp_path / "c.wav")
    assert_one_line_error(result, "not a vocoder")
    result = run_main("generate.py", tmp_path / "lm.keras", "--mel-from", melody_clip, "--output", tmp_path / "d.wav")
    assert_one_line_error(result, "--mel-from", "token language model")
    result = run_main("generate.py", tmp_path / "other_vocoder.keras", "--top-k", "3", "--mel-from", melody_clip,
                      "--output", tmp_path / "e.wav")
    assert_one_line_error(result, "--top-k", "token language models")
    for model in ("lm.keras", "other_vocoder.keras"):
        result = run_main("generate.py", tmp_path / model, "--precision", "bfloat16", "--mel-from", melody_clip,
                          "--output", tmp_path / "f.wav")
        assert_one_line_error(result, "--precision applies to WaveNet generation only")
    assert not list(tmp_path.glob("?.wav"))


def test_two_replicas_train_the_token_lm_as_one_does_and_bfloat16_trains(tmp_path, melody_clip):
    """--distribute mirrored (two logical CPU devices, conftest.py) gives the weights one device gives with the
    same global batch; --precision mixed_bfloat16 trains with float32 weights and logits."""
    import train_lm

    flags = [*TINY_FLAGS, "--train", melody_clip, "--epochs", "1", "--sample-every", "0", "--dropout", "0"]
    for name, distribute in (("one", "none"), ("two", "mirrored")):
        train_lm.main([str(f) for f in [*flags, "--output-dir", tmp_path / name, "--distribute", distribute]])
    one, two = (keras.saving.load_model(tmp_path / name / "checkpoints" / "epoch_0001" / "lm.keras")
                for name in ("one", "two"))
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    train_lm.main([str(f) for f in [*flags, "--output-dir", tmp_path / "bf16", "--precision", "mixed_bfloat16"]])
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["precision"] == "mixed_bfloat16"
    mixed = keras.saving.load_model(tmp_path / "bf16" / "lm.keras")
    assert mixed.get_layer("block_0_attention").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in mixed.weights)
    logits = mixed(np.zeros((1, 5), np.int32))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32" and np.isfinite(np.asarray(logits)).all()
    keras.config.set_dtype_policy("float32")
