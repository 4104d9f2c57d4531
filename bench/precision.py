"""What bfloat16 generation weights cost and gain for one trained WaveNet.

    python bench/precision.py --model runs/speech/model.keras --held-out ../shared/audio/speech/validate.wav
    python bench/precision.py --model M.keras --held-out V.wav --quick      # checks that it runs

`generate.py --precision bfloat16` rounds the weight matrices to bfloat16 and reads them so (half the bytes per
step; the products stay float32). For each precision this prints, on the bits scale of evaluate.py (256 mu-law
bins):
- held-out bits per sample: the held-out file scored by the model with the weights generation uses (for
  bfloat16, `models.generation.reduced_model`): what the rounding costs in likelihood;
- own history: `--streams` streams of `--seconds` generated with that precision (same seed, temperature 1), then
  scored by the float32 model: whether the rounded generator wanders where the model finds the audio less likely;
- generation speed with 1 stream and 64 streams, on this machine (machine line and CPU caption first).
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

import numpy as np  # noqa: E402

from cli import positive_float, positive_int  # noqa: E402
from machine import best_rate, caption, print_machine, quiet_tensorflow  # noqa: E402


def samples_per_second(net, streams, seconds):
    import models

    steps = max(256, 8192 // streams)
    return best_rate(lambda: models.generate(net, steps, num_streams=streams, seed=0), steps * streams, seconds)


def main():
    parser = argparse.ArgumentParser(prog="bench/precision.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained WaveNet (.keras)")
    parser.add_argument("--held-out", required=True, help="held-out audio at the model's sample rate")
    parser.add_argument("--seconds", type=positive_float, default=10.0,
                        help="seconds generated per stream for the own-history score (default: 10)")
    parser.add_argument("--streams", type=positive_int, default=4, help="streams generated (default: 4)")
    parser.add_argument("--timing", type=positive_float, default=3.0,
                        help="seconds of timing per speed figure (default: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 0.1 s of held-out audio and of generation, brief timings")
    args = parser.parse_args()
    print_machine()
    quiet_tensorflow()
    import models
    from data.audio import read_audio
    from evaluation import signal_bits
    from models.generation import IncrementalWaveNet, reduced_model

    model = models.load_model(args.model)
    spec = models.wavenet_spec(model)
    held_out = read_audio(args.held_out, spec.sample_rate)[0]
    seconds, timing = args.seconds, args.timing
    if args.quick:
        held_out, seconds, timing = held_out[:spec.sample_rate // 10], 0.1, 0.05
    num_samples = int(seconds * spec.sample_rate)
    print(f"model: {args.model}, {model.count_params():,} parameters; held out: {args.held_out}, "
          f"{len(held_out) / spec.sample_rate:.1f} s; own history: {args.streams} x {seconds:g} s\n")
    print(caption())
    print("| weights | held-out bits/sample | own history, bits/sample (float32 model) | 1 stream, samples/s "
          "| 64 streams, samples/s |")
    print("|---|---:|---:|---:|---:|")
    for precision in ("float32", "bfloat16"):
        held_out_bits = float(np.mean(signal_bits(reduced_model(model, precision), spec, held_out)))
        generated = models.generate(model, num_samples, num_streams=args.streams, seed=0, precision=precision)
        own = float(np.mean([np.mean(signal_bits(model, spec, stream)) for stream in generated]))
        net = IncrementalWaveNet(model, precision=precision)
        speeds = [samples_per_second(net, streams, timing) for streams in (1, 64)]
        print(f"| {precision} | {held_out_bits:.4f} | {own:.3f} | {speeds[0]:,.0f} | {speeds[1]:,.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
