"""Keras callbacks for training on audio: SaveAudio samples, throughput and bits per sample.

The run machinery (guard, checkpoints, history, the training driver) is the `run` package.
"""

from callbacks.save_audio import SaveAudio, save_spectrogram
from callbacks.training import CrossEntropyBits, KeepBest, Throughput

__all__ = ["CrossEntropyBits", "KeepBest", "SaveAudio", "Throughput", "save_spectrogram"]
