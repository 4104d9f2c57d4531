"""Generation speed: samples per second and real-time factor, fast path against the naive loop.

    python bench/generation.py                 # default model and one twice as deep, 1 / 8 / 64 streams
    python bench/generation.py --seconds 2     # longer timing runs

Prints, for each model: the naive loop (a full forward pass over the receptive field per sample, what the
original script did), and `models.generate` with 1, 8 and 64 streams. Real-time factor = seconds of audio
made per second at 8 and 16 kHz (above 1: faster than real time). The machine's dense float32
matrix-multiply rate (the faster of TensorFlow's and NumPy's, measured as in bench/training.py) is measured in
the same run, so the achieved FLOP/s reads as a share of it.
Weights are random: speed does not depend on what a model has learnt.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per measurement")
    parser.add_argument("--streams", default="1,8,64", help="stream counts, comma-separated")
    args = parser.parse_args()

    import keras
    import numba

    import models
    from models import gemm
    from training import measure_matmul  # bench/training.py, beside this script

    # The same limit as bench/training.py: TensorFlow's oneDNN uses AVX-512 where the CPU has it, the OpenBLAS
    # that NumPy ships may not, so the faster of the two float32 rates is the machine's.
    rates = measure_matmul()
    rate = max(rates["tensorflow_float32"], rates["numpy_float32"])
    print(f"machine: {os.cpu_count()} CPU cores, numba threads {numba.get_num_threads()}, "
          f"{gemm.LANES}-lane products; float32 matrix multiply 2048^3 on all cores: TensorFlow "
          f"{rates['tensorflow_float32'] / 1e9:.0f} GFLOP/s, NumPy {rates['numpy_float32'] / 1e9:.0f} GFLOP/s")
    print()
    print("| model | path | streams | samples/s | real-time x at 8 kHz | at 16 kHz | GFLOP/s | share of matmul |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, stacks in (("default 2x10, 64/128 ch", 2), ("twice as deep 4x10", 4)):
        keras.utils.set_random_seed(0)
        model = models.build_wavenet(stacks=stacks, layers=10, sample_rate=16000)
        flops = flops_per_sample(model)
        rows = []
        prime = np.random.default_rng(0).uniform(-0.5, 0.5, models.wavenet_spec(model).receptive_field)
        models.generate_naive(model, 2, prime=prime, seed=0)  # warm up
        start = time.perf_counter()
        models.generate_naive(model, 16, prime=prime, seed=0)
        rows.append(("naive full forward", 1, 16 / (time.perf_counter() - start)))
        net = models.IncrementalWaveNet(model)
        for streams in (int(s) for s in args.streams.split(",")):
            per_step = timed(lambda n, k=streams: models.generate(net, n, num_streams=k, seed=0), args.seconds)
            rows.append(("models.generate", streams, per_step * streams))
        for path, streams, samples in rows:
            print(f"| {name} | {path} | {streams} | {samples:,.0f} | {samples / 8000:.2f} | {samples / 16000:.2f} "
                  f"| {samples * flops / 1e9:.1f} | {samples * flops / rate:.0%} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
