"""Train a WaveNet on your own recordings.

    python train_wavenet.py --train my_audio.wav          # a file, or a folder searched recursively
    python train_wavenet.py                               # the bundled 40 s speech clip, a few minutes on a CPU
    python train_wavenet.py --train voices/ --labels folders        # one class per subfolder (speaker, instrument)
    python train_wavenet.py --train speech/ --condition mel         # a vocoder: conditioned on log-mel spectrograms

The run folder (default runs/wavenet-<timestamp>/) gets model.keras, checkpoints/ to resume from, config.json,
history.csv, TensorBoard logs in logs/, and listenable samples in samples/.
"""

import dataclasses
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cli import (MEL_HELP, MEL_SHAPE_SETTINGS, MEL_TYPES, SCHEDULE_CHOICES, SCHEDULE_HELP, SCHEDULE_TYPES, MelFlags,
                 RunSettings, UsageError, config_parser, momentum, non_negative_float, non_negative_int, parse_speeds,
                 positive_float, positive_int, quiet_tensorflow, report_skipped, resolve_mel_settings, run, speed_list)
from run import (check_resumed_classes, lower_learning_rate, resolve_config, restore_or_build, save_model,
                 time_limit_note, write_json)
from run.distribute import report_lost_workers, start_distribution

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "speech" / "demo.wav"
# Settings that fix the model's shape: a resumed run must keep them.
SHAPE_SETTINGS = ("head", "loss", "layers", "stacks", "residual_channels", "skip_channels", "sample_rate", "labels",
                  "class_channels", "mel_channels", *MEL_SHAPE_SETTINGS,
                  "input", "ema", "clip_norm")  # (the checkpoint's optimiser holds the last two)
# A loss (nats per sample) beyond this is a diverged run, treated like NaN: a model that knows nothing scores
# ln 256 = 5.5, and no sane run comes within orders of magnitude of it.
DIVERGED_LOSS = 1e4
# The recipe of runs whose config.json predates these settings (#16): resuming such a run keeps it.
RECIPE_BEFORE_16 = {"input": "scalar", "schedule": "constant", "warmup_steps": 0, "ema": 0.0}


@dataclass
class WaveNetConfig(MelFlags, RunSettings):
    """Defaults of a WaveNet run; every field is also a command-line flag (`--steps-per-epoch` and so on)."""

    train: str = str(DEMO_CLIP)
    validate: Optional[str] = None
    head: str = "classifier"
    input: str = "embedded"
    loss: Optional[str] = None
    sample_rate: Optional[int] = None
    epochs: int = 8
    steps_per_epoch: int = 40
    validation_steps: int = 8
    batch_size: int = 4
    frame_size: int = 1024
    layers: int = 10
    stacks: int = 2
    residual_channels: int = 64
    skip_channels: int = 128
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    warmup_steps: int = 50
    decay_steps: Optional[int] = None
    decay_floor: float = 0.05
    ema: float = 0.99
    clip_norm: Optional[float] = None
    speeds: str = "1"
    sample_every: int = 4
    sample_seconds: float = 1.0
    temperature: float = 1.0
    labels: Optional[str] = None
    class_channels: int = 16
    condition: str = "none"
    mel_channels: int = 64


HELP = {**MEL_HELP,
    "train": "training audio: a file or a folder searched recursively (WAV, FLAC, OGG, ...); "
             "default: the bundled 40 s speech clip",
    "validate": "validation audio (file or folder); default: the last 10%% of the training audio",
    "head": "classifier: 256 mu-law classes; regressor: a continuous distribution of the next sample",
    "input": "scalar: each input sample as its value; embedded: as its mu-law code, with a learned vector per code "
             "(the WaveNet paper's one-hot input)",
    "loss": "crossentropy (classifier); logistic-mixture or mse (regressor); default: the head's first",
    "sample_rate": "resample all audio to this rate in Hz; default: the first training file's rate",
    "epochs": "epochs to train",
    "steps_per_epoch": "training batches per epoch",
    "validation_steps": "validation batches per epoch (the same windows every epoch)",
    "batch_size": "windows per batch",
    "frame_size": "samples per window; every sample of a window is a training target",
    "layers": "dilated layers per stack (dilations 1, 2, ..., 2^(layers-1))",
    "stacks": "stacks of dilated layers",
    "residual_channels": "channels of the residual stream",
    "skip_channels": "channels of the skip connections",
    "learning_rate": "Adam learning rate (the peak of --schedule cosine)",
    **SCHEDULE_HELP,
    "ema": "momentum of an exponential moving average of the weights (0: none; 0.99 averages about the last 100 "
           "steps): validation, samples and the saved model.keras use the average, checkpoints keep both",
    "clip_norm": "clip each step's gradients to this global norm (default: no clipping)",
    "speeds": "speed perturbation: train on the training audio played at each of these comma-separated speeds "
              "(0.9,1,1.1: three times the audio, slower and lower, as recorded, faster and higher), against "
              "overfitting a small corpus; each speed adds a copy of the audio (and of its features) in memory; "
              "validation audio is never perturbed; 1: as recorded",
    "sample_every": "write a sample every N epochs (0: never)",
    "sample_seconds": "length of each sample in seconds",
    "temperature": "sampling temperature of the samples (0: most likely)",
    "labels": "condition on a class per file: 'folders' (each subfolder of the --train folder is a class; audio "
              "directly in it is skipped) or a CSV of path,label rows (paths relative to the CSV; then leave out "
              "--train); validation is the last 10%% of each class",
    "class_channels": "size of each class's learned vector (with --labels)",
    "condition": "none, or mel: condition on log-mel spectrograms of the audio (a vocoder)",
    "mel_channels": "channels of the upsampled spectrogram inside the model",
}
TYPES = {"sample_rate": positive_int, "epochs": positive_int, "steps_per_epoch": positive_int,
         "validation_steps": positive_int, "batch_size": positive_int, "frame_size": positive_int,
         "layers": positive_int, "stacks": positive_int, "residual_channels": positive_int,
         "skip_channels": positive_int, "learning_rate": positive_float, **SCHEDULE_TYPES, "ema": momentum,
         "clip_norm": positive_float, "speeds": speed_list, "sample_every": non_negative_int,
         "sample_seconds": positive_float, "temperature": non_negative_float, "class_channels": positive_int,
         "mel_channels": positive_int, **MEL_TYPES}
CHOICES = {"head": ("classifier", "regressor"), "loss": ("crossentropy", "logistic-mixture", "mse"),
           "condition": ("none", "mel"), "schedule": SCHEDULE_CHOICES,
           "input": ("scalar", "embedded")}


def build_parser():
    return config_parser(WaveNetConfig, "train_wavenet.py", __doc__, HELP, TYPES, CHOICES,
                         defaults_shown={"train": "bundled clip"})


def resolve(argv=None):
    """`(config, run_dir)` from the command line (and, with `--resume`, the run's saved config)."""
    return resolve_config(WaveNetConfig, vars(build_parser().parse_args(argv)), "wavenet", SHAPE_SETTINGS,
                          predated=RECIPE_BEFORE_16)


def load_corpora(config):
    """Loads training and validation audio: `(train, validation, (longest file, its samples))`, the longest
    training file as read (before validation is held out). With `--labels` both corpora are labelled (validation:
    the last 10% of each class, or `--validate` labelled the same way). Raises `AudioError` (exit 2) on anything
    unusable."""
    from data.audio import AudioError, load_audio, split_validation
    from data.labels import FOLDERS, load_labelled_audio

    window = config.frame_size + 1
    if config.labels:
        train = load_labelled_audio(config.labels, config.train, config.sample_rate, min_samples=window)
    else:
        train = load_audio(config.train, config.sample_rate, min_samples=window, skip_bad_files=True)
    report_skipped(train)
    longest = max(range(len(train.signals)), key=lambda i: len(train.signals[i]))
    longest = (train.files[longest], len(train.signals[longest]))
    if config.validate:
        if config.labels and config.labels != FOLDERS and not config.validate.lower().endswith(".csv"):
            raise UsageError(f"--validate {config.validate}: with --labels FILE.csv, validation audio is labelled "
                             "by a CSV of path,label rows too")
        if config.labels:
            validation = load_labelled_audio(config.labels if config.labels == FOLDERS else config.validate,
                                             config.validate, train.sample_rate, min_samples=window,
                                             class_names=train.class_names)
        else:
            validation = load_audio(config.validate, train.sample_rate, min_samples=window, skip_bad_files=True)
        report_skipped(validation)
    else:
        train, validation = split_validation(train, 0.1)
        if not any(len(s) >= window for s in validation.signals):
            raise AudioError(f"{config.train}: the last 10% held out for validation is shorter than one frame "
                             f"({window} samples); give --validate or a smaller --frame-size")
        if not any(len(s) >= window for s in train.signals):
            raise AudioError(f"{config.train}: shorter than one frame ({window} samples) once 10% is held out")
    return train, validation, longest


def check_lengths(config, train, validation, window):
    """Refuses audio without a whole training window of `window` samples (per class when labelled), or without
    one for validation; warns of a class that validation lacks."""
    from data.audio import AudioError

    source = config.labels if config.labels and config.labels != "folders" else config.train
    if not any(len(s) >= window for s in validation.signals):
        raise AudioError(f"{config.validate or source}: no validation audio is as long as one frame ({window} "
                         "samples, --frame-size + 1 + the mel hop - 1); give a smaller --frame-size")
    for label, name in enumerate(train.class_names or (None,)):
        mine = [s for i, s in enumerate(train.signals) if train.labels is None or train.labels[i] == label]
        if not any(len(s) >= window for s in mine):
            what = f"class '{name}'" if name is not None else "the training audio"
            raise AudioError(f"{source}: {what} has no piece as long as one frame ({window} samples) once validation "
                             "is held out; give more audio or a smaller --frame-size")
        if name is not None and not any(len(s) >= window for i, s in enumerate(validation.signals)
                                        if validation.labels[i] == label):
            print(f"warning: validation has no frame of class '{name}'", file=sys.stderr)


def machine_memory():
    """Bytes of memory this process can have: the machine's, or its container's limit (cgroup v2) when lower;
    `None` where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = ""
    return min(total, int(limit)) if limit.isdigit() else total


def _count(number):
    """A sample or byte count for a message; astronomically large ones as a power of ten."""
    return f"{number:,}" if number < 10 ** 15 else f"about 10^{len(str(number)) - 1}"


def shape_problem(config, receptive_field, longest_file, longest_samples, memory_bytes):
    """Why a WaveNet of `config`'s shape cannot train on this audio and machine, or `None`.

    The rules, checked before anything is written:
    - the receptive field (stacks x (2^layers - 1) + 1 samples) must fit in the longest training file: beyond
      it the network could only ever see silence;
    - what the largest dilation costs must fit in half the machine's memory: each dilated convolution pads
      its input by its dilation, so the largest padded activation is batch x (frame + largest dilation) x
      residual channels x 4 bytes, and generation keeps receptive field x residual channels x 4 bytes of
      queues per stream.

    Args:
        config: the run's `WaveNetConfig`.
        receptive_field: the model's receptive field in samples.
        longest_file: the longest training file, for the message.
        longest_samples: its length in samples.
        memory_bytes: the machine's memory (`machine_memory()`); `None` skips the memory rule.
    """
    shape = f"--stacks {config.stacks} --layers {config.layers}"
    if receptive_field > longest_samples:
        return (f"{longest_file}: {_count(longest_samples)} samples cannot hold the receptive field of {shape} "
                f"({_count(receptive_field)} samples = stacks x (2^layers - 1) + 1), which must fit in the longest "
                "training file; use fewer --layers or --stacks")
    padded = config.batch_size * (config.frame_size + 2 ** (config.layers - 1)) * config.residual_channels * 4
    queues = receptive_field * config.residual_channels * 4
    if memory_bytes and padded + queues > memory_bytes / 2:
        return (f"{shape}: the largest dilation needs {(padded + queues) / 2 ** 30:.1f} GiB (padded activations "
                "batch x (frame + dilation) x residual channels x 4 bytes, plus the generation queues), more than "
                f"half of this machine's {memory_bytes / 2 ** 30:.1f} GiB; use fewer --layers, or a smaller "
                "--batch-size or --residual-channels")
    return None


def main(argv=None):
    from data.audio import speed_perturb

    config, run_dir = resolve(argv)
    # (A resumed run's config holds the --train of its first run, perhaps of another checkout: checked then.)
    if config.labels and config.labels != "folders" and not config.resume and config.train != str(DEMO_CLIP):
        raise UsageError(f"--labels {config.labels} lists the training files; leave out --train {config.train}")
    train, validation, longest = load_corpora(config)  # before anything slow: bad audio fails in a second
    quiet_tensorflow()
    try:
        distribution = distribution_check(config)
    except ValueError as error:
        raise UsageError(str(error)) from None
    config.sample_rate = train.sample_rate
    mel = resolve_mel_settings(config, config.sample_rate, ("--frame-size", config.frame_size))
    hop = mel.hop_length if mel else 1
    # The recording, for config.json and the start lines (not the corpus: its signals must not outlive the frames).
    train_files, recorded_seconds, recorded_labels = list(train.files), train.seconds, train.labels
    train = speed_perturb(train, parse_speeds(config.speeds))  # after validation is held out: it stays as recorded
    check_lengths(config, train, validation, config.frame_size + hop)
    class_names = tuple(train.class_names)
    check_resumed_classes(config, run_dir, class_names)

    import keras

    import models
    from callbacks import CrossEntropyBits, SaveAudio, Throughput
    from data.features import log_mel
    from data.frames import FrameGenerator, frame_conditioning
    from run import fit_run
    from run.callbacks import AveragedWeights, schedule_callbacks

    rf = models.receptive_field(config.stacks, config.layers)
    problem = shape_problem(config, rf, *longest, machine_memory())
    if problem:
        raise UsageError(problem)
    # Every check of the request is made by now, alike on every worker; then the strategy starts (before
    # TensorFlow runs anything), waiting for every worker of a cluster.
    cluster = start_distribution(config.distribute)
    cluster.check_batch(config.batch_size)
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(config.precision)
    # Features are computed once per file (piece); the frame generators only slice them.
    train_frames = FrameGenerator(train.signals, config.frame_size, config.batch_size, config.steps_per_epoch,
                                  mode=config.head, seed=config.seed,
                                  **frame_conditioning(train, bool(class_names), mel))
    played_seconds = train.seconds
    train.signals.clear()  # the frame generator holds the audio now; no second copy stays alive
    validation_frames = FrameGenerator(validation.signals, config.frame_size, config.batch_size,
                                       config.validation_steps, mode=config.head, seed=config.seed + 1,
                                       reshuffle=False, **frame_conditioning(validation, bool(class_names), mel))

    def save(model, folder):
        if not model.optimizer.built:  # so that even the epoch-0 checkpoint restores a whole optimiser
            with cluster.scope():
                model.optimizer.build(model.trainable_variables)
        save_model(model, folder / "model.keras")

    def restore(folder):
        with cluster.scope():
            restored = keras.saving.load_model(folder / "model.keras")
        restored.optimizer.learning_rate.assign(config.learning_rate)
        return restored

    def lower(current):
        return lower_learning_rate(config, folder, (current.optimizer,))

    def build():
        net = models.build_wavenet(config.head, config.loss, stacks=config.stacks, layers=config.layers,
                                   residual_channels=config.residual_channels, skip_channels=config.skip_channels,
                                   sample_rate=config.sample_rate, class_names=class_names,
                                   class_channels=config.class_channels, mel=mel, mel_channels=config.mel_channels,
                                   input_embedding=config.input == "embedded")
        net.compile(optimizer=optimizer(config), loss=models.loss_for(distribution),
                    metrics=bits_metric(distribution))
        return net

    model, start = restore_or_build(config, run_dir, cluster, restore, build)

    folder = cluster.output_folder(run_dir)  # the run folder; a temporary one on a worker other than the chief
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", {
        **dataclasses.asdict(config), "trainer": "wavenet", "receptive_field": rf,
        "receptive_field_ms": 1000.0 * rf / config.sample_rate, "parameters": model.count_params(),
        "class_names": list(class_names), "mel": mel.to_dict() if mel else None,
        "train_files": [str(f) for f in train_files], "train_seconds": recorded_seconds,
        "played_seconds": played_seconds,
        "validate_files": [str(f) for f in validation.files], "validate_seconds": validation.seconds,
    })
    print(f"run folder: {run_dir}" + ("" if cluster.chief else " (written by the chief)"))
    if cluster.kind != "none":
        print(cluster.describe())
    played = "" if config.speeds == "1" else f", {played_seconds:.1f} s played at speeds {config.speeds}"
    print(f"training audio: {recorded_seconds:.1f} s in {len(train_files)} file(s) at {config.sample_rate} Hz"
          f"{played}; validation: {validation.seconds:.1f} s")
    if class_names:
        counts = [sum(1 for label in recorded_labels if label == i) for i in range(len(class_names))]
        print(f"classes ({len(class_names)}, --labels {config.labels}): "
              + ", ".join(f"{name} ({count} file{'s' if count != 1 else ''})"
                          for name, count in zip(class_names, counts)))
    if mel:
        print(f"conditioned on log-mel spectrograms: {mel.describe()}")
    print(f"WaveNet: {config.stacks} x {config.layers} layers, {model.count_params():,} parameters, "
          f"receptive field {rf} samples ({1000.0 * rf / config.sample_rate:.0f} ms)", flush=True)

    sample_args = {"classes": class_names or None}
    clip_file, suggested_class = None, (class_names[0] if class_names else None)
    if mel:  # the resynthesis of a fixed validation clip, its spectrogram computed once
        index = max(range(len(validation.signals)), key=lambda i: len(validation.signals[i]))
        signal, clip_file = validation.signals[index], validation.files[index]
        length = min(len(signal), max(2 * hop, int(round(config.sample_seconds * config.sample_rate))))
        clip = signal[:length // hop * hop]
        sample_args.update(mel=log_mel(clip, mel), original=clip)
        if class_names:  # resynthesised as the class it belongs to
            suggested_class = class_names[validation.labels[index]]
            sample_args["classes"] = [suggested_class]
    elif not class_names:
        sample_args["prime"] = next(s for s in validation.signals if len(s) > config.frame_size)[:rf]
    logged = [Throughput(config.batch_size * config.frame_size),
              *([CrossEntropyBits()] if distribution == "categorical" else [])]
    samples = SaveAudio(run_dir / "samples", config.sample_rate, every=config.sample_every,
                        seconds=config.sample_seconds, temperature=config.temperature, seed=config.seed,
                        log_dir=run_dir / "logs" / "samples", **sample_args)
    logged.extend(schedule_callbacks(config, folder))
    samplers = [samples] if cluster.chief else []
    if config.ema:  # validation and samples use the weights' average (models.AveragedAdam)
        samplers = [AveragedWeights(samplers)]
    model = fit_run(model, train_frames, run_dir=folder, epochs=config.epochs, save=save, restore=restore,
                    callbacks=logged, after_checkpoint=samplers,
                    validation_data=validation_frames, time_limit=config.time_limit,
                    on_nan=config.on_nan, lower_learning_rate=lower, loss_limit=DIVERGED_LOSS,
                    resume_command=cluster.resume_command(f"python train_wavenet.py --resume --output-dir {run_dir}"),
                    verbose=1 if sys.stdout.isatty() else 2, distribution=cluster, start=start)
    if not cluster.finish(model, run_dir):
        return run_dir
    with models.averaged_weights(model):
        save_model(model, run_dir / "model.keras")
    rows = (run_dir / "history.csv").read_text().splitlines() if (run_dir / "history.csv").is_file() else []
    if len(rows) > 1:
        last = dict(zip(rows[0].split(","), rows[-1].split(",")))
        print(f"validation: {float(last.get('val_bits_per_sample') or 'nan'):.3f} bits/sample")
    else:  # only a time limit ends a run before its first whole epoch
        print("no whole epoch was trained, so there is no validation score yet")
    note = time_limit_note(run_dir, config.epochs, "train_wavenet.py")
    if note:
        print(note)
    command = f"python generate.py {run_dir / 'model.keras'}"
    if mel:
        command += f" --mel-from {shlex.quote(str(clip_file))}"
    else:
        command += " --seconds 5"
    if suggested_class is not None:
        command += f" --class {shlex.quote(suggested_class)}"
    print(f"saved {run_dir / 'model.keras'}; generate audio with:\n  {command} --output generated.wav")
    return run_dir


def optimizer(config):
    """The run's Adam: with `--ema`, `models.AveragedAdam`; with `--clip-norm`, clipping the global norm."""
    import keras

    import models

    settings = {"learning_rate": config.learning_rate, "global_clipnorm": config.clip_norm}
    if config.ema:
        return models.AveragedAdam(ema_momentum=config.ema, **settings)
    return keras.optimizers.Adam(**settings)


def bits_metric(distribution):
    """The bits-per-sample metric of a head; none for the classifier, whose loss gives it (CrossEntropyBits)."""
    import models

    return [] if distribution == "categorical" else [models.BitsPerSample(distribution)]


def distribution_check(config):
    """The output distribution of `--head` and `--loss`; raises `ValueError` if they do not fit together."""
    from models.wavenet import distribution_for

    return distribution_for(config.head, config.loss)


if __name__ == "__main__":
    run(report_lost_workers(main), "train_wavenet.py")
