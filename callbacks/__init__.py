"""Training callbacks: SaveAudio samples, throughput for history.csv, checkpoints."""

from callbacks.save_audio import SaveAudio, save_spectrogram
from callbacks.training import Checkpoint, Throughput, TimeLimit
