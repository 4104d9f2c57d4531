"""Training callbacks: SaveAudio samples, throughput for history.csv, checkpoints, a time limit."""

from callbacks.save_audio import SaveAudio, save_spectrogram
from callbacks.training import Checkpoint, Throughput, TimeLimit

__all__ = ["Checkpoint", "SaveAudio", "Throughput", "TimeLimit", "save_spectrogram"]
