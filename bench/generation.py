"""Generation speed: samples per second and real-time factor, fast path against the naive loop.

    python bench/generation.py                 # default model and one twice as deep, 1 / 8 / 64 streams
    python bench/generation.py --seconds 2     # longer timing runs
    python bench/generation.py --quick         # one stream, brief timings: checks that it runs

Prints, for each model: the naive loop (a full forward pass over the receptive field per sample, what the
original script did), and `models.generate` with 1, 8 and 64 streams, with float32 and with bfloat16 weights
(`--precision bfloat16`). Where fewer streams than threads split each step across the cores, the same count is
also timed on one core, so the split's gain reads off the table. Next to the default model, the same
network conditioned on log-mel spectrograms (a vocoder: 80 bins at 8 kHz, hop 100, 64 upsampler channels;
random spectrograms) at 1 and 64 streams (`--conditioned-streams`), upsampling included; below the table, its
speed as a share of the unconditioned model's at the same stream count (goal: at least 0.70). Real-time factor =
seconds of audio
made per second at 8 and 16 kHz (above 1: faster than real time). The machine's dense float32
matrix-multiply rate (the faster of TensorFlow's and NumPy's, `measure_matmul` in bench/machine.py, as
bench/training.py measures it) is measured in the same run, so the achieved FLOP/s reads as a share of it;
TensorFlow's bfloat16 rate is printed beside it.
Weights are random: speed does not depend on what a model has learnt.

Prints the machine first (CPU model, CPU count, AVX2 / AVX-512 / AVX-512 BF16 / AMX, library versions; see
bench/machine.py), then the matmul rates, then the table under a "CPU: ..." caption. `--quick` only checks
that the bench runs (its figures mean nothing).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py

import numpy as np  # noqa: E402

from cli import positive_float, positive_int  # noqa: E402
from data.features import mel_settings  # noqa: E402
from machine import caption, float32_limit, matmul_line, measure_matmul, print_machine, quiet_tensorflow  # noqa: E402


def flops_per_sample(model):
    """Multiply-adds of one generation step, times two: the products `models.kernels` computes."""
    net_layers = [layer for layer in model.layers if layer.get_weights()]
    return 2.0 * sum(layer.get_weights()[0].size for layer in net_layers)


def timed(function, minimum_seconds):
    function(1)  # compile and warm up
    steps, elapsed = 64, 0.0
    while elapsed < minimum_seconds:
        steps *= 2
        start = time.perf_counter()
        function(steps)
        elapsed = time.perf_counter() - start
    return steps / elapsed


def stream_counts(text):
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"positive whole numbers, comma-separated, got {text!r}")
    return counts


def main():
    parser = argparse.ArgumentParser(prog="bench/generation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=positive_float, default=1.0,
                        help="minimum timing per models.generate measurement (default: 1)")
    parser.add_argument("--streams", type=stream_counts, default=[1, 8, 64],
                        help="stream counts, comma-separated (default: 1,8,64)")
    parser.add_argument("--conditioned-streams", type=stream_counts, default=[1, 64],
                        help="stream counts for the mel-conditioned model, comma-separated (default: 1,64)")
    parser.add_argument("--naive-samples", type=positive_int, default=16,
                        help="samples timed through the naive loop (default: 16)")
    parser.add_argument("--matmul-seconds", type=positive_float, default=2.0,
                        help="timing per matrix-multiply rate, split into 4 blocks (default: 2)")
    parser.add_argument("--quick", action="store_true",
                        help="check that the bench runs: --seconds 0.05 --streams 1 --conditioned-streams 1 "
                             "--naive-samples 2 --matmul-seconds 0.2; the figures mean nothing")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.streams, args.naive_samples, args.matmul_seconds = 0.05, [1], 2, 0.2
        args.conditioned_streams = [1]

    print_machine()
    quiet_tensorflow()
    import keras
    import numba

    import models
    from models import gemm

    # The same limit as bench/training.py: TensorFlow's oneDNN uses AVX-512 where the CPU has it, the OpenBLAS
    # that NumPy ships may not, so the faster of the two float32 rates is the machine's.
    rates = measure_matmul(args.matmul_seconds)
    rate = float32_limit(rates)
    print(matmul_line(rates))
    print(f"numba threads {numba.get_num_threads()}, {getattr(gemm, 'LANES', '?')}-lane products; share below: of "
          f"{rate / 1e9:,.0f} GFLOP/s (the faster float32 rate)")
    print()
    print(caption())
    print("| model | path | streams | samples/s | real-time x at 8 kHz | at 16 kHz | GFLOP/s | share of f32 matmul |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    plain_rates, conditioned_rates = {}, {}
    for name, stacks in (("default 2x10, 64/128 ch", 2), ("twice as deep 4x10", 4)):
        keras.utils.set_random_seed(0)
        model = models.build_wavenet(stacks=stacks, layers=10, sample_rate=16000)
        flops = flops_per_sample(model)
        rows = []
        prime = np.random.default_rng(0).uniform(-0.5, 0.5, models.wavenet_spec(model).receptive_field)
        models.generate_naive(model, 2, prime=prime, seed=0)  # warm up
        start = time.perf_counter()
        models.generate_naive(model, args.naive_samples, prime=prime, seed=0)
        rows.append(("naive full forward", 1, args.naive_samples / (time.perf_counter() - start)))
        for precision in ("float32", "bfloat16"):
            net = models.IncrementalWaveNet(model, precision=precision)
            for streams in args.streams:
                split = net._run.cores(streams) if net.engine == "numba" else 1
                for cores in sorted({1, split}, reverse=True):  # a split step, then the same on one core
                    timed_net = net if cores == split else models.IncrementalWaveNet(model, precision=precision,
                                                                                     split_cores=cores)
                    per_step = timed(lambda n, k=streams, m=timed_net: models.generate(m, n, num_streams=k, seed=0),
                                     args.seconds)
                    rows.append((path_label(precision, cores), streams, per_step * streams))
                    if stacks == 2 and precision == "float32" and cores == split:
                        plain_rates[streams] = per_step * streams
        print_rows(name, rows, flops, rate)
        if stacks == 2:
            conditioned_rows(args, rate, plain_rates, conditioned_rates)
    for streams, samples in conditioned_rates.items():
        if streams in plain_rates:
            print(f"mel-conditioned / unconditioned default model, {streams} stream{'s' if streams > 1 else ''}: "
                  f"{samples / plain_rates[streams]:.2f} (goal: >= 0.70)")
        else:
            print(f"mel-conditioned default model, {streams} streams: no unconditioned row to compare with "
                  "(add the count to --streams)")


def path_label(precision, cores):
    label = "models.generate" + (", bfloat16 weights" if precision == "bfloat16" else "")
    return label + (f", each step on {cores} cores" if cores > 1 else "")


def print_rows(name, rows, flops, rate):
    for path, streams, samples in rows:
        print(f"| {name} | {path} | {streams} | {samples:,.0f} | {samples / 8000:.2f} | {samples / 16000:.2f} "
              f"| {samples * flops / 1e9:.1f} | {samples * flops / rate:.0%} |")
    sys.stdout.flush()


def conditioned_rows(args, rate, plain_rates, conditioned_rates):
    """Rows of the default model conditioned on 80-bin log-mel spectrograms at 8 kHz (random frames, upsampled by
    the model's own upsampler inside `models.generate`); fills `conditioned_rates`."""
    import keras

    import models

    keras.utils.set_random_seed(0)
    settings = mel_settings(8000, n_mels=80)
    model = models.build_wavenet(stacks=2, layers=10, sample_rate=8000, mel=settings, mel_channels=64)
    flops = flops_per_sample(model)  # the mel projections into every gate and the upsampler's layers included
    net = models.IncrementalWaveNet(model)
    rng = np.random.default_rng(0)
    hop = settings.hop_length

    def run(n, streams):
        mel = rng.uniform(-9.0, 0.0, (-(-n // hop) + 1, settings.n_mels)).astype(np.float32)
        models.generate(net, n, num_streams=streams, mel=mel, seed=0)

    rows = []
    for streams in args.conditioned_streams:
        per_step = timed(lambda n, k=streams: run(n, k), args.seconds)
        rows.append(("models.generate, mel-conditioned", streams, per_step * streams))
        conditioned_rates[streams] = per_step * streams
    print_rows("default 2x10 + log-mel (80 bins, 8 kHz)", rows, flops, rate)

if __name__ == "__main__":
    main()
