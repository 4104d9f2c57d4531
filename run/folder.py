"""The run folder's policy: where a run goes, what `--resume` continues, and the settings saved in config.json.

A run folder holds one run. A fresh run refuses a folder that already holds one; a resumed run takes its
settings from the folder's config.json (flags given again override them, except those that fix the model's
shape) and continues from its latest checkpoint.
"""

import dataclasses
import json
import time
from pathlib import Path

from data.files import write_json
from run.checkpoints import latest_checkpoint
from run.errors import RunFolderError


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


def resolve_config(config_class, given, prefix, shape_settings):
    """The config of a run: `given` settings over the config's defaults, or with `--resume` over the run's saved
    config.json.

    Resuming with a different value of any of `shape_settings` is refused: the checkpoint cannot hold it.

    Args:
        config_class: the trainer's config dataclass (a `cli.RunSettings`).
        given: `{name: value}` of the settings the user gave (the flags typed, not the defaults).
        prefix: the name of a default run folder, `runs/<prefix>-<timestamp>`.
        shape_settings: the settings a resumed run must keep.

    Returns:
        `(config, run_dir)`.

    Raises:
        RunFolderError: a fresh run in a folder that holds one, or a resume with nothing to resume.

    Example:

    >>> given = vars(parser.parse_args(["--resume", "--output-dir", "runs/speech"]))
    >>> config, run_dir = resolve_config(WaveNetConfig, given, "wavenet", ("layers", "stacks"))
    """
    given = dict(given)
    if not given.get("resume"):
        config = config_class(**given)
        run_dir = new_run_dir(config.output_dir, prefix)
        if (run_dir / "checkpoints" / "latest.json").exists():
            raise RunFolderError(f"{run_dir} already holds a run: continue it with --resume, or choose another "
                                 "--output-dir")
        return config, run_dir
    if not given.get("output_dir"):
        raise RunFolderError("--resume needs --output-dir, the run folder to continue")
    run_dir = Path(given["output_dir"])
    saved_path = run_dir / "config.json"
    if not (run_dir / "checkpoints" / "latest.json").is_file() or not saved_path.is_file():
        raise RunFolderError(f"{run_dir}: no checkpoint to resume from (checkpoints/latest.json, config.json)")
    saved = json.loads(saved_path.read_text())
    for name in shape_settings:
        if name in given and given[name] != saved.get(name):
            raise RunFolderError(f"cannot resume {run_dir} with --{name.replace('_', '-')} {given[name]}: "
                                 f"the run was trained with {saved.get(name)}")
    fields = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{**{k: v for k, v in saved.items() if k in fields}, **given}), run_dir


def checkpoint_to_resume(config, run_dir):
    """`(folder, state)` of the checkpoint a `--resume` run continues from, or `None` for a fresh run.

    Raises:
        RunFolderError: the run already trained `--epochs` epochs.
    """
    if not config.resume:
        return None
    found = latest_checkpoint(run_dir)
    if found and found[1]["epoch"] >= config.epochs:
        raise RunFolderError(f"{run_dir} already trained {found[1]['epoch']} epochs; ask for more with --epochs")
    return found


def lower_learning_rate(config, run_dir, optimizers):
    """Divides the run's learning rate by 10 in `config`, in each optimiser and in config.json; returns it.

    config.json is rewritten so that a resumed run goes on at the lowered rate.
    """
    config.learning_rate *= 0.1
    for optimizer in optimizers:
        optimizer.learning_rate.assign(config.learning_rate)
    write_json(Path(run_dir) / "config.json", {**json.loads((Path(run_dir) / "config.json").read_text()),
                                               "learning_rate": config.learning_rate})
    return config.learning_rate
