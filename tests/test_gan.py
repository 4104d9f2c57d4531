import json

import keras
import numpy as np
import pytest
import soundfile as sf

import models
from data.frames import FrameGenerator
from tests.conftest import run_main, run_script, tone, write_wav
from tests.test_cli import assert_one_line_error

RATE = 8000


def tiny_gan(loss="wgan-gp", model_dim=4, slice_length=4096, seed=0, run_eagerly=False):
    keras.utils.set_random_seed(seed)
    generator = models.build_generator(16, model_dim, slice_length, RATE)
    discriminator = models.build_discriminator(model_dim, slice_length, 2, RATE)
    gan = models.WaveGAN(generator, discriminator, latent_dim=16, loss=loss, critic_steps=5 if loss == "wgan-gp" else 1)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3, 0.5, 0.9), g_optimizer=keras.optimizers.Adam(1e-3, 0.5, 0.9),
                run_eagerly=run_eagerly)
    return gan


@pytest.mark.parametrize("slice_length", [4096, 8192, 16384, 32768, 65536])
def test_shapes_and_range(slice_length):
    generator = models.build_generator(100, 2, slice_length, RATE)
    discriminator = models.build_discriminator(2, slice_length, 2, RATE)
    z = np.random.default_rng(0).uniform(-1, 1, (3, 100)).astype(np.float32)
    audio = np.asarray(generator(z))
    assert audio.shape == (3, slice_length, 1) and np.all(np.abs(audio) <= 1.0)
    assert discriminator(audio).shape == (3, 1)
    assert [layer.name for layer in generator.layers if "upconv" in layer.name] == [f"upconv_{i}" for i in range(5)]


def test_bad_slice_length():
    with pytest.raises(ValueError, match="slice_length"):
        models.build_generator(slice_length=10000)


def test_phase_shuffle_shifts_with_reflection_and_is_identity_at_inference():
    layer = models.PhaseShuffle(3, seed=1)
    ramp = np.tile(np.arange(50, dtype=np.float32)[None, :, None], (64, 1, 2))
    np.testing.assert_array_equal(np.asarray(layer(ramp, training=False)), ramp)
    shuffled = np.asarray(layer(ramp, training=True))
    assert shuffled.shape == ramp.shape
    shifts = set()
    for row in shuffled[..., 0]:
        k = int(10 - row[10])  # output[t] = input[t - k] away from the edges
        assert -3 <= k <= 3
        positions = np.abs(np.arange(50) - k)
        positions = np.where(positions >= 50, 2 * 49 - positions, positions)
        np.testing.assert_array_equal(row, positions)
        shifts.add(k)
    assert len(shifts) > 3  # shifts differ between examples


@pytest.mark.parametrize("loss", ["wgan-gp", "bce"])
def test_one_train_step_changes_both_networks(loss):
    # WGAN-GP's five critic steps make a large graph that takes half a minute to build; eagerly the step is the
    # same code (the CLI tests train both losses as compiled graphs).
    gan = tiny_gan(loss, run_eagerly=loss == "wgan-gp")
    g_before = [w.copy() for w in gan.generator.get_weights()]
    d_before = [w.copy() for w in gan.discriminator.get_weights()]
    real = np.stack([tone(4096 / RATE, frequencies=(440,))] * (10 if loss == "wgan-gp" else 2))[..., None]
    logs = gan.train_on_batch(real, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert any(not np.allclose(a, b) for a, b in zip(g_before, gan.generator.get_weights()))
    assert any(not np.allclose(a, b) for a, b in zip(d_before, gan.discriminator.get_weights()))


def test_generator_step_leaves_discriminator_unchanged():
    gan = tiny_gan()
    gan.d_optimizer.build(gan.discriminator.trainable_variables)
    gan.g_optimizer.build(gan.generator.trainable_variables)
    d_before = [w.copy() for w in gan.discriminator.get_weights()]
    g_before = [w.copy() for w in gan.generator.get_weights()]
    gan.generator_step(4)
    for a, b in zip(d_before, gan.discriminator.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(g_before, gan.generator.get_weights()))


def test_discriminator_alone_tells_tones_from_noise():
    keras.utils.set_random_seed(0)
    discriminator = models.build_discriminator(4, 4096, 2, RATE)
    discriminator.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)

    def batch(n):
        tones = np.stack([tone(4096 / RATE, frequencies=(rng.uniform(200, 1000),), amplitude=rng.uniform(0.2, 0.8))
                          for _ in range(n)])
        noise = rng.uniform(-0.5, 0.5, (n, 4096)).astype(np.float32)
        return np.concatenate([tones, noise])[..., None], np.concatenate([np.ones(n), np.zeros(n)])

    x, y = batch(64)
    discriminator.fit(x, y, epochs=8, batch_size=16, verbose=0)
    x, y = batch(32)
    accuracy = np.mean((np.asarray(discriminator(x))[:, 0] > 0) == (y == 1))
    assert accuracy > 0.9


def test_keras_round_trip_of_both_in_a_fresh_process(tmp_path):
    gan = tiny_gan()
    gan.generator.save(tmp_path / "generator.keras")
    gan.discriminator.save(tmp_path / "discriminator.keras")
    z = np.random.default_rng(0).uniform(-1, 1, (2, 16)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "audio.npy", np.asarray(gan.generator(z)))
    np.save(tmp_path / "score.npy", np.asarray(gan.discriminator(gan.generator(z))))
    script = tmp_path / "load.py"
    script.write_text(
        "import numpy as np, keras\nimport models\n"
        f"g = keras.saving.load_model({str(tmp_path / 'generator.keras')!r}, safe_mode=True)\n"
        f"d = keras.saving.load_model({str(tmp_path / 'discriminator.keras')!r}, safe_mode=True)\n"
        f"z = np.load({str(tmp_path / 'z.npy')!r})\n"
        f"np.testing.assert_allclose(np.asarray(g(z)), np.load({str(tmp_path / 'audio.npy')!r}), atol=1e-5)\n"
        f"np.testing.assert_allclose(np.asarray(d(g(z))), np.load({str(tmp_path / 'score.npy')!r}), atol=1e-4)\n"
        "print('OK', g.get_layer('audio').sample_rate, d.get_layer('phase_shuffle_0').radius)\n")
    result = run_script(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["OK", "8000", "2"]


def clip_peaks(clips):
    """The frequency of each 4096-sample clip's largest spectral peak (Hann window), in Hz."""
    return np.fft.rfftfreq(4096, 1 / RATE)[np.argmax(np.abs(np.fft.rfft(clips * np.hanning(4096))), axis=1)]


@pytest.mark.slow
def test_gan_learns_tones_of_several_pitches_not_one():
    # WGAN-GP at Adam 1e-3: the losses with one critic step (bce, least squares, hinge) collapsed to one pitch, and
    # WGAN-GP at WaveGAN's 1e-4 was still noise after hundreds of steps (bench/gan_tones.py; README). Scoring pairs
    # of clips (pack 2) tells a generator that makes one pitch from the data: in bench/gan_tones.py --pitches, seeds
    # 0-5 all spread their clips over two or three pitches after 300 steps; with each clip scored alone, five of six
    # had every clip on one pitch after 150 steps, and one still had after 300. Critic batches of 4 clips (two
    # pairs) instead of 8 halve the test's time: seeds 0-5 all still passed the checks below (measured).
    pitches = np.array([300.0, 600.0, 1200.0])
    keras.utils.set_random_seed(0)
    gan = models.build_wavegan(16, 8, 4096, RATE, 2, "wgan-gp", 1e-3, pack=2)
    signals = [tone(2.0, rate=RATE, frequencies=(pitch,)) for pitch in pitches]
    gan.fit(FrameGenerator(signals, 4096, 4 * 5, 300, mode="slice", seed=0), epochs=1, verbose=0)
    clips = models.generate_clips(gan.generator, 32, seed=1)
    peaks = clip_peaks(clips)
    nearest = np.argmin(np.abs(np.log(peaks[:, None] + 1) - np.log(pitches[None, :])), axis=1)
    on_pitch = np.abs(peaks - pitches[nearest]) <= 0.06 * pitches[nearest]
    assert on_pitch.mean() >= 0.75, peaks
    made = [int(np.sum(on_pitch & (nearest == i))) for i in range(3)]
    assert sum(count >= 3 for count in made) >= 2, (made, peaks)  # several pitches, not one


def test_packed_discriminator_scores_pairs_of_clips_and_trains():
    keras.utils.set_random_seed(0)
    gan = models.build_wavegan(16, 4, 4096, RATE, 2, "wgan-gp", 1e-3, pack=2)
    assert tuple(gan.discriminator.inputs[0].shape) == (None, 4096, 2) and gan.pack == 2
    clips = np.random.default_rng(0).normal(0, 0.3, (4, 4096, 1)).astype(np.float32)
    packed = np.asarray(gan.pack_clips(clips))
    assert packed.shape == (2, 4096, 2)
    for group, channel in np.ndindex(2, 2):  # group k holds clips 2k and 2k + 1, in order
        np.testing.assert_array_equal(packed[group, :, channel], clips[2 * group + channel, :, 0])
    scores = np.asarray(gan._score(clips, None, training=False))
    assert scores.shape == (2, 1)
    # A pair's score depends on both its clips: the same four clips paired otherwise score otherwise.
    assert not np.allclose(np.asarray(gan._score(clips[[0, 2, 1, 3]], None, training=False)), scores)
    gan.run_eagerly = True  # (as test_one_train_step_changes_both_networks: the graph of 5 critic steps is slow)
    g_before, d_before = gan.generator.get_weights(), gan.discriminator.get_weights()
    real = np.stack([tone(4096 / RATE, frequencies=(440,))] * 20)[..., None]  # 5 critic steps of 4 clips
    logs = gan.train_on_batch(real, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()) and logs["gradient_penalty"] > 0
    assert any(not np.allclose(a, b) for a, b in zip(g_before, gan.generator.get_weights()))
    assert any(not np.allclose(a, b) for a, b in zip(d_before, gan.discriminator.get_weights()))
    with pytest.raises(ValueError, match="groups of pack=2"):
        gan.train_on_batch(real[:15])  # 3 clips per critic step
    with pytest.raises(ValueError, match="1 for a class-conditional discriminator; got 2 with 2 classes"):
        models.build_discriminator(4, 4096, 2, RATE, class_names=("a", "b"), pack=2)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="pack must be a whole number of 1 or more"):
            models.build_discriminator(4, 4096, 2, RATE, pack=bad)


def test_check_batch_refuses_batches_the_replicas_cannot_split_into_packs():
    from types import SimpleNamespace

    from run.distribute import DistributeError, Distribution

    two = Distribution("mirrored", SimpleNamespace(num_replicas_in_sync=2))
    two.check_batch(8, 2)  # 4 clips per replica: 2 pairs each
    two.check_batch(6)  # no packing: 3 clips per replica
    with pytest.raises(DistributeError, match="groups of --pack 2 on each of 2 replicas; give a multiple of 4"):
        two.check_batch(6, 2)
    with pytest.raises(DistributeError, match="cannot be split equally across 2 replicas"):
        two.check_batch(5)
    with pytest.raises(DistributeError, match="--batch-size 3 cannot be split into groups of --pack 2; give a "
                                              "multiple of 2"):
        Distribution().check_batch(3, 2)


@pytest.mark.slow
def test_train_gan_cli_generate_and_evaluate(tmp_path):
    audio = write_wav(tmp_path / "tones.wav", tone(3.0, frequencies=(300, 600)))
    run_dir = tmp_path / "run"
    # bce: the run folder, samples, generation and evaluation do not depend on the loss, and its graph builds in a
    # third of WGAN-GP's time (WGAN-GP trains through the CLI in test_cli.py's bfloat16 test).
    result = run_script("train_gan.py", "--train", audio, "--loss", "bce", "--slice-length", "4096", "--model-dim", "4",
                        "--latent-dim", "16", "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
                        "--pack", "2", "--sample-every", "1", "--sample-clips", "2", "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("generator.keras", "discriminator.keras", "config.json", "history.csv",
                 "checkpoints/epoch_0002/optimizers.npz", "checkpoints/epoch_0002/generator.keras",
                 "checkpoints/latest.json", "samples/epoch_0002.wav", "samples/epoch_0002.png"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["slice_length"] == 4096 and config["pack"] == 2
    discriminator = keras.saving.load_model(run_dir / "discriminator.keras")
    assert tuple(discriminator.inputs[0].shape) == (None, 4096, 2)  # scores pairs of clips
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"d_loss", "g_loss", "clips_per_second", "steps_per_second"} <= set(header)
    info = sf.info(str(run_dir / "samples" / "epoch_0002.wav"))
    assert info.samplerate == 8000 and info.frames == 2 * (4096 + 800)  # two clips, each with 0.1 s of silence

    result = run_script("generate.py", run_dir / "generator.keras", "--num", "3", "--output-dir", tmp_path / "clips",
                        "--seed", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    first = sf.read(str(tmp_path / "clips" / "sample_001.wav"))[0]
    assert len(first) == 4096 and len(list((tmp_path / "clips").iterdir())) == 3

    result = run_main("evaluate.py", run_dir / "generator.keras", audio, "--num", "8", "--json")  # (fresh: above)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout)["results"]
    assert set(results) == {"generated", "held-out real", "white noise"}
    assert results["held-out real"]["frechet_distance"] < results["white noise"]["frechet_distance"]
    # (--resume of a GAN run: tests/test_robust.py::test_gan_interrupt_and_resume_through_the_cli.)

    # Refusals of --pack: one line, exit status 2, nothing written.
    for args, message in ((("--batch-size", "3"), "--batch-size 3 cannot be split into groups of --pack 2"),
                          (("--labels", "folders"), "needs an unconditional WaveGAN"),
                          (("--condition", "mel"), "--pack: a WaveGAN setting")):
        result = run_main("train_gan.py", "--train", audio, "--pack", "2", *args, "--output-dir", tmp_path / "r")
        assert_one_line_error(result, message)
    assert not (tmp_path / "r").exists()
    # Resuming keeps the pack (the discriminator's input holds it); a config.json from before --pack had 1.
    assert_one_line_error(run_main("train_gan.py", "--resume", "--output-dir", run_dir, "--pack", "1"),
                          "the run was trained with 2")
    config = json.loads((run_dir / "config.json").read_text())
    del config["pack"]
    (run_dir / "config.json").write_text(json.dumps(config))
    import train_gan

    assert train_gan.resolve(["--resume", "--output-dir", str(run_dir)])[0].pack == 1


def test_generate_clips_counts():
    generator = models.build_generator(latent_dim=8, model_dim=2, slice_length=4096, sample_rate=8000)
    assert models.generate_clips(generator, 0).shape == (0, 4096)
    clips = models.generate_clips(generator, 3, seed=1)
    assert clips.shape == (3, 4096) and clips.dtype == np.float32
    np.testing.assert_array_equal(clips, models.generate_clips(generator, 3, seed=1))
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="num_clips"):
            models.generate_clips(generator, bad)


def conditional_gan(model_dim=4, seed=0):
    keras.utils.set_random_seed(seed)
    # WGAN-GP: with bce the generator made one pitch for both classes (the collapse bench/gan_tones.py measures).
    return models.build_wavegan(16, model_dim, 4096, RATE, 2, "wgan-gp", 1e-3, class_names=("high", "low"),
                                class_channels=16)


def test_class_conditional_networks_take_a_class():
    gan = conditional_gan(model_dim=2)
    assert [tuple(i.shape) for i in gan.generator.inputs] == [(None, 16), (None, 1)]
    assert [tuple(i.shape) for i in gan.discriminator.inputs] == [(None, 4096, 1), (None, 1)]
    assert models.gan_class_names(gan.generator) == ("high", "low") and models.is_gan_generator(gan.generator)
    z = np.random.default_rng(0).uniform(-1, 1, (2, 16)).astype(np.float32)
    high, low = (np.asarray(gan.generator([z, np.full((2, 1), i)])) for i in (0, 1))
    assert high.shape == (2, 4096, 1) and not np.allclose(high, low)  # the class changes the clip
    audio = np.asarray(gan.generator([z, np.zeros((2, 1))]))
    scores = [np.asarray(gan.discriminator([audio, np.full((2, 1), i)])) for i in (0, 1)]
    assert scores[0].shape == (2, 1) and not np.allclose(*scores)  # and the score (the projection term)
    clips = models.generate_clips(gan.generator, 3, seed=0, classes=["low", 0, "low"])
    assert clips.shape == (3, 4096)
    np.testing.assert_allclose(clips[0], models.generate_clips(gan.generator, 1, seed=0, classes="low")[0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown class 'mid'"):
        models.generate_clips(gan.generator, 1, classes="mid")
    with pytest.raises(ValueError, match="conditioned on classes"):
        models.generate_clips(gan.generator, 1)
    with pytest.raises(ValueError, match="not conditioned"):
        models.generate_clips(tiny_gan().generator, 1, classes="low")


def test_class_conditional_wavegan_trains_a_step_in_mixed_precision():
    # The critic's score stays float32 under a mixed policy, its class projection's sum too, as the gradient
    # penalty and the graph loop of critic steps (float32 loop values) need.
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        gan = conditional_gan(model_dim=2)
    finally:
        keras.config.set_dtype_policy("float32")
    assert gan.discriminator.outputs[0].dtype == "float32"
    real = {"waveform": np.stack([tone(4096 / RATE, rate=RATE, frequencies=(440,))] * 10)[..., None],
            "class_id": np.tile([[0], [1]], (5, 1)).astype("int32")}  # 5 critic steps of 2 clips
    logs = gan.train_on_batch(real, return_dict=True)
    assert all(np.isfinite(value) for value in logs.values()) and logs["gradient_penalty"] > 0, logs


@pytest.mark.slow
def test_class_conditional_gan_generates_each_class_at_its_pitch():
    pitches = {"high": 1000.0, "low": 400.0}
    gan = conditional_gan()
    signals = [tone(4.0, rate=RATE, frequencies=(pitch,)) for pitch in pitches.values()]
    # Measured: seeds 0 and 1 both put all 16 clips of each class on its pitch after 150 steps (d=4, batch 8).
    gan.fit(FrameGenerator(signals, 4096, 8 * 5, 150, mode="slice", seed=0, labels=[0, 1]), epochs=1, verbose=0)
    for name, pitch in pitches.items():
        clips = models.generate_clips(gan.generator, 16, seed=1, classes=name)
        peaks = clip_peaks(clips)
        assert np.mean(np.abs(peaks - pitch) < 40) >= 0.75, (name, peaks)


@pytest.mark.slow
def test_train_gan_with_labels_and_generate_a_class(tmp_path):
    for name, pitch in (("high", 900), ("low", 300)):
        write_wav(tmp_path / "tones" / name / "a.wav", tone(1.0, frequencies=(pitch,)))
    run_dir = tmp_path / "run"
    result = run_script("train_gan.py", "--train", tmp_path / "tones", "--labels", "folders", "--loss", "bce",
                        "--slice-length", "4096", "--model-dim", "2", "--latent-dim", "8", "--epochs", "1",
                        "--steps-per-epoch", "1", "--batch-size", "2", "--sample-every", "1", "--sample-clips", "2",
                        "--output-dir", run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classes (2, --labels folders): high, low" in result.stdout
    assert json.loads((run_dir / "config.json").read_text())["class_names"] == ["high", "low"]
    assert {p.name for p in (run_dir / "samples").glob("*.wav")} == {"epoch_0001_high.wav", "epoch_0001_low.wav"}
    generator = run_dir / "generator.keras"
    result = run_script("generate.py", generator, "--class", "low", "--num", "3", "--output-dir", tmp_path / "a")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"sample_00{i}_low.wav" for i in (1, 2, 3)]
    result = run_main("generate.py", generator, "--num", "3", "--output-dir", tmp_path / "b")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["sample_001_high.wav", "sample_002_low.wav",
                                                                  "sample_003_high.wav"]
    for args, message in (((generator, "--class", "mid", "--output", tmp_path / "x.wav"), "unknown class 'mid'"),
                          ((generator, "--output", tmp_path / "x.wav"), "is conditioned on classes")):
        result = run_main("generate.py", *args)  # in this process: see run_main
        assert_one_line_error(result, message)
    result = run_script("train_gan.py", "--labels", "folders", "--train", tmp_path / "tones" / "high" / "a.wav",
                        "--output-dir", tmp_path / "r")
    assert result.returncode == 2 and "not a file" in result.stderr, result.stderr[-1000:]
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "r").exists()
