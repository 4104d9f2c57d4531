"""Callbacks that record a run: throughput for history.csv, and checkpoints to resume from."""

import time
from pathlib import Path

import keras

from cli import save_model, write_json
from data.audio import replace_atomically


class Throughput(keras.callbacks.Callback):
    """Adds `<unit>_per_second` and `steps_per_second` (training only) and `seconds_per_epoch` (with validation)
    to the epoch logs.

    Put it before `CSVLogger` and `TensorBoard` in the callback list so they record them.

    Args:
        per_step: units processed per training step (batch size x frame size targets for a WaveNet).
        unit: what is counted: `"targets"` (WaveNet) or `"clips"` (GAN).
    """

    def __init__(self, per_step, unit="targets"):
        super().__init__()
        self.per_step = int(per_step)
        self.unit = unit

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.train_end = None
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        now = time.perf_counter()
        train_seconds = (self.train_end or now) - self.epoch_start
        logs[f"{self.unit}_per_second"] = self.steps * self.per_step / max(train_seconds, 1e-9)
        logs["steps_per_second"] = self.steps / max(train_seconds, 1e-9)
        logs["seconds_per_epoch"] = now - self.epoch_start


def save_optimizer_state(path, optimizers):
    """Saves the variables of named optimisers (`{"d": opt, "g": opt}`) to one `.npz` file, atomically."""
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
            optimizer.build(variables)
            for i, variable in enumerate(optimizer.variables):
                variable.assign(saved[f"{name}/{i}"])


class Checkpoint(keras.callbacks.Callback):
    """After every epoch, saves what a run needs to resume, atomically, and the epoch count to `state.json`.

    A WaveNet is saved with its optimiser state to `latest.keras`; a GAN (a model with `generator` and
    `discriminator`) as `generator.keras`, `discriminator.keras` and both optimisers' state in `optimizers.npz`.

    Args:
        directory: the checkpoint folder.
        extra_state: a callable returning more JSON-able state to store (for example the data stream's seed).
    """

    def __init__(self, directory, extra_state=None):
        super().__init__()
        self.directory = Path(directory)
        self.extra_state = extra_state

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        if hasattr(self.model, "generator"):
            save_model(self.model.generator, self.directory / "generator.keras")
            save_model(self.model.discriminator, self.directory / "discriminator.keras")
            save_optimizer_state(self.directory / "optimizers.npz",
                                 {"d": self.model.d_optimizer, "g": self.model.g_optimizer})
        else:
            save_model(self.model, self.directory / "latest.keras")
        state = {"epoch": epoch + 1, **(self.extra_state() if self.extra_state else {})}
        write_json(self.directory / "state.json", state)


class TimeLimit(keras.callbacks.Callback):
    """Stops training after `minutes` of wall-clock time, at the end of a batch (the epoch then closes as usual).

    Args:
        minutes: the budget; `None` for no limit.
    """

    def __init__(self, minutes):
        super().__init__()
        self.minutes = minutes

    def on_train_begin(self, logs=None):
        self.deadline = None if self.minutes is None else time.monotonic() + 60.0 * self.minutes

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.model.stop_training = True
