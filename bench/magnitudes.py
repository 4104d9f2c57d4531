"""How far a vocoder's magnitudes can get past the mel filterbank's inverse, and what Griffin-Lim makes of them.

    python bench/magnitudes.py                      # train.wav fits, the first 20 s of validate.wav scored
    python bench/magnitudes.py --seconds 60 --iterations 16 32
    python bench/magnitudes.py --generator runs/gan-.../generator.keras     # and a trained vocoder's magnitudes

The GAN vocoder's istft generator starts its magnitudes from the filterbank's inverse and learns a correction;
Griffin-Lim then finds phases for them. This bench asks what better magnitudes are worth before any network is
trained. On the recording's log-mel spectrogram (the vocoder's default settings), it compares these magnitudes:
- `inverse`: librosa's non-negative inverse of the mel filterbank (`mel_to_stft`, as librosa's Griffin-Lim);
- `inverse + projection`: the same after `--projection` multiplicative updates of `models.MelProjection`, which
  rescale each bin so the magnitudes' mel spectrogram is the given one;
- `linear fit`: the inverse's log-magnitudes plus a ridge regression (`--ridge`) on the log-mel frames within
  `--context` frames either side and the inverse's own log-magnitudes, fitted on the training audio to the
  log-magnitudes of its STFT: what one linear layer can learn;
- `linear fit + projection`: both;
- `recording's magnitudes`: the held-out audio's own STFT magnitudes (the ceiling);
- with `--generator`, each trained istft generator's predicted magnitudes (after its mel projection, if any).
Each goes through librosa's Griffin-Lim (momentum 0.99, random start, seed 0) at each `--iterations` count, and is
scored against the held-out clip (evaluation/vocoder.py: STOI, log-spectral distance), with each magnitude
estimate's mean absolute log-magnitude error (nats, floored at the spectrogram's floor) beside them.

Prints the machine line first (bench/machine.py).
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SPEECH = ROOT.parent / "shared" / "audio" / "speech"


def features(audio, settings, context):
    """`(inputs, log inverse, log-mel, log STFT magnitudes)` per frame of `audio`."""
    import librosa
    import numpy as np

    from data.features import log_mel
    from evaluation.vocoder import stft_magnitudes

    mel = log_mel(audio, settings)
    inverse = librosa.feature.inverse.mel_to_stft(np.exp(mel).T, sr=settings.sample_rate, n_fft=settings.n_fft,
                                                  power=1.0, fmin=settings.fmin, fmax=settings.top_frequency).T
    true = stft_magnitudes(audio, settings.n_fft, settings.hop_length, settings.win_length).T
    frames = min(len(mel), len(inverse), len(true))
    mel, floor = mel[:frames], settings.log_floor
    log_inverse = np.log(np.maximum(inverse[:frames], floor))
    padded = np.pad(mel, [(context, context), (0, 0)], mode="edge")
    around = np.concatenate([padded[i:i + frames] for i in range(2 * context + 1)], axis=1)
    inputs = np.concatenate([around, log_inverse, np.ones((frames, 1))], axis=1)
    return inputs, log_inverse, mel, np.log(np.maximum(true[:frames], floor))


def generator_magnitudes(generator, mel):
    """A trained istft generator's predicted log-magnitudes for each frame of `mel` (its "spectrum" layer, before
    any Griffin-Lim iterations)."""
    import numpy as np

    from data.features import CONTEXT_FRAMES, mel_settings, pad_features
    from models import spectrum_model, vocoder_settings

    settings = vocoder_settings(generator)
    if settings != mel_settings(8000):
        raise SystemExit(f"bench/magnitudes.py: --generator needs the default mel settings at 8000 Hz, which this "
                         f"bench uses; the generator has {settings.describe()}")
    if settings.n_fft != generator.get_layer("inverse_stft").fft_length:
        raise SystemExit("bench/magnitudes.py: --generator needs the mel layout (the spectrogram's own FFT)")
    rows = np.asarray(spectrum_model(generator)(pad_features(mel, settings)[None].astype(np.float32)))[0]
    return rows[CONTEXT_FRAMES:CONTEXT_FRAMES + len(mel), :settings.n_fft // 2 + 1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train", default=str(SPEECH / "train.wav"), help="audio the linear fit is fitted on")
    parser.add_argument("--validate", default=str(SPEECH / "validate.wav"), help="held-out audio scored")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of the held-out audio scored")
    parser.add_argument("--iterations", type=int, nargs="+", default=[16, 32], help="Griffin-Lim iterations")
    parser.add_argument("--projection", type=int, default=5, help="MelProjection updates")
    parser.add_argument("--context", type=int, default=2, help="log-mel frames either side in the linear fit")
    parser.add_argument("--ridge", type=float, default=100.0, help="the linear fit's ridge penalty")
    parser.add_argument("--generator", nargs="*", default=[], help="trained istft generators (.keras) to score too")
    args = parser.parse_args(argv)

    import librosa
    import numpy as np

    from data.audio import load_audio
    from data.features import mel_settings
    from evaluation.vocoder import log_spectral_distance, stoi
    from machine import print_machine

    print_machine()
    settings = mel_settings(8000)
    train = load_audio(args.train, settings.sample_rate).signals
    inputs, log_inverse, _, log_true = (np.concatenate(parts) for parts in
                                        zip(*(features(signal, settings, args.context) for signal in train)))
    weights = np.linalg.solve(inputs.T @ inputs + args.ridge * np.eye(inputs.shape[1]),
                              inputs.T @ (log_true - log_inverse))
    print(f"linear fit on {args.train}: {len(inputs):,} frames, {inputs.shape[1]} inputs per frame", flush=True)

    held_out = load_audio(args.validate, settings.sample_rate).signals[0][:int(args.seconds * settings.sample_rate)]
    inputs, log_inverse, mel, log_true = features(held_out, settings, args.context)
    length = (len(mel) - 1) * settings.hop_length
    reference = held_out[:length]

    import models

    def projected(log_magnitudes):
        layer = models.MelProjection(settings, settings.n_fft, args.projection)
        return np.asarray(layer([log_magnitudes[None].astype(np.float32), mel[None].astype(np.float32)]))[0]

    fitted = log_inverse + inputs @ weights
    estimates = {"inverse": log_inverse, f"inverse + projection ({args.projection})": projected(log_inverse),
                 "linear fit": fitted, f"linear fit + projection ({args.projection})": projected(fitted),
                 "recording's magnitudes": log_true}
    for path in args.generator:
        estimates[f"generator {path}"] = generator_magnitudes(models.load_model(path), mel)[:len(log_true)]
    print(f"\nFirst {len(reference) / settings.sample_rate:g} s of {args.validate}; librosa's Griffin-Lim "
          f"(momentum 0.99, random start)\n")
    print("| magnitudes | log-magnitude error (nats) | " + " | ".join(
        f"STOI, {n} it. | LSD (dB), {n} it." for n in args.iterations) + " |")
    print("|---|---:|" + "---:|---:|" * len(args.iterations))
    floor = np.log(settings.log_floor)
    for name, log_magnitudes in estimates.items():
        error = np.mean(np.abs(np.maximum(log_magnitudes, floor) - log_true))
        cells = []
        for count in args.iterations:
            np.random.seed(0)
            audio = librosa.griffinlim(np.exp(log_magnitudes).T, n_iter=count, hop_length=settings.hop_length,
                                       win_length=settings.win_length, n_fft=settings.n_fft, window="hann",
                                       center=True, length=length)
            cells.append(f"{stoi(reference, audio, settings.sample_rate):.4f} | "
                         f"{log_spectral_distance(reference, audio):.2f}")
        print(f"| {name} | {error:.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
