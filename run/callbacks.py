"""The run's own callbacks: `Guard` (signals, NaN, deadline), `RunLog` (history.csv, TensorBoard) and
`Checkpoint`. `fit_run` puts them around the caller's callbacks; they work with any `keras.Model.fit` too.

history.csv is rewritten atomically each epoch, before the checkpoint, and a resume drops any rows past the
checkpoint, so epochs are never missing or repeated.
"""

import csv
import io
import math
import os
import signal
import sys
import time
from pathlib import Path

import keras

from data import faults
from data.files import replace_atomically
from run.checkpoints import write_checkpoint


class Guard(keras.callbacks.Callback):
    """Stops training cleanly on SIGINT / SIGTERM, on a NaN or Inf loss, and at a deadline; put it first.

    First signal: the current step finishes, training stops, and `status` becomes `"interrupted"` with
    `stopped_at = (epoch, steps done)`. A second signal exits at once (checkpoints are atomic, so the last one
    stays good). A non-finite value of any of `loss_keys` in a batch's logs, or of their `val_` versions at the
    end of an epoch, sets `status = "nan"`; so does a value beyond `loss_limit` (a diverged run: the weights are
    as useless as after a NaN), and `reason` says which. Passing `deadline` (a `time.monotonic()` value) sets
    `status = "time_limit"`.

    With several workers (`agree`), a signal or a deadline that any worker sees stops every worker after the same
    step: each step's end and each epoch's end sums the workers' `[signalled, past deadline]` flags. (NaN losses
    need no vote: the logged losses are already averaged over the workers.)

    Args:
        loss_keys: the log entries to watch (`("loss",)` for a WaveNet, `("d_loss", "g_loss")` for a GAN).
        deadline: stop after this `time.monotonic()` value; `None` for no limit.
        loss_limit: a loss whose size passes this counts as diverged; `None` for no limit.
        agree: `agree(flags)` returns the flags summed over the workers (`run.distribute.Distribution.agree`);
            `None` on one machine.
    """

    def __init__(self, loss_keys=("loss",), deadline=None, loss_limit=None, agree=None):
        super().__init__()
        self.loss_keys = tuple(loss_keys)
        self.deadline = deadline
        self.loss_limit = loss_limit
        self.agree = agree
        self.reason = None
        self.status = "ok"
        self.stopped_at = None
        self.signalled = False
        self.previous_handlers = {}

    @property
    def ok(self):
        return self.status == "ok"

    def _handle(self, signum, frame):
        if self.signalled:
            print("\nsecond interrupt: exiting now; the last checkpoint is intact", file=sys.stderr, flush=True)
            sys.stderr.flush()
            os._exit(130)
        self.signalled = True
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then writing a checkpoint "
              "(interrupt again to exit at once)", file=sys.stderr, flush=True)

    def on_train_begin(self, logs=None):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous_handlers[signum] = signal.signal(signum, self._handle)

    def on_train_end(self, logs=None):
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        faults.reached("epoch-begin")

    def _bad_loss(self, logs, prefix=""):
        """Whether a watched loss in `logs` is NaN, Inf or beyond `loss_limit`; sets `reason` if so."""
        for key in self.loss_keys:
            value = (logs or {}).get(prefix + key)
            if value is None:
                continue
            value = float(value)
            if not math.isfinite(value):
                self.reason = f"{'validation ' if prefix else ''}loss became NaN or Inf"
            elif self.loss_limit is not None and abs(value) > self.loss_limit:
                self.reason = f"training diverged ({prefix + key} {value:.3g}, beyond the limit of {self.loss_limit:g})"
            else:
                continue
            return True
        return False

    def on_train_batch_end(self, batch, logs=None):
        faults.reached("step-end")
        if self._bad_loss(logs):
            self.status, self.stopped_at = "nan", (self.epoch, batch + 1)
            self.model.stop_training = True
            return
        # Stopping after the epoch's last step leaves a whole epoch: it is checkpointed and logged as one.
        stopped_at = (self.epoch + 1, 0) if batch + 1 >= self.params.get("steps", 0) else (self.epoch, batch + 1)
        signalled, late = self._votes(self.deadline is not None and time.monotonic() >= self.deadline)
        if signalled:
            self.status, self.stopped_at = "interrupted", stopped_at
            self.model.stop_training = True
        elif late:
            self.status, self.stopped_at = "time_limit", stopped_at
            self.model.stop_training = True

    def _votes(self, late=False):
        """`(signalled, late)`: whether this worker, or with `agree` any worker, was signalled or is past its
        deadline."""
        flags = [float(self.signalled), float(late)]
        if self.agree is not None:
            flags = self.agree(flags)
        return flags[0] > 0, flags[1] > 0

    def on_epoch_end(self, epoch, logs=None):
        signalled, _ = self._votes()  # first, so that every worker takes part in the vote whatever follows
        if self.status != "nan" and self._bad_loss(logs, "val_"):  # the last step's update broke the weights
            self.status, self.stopped_at = "nan", (epoch, self.params.get("steps") or 0)
            self.model.stop_training = True
            return
        if signalled and self.ok:  # the signal came during validation or callbacks: the epoch is whole
            self.status, self.stopped_at = "interrupted", (epoch + 1, 0)
            self.model.stop_training = True

    def partial_epoch(self):
        """True when an epoch was cut short (interrupt, bad loss, time limit): it must not be logged as whole."""
        return self.status == "nan" or (self.status != "ok" and self.stopped_at[1] != 0)


class Checkpoint(keras.callbacks.Callback):
    """After every epoch, and at an interrupt, writes a checkpoint with `save(model, folder)`; never after a NaN.

    Args:
        run_dir: the run folder.
        save: `save(model, folder)` writes the model's state into a checkpoint folder.
        guard: the run's `Guard`.
        steps_before: steps of the first epoch already done before this fit (resuming mid-epoch).
    """

    def __init__(self, run_dir, save, guard, steps_before=0):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.save = save
        self.guard = guard
        self.steps_before = steps_before

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.status == "nan":
            return
        def save(folder):
            self.save(self.model, folder)

        if self.guard.partial_epoch():
            write_checkpoint(self.run_dir, save, epoch, self.guard.stopped_at[1] + self.steps_before)
        else:
            write_checkpoint(self.run_dir, save, epoch + 1)
        self.steps_before = 0


class RunLog(keras.callbacks.Callback):
    """Writes each whole epoch's logs to history.csv (atomically) and to TensorBoard scalars.

    Epoch rows are keyed by number: a resumed run first drops rows at or past its starting epoch, so the file
    never has a gap or a repeat. Cut-short epochs (interrupt, NaN) are not logged.

    Args:
        run_dir: the run folder (history.csv and logs/ go there).
        guard: the run's `Guard`.
        first_epoch: the epoch this fit starts at.
    """

    def __init__(self, run_dir, guard, first_epoch=0):
        super().__init__()
        self.path = Path(run_dir) / "history.csv"
        self.log_dir = Path(run_dir) / "logs"
        self.guard = guard
        self.rows = []
        if self.path.is_file():
            with self.path.open(newline="") as file:
                self.rows = [row for row in csv.DictReader(file) if int(row["epoch"]) < first_epoch]
        self.writers = None

    def _scalar(self, split, name, value, step):
        import tensorflow as tf

        if self.writers is None:
            self.writers = {s: tf.summary.create_file_writer(str(self.log_dir / s)) for s in ("train", "validation")}
        with self.writers[split].as_default():
            tf.summary.scalar(name, value, step=step)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.partial_epoch() or not logs:
            return
        values = {key: float(value) for key, value in logs.items()}
        self.rows.append({"epoch": epoch, **values})
        keys = ["epoch"] + sorted({key for row in self.rows for key in row if key != "epoch"})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        replace_atomically(lambda tmp: Path(tmp).write_text(text.getvalue()), self.path)
        faults.reached("history-written")
        for key, value in values.items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._scalar(split, f"epoch_{name}", value, epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in (self.writers or {}).values():
            writer.close()


def learning_rate_at(step, peak, warmup_steps=0, decay_steps=None, floor=0.0):
    """The learning rate of step `step` (counted from 0): a linear warmup from `peak / warmup_steps` to `peak` over
    the first `warmup_steps` steps, then with `decay_steps` a cosine decay to `floor * peak` at step
    `decay_steps` (held there after), without it `peak`.

    Example:

    >>> [round(learning_rate_at(s, 1.0, warmup_steps=2, decay_steps=6, floor=0.1), 3) for s in range(8)]
    [0.5, 1.0, 1.0, 0.868, 0.55, 0.232, 0.1, 0.1]
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if not decay_steps:
        return peak
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


class LearningRateSchedule(keras.callbacks.Callback):
    """Sets the optimiser's learning rate before every step to `learning_rate_at(iterations, peak(), ...)` (a GAN's
    two optimisers both, by the generator's step count).

    The rate depends only on the optimiser's step count, which checkpoints keep, so a resumed run continues the
    same schedule. The decay ends at step `decay_steps`. Given a `deadline` (a time limit), that is refitted at the
    end of every epoch to the steps the remaining time will hold at the pace of the epoch just ended (from its
    first step's end, so compiling is not counted; validation is), never beyond `decay_steps`, and
    `on_fitted(decay_steps)` is called (to record it: a resumed run keeps the last fit).

    Args:
        peak: `peak()` returns the peak rate (a callable: a NaN recovery lowers the run's rate).
        warmup_steps: steps of linear warmup.
        decay_steps: the step at which the decay reaches `floor`; `None` for no decay (only warmup).
        floor: the final rate, a fraction of the peak.
        deadline: the `time.monotonic()` at which the run stops, to fit the decay to; `None` to keep `decay_steps`.
        on_fitted: `on_fitted(decay_steps)` is called after each fit to `deadline`.
    """

    def __init__(self, peak, warmup_steps=0, decay_steps=None, floor=0.0, deadline=None, on_fitted=None):
        super().__init__()
        self.peak = peak
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = self.cap = decay_steps
        self.floor = float(floor)
        self.deadline = deadline
        self.on_fitted = on_fitted
        self.mark = None

    def _optimizers(self):
        # A GAN (models.gan.TwoOptimizerGAN) has one per network: both follow the generator's step count.
        if hasattr(self.model, "g_optimizer"):
            return (self.model.g_optimizer, self.model.d_optimizer)
        return (self.model.optimizer,)

    def _step(self):
        return int(self._optimizers()[0].iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        rate = learning_rate_at(self._step(), self.peak(), self.warmup_steps, self.decay_steps, self.floor)
        for optimizer in self._optimizers():
            optimizer.learning_rate.assign(rate)

    def on_epoch_begin(self, epoch, logs=None):
        self.mark = None

    def on_train_batch_end(self, batch, logs=None):
        if self.mark is None and self.deadline is not None:
            self.mark = (time.monotonic(), self._step())

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline is None or self.mark is None or self.model.stop_training:
            return
        now, step = time.monotonic(), self._step()
        if step <= self.mark[1]:  # one step this epoch: no pace to go by
            return
        pace = (step - self.mark[1]) / max(now - self.mark[0], 1e-9)
        fitted = max(step + 1, int(step + pace * max(0.0, self.deadline - now)))
        self.decay_steps = min(fitted, self.cap or fitted)
        if self.on_fitted is not None:
            self.on_fitted(self.decay_steps)


class AveragedWeights(keras.callbacks.Callback):
    """Gives validation and the `inner` callbacks the optimiser's moving average of the weights
    (`models.optimizers.AveragedAdam`), and training its own weights back after them.

    Validation runs inside the swap (`on_test_begin` to `on_test_end`), so the logged validation loss is the
    averaged model's; so does each inner callback's `on_epoch_end` (samplers such as `SaveAudio`). A model whose
    optimiser keeps no average is left alone.

    Args:
        inner: callbacks whose `on_epoch_end` sees the averaged weights.
    """

    def __init__(self, inner=()):
        super().__init__()
        self.inner = list(inner)
        self.swap = None

    def set_model(self, model):
        super().set_model(model)
        for callback in self.inner:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.inner:
            callback.set_params(params)

    def on_test_begin(self, logs=None):
        from models.optimizers import averaged_weights

        self.swap = averaged_weights(self.model)
        self.swap.__enter__()

    def on_test_end(self, logs=None):
        if self.swap is not None:
            swap, self.swap = self.swap, None
            swap.__exit__(None, None, None)

    def on_epoch_end(self, epoch, logs=None):
        from models.optimizers import averaged_weights

        with averaged_weights(self.model):
            for callback in self.inner:
                callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for callback in self.inner:
            callback.on_train_end(logs)


def schedule_callbacks(config, run_dir):
    """The callback that sets the learning rate of `--schedule` and `--warmup-steps` before every step (none for
    a constant rate); a decay fitted to `--time-limit` is written to config.json at each fit, so a resumed run
    keeps the last. `config` has `learning_rate`, `schedule`, `warmup_steps`, `decay_steps`, `decay_floor`,
    `epochs`, `steps_per_epoch` and `time_limit` (`cli.SCHEDULE_HELP`)."""
    from run.folder import update_config

    if config.schedule == "constant" and not config.warmup_steps:
        return []
    if config.schedule == "constant":
        return [LearningRateSchedule(lambda: config.learning_rate, config.warmup_steps)]
    decay_steps = config.decay_steps or config.epochs * config.steps_per_epoch
    deadline = None
    if config.time_limit and not config.decay_steps:
        deadline = time.monotonic() + 60.0 * config.time_limit

    def record(steps):
        config.decay_steps = steps
        update_config(run_dir, decay_steps=steps)

    return [LearningRateSchedule(lambda: config.learning_rate, config.warmup_steps, decay_steps, config.decay_floor,
                                 deadline=deadline, on_fitted=record)]
