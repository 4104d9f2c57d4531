"""Callbacks that record a run: throughput for history.csv, and checkpoints to resume from."""

import time
from pathlib import Path

import keras

from cli import save_model, write_json


class Throughput(keras.callbacks.Callback):
    """Adds `targets_per_second` (training only) and `seconds_per_epoch` (with validation) to the epoch logs.

    Put it before `CSVLogger` and `TensorBoard` in the callback list so they record both.

    Args:
        targets_per_step: targets scored per training step (batch size x frame size for a WaveNet).
    """

    def __init__(self, targets_per_step):
        super().__init__()
        self.targets_per_step = int(targets_per_step)

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
        logs["targets_per_second"] = self.steps * self.targets_per_step / max(train_seconds, 1e-9)
        logs["seconds_per_epoch"] = now - self.epoch_start


class Checkpoint(keras.callbacks.Callback):
    """After every epoch, saves the model with its optimiser state to `latest.keras` and the epoch count to
    `state.json` in `directory`, both atomically, so a run can resume where it stopped.

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
