"""Training callbacks: SaveAudio samples, throughput, and the run guard, checkpoints and history of `run`."""

from callbacks.run import (Checkpoint, Guard, RunLog, TrainingFailed, TrainingInterrupted, fit_run, latest_checkpoint,
                           write_checkpoint)
from callbacks.save_audio import SaveAudio, save_spectrogram
from callbacks.training import CrossEntropyBits, Throughput, restore_optimizer_state, save_optimizer_state

__all__ = ["Checkpoint", "CrossEntropyBits", "Guard", "RunLog", "SaveAudio", "TrainingFailed", "TrainingInterrupted", "fit_run", "Throughput", "latest_checkpoint", "restore_optimizer_state",
           "save_optimizer_state", "save_spectrogram", "write_checkpoint"]
