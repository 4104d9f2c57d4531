"""Train a convolutional GAN (WaveGAN) that generates fixed-length clips like your recordings.

    python train_gan.py --train my_audio/ --sample-rate 16000 --epochs 200
    python train_gan.py                          # the bundled speech clip, a few minutes on a CPU

The run folder (default runs/gan-<timestamp>/) gets generator.keras and discriminator.keras, checkpoints/ with
both networks and both optimisers' state, config.json, history.csv, TensorBoard logs in logs/, and samples/
(the same latent vectors every time, so epochs can be compared by ear).
"""

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cli import (RunSettings, config_parser, non_negative_int, positive_float, positive_int, quiet_tensorflow,
                 report_skipped, run)
from run import (lower_learning_rate, resolve_config, restore_optimizer_state, restore_or_build, save_model,
                 save_optimizer_state, time_limit_note, write_json)
from run.distribute import report_lost_workers, start_distribution

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "speech" / "demo.wav"
SHAPE_SETTINGS = ("slice_length", "latent_dim", "model_dim", "loss", "phase_shuffle", "sample_rate")


@dataclass
class GANConfig(RunSettings):
    """Defaults of a GAN run; every field is also a command-line flag."""

    train: str = str(DEMO_CLIP)
    sample_rate: Optional[int] = None
    slice_length: int = 16384
    latent_dim: int = 100
    model_dim: int = 64
    loss: str = "wgan-gp"
    phase_shuffle: int = 2
    epochs: int = 4
    steps_per_epoch: int = 5
    batch_size: int = 4
    learning_rate: float = 1e-4
    sample_every: int = 2
    sample_clips: int = 4


HELP = {
    "train": "training audio: a file or a folder searched recursively, each file at least a quarter of a clip; "
             "default: the bundled 40 s speech clip",
    "sample_rate": "resample all audio to this rate in Hz; default: the first training file's rate",
    "slice_length": "samples per generated clip: 4096, 8192, 16384, 32768 or 65536",
    "latent_dim": "size of the latent vector z",
    "model_dim": "width multiplier of both networks (WaveGAN's d)",
    "loss": "wgan-gp (gradient penalty 10, 5 critic steps per generator step) or bce (cross-entropy)",
    "phase_shuffle": "phase-shuffle radius in the discriminator (0: off)",
    "epochs": "epochs to train",
    "steps_per_epoch": "generator steps per epoch",
    "batch_size": "clips per step (each critic step of wgan-gp draws its own batch)",
    "learning_rate": "Adam learning rate of both networks (beta 0.5, 0.9)",
    "sample_every": "write samples every N epochs (0: never)",
    "sample_clips": "clips per sample file (fixed latent vectors)",
}
TYPES = {"sample_rate": positive_int, "slice_length": positive_int, "latent_dim": positive_int,
         "model_dim": positive_int, "phase_shuffle": non_negative_int, "epochs": positive_int,
         "steps_per_epoch": positive_int, "batch_size": positive_int, "learning_rate": positive_float,
         "sample_every": non_negative_int, "sample_clips": positive_int}
CHOICES = {"loss": ("wgan-gp", "bce"), "slice_length": (4096, 8192, 16384, 32768, 65536)}


def build_parser():
    return config_parser(GANConfig, "train_gan.py", __doc__, HELP, TYPES, CHOICES,
                         defaults_shown={"train": "bundled clip"})


def critic_steps(config):
    """Discriminator steps per generator step of a config (see `models.critic_steps`)."""
    import models

    return models.critic_steps(config.loss)


def build_gan(config, generator=None, discriminator=None):
    """The compiled `WaveGAN` of a config, around given (restored) networks or fresh ones."""
    import models

    return models.build_wavegan(config.latent_dim, config.model_dim, config.slice_length, config.sample_rate,
                                config.phase_shuffle, config.loss, config.learning_rate, generator, discriminator)


def load_training_audio(config):
    """The training audio, refusing what is too short to learn clips from (`AudioError`, exit 2).

    Files shorter than a slice are padded with silence, so a file must hold at least a quarter of a slice (the
    rest of its clips is then at most three quarters silence), and the audio as a whole at least one slice.
    """
    from data.audio import AudioError, load_audio

    quarter = config.slice_length // 4
    train = load_audio(config.train, config.sample_rate, min_samples=quarter, skip_bad_files=True,
                       too_short_for=f"a quarter of a clip of --slice-length {config.slice_length}")
    report_skipped(train)
    if train.num_samples < config.slice_length:
        raise AudioError(f"{config.train}: {train.num_samples} samples in all is less than one clip "
                         f"(--slice-length {config.slice_length}); give more audio or a shorter --slice-length")
    return train


def main(argv=None):
    config, run_dir = resolve_config(GANConfig, vars(build_parser().parse_args(argv)), "gan", SHAPE_SETTINGS)
    train = load_training_audio(config)  # before anything slow: bad audio fails in a second
    config.sample_rate = train.sample_rate
    quiet_tensorflow()
    cluster = start_distribution(config.distribute)  # before TensorFlow runs anything; waits for every worker
    cluster.check_batch(config.batch_size)

    import keras
    import numpy as np

    import models  # noqa: F401  (registers the custom layers before checkpoints load)
    from callbacks import SaveAudio, Throughput
    from data.frames import FrameGenerator
    from run import fit_run

    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(config.precision)
    slices = FrameGenerator(train.signals, config.slice_length, config.batch_size * critic_steps(config),
                            config.steps_per_epoch, mode="slice", seed=config.seed)

    def save(gan, folder):
        save_model(gan.generator, folder / "generator.keras")
        save_model(gan.discriminator, folder / "discriminator.keras")
        save_optimizer_state(folder / "optimizers.npz", {"d": gan.d_optimizer, "g": gan.g_optimizer})
        np.save(folder / "latent_seed.npy", np.asarray(gan.latent_seed.state))

    def restore(folder):
        with cluster.scope():
            gan = build_gan(config, keras.saving.load_model(folder / "generator.keras"),
                            keras.saving.load_model(folder / "discriminator.keras"))
        restore_optimizer_state(folder / "optimizers.npz", {
            "d": (gan.d_optimizer, gan.discriminator.trainable_variables),
            "g": (gan.g_optimizer, gan.generator.trainable_variables)})
        gan.latent_seed.state.assign(np.load(folder / "latent_seed.npy"))
        return gan

    def lower(gan):
        return lower_learning_rate(config, folder, (gan.d_optimizer, gan.g_optimizer))

    gan, start = restore_or_build(config, run_dir, cluster, restore, lambda: build_gan(config))

    folder = cluster.output_folder(run_dir)  # the run folder; a temporary one on a worker other than the chief
    folder.mkdir(parents=True, exist_ok=True)
    parameters = {"generator": gan.generator.count_params(), "discriminator": gan.discriminator.count_params()}
    write_json(folder / "config.json", {**dataclasses.asdict(config), "trainer": "gan", "parameters": parameters,
                                         "slice_seconds": config.slice_length / config.sample_rate,
                                         "train_files": [str(f) for f in train.files],
                                         "train_seconds": train.seconds})
    print(f"run folder: {run_dir}" + ("" if cluster.chief else " (written by the chief)"))
    if cluster.kind != "none":
        print(cluster.describe())
    print(f"training audio: {train.seconds:.1f} s in {len(train.files)} file(s) at {config.sample_rate} Hz; "
          f"clips of {config.slice_length} samples ({config.slice_length / config.sample_rate:.2f} s)")
    print(f"WaveGAN ({config.loss}): generator {parameters['generator']:,} and discriminator "
          f"{parameters['discriminator']:,} parameters", flush=True)

    # The same latent vectors every epoch (and after a resume), so samples are comparable.
    latents = np.random.default_rng(config.seed).uniform(-1, 1, (config.sample_clips, config.latent_dim))
    samples = SaveAudio(run_dir / "samples", config.sample_rate, every=config.sample_every, mode="gan",
                        latents=latents.astype(np.float32))
    gan = fit_run(gan, slices, run_dir=folder, epochs=config.epochs, save=save, restore=restore,
                  callbacks=[Throughput(config.batch_size, unit="clips")],
                  after_checkpoint=[samples] if cluster.chief else [],
                  loss_keys=("d_loss", "g_loss"), time_limit=config.time_limit,
                  on_nan=config.on_nan, lower_learning_rate=lower,
                  resume_command=cluster.resume_command(f"python train_gan.py --resume --output-dir {run_dir}"),
                  verbose=1 if sys.stdout.isatty() else 2, distribution=cluster, batch_groups=critic_steps(config),
                  start=start)
    if not cluster.finish(gan, run_dir):
        return run_dir
    save_model(gan.generator, run_dir / "generator.keras")
    save_model(gan.discriminator, run_dir / "discriminator.keras")
    note = time_limit_note(run_dir, config.epochs, "train_gan.py")
    if note:
        print(note)
    print(f"saved {run_dir / 'generator.keras'}; generate clips with:\n"
          f"  python generate.py {run_dir / 'generator.keras'} --num 8 --output-dir clips/")
    return run_dir


if __name__ == "__main__":
    run(report_lost_workers(main), "train_gan.py")
