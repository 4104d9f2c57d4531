"""Audio as tokens: log-mel frames, each replaced by the nearest entry of a learned codebook (k-means).

A token language model (`models.lm`, `train_lm.py`) reads and writes these tokens; the codebook turns them back
into log-mel frames for a vocoder. Frames are normalised per mel bin (the training frames' mean and standard
deviation) before k-means, so that quiet bins count as much as loud ones.

Example:

>>> frames = np.random.default_rng(0).normal(size=(500, 8)).astype("float32")
>>> codebook = fit_codebook(frames, 16, seed=0)
>>> tokens = encode_frames(frames, *codebook)
>>> tokens.shape, int(tokens.max()) < 16
((500,), True)
"""

from typing import NamedTuple

import numpy as np

# k-means is fitted on at most this many frames (a random subset): 200,000 frames are 40 minutes at 12.5 ms.
MAX_FIT_FRAMES = 200_000
# Frames compared with the codebook at once (bounds the distance matrix's memory).
ENCODE_BLOCK = 4096


class Codebook(NamedTuple):
    """A fitted codebook: per-bin `mean` and `scale` (`(n_mels,)`), and `centroids` `(size, n_mels)` of the
    normalised frames."""

    mean: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray


def fit_codebook(frames, size, seed=0, max_frames=MAX_FIT_FRAMES):
    """k-means (scikit-learn, k-means++ start) on the per-bin normalised `frames`.

    Args:
        frames: `(count, n_mels)` log-mel frames (all files' frames together).
        size: codebook entries; at most the number of distinct frames.
        seed: seed of the subset and of k-means.
        max_frames: fit on a random subset of at most this many frames.

    Returns:
        A `Codebook`, float32.

    Raises:
        ValueError: fewer distinct frames than `size`.
    """
    from sklearn.cluster import KMeans

    frames = np.asarray(frames, np.float32)
    mean = frames.mean(axis=0)
    scale = np.maximum(frames.std(axis=0), 1e-3)
    normalised = (frames - mean) / scale
    rng = np.random.default_rng(seed)
    if len(normalised) > max_frames:
        normalised = normalised[np.sort(rng.choice(len(normalised), max_frames, replace=False))]
    distinct = len(np.unique(normalised.round(4), axis=0))
    if distinct < size:
        raise ValueError(f"{distinct} distinct frames cannot make a codebook of {size} entries")
    kmeans = KMeans(n_clusters=int(size), n_init=1, random_state=int(seed), max_iter=100).fit(normalised)
    return Codebook(mean.astype(np.float32), scale.astype(np.float32), kmeans.cluster_centers_.astype(np.float32))


def encode_frames(frames, mean, scale, centroids):
    """The nearest codebook entry (squared Euclidean distance, normalised) of each frame: `(count,)` int32."""
    frames = np.asarray(frames, np.float32)
    centroids = np.asarray(centroids, np.float32)
    norms = np.sum(centroids.astype(np.float64) ** 2, axis=1)
    tokens = np.empty(len(frames), np.int32)
    for start in range(0, len(frames), ENCODE_BLOCK):
        block = (frames[start:start + ENCODE_BLOCK] - mean) / scale
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every c.
        tokens[start:start + len(block)] = np.argmin(norms[None, :] - 2.0 * (block @ centroids.T), axis=1)
    return tokens


def decode_tokens(tokens, mean, scale, centroids, floor=None):
    """The log-mel frames `(count, n_mels)` of `tokens`: their centroids, un-normalised, floored at `floor`."""
    frames = np.asarray(centroids, np.float32)[np.asarray(tokens, np.int64)] * scale + mean
    return frames if floor is None else np.maximum(frames, floor).astype(np.float32)


def residual_codebooks(frames, sizes, seed=0, max_frames=MAX_FIT_FRAMES, first=None):
    """Residual vector quantisation, for measuring (bench/lm.py): stage `i` fits k-means of `sizes[i]` entries to
    what the stages before it left of the normalised frames.

    Args:
        frames: `(count, n_mels)` log-mel frames.
        sizes: entries per stage.
        seed: seed of each stage's subset and k-means.
        max_frames: fit each stage on a random subset of at most this many frames.
        first: an already fitted first stage (`fit_codebook(frames, sizes[0], seed)`), so it is not fitted twice.

    Returns:
        `(first, stages)`: the first stage's `Codebook` (with the normalisation) and the centroids of each later one.
    """
    from sklearn.cluster import KMeans

    first = first or fit_codebook(frames, sizes[0], seed, max_frames)
    normalised = (np.asarray(frames, np.float32) - first.mean) / first.scale
    approximation = first.centroids[encode_frames(frames, *first)]
    stages = []
    for stage, size in enumerate(sizes[1:], start=1):
        residual = normalised - approximation
        if len(residual) > max_frames:
            residual = residual[np.random.default_rng(seed + stage).choice(len(residual), max_frames, replace=False)]
        stages.append(KMeans(n_clusters=int(size), n_init=1, random_state=seed + stage,
                             max_iter=100).fit(residual).cluster_centers_.astype(np.float32))
        approximation = _next_stage(normalised, approximation, stages[-1])
    return first, stages


def residual_rebuild(frames, first, stages, floor=None):
    """`frames` quantised by `residual_codebooks`' stages and rebuilt: a list of `(count, n_mels)` arrays, after
    the first stage, the second, ... (each floored at `floor` when given)."""
    normalised = (np.asarray(frames, np.float32) - first.mean) / first.scale
    approximation = first.centroids[encode_frames(frames, *first)]
    rebuilt = [approximation]
    for centroids in stages:
        approximation = _next_stage(normalised, approximation, centroids)
        rebuilt.append(approximation)
    rebuilt = [stage * first.scale + first.mean for stage in rebuilt]
    return rebuilt if floor is None else [np.maximum(stage, floor).astype(np.float32) for stage in rebuilt]


def _next_stage(normalised, approximation, centroids):
    """`approximation` plus the nearest of `centroids` to what it leaves of `normalised`."""
    return approximation + centroids[encode_frames(normalised - approximation, 0.0, 1.0, centroids)]
