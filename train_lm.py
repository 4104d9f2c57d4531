"""Train a token language model over log-mel frames: structure longer than a WaveNet's receptive field.

    python train_lm.py --train my_audio/ --epochs 50
    python train_lm.py                                   # the bundled speech clip, a minute or two on a CPU
    python train_lm.py --train piano.wav --codebook-size 512 --context 2048 --time-limit 30

Each log-mel frame of the audio (the shared mel settings, --mel-*) becomes one token, its nearest entry in a
k-means codebook fitted on the training frames (--codebook-size entries); a causal Transformer (rotary attention
over a band of --context tokens: 1024 tokens are 12.8 s at the default 12.5 ms hop) learns to predict the next
token. The codebook is saved inside the model, so lm.keras alone tokenises a prime and turns tokens back into
frames:

    python generate.py runs/lm-.../lm.keras --seconds 10 --output out.wav                  # Griffin-Lim
    python generate.py runs/lm-.../lm.keras --prime start.wav --vocoder vocoder.keras --output out.wav
    python evaluate.py runs/lm-.../lm.keras held_out.wav          # bits per token beside n-gram baselines

The run folder (default runs/lm-<timestamp>/) gets lm.keras (the weights of the epoch with the lowest validation
loss: early stopping, as a token model of a few minutes of audio overfits; best.keras while training),
checkpoints/ (the latest model and optimiser), config.json,
history.csv (bits per token, training and validation), TensorBoard logs in logs/ (curves, and the samples as
audio), and samples/: every --sample-every epochs, --sample-seconds of continuation of the first seconds of the
validation audio, rendered by Griffin-Lim.
"""

import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cli import (MEL_HELP, MEL_SHAPE_SETTINGS, MEL_TYPES, MelFlags, RunSettings, UsageError, config_parser,
                 non_negative_float, non_negative_int, positive_float, positive_int, quiet_tensorflow, report_skipped,
                 resolve_mel_settings, run)
from run import lower_learning_rate, resolve_config, restore_or_build, save_model, time_limit_note, write_json
from run.distribute import report_lost_workers, start_distribution

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "speech" / "demo.wav"
SHAPE_SETTINGS = ("codebook_size", "context", "model_dim", "layers", "heads", "ffn_dim", "sample_rate",
                  *MEL_SHAPE_SETTINGS[1:])
# A loss (nats per token) beyond this is a diverged run: a model that knows nothing scores ln(codebook size).
DIVERGED_LOSS = 1e4
# Seconds of validation audio that samples continue.
PRIME_SECONDS = 2.0


@dataclass
class LMConfig(MelFlags, RunSettings):
    """Defaults of a token language model run; every field is also a command-line flag."""

    train: str = str(DEMO_CLIP)
    validate: Optional[str] = None
    sample_rate: Optional[int] = None
    codebook_size: int = 256
    context: int = 1024
    model_dim: int = 128
    layers: int = 4
    heads: int = 4
    ffn_dim: Optional[int] = None
    dropout: float = 0.2
    offsets: int = 4
    epochs: int = 4
    steps_per_epoch: int = 25
    validation_steps: int = 4
    batch_size: int = 8
    learning_rate: float = 1e-3
    sample_every: int = 2
    sample_seconds: float = 4.0
    temperature: float = 1.0


HELP = {
    **MEL_HELP,
    "train": "training audio: a file or a folder searched recursively; default: the bundled 40 s speech clip",
    "validate": "validation audio (file or folder); default: the last 10%% of the training audio",
    "sample_rate": "resample all audio to this rate in Hz; default: the first training file's rate",
    "codebook_size": "tokens: k-means entries fitted on the normalised log-mel frames of the training audio",
    "context": "tokens per training window, and the band each attention layer sees (x the hop: seconds)",
    "model_dim": "width of the Transformer",
    "layers": "Transformer blocks",
    "heads": "attention heads per block (--model-dim must split into heads of an even width)",
    "ffn_dim": "hidden width of each block's feed-forward part; None: 4 x --model-dim",
    "dropout": "dropout rate while training",
    "offsets": "tokenise the training audio this many times, each with its frames shifted by a further 1/N of a "
               "hop: N different token sequences of the same audio (augmentation; 1: none)",
    "epochs": "epochs to train",
    "steps_per_epoch": "training batches per epoch",
    "validation_steps": "validation batches per epoch (the same windows every epoch)",
    "batch_size": "windows of --context tokens per batch",
    "learning_rate": "Adam learning rate",
    "sample_every": "write a sample every N epochs (0: never)",
    "sample_seconds": "seconds of each sample (a continuation of validation audio, rendered by Griffin-Lim)",
    "temperature": "sampling temperature of the samples (0: most likely token)",
}
TYPES = {"sample_rate": positive_int, "codebook_size": positive_int, "context": positive_int,
         "model_dim": positive_int, "layers": positive_int, "heads": positive_int, "ffn_dim": positive_int,
         "dropout": non_negative_float, "offsets": positive_int, "epochs": positive_int, "steps_per_epoch": positive_int,
         "validation_steps": positive_int, "batch_size": positive_int, "learning_rate": positive_float,
         "sample_every": non_negative_int, "sample_seconds": positive_float, "temperature": non_negative_float,
         **MEL_TYPES}


def build_parser():
    return config_parser(LMConfig, "train_lm.py", __doc__, HELP, TYPES, {}, defaults_shown={"train": "bundled clip"})


def resolve(argv=None):
    """`(config, run_dir)` from the command line, refusing shapes that cannot be built."""
    config, run_dir = resolve_config(LMConfig, vars(build_parser().parse_args(argv)), "lm", SHAPE_SETTINGS)
    if config.model_dim % config.heads or (config.model_dim // config.heads) % 2:
        raise UsageError(f"--model-dim {config.model_dim} must split into --heads {config.heads} heads of an even "
                         "width")
    if not config.dropout < 1:
        raise UsageError(f"--dropout {config.dropout:g} must be below 1")
    if config.codebook_size < 2:
        raise UsageError(f"--codebook-size {config.codebook_size} must be at least 2")
    return config, run_dir


def load_corpora(config):
    """Training and validation audio (`--validate`, else the last 10% of the training audio). Raises `AudioError`
    (exit 2) on unusable audio; lengths in tokens are checked once the hop is known (`check_tokens`)."""
    from data.audio import load_audio, split_validation

    train = load_audio(config.train, config.sample_rate, skip_bad_files=True)
    report_skipped(train)
    if config.validate:
        validation = load_audio(config.validate, train.sample_rate, skip_bad_files=True)
        report_skipped(validation)
    else:
        train, validation = split_validation(train, 0.1)
    return train, validation


def check_tokens(config, corpus, mel, what):
    """Refuses audio whose longest file gives fewer tokens than one context plus its target (training), or fewer
    than two tokens (validation); returns the tokens of its longest file."""
    from data.audio import AudioError

    longest = max((len(signal) for signal in corpus.signals), default=0)
    tokens = 1 + longest // mel.hop_length if longest else 0
    needed = config.context + 1 if what == "training" else 2
    if tokens < needed:
        name = config.validate if what == "validation" and config.validate else config.train
        least = f"one context (--context {config.context}) plus one" if what == "training" else "two"
        hint = "or a smaller --context" if what == "training" else "(held out: --validate, or the last 10%)"
        raise AudioError(f"{name}: the longest {what} file gives {tokens} tokens ({longest / mel.sample_rate:.2f} s "
                         f"at one token per {1000.0 * mel.hop_length / mel.sample_rate:g} ms), fewer than {least}; "
                         f"give longer audio {hint}")
    return tokens


def main(argv=None):
    config, run_dir = resolve(argv)
    train, validation = load_corpora(config)  # before anything slow: bad audio fails in a second
    config.sample_rate = train.sample_rate
    mel = resolve_mel_settings(config, config.sample_rate)
    check_tokens(config, train, mel, "training")
    longest_validation = check_tokens(config, validation, mel, "validation")
    quiet_tensorflow()
    cluster = start_distribution(config.distribute)  # before TensorFlow runs anything; waits for every worker
    cluster.check_batch(config.batch_size)

    import keras
    import numpy as np

    import models
    from callbacks import CrossEntropyBits, KeepBest, SaveAudio, Throughput
    from data.features import log_mel
    from data.frames import FrameGenerator
    from data.tokens import encode_frames, fit_codebook
    from run import fit_run

    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(config.precision)
    # Frames shifted by fractions of a hop tokenise the same audio differently: more sequences to learn from.
    shifts = sorted({round(i * mel.hop_length / config.offsets) for i in range(config.offsets)})
    train_frames = [log_mel(signal[shift:], mel) for shift in shifts for signal in train.signals
                    if len(signal) > shift]

    def compile_lm(lm):
        # No gradient clipping: Keras clips each replica's share before the replicas' gradients are summed, so
        # a clipped run under --distribute would not be the run on one device.
        lm.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return lm

    def build():
        lm = models.build_token_lm(mel, config.codebook_size, config.context, model_dim=config.model_dim,
                                   layers=config.layers, heads=config.heads, ffn_dim=config.ffn_dim,
                                   dropout=config.dropout)
        try:
            codebook = fit_codebook(np.concatenate(train_frames[:len(train.signals)]), config.codebook_size,
                                    seed=config.seed)
        except ValueError as error:  # too few distinct frames
            raise UsageError(f"--codebook-size {config.codebook_size}: {error}; give more audio or a smaller "
                             "codebook") from None
        models.set_codebook(lm, codebook)
        return compile_lm(lm)

    def save(lm, folder):
        if not lm.optimizer.built:  # so that even the epoch-0 checkpoint restores a whole optimiser
            with cluster.scope():
                lm.optimizer.build(lm.trainable_variables)
        save_model(lm, folder / "lm.keras")

    def restore(folder):
        with cluster.scope():
            restored = keras.saving.load_model(folder / "lm.keras")
        restored.optimizer.learning_rate.assign(config.learning_rate)
        return restored

    def lower(current):
        return lower_learning_rate(config, folder, (current.optimizer,))

    lm, start = restore_or_build(config, run_dir, cluster, restore, build)
    codebook = models.codebook_of(lm)  # a resumed run's own codebook
    train_tokens = [encode_frames(frames, *codebook) for frames in train_frames]
    validation_tokens = [encode_frames(log_mel(signal, mel), *codebook) for signal in validation.signals]
    train_seconds, train_count = train.seconds, sum(len(t) for t in train_tokens[:len(train.signals)])
    train_frames.clear()
    frames = FrameGenerator(train_tokens, config.context, config.batch_size, config.steps_per_epoch, mode="tokens",
                            seed=config.seed)
    # Validation windows: as long as the context, or as the longest validation file allows.
    validation_frames = FrameGenerator(validation_tokens, min(config.context, longest_validation - 1),
                                       config.batch_size, config.validation_steps, mode="tokens",
                                       seed=config.seed + 1, reshuffle=False)

    folder = cluster.output_folder(run_dir)  # the run folder; a temporary one on a worker other than the chief
    folder.mkdir(parents=True, exist_ok=True)
    hop_seconds = mel.hop_length / mel.sample_rate
    used = np.bincount(np.concatenate(train_tokens[:len(train.signals)]), minlength=config.codebook_size)
    write_json(folder / "config.json", {
        **dataclasses.asdict(config), "trainer": "lm", "parameters": lm.count_params(), "mel": mel.to_dict(),
        "context_seconds": config.context * hop_seconds, "tokens_per_second": 1.0 / hop_seconds,
        "train_files": [str(f) for f in train.files], "train_seconds": train_seconds, "train_tokens": train_count,
        "validate_files": [str(f) for f in validation.files], "validate_seconds": validation.seconds})
    print(f"run folder: {run_dir}" + ("" if cluster.chief else " (written by the chief)"))
    if cluster.kind != "none":
        print(cluster.describe())
    print(f"training audio: {train_seconds:.1f} s in {len(train.files)} file(s) at {config.sample_rate} Hz: "
          f"{train_count:,} tokens ({1 / hop_seconds:g} per second; {int((used > 0).sum())} of "
          f"{config.codebook_size} codebook entries used; x{len(shifts)} with shifted frames); validation: "
          f"{validation.seconds:.1f} s")
    print(f"log-mel frames: {mel.describe()}")
    print(f"Transformer: {config.layers} blocks of width {config.model_dim}, {config.heads} heads, "
          f"{lm.count_params():,} parameters, context {config.context} tokens "
          f"({config.context * hop_seconds:.1f} s)", flush=True)

    prime = max(validation.signals, key=len)[:int(PRIME_SECONDS * config.sample_rate)]
    samples = SaveAudio(run_dir / "samples", config.sample_rate, every=config.sample_every, mode="lm",
                        seconds=config.sample_seconds, prime=prime, temperature=config.temperature, seed=config.seed,
                        log_dir=run_dir / "logs" / "samples")
    keep_best = KeepBest(run_dir / "best.keras", "val_loss", best=lowest_logged(run_dir, "val_loss", start["epoch"]))
    train.signals.clear()
    lm = fit_run(lm, frames, run_dir=folder, epochs=config.epochs, save=save, restore=restore,
                 callbacks=[Throughput(config.batch_size * config.context, unit="tokens"),
                            CrossEntropyBits("bits_per_token")],
                 after_checkpoint=[keep_best, samples] if cluster.chief else [], validation_data=validation_frames,
                 time_limit=config.time_limit, on_nan=config.on_nan, lower_learning_rate=lower,
                 loss_limit=DIVERGED_LOSS,
                 resume_command=cluster.resume_command(f"python train_lm.py --resume --output-dir {run_dir}"),
                 verbose=1 if sys.stdout.isatty() else 2, distribution=cluster, start=start)
    if not cluster.finish(lm, run_dir):
        return run_dir
    best = run_dir / "best.keras"
    # Early stopping's choice: the epoch of the lowest validation loss (the checkpoints keep the latest).
    save_model(keras.saving.load_model(best) if best.is_file() else lm, run_dir / "lm.keras")
    if best.is_file():
        print(f"lm.keras: the epoch of the lowest validation loss, {keep_best.best / np.log(2.0):.3f} bits/token "
              f"(the last epoch's weights are in checkpoints/)")
    note = time_limit_note(run_dir, config.epochs, "train_lm.py")
    if note:
        print(note)
    model_path = shlex.quote(str(run_dir / "lm.keras"))
    print(f"saved {run_dir / 'lm.keras'}; generate audio with:\n  python generate.py {model_path} --seconds 10 "
          f"--output generated.wav\nscore it against n-gram baselines with:\n  python evaluate.py {model_path} "
          "held_out.wav")
    return run_dir


def lowest_logged(run_dir, name, before_epoch):
    """The lowest value of column `name` in a run's history.csv over the epochs before `before_epoch` (those a
    resume keeps; a row logged after the checkpoint it resumes from is dropped by `run.RunLog`); inf without one."""
    import csv
    import math

    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return math.inf
    with open(path, newline="") as handle:
        values = [float(row[name]) for row in csv.DictReader(handle)
                  if row.get(name) not in (None, "") and int(row["epoch"]) < before_epoch]
    return min((v for v in values if math.isfinite(v)), default=math.inf)


if __name__ == "__main__":
    run(report_lost_workers(main), "train_lm.py")
