"""What keeps a run's folder consistent through Ctrl-C, kill -9 and NaN losses.

Checkpoints are folders, `checkpoints/epoch_0005/` (or `epoch_0005_step_0017/` after an interrupt mid-epoch),
written completely before `checkpoints/latest.json` is atomically replaced to point at them: whatever moment a
run is killed at, `latest.json` names a complete checkpoint. Older checkpoint folders are removed after the
switch. history.csv is rewritten atomically each epoch, before the checkpoint, and a resume drops any rows
past the checkpoint, so epochs are never missing or repeated.
"""

import csv
import io
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import keras

from cli import TrainingFailed, TrainingInterrupted, write_json
from data.audio import replace_atomically

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
    write_json(checkpoints / POINTER, {"folder": name, "epoch": epoch, "step": step, "time": time.time()})
    keep = {name, previous[0].name if previous else name}
    for old in checkpoints.iterdir():
        if old.is_dir() and old.name.startswith("epoch_") and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(run_dir):
    """Deletes the temporary files (`.name.XXXX.tmp.ext`) that a killed run can leave behind."""
    for path in Path(run_dir).rglob(".*.tmp*"):
        if path.is_file():
            path.unlink(missing_ok=True)


class Guard(keras.callbacks.Callback):
    """Stops training cleanly on SIGINT / SIGTERM, on a NaN or Inf loss, and at a deadline; put it first.

    First signal: the current step finishes, training stops, and `status` becomes `"interrupted"` with
    `stopped_at = (epoch, steps done)`. A second signal exits at once (checkpoints are atomic, so the last one
    stays good). A non-finite value of any of `loss_keys` in a batch's logs sets `status = "nan"`; passing
    `deadline` (a `time.monotonic()` value) sets `status = "time_limit"`.

    Args:
        loss_keys: the log entries to watch (`("loss",)` for a WaveNet, `("d_loss", "g_loss")` for a GAN).
        deadline: stop after this `time.monotonic()` value; `None` for no limit.
    """

    def __init__(self, loss_keys=("loss",), deadline=None):
        super().__init__()
        self.loss_keys = tuple(loss_keys)
        self.deadline = deadline
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

    def on_train_batch_end(self, batch, logs=None):
        for key in self.loss_keys:
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                self.status, self.stopped_at = "nan", (self.epoch, batch + 1)
                self.model.stop_training = True
                return
        # Stopping after the epoch's last step leaves a whole epoch: it is checkpointed and logged as one.
        stopped_at = (self.epoch + 1, 0) if batch + 1 >= self.params.get("steps", 0) else (self.epoch, batch + 1)
        if self.signalled:
            self.status, self.stopped_at = "interrupted", stopped_at
            self.model.stop_training = True
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.status, self.stopped_at = "time_limit", stopped_at
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.signalled and self.ok:  # the signal came during validation or callbacks: the epoch is whole
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
        for key, value in values.items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._scalar(split, f"epoch_{name}", value, epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in (self.writers or {}).values():
            writer.close()


def _dataset(frames):
    """A `FrameGenerator` as a tf.data pipeline on the TensorFlow backend (see `FrameGenerator.as_dataset`)."""
    if frames is not None and keras.backend.backend() == "tensorflow" and hasattr(frames, "as_dataset"):
        return frames.as_dataset()
    return frames


def fit_run(model, frames, *, run_dir, epochs, save, restore, callbacks=(), validation_data=None,
            loss_keys=("loss",), time_limit=None, on_nan="stop", lower_learning_rate=None, resume_command="",
            max_nan_retries=3, verbose=2):
    """Fits `model` from the run's latest checkpoint (or from scratch) to `epochs`, surviving what can happen.

    - Starts from `checkpoints/latest.json` when there is one, mid-epoch included; otherwise writes an epoch-0
      checkpoint first, so there always is a last good state.
    - SIGINT / SIGTERM: the step finishes, a checkpoint is written, `TrainingInterrupted` is raised.
    - NaN or Inf loss: nothing is written; with `on_nan="lower-lr"` the model is restored from the last good
      checkpoint, `lower_learning_rate(model)` is called and training goes on (at most `max_nan_retries`
      times), else `TrainingFailed` is raised.

    Args:
        model: the compiled model (restored from the latest checkpoint when resuming).
        frames: the training `FrameGenerator` (its position in the stream is set here).
        run_dir: the run folder.
        epochs: the epoch to train up to.
        save: `save(model, folder)` writes the model's state into a checkpoint folder.
        restore: `restore(folder)` returns a compiled model from a checkpoint folder.
        callbacks: more callbacks (throughput, samples); they run between the guard and the log.
        validation_data: as for `fit`.
        loss_keys: the logs to watch for NaN.
        time_limit: minutes of training before stopping (the run then ends normally).
        on_nan: `"stop"` or `"lower-lr"`.
        lower_learning_rate: `lower_learning_rate(model)` lowers it and returns the new rate.
        resume_command: the command line that resumes this run, for the interrupt message.
        max_nan_retries: NaN recoveries before giving up.
        verbose: as for `fit`.

    Returns:
        The trained model (a restored one after a NaN recovery).
    """
    remove_stale_temporaries(run_dir)
    found = latest_checkpoint(run_dir)
    epoch, step = (found[1]["epoch"], found[1]["step"]) if found else (0, 0)
    if not found:
        write_checkpoint(run_dir, lambda folder: save(model, folder), 0)
    deadline = None if time_limit is None else time.monotonic() + 60.0 * time_limit
    retries = 0
    while epoch < epochs:
        guard = Guard(loss_keys, deadline)
        frames.epochs, frames.position = epochs, epoch * frames.steps_per_epoch + step
        model.fit(_dataset(frames), validation_data=_dataset(validation_data), initial_epoch=epoch,
                  validation_steps=len(validation_data) if validation_data is not None else None,
                  epochs=epoch + 1 if step else epochs,
                  steps_per_epoch=frames.steps_per_epoch - step, shuffle=False,
                  callbacks=[guard, *callbacks, RunLog(run_dir, guard, epoch), Checkpoint(run_dir, save, guard, step)],
                  verbose=verbose)
        if guard.status == "nan":
            bad_epoch, bad_step = guard.stopped_at
            folder, state = latest_checkpoint(run_dir)
            where = (f"loss became NaN or Inf at epoch {bad_epoch + 1}, step {bad_step + (step if bad_epoch == epoch else 0)};"
                     f" the last good checkpoint {folder.name} is kept and nothing newer was written")
            if on_nan != "lower-lr" or retries >= max_nan_retries:
                hint = "" if on_nan == "lower-lr" else "; add --on-nan lower-lr to continue at a lower learning rate"
                raise TrainingFailed(where + hint)
            retries += 1
            model = restore(folder)
            rate = lower_learning_rate(model)
            print(f"{where}; continuing from it with learning rate {rate:g}", file=sys.stderr, flush=True)
            epoch, step = state["epoch"], state["step"]
            continue
        if guard.status == "interrupted":
            folder, state = latest_checkpoint(run_dir)
            raise TrainingInterrupted(f"interrupted; checkpoint {folder.name} written (epoch {state['epoch']}"
                                      f"{', step ' + str(state['step']) if state['step'] else ''}). "
                                      f"Resume with:\n  {resume_command}")
        if guard.status == "time_limit":
            break
        epoch, step = (epoch + 1, 0) if step else (epochs, 0)
    return model
