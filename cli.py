"""What the command-line scripts share: argument types and parsers, and errors printed as one line.

It imports nothing of the project at import time (`resolve_mel_settings` reads `data.features` when called): an
error raised anywhere reaches `run` with its own `exit_status`.
"""

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import typing


@dataclasses.dataclass
class RunSettings:
    """Settings every trainer has; each trainer's config dataclass extends this one."""

    precision: str = "float32"
    on_nan: str = "stop"
    time_limit: typing.Optional[float] = None
    output_dir: typing.Optional[str] = None
    seed: int = 0
    resume: bool = False
    distribute: str = "auto"


@dataclasses.dataclass
class MelFlags:
    """The log-mel settings of a trainer with `--condition mel` (`data.features.mel_settings`); a config mixin."""

    mel_bins: int = 80
    mel_hop_ms: float = 12.5
    mel_window_ms: float = 50.0
    mel_fft: typing.Optional[int] = None
    mel_fmin: float = 0.0
    mel_fmax: typing.Optional[float] = None
    mel_floor: float = 1e-5


MEL_HELP = {
    "mel_bins": "mel bins of the spectrograms (with --condition mel)",
    "mel_hop_ms": "milliseconds between spectrogram frames",
    "mel_window_ms": "spectrogram window in milliseconds",
    "mel_fft": "FFT size in samples; None: the next power of two over the window",
    "mel_fmin": "lowest mel frequency in Hz",
    "mel_fmax": "highest mel frequency in Hz; None: half the sample rate (Nyquist)",
    "mel_floor": "magnitudes are floored here before the log (below 1)",
}
# Settings that fix a mel-conditioned model's shape: a resumed run keeps them.
MEL_SHAPE_SETTINGS = ("condition", *(field.name for field in dataclasses.fields(MelFlags)))


def resolve_mel_settings(config, sample_rate, window=None):
    """The `MelSettings` of `--condition mel` at `sample_rate`, or `None`.

    Args:
        config: a config with `condition` and the `MelFlags` fields.
        sample_rate: the audio's rate in Hz.
        window: optional `(flag, samples)` that one hop must not exceed (a WaveNet's `--frame-size`).

    Raises:
        UsageError: settings that do not fit the sample rate or each other.
    """
    from data.features import mel_settings, samples_in

    if getattr(config, "condition", "mel") != "mel":  # (a token language model has no flag: always mel)
        return None
    nyquist = sample_rate / 2
    length = samples_in(config.mel_window_ms, sample_rate)
    hop = samples_in(config.mel_hop_ms, sample_rate)
    if config.mel_fft is not None and length > config.mel_fft:
        raise UsageError(f"--mel-window-ms {config.mel_window_ms:g} is {length} samples at {sample_rate} Hz, longer "
                         f"than --mel-fft {config.mel_fft}; give a larger --mel-fft or a shorter window")
    if config.mel_fmax is not None and config.mel_fmax > nyquist:
        raise UsageError(f"--mel-fmax {config.mel_fmax:g} Hz is above the Nyquist frequency ({nyquist:g} Hz at "
                         f"{sample_rate} Hz)")
    top = nyquist if config.mel_fmax is None else config.mel_fmax
    if config.mel_fmin >= top:
        raise UsageError(f"--mel-fmin {config.mel_fmin:g} Hz must be below --mel-fmax ({top:g} Hz)")
    if not config.mel_floor < 1:
        raise UsageError(f"--mel-floor {config.mel_floor:g} must be below 1")
    if window is not None and hop > window[1]:
        raise UsageError(f"--mel-hop-ms {config.mel_hop_ms:g} is {hop} samples at {sample_rate} Hz, longer than "
                         f"{window[0]} {window[1]}")
    try:
        return mel_settings(sample_rate, n_mels=config.mel_bins, hop_ms=config.mel_hop_ms,
                            window_ms=config.mel_window_ms, n_fft=config.mel_fft, fmin=config.mel_fmin,
                            fmax=config.mel_fmax, log_floor=config.mel_floor)
    except ValueError as error:
        raise UsageError(f"--mel settings: {error}") from None


RUN_HELP = {
    "precision": "float32, or mixed precision (float16/bfloat16 compute, float32 weights and loss): "
                 "mixed_bfloat16 on CPUs with AVX-512 BF16 or AMX and on recent GPUs, mixed_float16 on NVIDIA GPUs",
    "on_nan": "on a NaN or Inf loss: stop (keeping the last good checkpoint), or lower-lr: continue from that "
              "checkpoint at a tenth of the learning rate (up to 3 times)",
    "time_limit": "stop after this many minutes of training, at the end of a step",
    "output_dir": "run folder; default: runs/<trainer>-<timestamp>",
    "seed": "random seed: the same seed repeats the run",
    "resume": "continue the run in --output-dir from its last checkpoint",
    "distribute": "tf.distribute strategy: auto (multi-worker when TF_CONFIG names a cluster of several tasks or "
                  "in a Slurm job step of several tasks, mirrored when more than one GPU is visible, else none), "
                  "none, mirrored (every GPU of this machine) or multi-worker (the machines of TF_CONFIG or of a "
                  "Slurm job; run the same command on each, with the same --output-dir). --batch-size is the "
                  "global batch, shared equally by the replicas",
}
RUN_CHOICES = {"precision": ("float32", "mixed_bfloat16", "mixed_float16"), "on_nan": ("stop", "lower-lr"),
               "distribute": ("auto", "none", "mirrored", "multi-worker")}


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""

    exit_status = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread inside `sigterm_interrupts()` as Ctrl-C raises KeyboardInterrupt, so
    that `finally` blocks remove temporary files; `run` prints one line and exits with 143 (128 + SIGTERM)."""


@contextlib.contextmanager
def sigterm_interrupts():
    """Within this block SIGTERM raises `Terminated`, so a killed script cleans up as after Ctrl-C.

    (By default SIGTERM ends the process at once, leaving whatever it was writing.) A second SIGTERM during
    the clean-up is ignored. The previous handler comes back when the block ends.
    """
    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump) and exits with status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind, check, description):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {description}")
        return value

    parse.__name__ = f"{description} {kind.__name__}"
    return parse


positive_int = _number(int, lambda v: v > 0, "positive")
non_negative_int = _number(int, lambda v: v >= 0, "zero or more")
positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "positive")
non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "zero or more")
fraction = _number(float, lambda v: 0 <= v <= 1, "from 0 to 1")
momentum = _number(float, lambda v: 0 <= v < 1, "at least 0 and below 1")


def speed_list(text):
    """`--speeds`: comma-separated speeds from 0.5 to 2, each once (`0.9,1,1.1`); returned as text, normalised
    (`parse_speeds` reads it back)."""
    try:
        speeds = [float(f"{float(part):g}") for part in text.split(",")]  # as saved: 1.0000001 is 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not all(0.5 <= speed <= 2 for speed in speeds):
        raise argparse.ArgumentTypeError(f"{text!r}: each speed must be from 0.5 to 2")
    if len(set(speeds)) != len(speeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a speed twice")
    return ",".join(f"{speed:g}" for speed in speeds)


def parse_speeds(text):
    """The speeds of a `speed_list` text, as floats."""
    return tuple(float(part) for part in str(text).split(","))


# The learning-rate schedule flags of train_wavenet.py and train_gan.py (`run.callbacks.schedule_callbacks`).
SCHEDULE_HELP = {
    "schedule": "constant: --learning-rate throughout; cosine: decays from --learning-rate to --decay-floor times it "
                "over --decay-steps",
    "warmup_steps": "steps of linear warmup from --learning-rate / N up to it",
    "decay_steps": "the step at which --schedule cosine reaches its floor; default: --epochs x --steps-per-epoch, "
                   "or with --time-limit the steps the time holds (refitted each epoch to its pace, recorded in "
                   "config.json for a resume)",
    "decay_floor": "the final learning rate of --schedule cosine, a fraction of --learning-rate",
}
SCHEDULE_TYPES = {"warmup_steps": non_negative_int, "decay_steps": positive_int, "decay_floor": fraction}
SCHEDULE_CHOICES = ("constant", "cosine")


MEL_TYPES = {"mel_bins": positive_int, "mel_hop_ms": positive_float, "mel_window_ms": positive_float,
             "mel_fft": positive_int, "mel_fmin": non_negative_float, "mel_fmax": positive_float,
             "mel_floor": positive_float}


def quiet_tensorflow():
    """Imports TensorFlow without its C++ start-up chatter (oneDNN notices, CUDA probing on CPU machines).

    TensorFlow writes those lines to file descriptor 2 before its log level applies, so stderr is pointed at
    /dev/null while it loads and finds its devices; Python exceptions are raised after it is restored. Set
    TF_CPP_MIN_LOG_LEVEL to 0, 1 or 2 to see them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "3" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run(main, prog):
    """Runs `main()`, turning an exception that has an `exit_status` into its message on stderr and that status.

    Bad input (`UsageError`, `data.AudioError`, `run.RunFolderError`) exits with 2, a failed training (NaN,
    `run.TrainingFailed`) with 1, an interrupt with 130, after the trainers' checkpoint and resume hint
    (`run.TrainingInterrupted`), and SIGTERM inside `sigterm_interrupts()` with 143. The class attribute is all
    that is looked at, so this module need not import the packages that raise them. Any other exception is a
    bug and keeps its traceback.
    """
    try:
        return main()
    except Exception as error:
        status = getattr(type(error), "exit_status", None)
        if status is None:
            raise
        # 130 is a stop the user asked for, reported as what happened rather than as an error.
        print(f"{prog}: {'' if status == 130 else 'error: '}{error}", file=sys.stderr)
        sys.exit(status)
    except Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def config_parser(config_class, prog, description, helps, types, choices, defaults_shown=None):
    """An argument parser with one `--flag` per field of a config dataclass (a `RunSettings`), model settings
    first, then the mel settings (`MelFlags`) and the run settings every trainer shares.

    Flags default to "not given" (argparse.SUPPRESS), so `vars(parser.parse_args())` holds only the flags the
    user typed: `run.resolve_config` lays them over a resumed run's saved settings.
    """
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    helps, choices = {**helps, **RUN_HELP}, {**choices, **RUN_CHOICES}
    types = {**types, "time_limit": positive_float, "seed": int}
    shared = [field.name for field in dataclasses.fields(RunSettings)]
    mel = [field.name for field in dataclasses.fields(MelFlags)]
    fields = sorted(dataclasses.fields(config_class), key=lambda field: (field.name in shared, field.name in mel))
    for field in fields:
        flag = "--" + field.name.replace("_", "-")
        default = (defaults_shown or {}).get(field.name, field.default)
        if field.type is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=helps[field.name])
        else:
            parser.add_argument(flag, type=types.get(field.name, str), choices=choices.get(field.name),
                                default=argparse.SUPPRESS, help=f"{helps[field.name]} (default: {default})",
                                metavar=None if field.name in choices else field.name.upper())
    return parser


def report_skipped(corpus):
    """Names each unusable file of an `AudioCorpus` once, on stderr."""
    for _, reason in corpus.skipped:
        print(f"warning: skipped {reason}", file=sys.stderr)
