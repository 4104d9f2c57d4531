"""`fit_run`: the training driver that keeps a run's folder consistent through Ctrl-C, kill -9 and NaN losses."""

import sys
import time

import keras

from run.callbacks import Checkpoint, Guard, RunLog
from run.checkpoints import latest_checkpoint, remove_stale_temporaries, write_checkpoint
from run.distribute import Distribution, collective_failure
from run.errors import TrainingFailed, TrainingInterrupted, WorkerLost


def _dataset(frames, distribution, groups):
    """A `FrameGenerator` as a tf.data pipeline on the TensorFlow backend, split across the replicas of a strategy
    (`Distribution.dataset`, `FrameGenerator.as_dataset`)."""
    if frames is not None and keras.backend.backend() == "tensorflow" and hasattr(frames, "as_dataset"):
        return distribution.dataset(frames, groups)
    return frames


def fit_run(model, frames, *, run_dir, epochs, save, restore, callbacks=(), after_checkpoint=(),
            validation_data=None, loss_keys=("loss",), time_limit=None, on_nan="stop", lower_learning_rate=None,
            resume_command="", max_nan_retries=3, verbose=2, loss_limit=None, distribution=None, batch_groups=1,
            start=None):
    """Fits `model` from the run's latest checkpoint (or from scratch) to `epochs`, surviving what can happen.

    - Starts from `checkpoints/latest.json` when there is one, mid-epoch included; otherwise writes an epoch-0
      checkpoint first, so there always is a last good state.
    - SIGINT / SIGTERM: the step finishes, a checkpoint is written, `TrainingInterrupted` is raised.
    - NaN or Inf loss: nothing is written; with `on_nan="lower-lr"` the model is restored from the last good
      checkpoint, `lower_learning_rate(model)` is called and training goes on (at most `max_nan_retries`
      times), else `TrainingFailed` is raised. A loss beyond `loss_limit` (training or validation) is a
      diverged run, handled the same way.

    Args:
        model: the compiled model (restored from the latest checkpoint when resuming).
        frames: the training `FrameGenerator` (its position in the stream is set here).
        run_dir: the run folder.
        epochs: the epoch to train up to.
        save: `save(model, folder)` writes the model's state into a checkpoint folder.
        restore: `restore(folder)` returns a compiled model from a checkpoint folder.
        callbacks: callbacks that add to the epoch's logs (throughput, bits per sample); they run between the
            guard and the log, so history.csv records what they add.
        after_checkpoint: callbacks that run after the epoch's checkpoint is written (samplers such as
            `SaveAudio`), so one that fails cannot cost the run that checkpoint.
        validation_data: as for `fit`.
        loss_keys: the logs to watch for NaN.
        time_limit: minutes of training before stopping (the run then ends normally).
        on_nan: `"stop"` or `"lower-lr"`.
        lower_learning_rate: `lower_learning_rate(model)` lowers it and returns the new rate.
        resume_command: the command line that resumes this run, for the interrupt message.
        max_nan_retries: NaN recoveries before giving up.
        verbose: as for `fit`.
        loss_limit: a loss (of `loss_keys`, or its validation value) larger than this counts as diverged;
            `None` for no limit.
        distribution: the `run.distribute.Distribution` to train under (its strategy's scope must hold the model
            and `restore`); `None` for one device. A worker other than the chief passes a `run_dir` of its own
            (a temporary folder), so that it does what the chief does without writing the run folder.
        batch_groups: equal parts of each batch that every replica takes its share of (a GAN's critic steps).
        start: the state (`{"epoch": ..., "step": ...}`, as `restore_checkpoint` returns it) to start from when
            `run_dir` holds no checkpoint yet (a worker resuming into its temporary folder); a checkpoint of that
            state is written there first.

    Returns:
        The trained model (a restored one after a NaN recovery).
    """
    remove_stale_temporaries(run_dir)
    found = latest_checkpoint(run_dir)
    state = found[1] if found else (start or {"epoch": 0, "step": 0})
    epoch, step = state["epoch"], state["step"]
    if not found:
        write_checkpoint(run_dir, lambda folder: save(model, folder), epoch, step)
    deadline = None if time_limit is None else time.monotonic() + 60.0 * time_limit
    distribution = distribution or Distribution()
    agree = distribution.agree if distribution.workers > 1 else None
    retries = 0
    while epoch < epochs:
        guard = Guard(loss_keys, deadline, loss_limit, agree)
        frames.epochs, frames.position = epochs, epoch * frames.steps_per_epoch + step
        try:
            model.fit(_dataset(frames, distribution, batch_groups),
                      validation_data=_dataset(validation_data, distribution, 1), initial_epoch=epoch,
                      validation_steps=len(validation_data) if validation_data is not None else None,
                      epochs=epoch + 1 if step else epochs,
                      steps_per_epoch=frames.steps_per_epoch - step, shuffle=False,
                      callbacks=[guard, *callbacks, RunLog(run_dir, guard, epoch),
                                 Checkpoint(run_dir, save, guard, step), *after_checkpoint],
                      verbose=verbose)
        except Exception as error:
            if agree is None or not collective_failure(error):
                raise
            # A worker other than the chief names no folder: its own are temporary copies.
            checkpoint = latest_checkpoint(run_dir)[0].name if distribution.chief else None
            raise WorkerLost(f"{distribution.lost_message(error, checkpoint)}. Resume with: "
                             f"{' '.join(resume_command.split())}") from None
        if guard.status == "nan":
            bad_epoch, bad_step = guard.stopped_at
            folder, state = latest_checkpoint(run_dir)
            where = (f"{guard.reason} at epoch {bad_epoch + 1}, step {bad_step + (step if bad_epoch == epoch else 0)};"
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
