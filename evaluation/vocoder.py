"""How close a resynthesis is to the audio its spectrogram came from: the measures of a vocoder.

Each compares a reference signal with an estimate of it (both 1-D, same rate); lower is closer except STOI:
- `stoi`: short-time objective intelligibility (pystoi; 0 to 1, 1 = as intelligible as the reference);
- `log_spectral_distance`: RMS over frequency of the difference of the log power spectra, in dB, averaged
  over frames (on the model's STFT settings);
- `multi_resolution_stft`: spectral convergence and mean absolute log-magnitude difference, averaged over
  several FFT sizes (Parallel WaveGAN's auxiliary loss, as a measure);
- `mel_distance`: mean absolute difference, in natural-log units, between the estimate's log-mel spectrogram and
  the spectrogram it was made from.

None of them needs the phases to match: a vocoder's output is not sample-aligned with the original.
Signals of different lengths are compared over the shorter one.
"""

import numpy as np

# (FFT size, hop, window) of the multi-resolution STFT distance.
RESOLUTIONS = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024))
# Magnitudes are floored here before logs (about -100 dB of full scale): silence must not give -inf.
MAGNITUDE_FLOOR = 1e-5


def _pair(reference, estimate):
    reference = np.asarray(reference, np.float32).reshape(-1)
    estimate = np.asarray(estimate, np.float32).reshape(-1)
    length = min(len(reference), len(estimate))
    if length == 0:
        raise ValueError("cannot compare an empty signal")
    if not (np.all(np.isfinite(reference[:length])) and np.all(np.isfinite(estimate[:length]))):
        raise ValueError("signals must be finite")
    return reference[:length], estimate[:length]


def stft_magnitudes(signal, n_fft, hop, window):
    """`|STFT|` of `signal` (centred Hann frames), `(bins, frames)`."""
    import librosa

    return np.abs(librosa.stft(signal, n_fft=n_fft, hop_length=hop, win_length=window, window="hann",
                               center=True))


def stoi(reference, estimate, sample_rate):
    """STOI of `estimate` against `reference` (pystoi; resampled to 10 kHz inside; needs a few hundred ms)."""
    from pystoi import stoi as pystoi_stoi

    reference, estimate = _pair(reference, estimate)
    return float(pystoi_stoi(reference.astype(np.float64), estimate.astype(np.float64), int(sample_rate),
                             extended=False))


def log_spectral_distance(reference, estimate, n_fft=512, hop=100, window=400):
    """Log-spectral distance in dB: per frame, the RMS over bins of `20 log10(|S_ref| / |S_est|)`, then the mean
    over frames. Magnitudes are floored at `MAGNITUDE_FLOOR`."""
    reference, estimate = _pair(reference, estimate)
    ref = np.maximum(stft_magnitudes(reference, n_fft, hop, window), MAGNITUDE_FLOOR)
    est = np.maximum(stft_magnitudes(estimate, n_fft, hop, window), MAGNITUDE_FLOOR)
    difference = 20.0 * np.log10(ref / est)
    return float(np.mean(np.sqrt(np.mean(difference ** 2, axis=0))))


def multi_resolution_stft(reference, estimate, resolutions=RESOLUTIONS):
    """Spectral convergence `||S_ref| - |S_est||_F / ||S_ref||_F` and mean `|log |S_ref| - log |S_est||`
    (natural log, magnitudes floored at `MAGNITUDE_FLOOR`), each averaged over `resolutions`.

    Returns:
        `{"spectral_convergence": ..., "log_magnitude": ..., "total": sum of the two}`.
    """
    reference, estimate = _pair(reference, estimate)
    convergence, log_magnitude = [], []
    for n_fft, hop, window in resolutions:
        ref, est = stft_magnitudes(reference, n_fft, hop, window), stft_magnitudes(estimate, n_fft, hop, window)
        convergence.append(np.linalg.norm(ref - est) / max(np.linalg.norm(ref), MAGNITUDE_FLOOR))
        log_magnitude.append(np.mean(np.abs(np.log(np.maximum(ref, MAGNITUDE_FLOOR))
                                            - np.log(np.maximum(est, MAGNITUDE_FLOOR)))))
    sc, mag = float(np.mean(convergence)), float(np.mean(log_magnitude))
    return {"spectral_convergence": sc, "log_magnitude": mag, "total": sc + mag}


def mel_distance(estimate, mel, settings):
    """Mean absolute difference (natural-log units) between `data.features.log_mel(estimate)` and `mel`, the
    spectrogram the estimate was made from, over the frames both have."""
    from data.features import log_mel

    mel = np.asarray(mel, np.float32)
    made = log_mel(np.asarray(estimate, np.float32).reshape(-1), settings)
    frames = min(len(made), len(mel))
    if frames == 0:
        raise ValueError("no frames to compare")
    return float(np.mean(np.abs(made[:frames] - mel[:frames])))


def vocoder_scores(reference, estimate, mel, settings):
    """All the measures of `estimate` (made from `mel`, with `settings`) against `reference`.

    Returns:
        `{"stoi", "lsd_db", "mrstft_sc", "mrstft_log_mag", "mrstft", "mel_distance"}`.
    """
    rate = settings.sample_rate
    multi = multi_resolution_stft(reference, estimate)
    return {"stoi": stoi(reference, estimate, rate),
            "lsd_db": log_spectral_distance(reference, estimate, settings.n_fft, settings.hop_length,
                                            settings.win_length),
            "mrstft_sc": multi["spectral_convergence"], "mrstft_log_mag": multi["log_magnitude"],
            "mrstft": multi["total"], "mel_distance": mel_distance(estimate, mel, settings)}


class SegmentPlan:
    """How `split_spectrogram` cut a spectrogram into parallel streams, so that `join_segments` can stitch them.

    Attributes:
        streams: streams (segments) used.
        segment_frames: frame intervals each segment stands for (`segment_frames * hop` samples kept per stream).
        warmup_frames: frames generated before each segment and discarded (floor frames before the first).
        context_frames: real frames after each segment's end given to it (its upsampler's look-ahead).
        total_samples: `(frames - 1) * hop` of the whole spectrogram.
        hop: samples per frame.
    """

    def __init__(self, streams, segment_frames, warmup_frames, context_frames, total_samples, hop):
        self.streams, self.segment_frames, self.warmup_frames = streams, segment_frames, warmup_frames
        self.context_frames, self.total_samples, self.hop = context_frames, total_samples, hop

    @property
    def samples_per_stream(self):
        """Samples to generate in each stream: the warm-up, then the segment."""
        return (self.warmup_frames + self.segment_frames) * self.hop

    def describe(self):
        return (f"{self.streams} parallel streams, each a segment of {self.segment_frames} frames "
                f"({self.segment_frames * self.hop} samples) after {self.warmup_frames} frames of warm-up "
                f"(generated and discarded) and with {self.context_frames} frames of look-ahead; segments joined "
                "end to end, no cross-fade")


def split_spectrogram(mel, settings, streams, warmup_frames=8):
    """Cuts a log-mel spectrogram `(frames, n_mels)` at frame boundaries into `streams` segments of equal length,
    to be generated as parallel streams (`models.generate(model, n, mel=stacked)`).

    Segment `s` stands for samples `[s * L * hop, (s + 1) * L * hop)` (`L = ceil((frames - 1) / streams)`), whose
    frames are `s * L` to `(s + 1) * L`. Its stream is given `warmup_frames` frames before that (so the kept audio
    has a history made under the right conditioning; silent floor frames before the clip) and
    `data.features.CONTEXT_FRAMES` frames after (what the upsampler reads ahead; floor frames past the end).

    Returns:
        `(stacked, plan)`: `(streams, warmup + L + 1 + CONTEXT_FRAMES, n_mels)` spectrograms, and the
        `SegmentPlan`; generate `plan.samples_per_stream` samples per stream and pass them to `join_segments`.
    """
    from data.features import CONTEXT_FRAMES, samples_for_frames

    mel = np.asarray(mel, np.float32)
    frames = mel.shape[0]
    if frames < 2:
        raise ValueError(f"a spectrogram to split needs at least 2 frames, got {frames}")
    streams, warmup_frames = max(1, int(streams)), max(0, int(warmup_frames))
    intervals = frames - 1
    length = -(-intervals // streams)  # frame intervals per segment
    streams = -(-intervals // length)  # fewer when the clip is short
    floor = settings.floor_value
    ahead = CONTEXT_FRAMES
    padded = np.concatenate([np.full((warmup_frames, mel.shape[1]), floor, np.float32), mel,
                             np.full((streams * length - intervals + ahead, mel.shape[1]), floor, np.float32)])
    window = warmup_frames + length + 1 + ahead
    stacked = np.stack([padded[s * length:s * length + window] for s in range(streams)])
    return stacked, SegmentPlan(streams, length, warmup_frames, ahead, samples_for_frames(frames, settings),
                                settings.hop_length)


def join_segments(audio, plan):
    """The whole resynthesis from the streams `split_spectrogram` planned: `(plan.total_samples,)`."""
    audio = np.asarray(audio, np.float32)
    start = plan.warmup_frames * plan.hop
    kept = audio[:, start:start + plan.segment_frames * plan.hop]
    return kept.reshape(-1)[:plan.total_samples]
