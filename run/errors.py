"""The run machinery's errors. Each carries the `exit_status` that `cli.run` exits with after printing it."""


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message is one line. Exit status 2, as for bad flags."""

    exit_status = 2


class TrainingFailed(Exception):
    """Training cannot go on (a NaN loss); the message says where and what was kept. Exit status 1."""

    exit_status = 1


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; the message says how to resume. Exit status 130."""

    exit_status = 130


class DistributeError(ValueError):
    """A `--distribute` request that this machine or TF_CONFIG cannot satisfy; one line, exit status 2."""

    exit_status = 2


class WorkerLost(RuntimeError):
    """A worker of a cluster stopped answering; the message names it and the checkpoint to resume from. Exit
    status 1."""

    exit_status = 1
