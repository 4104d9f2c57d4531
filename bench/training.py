"""Training throughput against the machine's limit, the data pipeline's rate, and memory on long files.

    python bench/training.py                   # everything (about 6 minutes on 2 CPU cores)
    python bench/training.py --skip-gan --skip-scale

Each measurement runs in a fresh process, so peak memory belongs to it alone. Rates are the best of several
timed blocks (matrix multiply: 4 blocks of 0.5 s; WaveNet: 3 runs of --steps steps), since other tenants of a
shared machine can only slow a block down:
- the machine's dense matrix-multiply rate (TensorFlow and NumPy, float32 and bfloat16, all cores);
- the default WaveNet (2 x 10 layers, 64/128 channels, 256 classes, batch 4 x 4096) in float32 and
  mixed_bfloat16: targets/s, FLOPs per step, achieved FLOP/s and its share of the float32 matmul rate,
  peak memory;
- the data pipeline alone (FrameGenerator, no model): windows/s, and how many times faster than training
  consumes them;
- the default WaveGAN (d = 64, 16384-sample clips, batch 4, WGAN-GP with 5 critic steps);
- scale: peak memory of a short WaveNet run on a 6-minute and on a 60-minute training file.

FLOPs count the products of every convolution and dense layer (2 per multiply-add); one training step is
counted as three forward passes (forward, and the two products of the backward pass). For WGAN-GP one step is
5 critic steps (each: the generator forward, the critic trained on real and fake, and the gradient penalty,
counted as two more critic training passes) and one generator step.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def forward_flops(model, batch, length=None):
    """2 x multiply-adds of every convolution and Dense layer for one forward pass of `batch`
    examples (`length` samples each where the model takes any length)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv1D", "CausalConv1D", "Conv1DTranspose", "Dense"):
            continue
        kernel = layer.get_weights()[0]
        shape = layer.output.shape if kind != "Conv1DTranspose" else layer.input.shape
        if kind == "Dense" and len(shape) == 2:
            positions = 1
        else:  # a convolution, or a Dense layer applied at every time step
            positions = shape[1] if shape[1] is not None else length
        total += 2 * kernel.size * positions * batch
    return total


def peak_memory_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed_fit(model, data, steps, repeats=1):
    """Seconds per step of `model.fit` after a two-step warm-up (which compiles): the fastest of `repeats`
    runs of `steps` steps (other tenants of a shared machine slow some runs down, never speed one up)."""
    model.fit(data.as_dataset(), epochs=1, steps_per_epoch=2, verbose=0)  # as the trainers feed it
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(data.as_dataset(), epochs=1, steps_per_epoch=steps, verbose=0)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def best_rate(function, flops, seconds=2.0, blocks=4):
    """FLOP/s of `function` (doing `flops` each call): the fastest of `blocks` blocks of repeated calls."""
    function()
    best = 0.0
    for _ in range(blocks):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / blocks:
            function()
            count += 1
        best = max(best, flops * count / (time.perf_counter() - start))
    return best


def measure_matmul():
    import numpy as np
    import tensorflow as tf

    results = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.normal((2048, 2048), dtype=tf.float32), dtype)
        matmul = tf.function(lambda x: tf.linalg.matmul(x, x), jit_compile=False)
        results[f"tensorflow_{dtype}"] = best_rate(lambda: matmul(a).numpy(), 2 * 2048 ** 3)
    x = np.random.default_rng(0).random((2048, 2048), np.float32)
    results["numpy_float32"] = best_rate(lambda: x @ x, 2 * 2048 ** 3)
    return results


def speech(seconds=None):
    from data.audio import read_audio

    path = ROOT / "assets" / "speech" / "demo.wav"
    return read_audio(path)[0]


def measure_wavenet(precision, steps):
    import keras

    import models
    from data.frames import FrameGenerator

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = models.build_wavenet(sample_rate=8000)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=models.loss_for("categorical"))  # as the trainer
    batch, frame = 4, 4096
    data = FrameGenerator([speech()], frame, batch, 1000, seed=0)  # batches are a function of their index
    seconds = timed_fit(model, data, steps, repeats=3)
    flops = 3 * forward_flops(model, batch, frame)
    return {"step_seconds": seconds, "targets_per_second": batch * frame / seconds, "flops_per_step": flops,
            "flops_per_second": flops / seconds, "jit_compile": bool(model.jit_compile),
            "peak_memory_mb": peak_memory_mb()}


def measure_pipeline():
    from data.frames import FrameGenerator

    data = FrameGenerator([speech()], 4096, 4, 100000, seed=0)
    data[0]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        data[count]
        count += 1
    return {"batches_per_second": count / (time.perf_counter() - start),
            "windows_per_second": 4 * count / (time.perf_counter() - start)}


def measure_gan(precision, steps):
    import keras

    from data.frames import FrameGenerator
    from train_gan import GANConfig, build_gan

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    config = GANConfig(sample_rate=8000)
    gan = build_gan(config)
    critic = gan.critic_steps
    data = FrameGenerator([speech()], config.slice_length, config.batch_size * critic, 1000, mode="slice")
    seconds = timed_fit(gan, data, steps)
    b = config.batch_size
    g, d = forward_flops(gan.generator, 1), forward_flops(gan.discriminator, 1)
    flops = critic * b * (g + 3 * d * 2 + 6 * d) + b * (3 * g + 3 * d)
    return {"step_seconds": seconds, "steps_per_second": 1 / seconds, "clips_per_second": b / seconds,
            "flops_per_step": flops, "flops_per_second": flops / seconds, "peak_memory_mb": peak_memory_mb()}


def measure_scale(minutes):
    """Peak memory of three WaveNet training steps on a `minutes`-long 8 kHz file (16-bit on disk)."""
    import numpy as np
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        rng = np.random.default_rng(0)
        with sf.SoundFile(str(path), "w", 8000, 1, "PCM_16") as file:
            for _ in range(int(minutes)):  # a minute at a time: the bench itself stays small
                file.write((0.3 * np.sin(np.arange(480000) * 0.05) + 0.05 * rng.standard_normal(480000)) * 0.8)
        before = peak_memory_mb()
        from train_wavenet import main

        main(["--train", str(path), "--epochs", "1", "--steps-per-epoch", "3", "--validation-steps", "1",
              "--sample-every", "0", "--output-dir", str(Path(tmp) / "run")])
        return {"minutes": minutes, "audio_float32_mb": minutes * 480000 * 4 / 2 ** 20,
                "peak_memory_mb": peak_memory_mb(), "baseline_mb": before}


def child(what, precision, steps, minutes):
    sys.path.insert(0, str(ROOT))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from cli import quiet_tensorflow

    quiet_tensorflow()
    result = {"matmul": measure_matmul, "wavenet": lambda: measure_wavenet(precision, steps),
              "pipeline": measure_pipeline, "gan": lambda: measure_gan(precision, steps),
              "scale": lambda: measure_scale(minutes)}[what]()
    print("RESULT " + json.dumps(result))


def run_child(*args):
    output = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], check=True, cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    return json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed WaveNet steps")
    parser.add_argument("--gan-steps", type=int, default=3, help="timed GAN steps")
    parser.add_argument("--skip-gan", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, precision, steps, minutes = args.child
        return child(what, precision, int(steps), float(minutes))

    matmul = run_child("matmul", "-", 0, 0)
    limit = max(matmul["tensorflow_float32"], matmul["numpy_float32"])
    print(f"machine: {os.cpu_count()} CPU cores; dense matmul 2048^3: TensorFlow float32 "
          f"{matmul['tensorflow_float32'] / 1e9:.0f} GFLOP/s, bfloat16 {matmul['tensorflow_bfloat16'] / 1e9:.0f} "
          f"GFLOP/s; NumPy float32 {matmul['numpy_float32'] / 1e9:.0f} GFLOP/s")
    print(f"limit used below: {limit / 1e9:.0f} GFLOP/s (the faster float32 rate)\n")
    print("| model | precision | step (s) | throughput | GFLOP/step | GFLOP/s | share of f32 matmul | peak memory |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    wavenet = {}
    for precision in ("float32", "mixed_bfloat16"):
        r = wavenet[precision] = run_child("wavenet", precision, args.steps, 0)
        print(f"| WaveNet 2x10 (jit_compile={r['jit_compile']}) | {precision} | {r['step_seconds']:.3f} | "
              f"{r['targets_per_second']:,.0f} targets/s | {r['flops_per_step'] / 1e9:.1f} | "
              f"{r['flops_per_second'] / 1e9:.0f} | {r['flops_per_second'] / limit:.0%} | "
              f"{r['peak_memory_mb']:,.0f} MB |", flush=True)
    if not args.skip_gan:
        for precision in ("float32", "mixed_bfloat16"):
            r = run_child("gan", precision, args.gan_steps, 0)
            print(f"| WaveGAN d=64, 16384, WGAN-GP | {precision} | {r['step_seconds']:.2f} | "
                  f"{r['steps_per_second']:.3f} steps/s, {r['clips_per_second']:.2f} clips/s | "
                  f"{r['flops_per_step'] / 1e9:.0f} | {r['flops_per_second'] / 1e9:.0f} | "
                  f"{r['flops_per_second'] / limit:.0%} | {r['peak_memory_mb']:,.0f} MB |", flush=True)
    pipeline = run_child("pipeline", "-", 0, 0)
    consumed = wavenet["float32"]["targets_per_second"] / 4096
    print(f"\ndata pipeline alone (FrameGenerator, batch 4 x 4096): {pipeline['windows_per_second']:,.0f} windows/s; "
          f"training consumes {consumed:,.1f} windows/s: the pipeline is {pipeline['windows_per_second'] / consumed:,.0f}"
          f" times faster")
    print(f"the original script scored about 52 targets/s here: float32 training is "
          f"{wavenet['float32']['targets_per_second'] / 52:,.0f} times that")
    if not args.skip_scale:
        print("\n| training file | audio as float32 | peak memory | growth over the 6-minute run |")
        print("|---|---:|---:|---:|")
        short = None
        for minutes in (6, 60):
            r = run_child("scale", "float32", 0, minutes)
            short = short or r
            growth = r["peak_memory_mb"] - short["peak_memory_mb"]
            audio_growth = r["audio_float32_mb"] - short["audio_float32_mb"]
            print(f"| {minutes} min at 8 kHz | {r['audio_float32_mb']:,.0f} MB | {r['peak_memory_mb']:,.0f} MB | "
                  f"{growth:,.0f} MB ({growth / audio_growth:.2f} x the extra audio) |" if minutes > 6 else
                  f"| {minutes} min at 8 kHz | {r['audio_float32_mb']:,.0f} MB | {r['peak_memory_mb']:,.0f} MB | - |",
                  flush=True)


if __name__ == "__main__":
    main()
