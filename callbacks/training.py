"""Callbacks that add to the epoch logs: throughput, and bits per sample from the cross-entropy loss."""

import math
import time

import keras


class Throughput(keras.callbacks.Callback):
    """Adds `<unit>_per_second` and `steps_per_second` (training only) and `seconds_per_epoch` (with validation)
    to the epoch logs.

    Put it before the callbacks that record the logs (`RunLog`, `CSVLogger`, `TensorBoard`).

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


class CrossEntropyBits(keras.callbacks.Callback):
    """Adds `bits_per_sample` (and `val_bits_per_sample`) = cross-entropy loss / ln 2 to the epoch logs.

    For the classifier the mean cross-entropy in nats over all targets *is* the bits per sample times ln 2, so
    this costs nothing, where a metric would compute the softmax a second time in every training step.

    Args:
        name: the log's name (`"bits_per_token"` for a token language model).
    """

    def __init__(self, name="bits_per_sample"):
        super().__init__()
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        for prefix in ("", "val_"):
            if logs is not None and f"{prefix}loss" in logs:
                logs[f"{prefix}{self.name}"] = float(logs[f"{prefix}loss"]) / math.log(2.0)


class KeepBest(keras.callbacks.Callback):
    """Saves the model to `path` (atomically) after each whole epoch whose `monitor` log is the lowest so far:
    early stopping's choice, kept while training goes on.

    An epoch cut short (interrupt, NaN, time limit: `stop_training` is set) is not considered. Put it after the
    callbacks that add `monitor` to the logs.

    Args:
        path: the `.keras` file to write.
        monitor: the log to minimise.
        best: the lowest value of the epochs before this fit (a resumed run's history), beaten to save.

    Example:

    >>> model.fit(frames, validation_data=held_out, callbacks=[KeepBest("run/best.keras")])
    """

    def __init__(self, path, monitor="val_loss", best=math.inf):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = float(best)

    def on_epoch_end(self, epoch, logs=None):
        from data.files import replace_atomically

        value = (logs or {}).get(self.monitor)
        if value is None or getattr(self.model, "stop_training", False) or not math.isfinite(float(value)):
            return
        if float(value) < self.best:
            self.best = float(value)
            replace_atomically(lambda tmp: self.model.save(tmp), self.path)
