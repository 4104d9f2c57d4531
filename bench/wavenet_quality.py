"""How well the default WaveNet predicts held-out speech after a fixed CPU training budget.

    python bench/wavenet_quality.py                       # 10 minutes on ../shared/audio/speech
    python bench/wavenet_quality.py --minutes 2 --train a.wav --validate b.wav

Trains the default model with `train_wavenet.py --time-limit`, scores the validation file with `evaluate.py`,
and prints, on the same scale (bits per sample over the 256 mu-law bins of validate.wav):
- the unigram entropy of validate.wav's own mu-law codes (a model that knows only how loud speech is, and
  knows it for this very file),
- linear prediction: an order-32 LPC filter fitted on train.wav, residual modelled as a Gaussian and as a
  Laplacian whose widths are fitted on train.wav,
- the WaveNet.

The machine (CPU model, CPU count, AVX2 / AVX-512 / AVX-512 BF16 / AMX, library versions; bench/machine.py) is
printed first, and a "CPU: ..." caption above the final table, since the training budget is CPU time. To
check only that the bench runs (the figures mean nothing):

    python bench/wavenet_quality.py --minutes 0.5 --output-dir /tmp/q --extra "--steps-per-epoch 2"
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

from machine import caption, print_machine  # noqa: E402

from data.audio import read_audio  # noqa: E402
from data.mulaw import mu_law_bin_edges, mu_law_encode, mu_law_round_trip  # noqa: E402

SPEECH = ROOT.parent / "shared" / "audio" / "speech"


def unigram_entropy(codes, channels=256):
    counts = np.bincount(codes, minlength=channels).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def lpc_bits(train, validate, order=32):
    """Bits per sample of an LPC predictor (fitted on `train`) on `validate`, Gaussian and Laplace residuals."""
    import librosa

    train_in, validate_in = mu_law_round_trip(train), mu_law_round_trip(validate)
    coefficients = librosa.lpc(train_in.astype(np.float64), order=order)

    def predict(inputs):
        # Prediction of sample t+1 from inputs up to t: -sum(a[1:] * x[t..t-order+1]).
        from scipy.signal import lfilter

        return lfilter(-coefficients[1:], [1.0], inputs)

    residual = train[1:] - predict(train_in)[:-1]
    prediction = predict(validate_in)[:-1]
    targets = validate[1:]
    codes = mu_law_encode(targets)
    edges = mu_law_bin_edges().astype(np.float64)
    lower, upper = edges[codes], edges[codes + 1]
    lower[codes == 0], upper[codes == 255] = -np.inf, np.inf
    results = {}
    for name, distribution in (("gaussian", stats.norm(scale=residual.std())),
                               ("laplace", stats.laplace(scale=np.abs(residual - np.median(residual)).mean()))):
        mass = distribution.cdf(upper - prediction) - distribution.cdf(lower - prediction)
        results[name] = float(-np.log2(np.maximum(mass, 1e-12)).mean())
    return results


def main():
    parser = argparse.ArgumentParser(prog="bench/wavenet_quality.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--train", default=str(SPEECH / "train.wav"))
    parser.add_argument("--validate", default=str(SPEECH / "validate.wav"))
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "bench-quality"))
    parser.add_argument("--extra", default="", help="more train_wavenet.py flags, in one string")
    args = parser.parse_args()

    print_machine()
    train, rate = read_audio(args.train)
    validate, _ = read_audio(args.validate, rate)
    codes = mu_law_encode(validate[1:])
    print(f"{Path(args.validate).name}: {len(validate) / rate:.0f} s at {rate} Hz")
    unigram = unigram_entropy(codes)
    print(f"{'unigram entropy of its mu-law codes':<44} {unigram:6.3f} bits/sample")
    lpc = lpc_bits(train, validate)
    print(f"{'linear prediction (LPC-32), Gaussian residual':<44} {lpc['gaussian']:6.3f} bits/sample")
    print(f"{'linear prediction (LPC-32), Laplace residual':<44} {lpc['laplace']:6.3f} bits/sample")
    sys.stdout.flush()

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(ROOT / "train_wavenet.py"), "--train", args.train, "--validate", args.validate,
               "--time-limit", str(args.minutes), "--epochs", "100000", "--sample-every", "0",
               "--output-dir", args.output_dir, *args.extra.split()]
    print("$ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if not (Path(args.output_dir) / "history.csv").is_file():
        sys.exit(f"bench/wavenet_quality.py: no epoch finished within --minutes {args.minutes:g}: give it longer")
    history = (Path(args.output_dir) / "history.csv").read_text().splitlines()
    evaluation = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(Path(args.output_dir) / "model.keras"),
                                 args.validate, "--json"], check=True, env=env, cwd=ROOT, capture_output=True,
                                text=True)
    bits = json.loads(evaluation.stdout)["bits_per_sample"]
    config = json.loads((Path(args.output_dir) / "config.json").read_text())
    tps = [float(row.split(",")[history[0].split(",").index("targets_per_second")]) for row in history[1:]]
    epochs = len(history) - 1
    print(f"WaveNet trained {seconds / 60:.1f} min wall ({epochs} epochs, "
          f"{config['parameters']:,} parameters, median {np.median(tps):,.0f} targets/s)")
    print(f"{'WaveNet (default model), whole validate.wav':<44} {bits:6.3f} bits/sample")
    print()
    print(caption())
    name = Path(args.validate).name
    print(f"| predictor | bits/sample on {name} |")
    print("|---|---:|")
    print(f"| uniform guess over 256 codes | {math.log2(256):.3f} |")
    print(f"| unigram entropy of {name}'s own mu-law codes | {unigram:.3f} |")
    for residual in ("Gaussian", "Laplace"):
        print(f"| linear prediction (LPC-32 fitted on {Path(args.train).name}), {residual} residual | "
              f"{lpc[residual.lower()]:.3f} |")
    print(f"| **WaveNet, default model, {args.minutes:g} min training ({epochs} epochs, {np.median(tps):,.0f} "
          f"targets/s)** | **{bits:.3f}** |")


if __name__ == "__main__":
    main()
