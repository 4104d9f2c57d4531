"""Measures of a trained model: the likelihood a WaveNet gives held-out audio, and how close a GAN's clips
are to real ones (Frechet distance of log-mel statistics, NDB, nearest-neighbour distance)."""

from evaluation.likelihood import signal_bits
from evaluation.similarity import compare, frechet_distance, nearest_neighbour_distance, random_clips

__all__ = ["compare", "frechet_distance", "nearest_neighbour_distance", "random_clips", "signal_bits"]
