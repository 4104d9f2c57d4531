"""Train a convolutional GAN: a WaveGAN that generates fixed-length clips like your recordings, optionally one
class at a time, or a GAN vocoder that turns log-mel spectrograms into audio in one parallel pass.

    python train_gan.py --train my_audio/ --sample-rate 16000 --epochs 200
    python train_gan.py                          # the bundled speech clip, a few minutes on a CPU
    python train_gan.py --train voices/ --labels folders       # one class per subfolder; generate.py --class NAME
    python train_gan.py --train speech/ --condition mel        # a GAN vocoder (iSTFT or MelGAN generator)

The run folder (default runs/gan-<timestamp>/) gets generator.keras and discriminator.keras, checkpoints/ with
both networks and both optimisers' state, config.json, history.csv, TensorBoard logs in logs/ (curves and the
samples as audio), and samples/ (WaveGAN: the same latent vectors every time, so epochs can be compared by ear;
vocoder: the resynthesis of the first seconds of the training audio, beside original.wav).

WaveGAN flags (--slice-length, --latent-dim, --model-dim, --loss, --phase-shuffle, --pack, --labels,
--class-channels)
and vocoder flags (--segment-frames, --generator, --generator-channels, --discriminator-channels, --stft-weight,
--feature-weight, --adversarial-weight, --adversarial-start, --mel-*) are refused in the other mode.
"""

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cli import (MEL_HELP, MEL_SHAPE_SETTINGS, MEL_TYPES, SCHEDULE_CHOICES, SCHEDULE_HELP, SCHEDULE_TYPES, MelFlags,
                 RunSettings, UsageError, config_parser, momentum, non_negative_float, non_negative_int,
                 positive_float, positive_int, quiet_tensorflow, report_skipped, resolve_mel_settings, run)
from data.features import ISTFT_LAYOUTS
from run import (check_resumed_classes, lower_learning_rate, resolve_config, restore_optimizer_state,
                 restore_or_build, save_model, save_optimizer_state, time_limit_note, write_json)
from run.distribute import report_lost_workers, start_distribution

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "speech" / "demo.wav"
SHAPE_SETTINGS = ("slice_length", "latent_dim", "model_dim", "loss", "phase_shuffle", "pack", "sample_rate", "labels",
                  "class_channels", "generator", "generator_channels", "generator_blocks", "linear_context",
                  "phase_iterations",
                  "generation_phase_iterations", "phase_momentum", "istft_layout", "phase_head", "mel_projection",
                  "discriminator_channels",
                  *MEL_SHAPE_SETTINGS)
WAVEGAN_ONLY = ("slice_length", "latent_dim", "model_dim", "loss", "phase_shuffle", "pack", "labels",
                "class_channels", "sample_clips")
ISTFT_ONLY = ("generator_blocks", "linear_context", "phase_iterations", "generation_phase_iterations",
              "phase_momentum", "istft_layout", "phase_head", "phase_weight", "mel_projection", "magnitude_weight")
VOCODER_ONLY = ("segment_frames", "generator", "generator_channels", *ISTFT_ONLY, "discriminator_channels",
                "stft_weight", "feature_weight", "adversarial_weight", "adversarial_start", "sample_seconds",
                *MEL_SHAPE_SETTINGS[1:])
# Defaults that depend on the mode: the WaveGAN's, and the vocoder's by generator (MelGAN: HiFi-GAN's learning rate;
# iSTFT: Vocos' 5e-4, the better of 2e-4 and 5e-4 in a 4-minute screen, README "GAN vocoder"; 8 Griffin-Lim
# iterations in training, better on every measure in 30 minutes, and 16 when generating, better again at 120 times
# real time, README "The three vocoders side by side"; with the momentum of fast Griffin-Lim and the frames of the
# spectrogram's own STFT, better STOI and spectral convergence, the same log-spectral distance; then the magnitudes
# trained directly by the magnitude loss instead of the STFT loss, a linear term and the mel projection, and no
# ConvNeXt blocks, which learned the training audio and not held-out audio: README "The three vocoders side by side").
MODE_DEFAULTS = {"wavegan": {"batch_size": 4, "learning_rate": 1e-4},
                 "melgan": {"batch_size": 8, "learning_rate": 2e-4, "generator_channels": 128, "phase_iterations": 0,
                            "generation_phase_iterations": 0, "phase_momentum": 0.0, "phase_weight": 0.0,
                            "mel_projection": 0, "magnitude_weight": 0.0, "stft_weight": 45.0},
                 "istft": {"batch_size": 8, "learning_rate": 5e-4, "generator_channels": 128, "generator_blocks": 0,
                           "linear_context": 2, "phase_iterations": 8,
                           "generation_phase_iterations": 16, "phase_momentum": 0.99, "istft_layout": "mel",
                           "phase_head": "direct", "phase_weight": 0.0, "mel_projection": 5,
                           "magnitude_weight": 45.0, "stft_weight": 0.0}}
# The mel projection needs the mel layout: with --istft-layout vocos its default is 0.
VOCOS_DEFAULTS = {"mel_projection": 0}
# A resumed run whose config.json predates these settings was trained with these values.
PREDATED = {"generator": "melgan", "generator_blocks": 8, "linear_context": 0, "adversarial_start": 0,
            "phase_iterations": 0, "generation_phase_iterations": 0, "phase_momentum": 0.0, "istft_layout": "vocos",
            "phase_head": "direct", "phase_weight": 0.0, "pack": 1, "mel_projection": 0, "magnitude_weight": 0.0}


@dataclass
class GANConfig(MelFlags, RunSettings):
    """Defaults of a GAN run; every field is also a command-line flag."""

    train: str = str(DEMO_CLIP)
    sample_rate: Optional[int] = None
    condition: str = "none"
    slice_length: int = 16384
    latent_dim: int = 100
    model_dim: int = 64
    loss: str = "wgan-gp"
    phase_shuffle: int = 2
    pack: int = 1
    labels: Optional[str] = None
    class_channels: int = 16
    segment_frames: int = 64
    generator: str = "istft"
    generator_channels: Optional[int] = None
    generator_blocks: Optional[int] = None
    linear_context: Optional[int] = None
    phase_iterations: Optional[int] = None
    generation_phase_iterations: Optional[int] = None
    phase_momentum: Optional[float] = None
    istft_layout: Optional[str] = None
    phase_head: Optional[str] = None
    phase_weight: Optional[float] = None
    mel_projection: Optional[int] = None
    magnitude_weight: Optional[float] = None
    discriminator_channels: int = 16
    stft_weight: Optional[float] = None
    feature_weight: float = 2.0
    adversarial_weight: float = 1.0
    adversarial_start: int = 100_000
    epochs: int = 4
    steps_per_epoch: int = 5
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_steps: Optional[int] = None
    decay_floor: float = 0.05
    sample_every: int = 2
    sample_clips: int = 4
    sample_seconds: float = 2.0


HELP = {
    **MEL_HELP,
    "train": "training audio: a file or a folder searched recursively, each file at least a quarter of a clip "
             "(vocoder: one segment); default: the bundled 40 s speech clip",
    "condition": "none: a WaveGAN that makes clips from noise; mel: a GAN vocoder, log-mel spectrogram to audio",
    "labels": "WaveGAN conditioned on a class per file: 'folders' (each subfolder of the --train folder is a class) "
              "or a CSV of path,label rows (paths relative to the CSV; then leave out --train)",
    "class_channels": "size of each class's learned vector, joined to the latent vector (with --labels)",
    "segment_frames": "vocoder: spectrogram frames per training segment (x the hop: its samples)",
    "generator": "vocoder: melgan (transposed convolutions up to the sample rate) or istft (Vocos: layers at the "
                 "frame rate predicting each frame's STFT, then the inverse STFT)",
    "generator_channels": "vocoder: channels of the generator's first layer (melgan: halved at each upsampling; "
                          "istft: the width of the first convolution and every block); None: 128",
    "generator_blocks": "vocoder, istft: ConvNeXt blocks (0: none; a convolution over the frames, then the heads); "
                        "None: 0",
    "linear_context": "vocoder, istft: a linear term in the log-mel frames within this many either side of each "
                      "frame (and in the filterbank inverse's log-magnitudes) added to the magnitudes, unnormalised "
                      "(0: none); None: 2",
    "phase_iterations": "vocoder, istft: Griffin-Lim iterations inside the generator that make its predicted frames' "
                        "phases agree before the inverse STFT, trained through (0: none); None: 8 for istft",
    "generation_phase_iterations": "vocoder, istft: the Griffin-Lim iterations when generating (samples, generate.py); "
                                   "None: 16 for istft",
    "phase_momentum": "vocoder, istft: momentum of those iterations (fast Griffin-Lim, as librosa's; 0: plain); "
                      "None: 0.99",
    "istft_layout": "vocoder, istft: the frames it predicts: mel (the spectrogram's own FFT and window) or vocos "
                    "(FFT and window 4 x hop, as before); None: mel",
    "phase_head": "vocoder, istft: how it predicts each bin's phase: direct (one output per bin) or parallel "
                  "(APNet's: the angle of a learned complex number); None: direct",
    "phase_weight": "vocoder, istft: weight of APNet's anti-wrapping phase losses between the predicted phases "
                    "(before the Griffin-Lim iterations) and the real audio's STFT phases; None: 0 (off)",
    "mel_projection": "vocoder, istft (mel layout): multiplicative updates that rescale the corrected magnitudes "
                      "so their mel spectrogram is the input's, keeping each bin's shape within its bands; "
                      "None: 5 (0 with --istft-layout vocos)",
    "magnitude_weight": "vocoder, istft: weight of the mean absolute difference between the predicted "
                        "log-magnitudes (before the Griffin-Lim iterations) and the real audio's; None: 45 for istft",
    "discriminator_channels": "vocoder: channels of each discriminator's first layer (then x2, x4, x8)",
    "stft_weight": "vocoder: weight of the multi-resolution STFT loss on the audio; None: 45 for melgan, 0 for "
                   "istft (its magnitude loss instead; then, until the discriminators join, a step skips the "
                   "Griffin-Lim iterations and the inverse STFT)",
    "feature_weight": "vocoder: weight of feature matching within the adversarial loss",
    "adversarial_weight": "vocoder: weight of the adversarial loss (0: the spectral losses only, no discriminators)",
    "adversarial_start": "vocoder: generator steps on the spectral losses alone before the discriminators join "
                         "(Parallel WaveGAN's warm start; they are not run until then)",
    "sample_seconds": "vocoder: seconds of training audio resynthesised for each sample",
    "sample_rate": "resample all audio to this rate in Hz; default: the first training file's rate",
    "slice_length": "samples per generated clip: 4096, 8192, 16384, 32768 or 65536",
    "latent_dim": "size of the latent vector z",
    "model_dim": "width multiplier of both networks (WaveGAN's d)",
    "loss": "wgan-gp (gradient penalty 10, 5 critic steps per generator step) or bce (cross-entropy)",
    "phase_shuffle": "phase-shuffle radius in the discriminator (0: off)",
    "pack": "clips the discriminator scores together (PacGAN): 2 or more makes a generator that gives every clip "
            "the same sound easier to tell from real audio (unconditional only; a divisor of --batch-size)",
    "epochs": "epochs to train",
    "steps_per_epoch": "generator steps per epoch",
    "batch_size": "clips (vocoder: segments) per step (each critic step of wgan-gp draws its own batch); "
                  "None: 4 for a WaveGAN, 8 for a vocoder",
    "learning_rate": "Adam learning rate of both networks (WaveGAN: beta 0.5, 0.9; vocoder: 0.8, 0.99); "
                     "None: 1e-4 for a WaveGAN, 5e-4 for the istft vocoder, 2e-4 for the melgan one",
    **SCHEDULE_HELP,
    "sample_every": "write samples every N epochs (0: never)",
    "sample_clips": "clips per sample file (fixed latent vectors)",
}
TYPES = {"sample_rate": positive_int, "slice_length": positive_int, "latent_dim": positive_int,
         "model_dim": positive_int, "phase_shuffle": non_negative_int, "pack": positive_int, "epochs": positive_int,
         "steps_per_epoch": positive_int, "batch_size": positive_int, "learning_rate": positive_float,
         "sample_every": non_negative_int, "sample_clips": positive_int, "class_channels": positive_int,
         "segment_frames": positive_int, "generator_channels": positive_int,
         "generator_blocks": non_negative_int, "linear_context": non_negative_int,
         "phase_iterations": non_negative_int,
         "generation_phase_iterations": non_negative_int, "phase_momentum": momentum,
         "phase_weight": non_negative_float, "mel_projection": non_negative_int,
         "magnitude_weight": non_negative_float,
         "discriminator_channels": positive_int,
         "stft_weight": non_negative_float, "feature_weight": non_negative_float,
         "adversarial_weight": non_negative_float, "adversarial_start": non_negative_int,
         "sample_seconds": positive_float, **SCHEDULE_TYPES, **MEL_TYPES}
CHOICES = {"loss": ("wgan-gp", "bce"), "slice_length": (4096, 8192, 16384, 32768, 65536),
           "condition": ("none", "mel"), "generator": ("istft", "melgan"), "istft_layout": ISTFT_LAYOUTS,
           "phase_head": ("direct", "parallel"),  # models.PHASE_HEADS (models imports TensorFlow: not at start-up)
           "schedule": SCHEDULE_CHOICES}


def build_parser():
    return config_parser(GANConfig, "train_gan.py", __doc__, HELP, TYPES, CHOICES,
                         defaults_shown={"train": "bundled clip"})


def critic_steps(config):
    """Discriminator steps per generator step of a config (see `models.critic_steps`); 1 for a vocoder."""
    import models

    return 1 if config.condition == "mel" else models.critic_steps(config.loss)


def build_gan(config, mel, class_names, generator=None, discriminator=None):
    """The compiled GAN of a config (`VocoderGAN` with `mel` settings, else `WaveGAN`), around given (restored)
    networks or fresh ones."""
    import models

    if mel is not None:
        return models.build_vocoder_gan(
            mel, config.generator_channels, config.discriminator_channels, config.learning_rate,
            generator_blocks=config.generator_blocks, linear_context=config.linear_context,
            stft_weight=config.stft_weight, feature_weight=config.feature_weight,
            adversarial_weight=config.adversarial_weight, generator=generator, discriminator=discriminator,
            generator_kind=config.generator, adversarial_start=config.adversarial_start,
            phase_iterations=config.phase_iterations, generation_phase_iterations=config.generation_phase_iterations,
            phase_momentum=config.phase_momentum, istft_layout=config.istft_layout, phase_head=config.phase_head,
            phase_weight=config.phase_weight, mel_projection=config.mel_projection,
            magnitude_weight=config.magnitude_weight)
    return models.build_wavegan(config.latent_dim, config.model_dim, config.slice_length, config.sample_rate,
                                config.phase_shuffle, config.loss, config.learning_rate, generator, discriminator,
                                class_names=class_names, class_channels=config.class_channels, pack=config.pack)


def resolve(argv=None):
    """`(config, run_dir)` from the command line, refusing flags of the other mode (WaveGAN or vocoder)."""
    given = vars(build_parser().parse_args(argv))
    config, run_dir = resolve_config(GANConfig, given, "gan", SHAPE_SETTINGS, predated=PREDATED)
    vocoder = config.condition == "mel"
    wrong = [name for name in (WAVEGAN_ONLY if vocoder else VOCODER_ONLY) if name in given]
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        raise UsageError(f"{flags}: {'a WaveGAN' if vocoder else 'a vocoder'} setting, not used with --condition "
                         f"{config.condition}; leave {'it' if len(wrong) == 1 else 'them'} out")
    for name in ISTFT_ONLY:
        if vocoder and given.get(name) and config.generator != "istft":
            raise UsageError(f"--{name.replace('_', '-')}: a setting of the istft generator, not of --generator "
                             f"{config.generator}")
    if config.pack > 1 and config.labels:
        raise UsageError(f"--pack {config.pack}: packing scores clips of any classes together; it needs an "
                         "unconditional WaveGAN (leave out --labels or --pack)")
    if config.labels and config.labels != "folders" and not config.resume and config.train != str(DEMO_CLIP):
        raise UsageError(f"--labels {config.labels} lists the training files; leave out --train {config.train}")
    defaults = MODE_DEFAULTS[config.generator if vocoder else "wavegan"]
    if vocoder and config.generator == "istft" and config.istft_layout == "vocos":
        defaults = {**defaults, **VOCOS_DEFAULTS}
    for name, value in defaults.items():
        if getattr(config, name) is None:
            setattr(config, name, value)
    if vocoder and not (config.stft_weight or config.magnitude_weight or config.phase_weight) and (
            config.adversarial_start or not config.adversarial_weight):
        raise UsageError("the generator would learn nothing " + (
            "before the discriminators join: give a spectral loss (--stft-weight, --magnitude-weight or "
            "--phase-weight) or --adversarial-start 0" if config.adversarial_weight else
            "without discriminators (--adversarial-weight 0): give a spectral loss (--stft-weight, "
            "--magnitude-weight or --phase-weight)"))
    return config, run_dir


def spectral_losses(config):
    """The vocoder's spectral losses with their weights, as the run reports them ("magnitude x 45", ...)."""
    return ", ".join(f"{name} x {weight:g}" for name, weight in (
        ("STFT", config.stft_weight), ("magnitude", config.magnitude_weight), ("phase", config.phase_weight)) if weight)


def load_training_audio(config):
    """The training audio, refusing what is too short to learn from (`AudioError`, exit 2).

    WaveGAN: files shorter than a slice are padded with silence, so a file must hold at least a quarter of a slice
    (the rest of its clips is then at most three quarters silence), and the audio as a whole at least one slice.
    Vocoder: each file must hold one training segment (`--segment-frames` x the hop, plus a hop).
    """
    from data.audio import AudioError, load_audio
    from data.features import samples_in
    from data.labels import load_labelled_audio

    if config.condition == "mel":
        rate = config.sample_rate or _first_rate(config.train)
        least = (config.segment_frames + 1) * samples_in(config.mel_hop_ms, rate)
        train = load_audio(config.train, config.sample_rate, min_samples=least, skip_bad_files=True,
                           too_short_for=f"one training segment ({config.segment_frames} frames, --segment-frames)")
        report_skipped(train)
        return train
    quarter = config.slice_length // 4
    too_short = f"a quarter of a clip of --slice-length {config.slice_length}"
    if config.labels:
        train = load_labelled_audio(config.labels, config.train, config.sample_rate, min_samples=quarter,
                                    too_short_for=too_short)
    else:
        train = load_audio(config.train, config.sample_rate, min_samples=quarter, skip_bad_files=True,
                           too_short_for=too_short)
    report_skipped(train)
    if train.num_samples < config.slice_length:
        raise AudioError(f"{config.train}: {train.num_samples} samples in all is less than one clip "
                         f"(--slice-length {config.slice_length}); give more audio or a shorter --slice-length")
    return train


def _first_rate(path):
    """The sample rate of the first audio file of `path` (the rate a corpus is read at by default)."""
    import soundfile as sf

    from data.audio import find_audio_files

    for file in find_audio_files(path):
        try:
            return sf.info(str(file)).samplerate
        except Exception:  # unreadable: load_audio names it
            continue
    return 1


def check_istft_window(config, mel):
    """Refuses a spectrogram window the istft generator's mel layout cannot invert (more than
    `data.features.MAX_WINDOW_HOPS` hops, the builder's own rule) and segments too short for the phase loss, which
    leaves out the frames at each end whose FFT reaches past the segment; checked here before TensorFlow loads."""
    from data.features import MAX_WINDOW_HOPS, istft_frame_sizes, stft_edge_frames

    if mel is None or config.generator != "istft":
        return
    if config.phase_weight or config.magnitude_weight:
        fft, _ = istft_frame_sizes(mel, config.istft_layout)
        shortest = 2 * stft_edge_frames(fft, mel.hop_length) + 1
        if config.segment_frames < shortest:
            loss = "phase loss (--phase-weight)" if config.phase_weight else "magnitude loss (--magnitude-weight)"
            raise UsageError(f"--segment-frames {config.segment_frames}: the {loss} needs segments of at least "
                             f"{shortest} frames")
    if config.istft_layout != "mel":
        if config.mel_projection:
            raise UsageError(f"--mel-projection {config.mel_projection}: needs --istft-layout mel (a band of the "
                             "spectrogram sums its own FFT's bins)")
        return
    if mel.win_length > MAX_WINDOW_HOPS * mel.hop_length:
        raise UsageError(f"--mel-window-ms {config.mel_window_ms:g}: the istft generator's mel layout needs a "
                         f"window of at most {MAX_WINDOW_HOPS} hops ({MAX_WINDOW_HOPS * config.mel_hop_ms:g} ms); "
                         f"shorten it or give --istft-layout vocos")


def main(argv=None):
    config, run_dir = resolve(argv)
    train = load_training_audio(config)  # before anything slow: bad audio fails in a second
    config.sample_rate = train.sample_rate
    mel = resolve_mel_settings(config, config.sample_rate)
    check_istft_window(config, mel)
    class_names = tuple(train.class_names or ()) if config.labels else ()
    check_resumed_classes(config, run_dir, class_names)
    quiet_tensorflow()
    cluster = start_distribution(config.distribute)  # before TensorFlow runs anything; waits for every worker
    cluster.check_batch(config.batch_size, config.pack)  # (pack is 1 for a vocoder: a WaveGAN setting)

    import keras
    import numpy as np

    import models  # noqa: F401  (registers the custom layers before checkpoints load)
    from callbacks import SaveAudio, Throughput
    from data.features import log_mel
    from data.frames import FrameGenerator, frame_conditioning
    from run import fit_run
    from run.callbacks import schedule_callbacks

    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(config.precision)
    if mel:
        hop = mel.hop_length
        clip = train.signals[0][:max(2 * hop, int(round(config.sample_seconds * config.sample_rate))) // hop * hop]
        frames = FrameGenerator(train.signals, config.segment_frames * hop, config.batch_size,
                                config.steps_per_epoch, mode="vocoder", seed=config.seed,
                                **frame_conditioning(train, False, mel))
    else:
        frames = FrameGenerator(train.signals, config.slice_length, config.batch_size * critic_steps(config),
                                config.steps_per_epoch, mode="slice", seed=config.seed,
                                labels=train.labels if class_names else None)

    def save(gan, folder):
        save_model(gan.generator, folder / "generator.keras")
        save_model(gan.discriminator, folder / "discriminator.keras")
        save_optimizer_state(folder / "optimizers.npz", {"d": gan.d_optimizer, "g": gan.g_optimizer})
        if not mel:
            np.save(folder / "latent_seed.npy", np.asarray(gan.latent_seed.state))

    def restore(folder):
        with cluster.scope():
            gan = build_gan(config, mel, class_names, keras.saving.load_model(folder / "generator.keras"),
                            keras.saving.load_model(folder / "discriminator.keras"))
        restore_optimizer_state(folder / "optimizers.npz", {
            "d": (gan.d_optimizer, gan.discriminator.trainable_variables),
            "g": (gan.g_optimizer, gan.generator.trainable_variables)})
        if not mel:
            gan.latent_seed.state.assign(np.load(folder / "latent_seed.npy"))
        return gan

    def lower(gan):
        return lower_learning_rate(config, folder, (gan.d_optimizer, gan.g_optimizer))

    gan, start = restore_or_build(config, run_dir, cluster, restore, lambda: build_gan(config, mel, class_names))

    folder = cluster.output_folder(run_dir)  # the run folder; a temporary one on a worker other than the chief
    folder.mkdir(parents=True, exist_ok=True)
    parameters = {"generator": gan.generator.count_params(), "discriminator": gan.discriminator.count_params()}
    write_json(folder / "config.json", {**dataclasses.asdict(config), "trainer": "gan", "parameters": parameters,
                                         "class_names": list(class_names), "mel": mel.to_dict() if mel else None,
                                         "slice_seconds": config.slice_length / config.sample_rate,
                                         "train_files": [str(f) for f in train.files],
                                         "train_seconds": train.seconds})
    print(f"run folder: {run_dir}" + ("" if cluster.chief else " (written by the chief)"))
    if cluster.kind != "none":
        print(cluster.describe())
    if mel:
        print(f"training audio: {train.seconds:.1f} s in {len(train.files)} file(s) at {config.sample_rate} Hz; "
              f"segments of {config.segment_frames} frames ({config.segment_frames * hop} samples)")
        print(f"GAN vocoder on log-mel spectrograms ({mel.describe()}): {config.generator} generator "
              f"{parameters['generator']:,} and discriminators {parameters['discriminator']:,} parameters; "
              + (f"discriminators join at step {config.adversarial_start:,}" if config.adversarial_weight
                 else "no discriminators") + "; spectral losses: " + spectral_losses(config), flush=True)
    else:
        print(f"training audio: {train.seconds:.1f} s in {len(train.files)} file(s) at {config.sample_rate} Hz; "
              f"clips of {config.slice_length} samples ({config.slice_length / config.sample_rate:.2f} s)")
        if class_names:
            print(f"classes ({len(class_names)}, --labels {config.labels}): {', '.join(class_names)}")
        print(f"WaveGAN ({config.loss}): generator {parameters['generator']:,} and discriminator "
              f"{parameters['discriminator']:,} parameters"
              f"{f', the discriminator scoring {config.pack} clips at once' if config.pack > 1 else ''}", flush=True)

    logs = run_dir / "logs" / "samples"
    if mel:
        samples = SaveAudio(run_dir / "samples", config.sample_rate, every=config.sample_every, mode="vocoder",
                            mel=log_mel(clip, mel), original=clip, log_dir=logs)
    else:
        # The same latent vectors (and classes) every epoch and after a resume, so samples are comparable.
        latents = np.random.default_rng(config.seed).uniform(-1, 1, (config.sample_clips, config.latent_dim))
        samples = SaveAudio(run_dir / "samples", config.sample_rate, every=config.sample_every, mode="gan",
                            latents=latents.astype(np.float32), classes=class_names or None,
                            max_classes=config.sample_clips, log_dir=logs)
    train_seconds = train.seconds
    train.signals.clear()  # the frame generator holds the audio now
    gan = fit_run(gan, frames, run_dir=folder, epochs=config.epochs, save=save, restore=restore,
                  callbacks=[Throughput(config.batch_size * (config.segment_frames * mel.hop_length if mel else 1),
                                        unit="samples" if mel else "clips"), *schedule_callbacks(config, folder)],
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
    if mel:
        print(f"saved {run_dir / 'generator.keras'} ({train_seconds:.0f} s of training audio); vocode with:\n"
              f"  python generate.py {run_dir / 'generator.keras'} --mel-from speech.wav --output resynth.wav")
    else:
        example = f" --class {class_names[0]}" if class_names else ""
        print(f"saved {run_dir / 'generator.keras'}; generate clips with:\n"
              f"  python generate.py {run_dir / 'generator.keras'}{example} --num 8 --output-dir clips/")
    return run_dir


if __name__ == "__main__":
    run(report_lost_workers(main), "train_gan.py")
