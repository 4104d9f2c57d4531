"""The run machinery: a training run's folder, checkpoints, guard and driver.

- `run.folder`: where a run goes, what `--resume` continues, config.json (`resolve_config`,
  `checkpoint_to_resume`, `lower_learning_rate`).
- `run.checkpoints`: checkpoint folders written whole, then pointed at by `checkpoints/latest.json`.
- `run.callbacks`: `Guard`, `RunLog` and `Checkpoint`, the callbacks `fit_run` puts around the trainer's own.
- `run.driver`: `fit_run`, which trains to the last epoch through Ctrl-C, kill -9 and NaN losses.
- `run.distribute`: `--distribute`: the tf.distribute strategy, the replicas' shares of each batch, the workers'
  agreement to stop, and what only the chief writes.

Errors meant for the user carry an `exit_status` (2: bad request, 1: failed, 130: interrupted), which
`cli.run` prints as one line and exits with.

Example:

>>> from run import fit_run, resolve_config
"""

from data.files import write_json
from run.checkpoints import (latest_checkpoint, remove_stale_temporaries, restore_optimizer_state, save_model,
                             save_optimizer_state, write_checkpoint)
from run.errors import DistributeError, RunFolderError, TrainingFailed, TrainingInterrupted, WorkerLost
from run.folder import (check_resumed_classes, check_writable, checkpoint_to_resume, lower_learning_rate, new_run_dir,
                        resolve_config, restore_checkpoint, restore_or_build, run_settings, run_trainer,
                        time_limit_note, update_config)


def __getattr__(name):
    # The callbacks and the driver import Keras, so they load on first use: a trainer reads its flags and
    # refuses a bad run folder before TensorFlow starts (see `cli.quiet_tensorflow`).
    if name == "fit_run":
        from run.driver import fit_run

        return fit_run
    if name in ("Checkpoint", "Guard", "RunLog"):
        from run import callbacks

        return getattr(callbacks, name)
    raise AttributeError(f"module 'run' has no attribute {name!r}")


__all__ = ["Checkpoint", "DistributeError", "Guard", "RunFolderError", "RunLog", "TrainingFailed",
           "TrainingInterrupted", "WorkerLost", "check_resumed_classes", "check_writable", "checkpoint_to_resume",
           "fit_run",
           "latest_checkpoint", "lower_learning_rate", "new_run_dir", "remove_stale_temporaries", "resolve_config",
           "restore_checkpoint", "restore_optimizer_state", "restore_or_build", "run_settings", "run_trainer",
           "save_model", "save_optimizer_state", "time_limit_note", "update_config", "write_checkpoint", "write_json"]
