"""A run's checkpoints: folders written whole, then pointed at.

Checkpoints are folders, `checkpoints/epoch_0005/` (or `epoch_0005_step_0017/` after an interrupt mid-epoch),
written completely before `checkpoints/latest.json` is atomically replaced to point at them: whatever moment a
run is killed at, `latest.json` names a complete checkpoint. Older checkpoint folders are removed after the
switch. Every file in a checkpoint is itself written atomically (`save_model`, `save_optimizer_state`).
"""

import json
import shutil
import time
from pathlib import Path

from data import faults
from data.files import replace_atomically, write_json

POINTER = "latest.json"


def latest_checkpoint(run_dir):
    """`(folder, state)` of the run's newest complete checkpoint, or `None`."""
    pointer = Path(run_dir) / "checkpoints" / POINTER
    if not pointer.is_file():
        return None
    state = json.loads(pointer.read_text())
    return Path(run_dir) / "checkpoints" / state["folder"], state


def write_checkpoint(run_dir, save, epoch, step=0):
    """Saves a checkpoint with `save(folder)` and makes it the latest; keeps it and the one before it, and
    removes any other checkpoint folder (older ones, or one a killed run left half-written).

    Args:
        run_dir: the run folder.
        save: writes the model (and optimiser) state into the folder it is given.
        epoch: epochs completed.
        step: steps completed of epoch `epoch` (after an interrupt mid-epoch), else 0.
    """
    checkpoints = Path(run_dir) / "checkpoints"
    previous = latest_checkpoint(run_dir)
    name = f"epoch_{epoch:04d}" + (f"_step_{step:04d}" if step else "")
    folder = checkpoints / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save(folder)
    faults.reached("checkpoint-saved")
    write_json(checkpoints / POINTER, {"folder": name, "epoch": epoch, "step": step, "time": time.time()})
    faults.reached("pointer-switched")
    keep = {name, previous[0].name if previous else name}
    for old in checkpoints.iterdir():
        if old.is_dir() and old.name.startswith("epoch_") and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(run_dir):
    """Deletes the temporary files (`.name.XXXX.tmp.ext`) that a killed run can leave behind."""
    for path in Path(run_dir).rglob(".*.tmp*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def save_model(model, path):
    """Saves a Keras model to `path` (a `.keras` file) atomically: a crash never leaves half a file there."""
    replace_atomically(lambda tmp: model.save(tmp), path)


def save_optimizer_state(path, optimizers):
    """Saves the variables of named optimisers (`{"d": opt, "g": opt}`) to one `.npz` file, atomically.

    For models saved in parts (a GAN's two networks), whose `.keras` files do not hold the optimisers.
    """
    import numpy as np

    arrays = {f"{name}/{i}": np.asarray(v) for name, optimizer in optimizers.items()
              for i, v in enumerate(optimizer.variables)}
    replace_atomically(lambda tmp: np.savez(tmp, **arrays), path)


def restore_optimizer_state(path, optimizers_and_variables):
    """Builds each optimiser for its variables, then loads its state saved by `save_optimizer_state`.

    Args:
        path: the `.npz` file.
        optimizers_and_variables: `{"d": (optimizer, trainable_variables), ...}`.
    """
    import numpy as np

    with np.load(path) as saved:
        for name, (optimizer, variables) in optimizers_and_variables.items():
            if not optimizer.built:  # a second build of a LossScaleOptimizer would add variables
                optimizer.build(variables)
            for i, variable in enumerate(optimizer.variables):
                variable.assign(saved[f"{name}/{i}"])
