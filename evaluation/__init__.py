"""Measures of a trained model: the likelihood a WaveNet gives held-out audio, how close a GAN's clips are to
real ones (Frechet distance of log-mel statistics, NDB, nearest-neighbour distance), and how close a vocoder's
resynthesis is to the original (STOI, log-spectral distance, multi-resolution STFT and mel distances); the bits per
token of a token language model, beside n-gram baselines."""

from evaluation.likelihood import signal_bits, token_bits
from evaluation.ngram import NGram
from evaluation.similarity import compare, frechet_distance, nearest_neighbour_distance, random_clips
from evaluation.vocoder import (log_spectral_distance, mel_distance, multi_resolution_stft, stoi,
                                vocoder_scores)

__all__ = ["NGram", "compare", "frechet_distance", "log_spectral_distance", "mel_distance",
           "multi_resolution_stft", "nearest_neighbour_distance", "random_clips", "signal_bits", "stoi", "token_bits",
           "vocoder_scores"]
