"""How close a set of audio clips is to real ones, offline and with no downloaded weights.

- Frechet distance between Gaussians fitted to log-mel frames (the FID recipe on a fixed, hand-made feature).
- NDB (Richardson & Weiss, 2018): k-means on the training clips' features; a bin counts as statistically
  different when a two-proportion z-test (p < 0.05) says the clips fall into it at another rate than the
  training clips. Reported as a fraction of the bins.
- Memorisation: each clip's distance to its nearest training clip, median over clips; a generator that copies
  its training data scores far below held-out real audio.

A clip's feature for NDB and memorisation is its mean and standard deviation of log-mel energy per band.
"""

import numpy as np

N_MELS = 40


def random_clips(signals, length, count, seed=0):
    """`count` random `length`-sample slices across `signals` (shorter signals are padded with silence)."""
    rng = np.random.default_rng(seed)
    signals = [np.pad(s, (0, max(0, length - len(s)))) for s in signals]
    weights = np.array([len(s) - length + 1 for s in signals], dtype=np.float64)
    choice = rng.choice(len(signals), size=count, p=weights / weights.sum())
    return np.stack([signals[i][(o := rng.integers(0, len(signals[i]) - length + 1)):o + length] for i in choice])


def log_mel_frames(clips, sample_rate):
    """`(clips, frames, N_MELS)` log-mel energies."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(clips, np.float32), sr=sample_rate, n_fft=512,
                                         hop_length=256, n_mels=N_MELS)
    return np.log(mel + 1e-6).transpose(0, 2, 1)


def clip_features(frames):
    """Per-clip mean and standard deviation of each band: `(clips, 2 * N_MELS)`."""
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)], axis=1)


def frechet_distance(frames_a, frames_b):
    """Frechet distance between Gaussians fitted to two sets of log-mel frames."""
    from scipy import linalg

    a, b = frames_a.reshape(-1, N_MELS), frames_b.reshape(-1, N_MELS)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


class NDB:
    """Number of statistically different bins against a set of training clips.

    Args:
        train_features: `(clips, features)` of the training clips.
        bins: k-means clusters.
        seed: k-means seed.
    """

    def __init__(self, train_features, bins=10, seed=0):
        from sklearn.cluster import KMeans

        self.scale = train_features.std(axis=0) + 1e-6
        self.kmeans = KMeans(n_clusters=bins, n_init=4, random_state=seed).fit(train_features / self.scale)
        self.bins = bins
        self.train_counts = np.bincount(self.kmeans.labels_, minlength=bins)

    def __call__(self, features):
        """The fraction of bins whose share of `features` differs significantly (p < 0.05) from training."""
        counts = np.bincount(self.kmeans.predict(features / self.scale), minlength=self.bins)
        n1, n2 = self.train_counts.sum(), counts.sum()
        p1, p2 = self.train_counts / n1, counts / n2
        pooled = (self.train_counts + counts) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2) + 1e-12)
        return float(np.mean(np.abs(z) > 1.96))


def nearest_neighbour_distance(features, train_features):
    """Median over `features` of the Euclidean distance to the nearest training feature (standardised)."""
    scale = train_features.std(axis=0) + 1e-6
    a, b = features / scale, train_features / scale
    distances = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1), 0.0))
    return float(np.median(distances.min(axis=1)))


def compare(sets, train_clips, sample_rate, seed=0):
    """The three measures for each named set of clips, against `train_clips`.

    Args:
        sets: `{"generated": clips, "held-out real": clips, ...}`, each `(clips, samples)`.
        train_clips: `(clips, samples)` from the training audio.

    Returns:
        `{name: {"frechet_distance": ..., "ndb": ..., "nn_distance": ...}}`.
    """
    train_frames = log_mel_frames(train_clips, sample_rate)
    train_features = clip_features(train_frames)
    ndb = NDB(train_features, seed=seed)
    results = {}
    for name, clips in sets.items():
        frames = log_mel_frames(clips, sample_rate)
        features = clip_features(frames)
        results[name] = {"frechet_distance": frechet_distance(frames, train_frames), "ndb": ndb(features),
                         "nn_distance": nearest_neighbour_distance(features, train_features)}
    return results
