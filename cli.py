"""What the command-line scripts share: argument types, one-line errors with exit status 2, run folders."""

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

from data.audio import AudioError, replace_atomically


@dataclasses.dataclass
class RunSettings:
    """Settings every trainer has; each trainer's config dataclass extends this one."""

    precision: str = "float32"
    on_nan: str = "stop"
    time_limit: typing.Optional[float] = None
    output_dir: typing.Optional[str] = None
    seed: int = 0
    resume: bool = False


RUN_HELP = {
    "precision": "float32, or mixed precision (float16/bfloat16 compute, float32 weights and loss): "
                 "mixed_bfloat16 on CPUs with AVX-512 BF16 or AMX and on recent GPUs, mixed_float16 on NVIDIA GPUs",
    "on_nan": "on a NaN or Inf loss: stop (keeping the last good checkpoint), or lower-lr: continue from that "
              "checkpoint at a tenth of the learning rate (up to 3 times)",
    "time_limit": "stop after this many minutes of training, at the end of a step",
    "output_dir": "run folder; default: runs/<trainer>-<timestamp>",
    "seed": "random seed: the same seed repeats the run",
    "resume": "continue the run in --output-dir from its last checkpoint",
}
RUN_CHOICES = {"precision": ("float32", "mixed_bfloat16", "mixed_float16"), "on_nan": ("stop", "lower-lr")}


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


class TrainingFailed(Exception):
    """Training cannot go on (a NaN loss); the message says where and what was kept. Exit status 1."""


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; the message says how to resume. Exit status 130."""


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
    """Runs `main()`: bad input becomes one line on stderr and exit status 2, a failed training (NaN) exit
    status 1, an interrupt exit status 130 (after the trainers' checkpoint and resume hint)."""
    try:
        return main()
    except (AudioError, UsageError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingFailed as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterrupted as error:
        print(f"{prog}: {error}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def new_run_dir(output_dir, prefix):
    """The run folder: `output_dir` if given, else `runs/<prefix>-<timestamp>` in the working directory."""
    if output_dir:
        return Path(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{prefix}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("runs") / f"{prefix}-{stamp}-{suffix}"
    return path


def write_json(path, data):
    """Writes `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    replace_atomically(lambda tmp: Path(tmp).write_text(text), path)


def save_model(model, path):
    """Saves a Keras model to `path` (a `.keras` file) atomically: a crash never leaves half a file there."""
    replace_atomically(lambda tmp: model.save(tmp), path)


def config_parser(config_class, prog, description, helps, types, choices, defaults_shown=None):
    """An argument parser with one `--flag` per field of a config dataclass (a `RunSettings`), model settings
    first, then the run settings every trainer shares.

    Flags default to "not given" (argparse.SUPPRESS), so `resolve_config` can tell a flag the user typed
    from a default: a resumed run keeps its saved settings unless a flag overrides them.
    """
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    helps, choices = {**helps, **RUN_HELP}, {**choices, **RUN_CHOICES}
    types = {**types, "time_limit": positive_float, "seed": int}
    shared = [field.name for field in dataclasses.fields(RunSettings)]
    fields = sorted(dataclasses.fields(config_class), key=lambda field: field.name in shared)
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


def resolve_config(config_class, parser, argv, prefix, shape_settings):
    """Parses flags over the config's defaults; with `--resume`, over the run's saved config.json instead.

    Resuming with a different value of any of `shape_settings` is refused: the checkpoint cannot hold it.

    Returns:
        `(config, run_dir)`.
    """
    given = vars(parser.parse_args(argv))
    if not given.get("resume"):
        config = config_class(**given)
        run_dir = new_run_dir(config.output_dir, prefix)
        if (run_dir / "checkpoints" / "latest.json").exists():
            raise UsageError(f"{run_dir} already holds a run: continue it with --resume, or choose another "
                             "--output-dir")
        return config, run_dir
    if not given.get("output_dir"):
        raise UsageError("--resume needs --output-dir, the run folder to continue")
    run_dir = Path(given["output_dir"])
    saved_path = run_dir / "config.json"
    if not (run_dir / "checkpoints" / "latest.json").is_file() or not saved_path.is_file():
        raise UsageError(f"{run_dir}: no checkpoint to resume from (checkpoints/latest.json, config.json)")
    saved = json.loads(saved_path.read_text())
    for name in shape_settings:
        if name in given and given[name] != saved.get(name):
            raise UsageError(f"cannot resume {run_dir} with --{name.replace('_', '-')} {given[name]}: "
                             f"the run was trained with {saved.get(name)}")
    fields = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{**{k: v for k, v in saved.items() if k in fields}, **given}), run_dir


def report_skipped(corpus):
    """Names each unusable file of an `AudioCorpus` once, on stderr."""
    for _, reason in corpus.skipped:
        print(f"warning: skipped {reason}", file=sys.stderr)


def checkpoint_to_resume(config, run_dir):
    """`(folder, state)` of the checkpoint a `--resume` run continues from, or `None` for a fresh run.

    Raises:
        UsageError: the run already trained `--epochs` epochs.
    """
    if not config.resume:
        return None
    from callbacks.run import latest_checkpoint

    found = latest_checkpoint(run_dir)
    if found and found[1]["epoch"] >= config.epochs:
        raise UsageError(f"{run_dir} already trained {found[1]['epoch']} epochs; ask for more with --epochs")
    return found


def lower_learning_rate(config, run_dir, optimizers):
    """Divides the run's learning rate by 10 in `config`, in each optimiser and in config.json; returns it."""
    config.learning_rate *= 0.1
    for optimizer in optimizers:
        optimizer.learning_rate.assign(config.learning_rate)
    write_json(Path(run_dir) / "config.json", {**json.loads((Path(run_dir) / "config.json").read_text()),
                                               "learning_rate": config.learning_rate})
    return config.learning_rate
