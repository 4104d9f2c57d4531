"""The run folder's policy: where a run goes, what `--resume` continues, and the settings saved in config.json.

A run folder holds one run. A fresh run refuses a folder that already holds one; a resumed run takes its
settings from the folder's config.json (flags given again override them, except those that fix the model's
shape) and continues from its latest checkpoint that loads. A run folder must be one where files can be
created, and a run of one trainer is never resumed by the other.
"""

import dataclasses
import json
import re
import sys
import time
import zipfile
from pathlib import Path

from data.files import folder_problem, write_json
from run.checkpoints import POINTER, latest_checkpoint
from run.distribute import multi_worker_requested, writes_run_folder
from run.errors import RunFolderError

# The trainers whose runs a folder can hold (the `prefix` of `resolve_config`, recorded as config.json's
# "trainer"): the name messages use, a file only their checkpoints hold (which tells runs made before the
# trainer was recorded), and the script that continues such a run.
TRAINERS = {"wavenet": ("WaveNet", "model.keras", "train_wavenet.py"),
            "gan": ("GAN", "generator.keras", "train_gan.py"),
            "lm": ("token language model", "lm.keras", "train_lm.py")}
CHECKPOINT_NAME = re.compile(r"epoch_(\d+)(?:_step_(\d+))?")
# Settings that describe the machines a run trained on, not the run: a resumed run takes them from its own flags
# (a multi-worker run may be resumed on one machine).
MACHINE_SETTINGS = ("distribute",)


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


def resolve_config(config_class, given, prefix, shape_settings, predated=None):
    """The config of a run: `given` settings over the config's defaults, or with `--resume` over the run's saved
    config.json.

    Resuming with a different value of any of `shape_settings` is refused: the checkpoint cannot hold it.

    Args:
        config_class: the trainer's config dataclass (a `cli.RunSettings`).
        given: `{name: value}` of the settings the user gave (the flags typed, not the defaults).
        prefix: the name of a default run folder, `runs/<prefix>-<timestamp>`.
        shape_settings: the settings a resumed run must keep.
        predated: `{name: value}` of settings newer than some runs: a resumed run whose config.json lacks one
            keeps `value` (what it trained with before the setting existed) unless it is given.

    A worker of a cluster other than its chief (`run.distribute.writes_run_folder`) only reads the run folder, so
    it does not try creating files there; it makes the other checks as the chief does, so both refuse alike.

    Returns:
        `(config, run_dir)`.

    Raises:
        RunFolderError: a fresh run in a folder that holds one, a resume with nothing to resume or of another
            trainer's run, or a run folder that is a file or cannot be written.

    Example:

    >>> given = vars(parser.parse_args(["--resume", "--output-dir", "runs/speech"]))
    >>> config, run_dir = resolve_config(WaveNetConfig, given, "wavenet", ("layers", "stacks"))
    """
    given = dict(given)
    if multi_worker_requested(given.get("distribute", "auto")) and not given.get("output_dir"):
        raise RunFolderError("a multi-worker run needs --output-dir: every worker must name the same run folder")
    if not given.get("resume"):
        config = config_class(**given)
        run_dir = new_run_dir(config.output_dir, prefix)
        if (run_dir / "checkpoints" / "latest.json").exists():
            raise RunFolderError(f"{run_dir} already holds a run: continue it with --resume, or choose another "
                                 "--output-dir")
        if writes_run_folder(config.distribute):
            check_writable(run_dir)
        return config, run_dir
    if not given.get("output_dir"):
        raise RunFolderError("--resume needs --output-dir, the run folder to continue")
    run_dir = Path(given["output_dir"])
    saved_path = run_dir / "config.json"
    if not (run_dir / "checkpoints" / "latest.json").is_file() or not saved_path.is_file():
        raise RunFolderError(f"{run_dir}: no checkpoint to resume from (checkpoints/latest.json, config.json)")
    saved = json.loads(saved_path.read_text())
    trainer = run_trainer(run_dir, saved)
    if prefix in TRAINERS and trainer in TRAINERS and trainer != prefix:
        name, _, script = TRAINERS[trainer]
        raise RunFolderError(f"{run_dir} is a {name} run, not a {TRAINERS[prefix][0]} run: resume it with {script}")
    older = {k: v for k, v in (predated or {}).items() if k not in saved}
    trained = {**older, **saved}
    for name in shape_settings:
        if name in given and given[name] != trained.get(name):
            raise RunFolderError(f"cannot resume {run_dir} with --{name.replace('_', '-')} {given[name]}: "
                                 f"the run was trained with {trained.get(name)}")
    fields = {field.name for field in dataclasses.fields(config_class)} - set(MACHINE_SETTINGS)
    config = config_class(**{**{k: v for k, v in trained.items() if k in fields}, **given})
    if writes_run_folder(config.distribute):
        check_writable(run_dir)
    return config, run_dir


def run_settings(config):
    """A run's settings as a dict, leaving out `MACHINE_SETTINGS` (what every worker of a cluster must share)."""
    return {key: value for key, value in dataclasses.asdict(config).items() if key not in MACHINE_SETTINGS}


def check_resumed_classes(config, run_dir, class_names):
    """Refuses (`RunFolderError`) to resume a run whose saved classes differ from those of the audio now: the
    model's class ids would name other classes."""
    path = Path(run_dir) / "config.json"
    if not config.resume or not path.is_file():
        return
    saved = json.loads(path.read_text()).get("class_names") or []
    if tuple(saved) != tuple(class_names):
        raise RunFolderError(f"cannot resume {run_dir}: it was trained with classes {list(saved)}, the audio now has "
                             f"{list(class_names)}")


def check_writable(run_dir):
    """Refuses a run folder that is a file, or in which (or, when missing, where) nothing can be created.

    Raises:
        RunFolderError: naming the folder and the problem.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: is a file, not a run folder; choose another --output-dir")
    problem = folder_problem(run_dir)
    if problem:
        raise RunFolderError(f"{run_dir}: cannot write the run folder there: {problem}")


def run_trainer(run_dir, saved):
    """The trainer that made a run (a key of `TRAINERS`): config.json's "trainer", or for a run made before it
    was recorded, the one whose file its latest checkpoint holds; `None` when neither tells."""
    if saved.get("trainer"):
        return saved["trainer"]
    found = latest_checkpoint(run_dir)
    for trainer, (_, marker, _) in TRAINERS.items():
        if found and (found[0] / marker).is_file():
            return trainer
    return None


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


def restore_checkpoint(run_dir, restore, found, writer=True):
    """Restores the newest checkpoint that loads, from `found` (what `checkpoint_to_resume` returned) back.

    A checkpoint whose files do not load (damaged on disk, truncated by a full disk) is passed over for the one
    before it (`write_checkpoint` keeps two), with a one-line warning on stderr; `latest.json` is then pointed
    (atomically) at the one that loaded, so the run continues from its epoch and step, and `history.csv` drops
    the rows past it, as for any resume.

    Args:
        run_dir: the run folder.
        restore: `restore(folder)` returns the model of a checkpoint folder, raising if it cannot.
        found: `(folder, state)` of the latest checkpoint.
        writer: whether this process may point `latest.json` at the checkpoint that loaded (a worker other than
            the chief reads the run folder only).

    Returns:
        `(model, state)`: the restored model and the state (epoch, step) of the checkpoint it came from.

    Raises:
        RunFolderError: no checkpoint loads; the message names each one and why.
    """
    failures = []
    for folder, state in [found, *_older_checkpoints(run_dir, found[1])]:
        try:
            model = restore(folder)
        except Exception as error:  # a damaged file raises anything from BadZipFile to ValueError
            failures.append(_load_failure(folder, error))
            continue
        if failures:
            if writer:
                write_json(Path(run_dir) / "checkpoints" / POINTER, {**state, "time": time.time()})
            where = f"epoch {state['epoch']}" + (f", step {state['step']}" if state["step"] else "")
            print(f"warning: {'; '.join(failures)}; resuming from the checkpoint before it, {folder.name} ({where})",
                  file=sys.stderr, flush=True)
        return model, state
    raise RunFolderError(f"{run_dir}: no checkpoint loads: {'; '.join(failures)}")


def restore_or_build(config, run_dir, cluster, restore, build):
    """The model a run starts from, and the state (`{"epoch", "step"}`) it starts at: restored from the checkpoint
    that `--resume` continues (or the one before it, see `restore_checkpoint`), else built fresh, either way in the
    scope of `cluster` (a `run.distribute.Distribution`).

    First the workers of a cluster compare their settings and starting checkpoint (`check_same_start`): before
    any variable is made, since each is a collective there, and before the chief may re-point `latest.json` at an
    older checkpoint, so that workers started differently refuse together.

    Args:
        config: the run's config.
        run_dir: the run folder.
        cluster: the `Distribution` the run trains under.
        restore: `restore(folder)` returns the model of a checkpoint folder (in the cluster's scope).
        build: `build()` returns a fresh compiled model; it is called in the cluster's scope.
    """
    found = checkpoint_to_resume(config, run_dir)
    fresh = {"epoch": 0, "step": 0}
    cluster.check_same_start(run_settings(config), found[1] if found else fresh)
    if found:
        return restore_checkpoint(run_dir, restore, found, writer=cluster.chief)
    with cluster.scope():
        return build(), fresh


def _older_checkpoints(run_dir, state):
    """`(folder, state)` of every checkpoint folder older than `state`, newest first."""
    older = []
    for folder in (Path(run_dir) / "checkpoints").iterdir():
        match = CHECKPOINT_NAME.fullmatch(folder.name)
        if match and folder.is_dir():
            epoch, step = int(match[1]), int(match[2] or 0)
            if (epoch, step) < (state["epoch"], state["step"]):
                older.append((folder, {"folder": folder.name, "epoch": epoch, "step": step}))
    return sorted(older, key=lambda item: (item[1]["epoch"], item[1]["step"]), reverse=True)


def _load_failure(folder, error):
    """Why a checkpoint folder did not load, naming the damaged file when a zip check finds it (`.keras` and
    `.npz` files are zip archives, with a checksum per member)."""
    for path in (sorted(folder.glob("*.keras")) + sorted(folder.glob("*.npz")) if folder.is_dir() else []):
        if not zipfile.is_zipfile(path):
            return f"{path} is damaged (not a zip archive)"
        try:
            with zipfile.ZipFile(path) as archive:
                bad_member = archive.testzip()
        except Exception:  # damaged headers raise BadZipFile, or worse
            return f"{path} is damaged (its zip headers cannot be read)"
        if bad_member:
            return f"{path} is damaged ({bad_member} in it fails its checksum)"
    reason = (str(error).strip().splitlines() or [""])[0][:200]
    return f"checkpoint {folder} does not load ({type(error).__name__}: {reason})"


def time_limit_note(run_dir, epochs, script):
    """Where a run that `--time-limit` stopped early ended, and the command that continues it; `None` for a
    run whose latest checkpoint reached `epochs`."""
    found = latest_checkpoint(run_dir)
    if not found or found[1]["epoch"] >= epochs:
        return None
    state = found[1]
    where = (f"{state['step']} step{'s' if state['step'] != 1 else ''} into epoch {state['epoch'] + 1}" if state["step"]
             else f"after epoch {state['epoch']}")
    return (f"--time-limit stopped the run {where} of {epochs}; continue it with:\n"
            f"  python {script} --resume --output-dir {run_dir}")


def lower_learning_rate(config, run_dir, optimizers):
    """Divides the run's learning rate by 10 in `config`, in each optimiser and in config.json; returns it.

    config.json is rewritten so that a resumed run goes on at the lowered rate.
    """
    config.learning_rate *= 0.1
    for optimizer in optimizers:
        optimizer.learning_rate.assign(config.learning_rate)
    update_config(run_dir, learning_rate=config.learning_rate)
    return config.learning_rate


def update_config(run_dir, **settings):
    """Rewrites the run's config.json (atomically) with `settings` changed, so that a resume goes on with them."""
    path = Path(run_dir) / "config.json"
    write_json(path, {**json.loads(path.read_text()), **settings})
