"""Training throughput against the machine's limit and against the original script, the data pipeline's rate,
and memory on long files.

    python bench/training.py                   # everything (about 6 minutes on 2 CPU cores)
    python bench/training.py --skip-gan --skip-scale
    python bench/training.py --quick           # every measurement once, briefly: checks the bench runs

Prints the machine first (CPU model, CPU count, AVX2 / AVX-512 / AVX-512 BF16 / AMX, library versions), and
a "CPU: ..." caption above each table. Each measurement runs in a fresh process, so peak memory belongs to it
alone. Rates are the best of several timed blocks (matrix multiply: 4 blocks of --matmul-seconds / 4; models:
--repeats runs of their timed steps), since other tenants of a shared machine can only slow a block down:
- the machine's dense matrix-multiply rate (TensorFlow float32 and bfloat16, NumPy float32, all cores);
  the faster float32 rate is the limit the shares below are taken of;
- the default WaveNet (2 x 10 layers, 64/128 channels, 256 classes, batch 4 x 4096) in float32 and
  mixed_bfloat16: targets/s, FLOPs per step, achieved FLOP/s and its share of the float32 matmul rate,
  peak memory;
- the original script's network (bench/original_wavenet.py: 21 gated blocks over 2048-sample frames, batches
  of 20 frames with ONE target each, SGD), timed the same way on random data shaped as the original feeds it,
  and how many times its targets/s our float32 WaveNet trains;
- the data pipeline alone (FrameGenerator, no model): windows/s, and how many times faster than training
  consumes them;
- the default WaveGAN (d = 64, 16384-sample clips, batch 4, WGAN-GP with 5 critic steps);
- the default GAN vocoder (train_gan.py --condition mel: batch 8 of 64-frame segments at 8 kHz; one step is the
  generator forward and backward and the eight discriminators forward and backward on real and generated audio);
- scale: peak memory (RSS) of `train_wavenet.py`, run as its own process, for three steps on a 6-minute and
  on a 60-minute training file;
- distribute: `train_wavenet.py` with the default WaveNet and global batch, as one process (`--distribute none`)
  and as two worker processes of a TF_CONFIG cluster on 127.0.0.1 (`--distribute multi-worker`), each on this
  machine's cores; with GPUs visible, also on one GPU, and mirrored over two when there are two. The rate is
  the chief's targets/s over its second epoch (the first one compiles), as history.csv records it.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, bench/original_wavenet.py

# best_rate and measure_matmul live in bench/machine.py; imported here they stay importable from training too.
from machine import best_rate, caption, float32_limit, matmul_line, measure_matmul, print_machine  # noqa: E402,F401
from cli import positive_float, positive_int  # noqa: E402  (machine puts the project root on the path)

WAVENET_BATCH, WAVENET_FRAME = 4, 4096


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


def timed_fit(model, fit, steps, repeats=1):
    """Seconds per step of `fit(model, steps)` after a two-step warm-up (which compiles): the fastest of
    `repeats` runs of `steps` steps (other tenants of a shared machine slow some runs down, never speed one up)."""
    fit(model, 2)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fit(model, steps)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def fit_frames(data):
    """`fit` as the trainers feed it: the FrameGenerator's batches through its tf.data pipeline."""
    return lambda model, steps: model.fit(data.as_dataset(), epochs=1, steps_per_epoch=steps, verbose=0)


def speech():
    from data.audio import read_audio

    return read_audio(ROOT / "assets" / "speech" / "demo.wav")[0]


def measure_wavenet(precision, steps, repeats):
    import keras

    import models
    from data.frames import FrameGenerator

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = models.build_wavenet(sample_rate=8000)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=models.loss_for("categorical"))  # as the trainer
    batch, frame = WAVENET_BATCH, WAVENET_FRAME
    data = FrameGenerator([speech()], frame, batch, 1000, seed=0)  # batches are a function of their index
    seconds = timed_fit(model, fit_frames(data), steps, repeats)
    flops = 3 * forward_flops(model, batch, frame)
    return {"step_seconds": seconds, "targets_per_second": batch * frame / seconds, "flops_per_step": flops,
            "flops_per_second": flops / seconds, "jit_compile": bool(model.jit_compile),
            "peak_memory_mb": peak_memory_mb()}


def measure_original(steps, repeats):
    """The original script's network (bench/original_wavenet.py) trained as the original trains it: batches of
    20 frames of 2048 samples, one target per frame, SGD; random data of that shape, as NumPy arrays."""
    import keras

    from original_wavenet import BATCH_SIZE, FRAME_SIZE, build_original_wavenet, random_batches

    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    model = build_original_wavenet(FRAME_SIZE)
    x, y = random_batches(steps, FRAME_SIZE, BATCH_SIZE)

    def fit(model, count):
        model.fit(x[:count * BATCH_SIZE], y[:count * BATCH_SIZE], batch_size=BATCH_SIZE, epochs=1, shuffle=False,
                  verbose=0)

    seconds = timed_fit(model, fit, steps, repeats)
    flops = 3 * forward_flops(model, BATCH_SIZE)
    return {"step_seconds": seconds, "targets_per_second": BATCH_SIZE / seconds, "flops_per_step": flops,
            "flops_per_second": flops / seconds, "jit_compile": bool(model.jit_compile),
            "parameters": model.count_params(), "peak_memory_mb": peak_memory_mb()}


def measure_pipeline(seconds):
    from data.frames import FrameGenerator

    data = FrameGenerator([speech()], WAVENET_FRAME, WAVENET_BATCH, 100000, seed=0)
    data[0]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        data[count]
        count += 1
    elapsed = time.perf_counter() - start
    return {"batches_per_second": count / elapsed, "windows_per_second": WAVENET_BATCH * count / elapsed}


def measure_gan(precision, steps, repeats):
    import keras

    import models
    from data.frames import FrameGenerator

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    loss, batch, slice_length = "wgan-gp", 4, 16384  # train_gan.py's defaults
    gan = models.build_wavegan(latent_dim=100, model_dim=64, slice_length=slice_length, sample_rate=8000,
                               phase_shuffle=2, loss=loss, learning_rate=1e-4)
    critic = models.critic_steps(loss)
    data = FrameGenerator([speech()], slice_length, batch * critic, 1000, mode="slice")
    seconds = timed_fit(gan, fit_frames(data), steps, repeats)
    g, d = forward_flops(gan.generator, 1), forward_flops(gan.discriminator, 1)
    flops = critic * batch * (g + 3 * d * 2 + 6 * d) + batch * (3 * g + 3 * d)
    return {"step_seconds": seconds, "steps_per_second": 1 / seconds, "clips_per_second": batch / seconds,
            "flops_per_step": flops, "flops_per_second": flops / seconds, "peak_memory_mb": peak_memory_mb()}


def running_flops(model, inputs):
    """2 x multiply-adds of every convolution and Dense layer of `model` on `inputs`, from the shapes of one forward
    pass (for models whose layers run at several rates over inputs of any length)."""
    import keras
    import numpy as np

    kinds = ("Conv1D", "Conv2D", "Conv1DTranspose", "Dense")
    layers = [layer for layer in model.layers if type(layer).__name__ in kinds]
    outputs = keras.Model(model.inputs, [layer.output for layer in layers])(inputs)
    total = 0
    for layer, output in zip(layers, outputs):
        positions = int(np.prod(output.shape[:-1]))  # batch x time (x period) of the output
        if type(layer).__name__ == "Conv1DTranspose":
            positions //= layer.strides[0]  # each input position's kernel makes `stride` outputs
        total += 2 * int(np.prod(layer.kernel.shape)) * positions
    return total


def measure_vocoder(precision, steps, repeats):
    import keras

    import models
    from data.features import log_mel, mel_settings, pad_features
    from data.frames import FrameGenerator

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    settings, batch, segment = mel_settings(8000), 8, 64  # train_gan.py --condition mel's defaults
    gan = models.build_vocoder_gan(settings)
    signal = speech()
    data = FrameGenerator([signal], segment * settings.hop_length, batch, 1000, mode="vocoder",
                          features=[pad_features(log_mel(signal, settings), settings)], hop=settings.hop_length)
    seconds = timed_fit(gan, fit_frames(data), steps, repeats)
    mel, audio = data[0]
    g, d = running_flops(gan.generator, mel), running_flops(gan.discriminator, audio)
    flops = 3 * (g + 2 * d)  # forward and backward of the generator, and of the discriminators on real and fake
    return {"step_seconds": seconds, "steps_per_second": 1 / seconds,
            "samples_per_second": batch * segment * settings.hop_length / seconds, "flops_per_step": flops,
            "generator_share": 3 * g / flops, "flops_per_second": flops / seconds,
            "peak_memory_mb": peak_memory_mb()}


def measure_scale(minutes):
    """Peak memory of `train_wavenet.py` (its own process) training three steps on a `minutes`-long 8 kHz file
    (16-bit on disk). This wrapper is a fresh process whose only child is the trainer, so the children's peak
    RSS that the kernel reports is the trainer's."""
    import numpy as np
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        rng = np.random.default_rng(0)
        with sf.SoundFile(str(path), "w", 8000, 1, "PCM_16") as file:
            for _ in range(int(round(minutes))):  # a minute at a time: the wrapper itself stays small
                file.write((0.3 * np.sin(np.arange(480000) * 0.05) + 0.05 * rng.standard_normal(480000)) * 0.8)
        command = [sys.executable, str(ROOT / "train_wavenet.py"), "--train", str(path), "--epochs", "1",
                   "--steps-per-epoch", "3", "--validation-steps", "1", "--sample-every", "0",
                   "--output-dir", str(Path(tmp) / "run")]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"train_wavenet.py exited with {done.returncode}:\n{done.stderr[-2000:]}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        return {"minutes": minutes, "audio_float32_mb": minutes * 480000 * 4 / 2 ** 20, "peak_memory_mb": peak}


def train_processes(how, steps, gpus=0):
    """Targets/s of `train_wavenet.py` (default model and batch) over its second epoch of `steps` steps: one
    process with `--distribute how` (`"none"` or `"mirrored"`), or, for a number, that many worker processes of a
    cluster on 127.0.0.1 (each given one GPU of its own when `gpus` are visible). The chief's history.csv gives
    the rate."""
    from run.distribute import local_cluster

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, str(ROOT / "train_wavenet.py"), "--epochs", "2", "--steps-per-epoch", str(steps),
                   "--validation-steps", "1", "--sample-every", "0", "--output-dir", str(run_dir)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if isinstance(how, str):
            setups = [(["--distribute", how], env)]
        else:
            setups = [(["--distribute", "multi-worker"],
                       {**env, "TF_CONFIG": tf_config, **({"CUDA_VISIBLE_DEVICES": str(index)} if gpus else {})})
                      for index, tf_config in enumerate(local_cluster(how))]
        processes = [subprocess.Popen([*command, *flags], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for flags, environment in setups]
        errors = [process.communicate()[1] for process in processes]
        for process, error in zip(processes, errors):
            if process.returncode:
                sys.exit(f"bench/training.py: train_wavenet.py failed:\n{error[-3000:]}")
        rows = (run_dir / "history.csv").read_text().splitlines()
        last = dict(zip(rows[0].split(","), rows[-1].split(",")))
        return float(last["targets_per_second"])


def child(what, options):
    sys.path.insert(0, str(ROOT))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if what != "scale":  # the scale wrapper only writes a file and waits for train_wavenet.py
        from machine import quiet_tensorflow

        quiet_tensorflow()
    o = options
    result = {"matmul": lambda: measure_matmul(o["matmul_seconds"]),
              "wavenet": lambda: measure_wavenet(o["precision"], o["steps"], o["repeats"]),
              "original": lambda: measure_original(o["original_steps"], o["repeats"]),
              "pipeline": lambda: measure_pipeline(o["pipeline_seconds"]),
              "gan": lambda: measure_gan(o["precision"], o["gan_steps"], o["gan_repeats"]),
              "vocoder": lambda: measure_vocoder(o["precision"], o["gan_steps"], o["gan_repeats"]),
              "scale": lambda: measure_scale(o["minutes"])}[what]()
    print("RESULT " + json.dumps(result))


def run_child(what, **options):
    done = subprocess.run([sys.executable, __file__, "--child", what, json.dumps(options)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"bench/training.py: the {what} measurement failed (exit status {done.returncode}):\n"
                 f"{done.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def build_parser():
    parser = argparse.ArgumentParser(prog="bench/training.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=20,
                        help="timed WaveNet steps per run (default: 20)")
    parser.add_argument("--original-steps", type=positive_int, default=50,
                        help="timed steps per run of the original script's network (default: 50)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed runs per model; the fastest counts (default: 3)")
    parser.add_argument("--gan-steps", type=positive_int, default=3,
                        help="timed WaveGAN steps (one run; default: 3)")
    parser.add_argument("--matmul-seconds", type=positive_float, default=2.0,
                        help="timing per matrix-multiply rate, split into 4 blocks (default: 2)")
    parser.add_argument("--pipeline-seconds", type=positive_float, default=2.0,
                        help="timing of the data pipeline alone (default: 2)")
    parser.add_argument("--scale-minutes", default="6,60",
                        help="lengths in minutes of the training files for the memory table, comma-separated "
                             "(default: 6,60)")
    parser.add_argument("--skip-gan", action="store_true", help="leave out the WaveGAN and GAN vocoder rows (the slowest part)")
    parser.add_argument("--skip-scale", action="store_true", help="leave out the memory-at-scale table")
    parser.add_argument("--skip-distribute", action="store_true",
                        help="leave out the table of one process against two local workers (and GPUs)")
    parser.add_argument("--distribute-steps", type=positive_int, default=10,
                        help="steps per epoch of each run of the distribute table (default: 10)")
    parser.add_argument("--quick", action="store_true",
                        help="check that the bench runs: 2 WaveNet / 2 original / 1 GAN steps, one run each, "
                             "0.2 s timings, 1- and 2-minute files; the figures mean nothing")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    return parser


def main():
    args = build_parser().parse_args()
    if args.child:
        return child(args.child[0], json.loads(args.child[1]))
    if args.quick:
        args.steps, args.original_steps, args.gan_steps, args.repeats = 2, 2, 1, 1
        args.matmul_seconds = args.pipeline_seconds = 0.2
        args.scale_minutes = "1,2"
        args.distribute_steps = 2
    try:
        scale_minutes = [int(m) for m in args.scale_minutes.split(",")]
        assert scale_minutes and min(scale_minutes) >= 1
    except (ValueError, AssertionError):
        build_parser().error(f"--scale-minutes: whole minutes, comma-separated, got {args.scale_minutes!r}")

    print_machine()
    matmul = run_child("matmul", matmul_seconds=args.matmul_seconds)
    limit = float32_limit(matmul)
    print(matmul_line(matmul))
    print(f"limit used below: {limit / 1e9:,.0f} GFLOP/s (the faster float32 rate)\n", flush=True)

    print(caption())
    print("| model | precision | step (s) | throughput | GFLOP/step | GFLOP/s | share of f32 matmul | peak memory |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    wavenet = {}
    for precision in ("float32", "mixed_bfloat16"):
        r = wavenet[precision] = run_child("wavenet", precision=precision, steps=args.steps, repeats=args.repeats)
        print(f"| WaveNet 2x10 (jit_compile={r['jit_compile']}) | {precision} | {r['step_seconds']:.3f} | "
              f"{r['targets_per_second']:,.0f} targets/s | {r['flops_per_step'] / 1e9:.1f} | "
              f"{r['flops_per_second'] / 1e9:.0f} | {r['flops_per_second'] / limit:.0%} | "
              f"{r['peak_memory_mb']:,.0f} MB |", flush=True)
    original = run_child("original", original_steps=args.original_steps, repeats=args.repeats)
    r = original
    print(f"| original script's network (21 blocks, 20 x 2048, 1 target/frame) | float32 | {r['step_seconds']:.3f} "
          f"| {r['targets_per_second']:,.0f} targets/s | {r['flops_per_step'] / 1e9:.2f} | "
          f"{r['flops_per_second'] / 1e9:.0f} | {r['flops_per_second'] / limit:.0%} | "
          f"{r['peak_memory_mb']:,.0f} MB |", flush=True)
    if not args.skip_gan:
        for precision in ("float32", "mixed_bfloat16"):
            r = run_child("gan", precision=precision, gan_steps=args.gan_steps, gan_repeats=1)
            print(f"| WaveGAN d=64, 16384, WGAN-GP | {precision} | {r['step_seconds']:.2f} | "
                  f"{r['steps_per_second']:.3f} steps/s, {r['clips_per_second']:.2f} clips/s | "
                  f"{r['flops_per_step'] / 1e9:.0f} | {r['flops_per_second'] / 1e9:.0f} | "
                  f"{r['flops_per_second'] / limit:.0%} | {r['peak_memory_mb']:,.0f} MB |", flush=True)
        for precision in ("float32", "mixed_bfloat16"):
            r = run_child("vocoder", precision=precision, gan_steps=max(args.gan_steps, 5 if not args.quick else 1),
                          gan_repeats=1)
            print(f"| GAN vocoder (train_gan.py --condition mel; 8 x 6400 samples) | {precision} | "
                  f"{r['step_seconds']:.3f} | {r['steps_per_second']:.2f} steps/s, {r['samples_per_second']:,.0f} "
                  f"samples/s | {r['flops_per_step'] / 1e9:.1f} | {r['flops_per_second'] / 1e9:.0f} | "
                  f"{r['flops_per_second'] / limit:.0%} | {r['peak_memory_mb']:,.0f} MB |", flush=True)
    print()
    ours = wavenet["float32"]["targets_per_second"]
    print(f"- the original script's network (re-created in Keras 3, bench/original_wavenet.py; "
          f"{original['parameters']:,} parameters, random data) trains {original['targets_per_second']:,.1f} "
          f"targets/s in this run; our float32 WaveNet {ours:,.0f}: {ours / original['targets_per_second']:,.0f} "
          f"times as many")
    pipeline = run_child("pipeline", pipeline_seconds=args.pipeline_seconds)
    consumed = ours / WAVENET_FRAME
    print(f"- data pipeline alone (FrameGenerator, batch {WAVENET_BATCH} x {WAVENET_FRAME}): "
          f"{pipeline['windows_per_second']:,.0f} windows/s; training consumes {consumed:,.1f} windows/s: the "
          f"pipeline is {pipeline['windows_per_second'] / consumed:,.0f} times faster", flush=True)
    if not args.skip_scale:
        first = scale_minutes[0]
        print()
        print(caption())
        print(f"| training file | audio as float32 | peak memory of train_wavenet.py | growth over the {first}-minute "
              f"run |")
        print("|---|---:|---:|---:|")
        short = None
        for minutes in scale_minutes:
            r = run_child("scale", minutes=minutes)
            row = f"| {minutes} min at 8 kHz | {r['audio_float32_mb']:,.0f} MB | {r['peak_memory_mb']:,.0f} MB |"
            if short is None:
                short = r
                print(row + " - |", flush=True)
                continue
            growth = r["peak_memory_mb"] - short["peak_memory_mb"]
            audio_growth = r["audio_float32_mb"] - short["audio_float32_mb"]
            ratio = f" ({growth / audio_growth:.2f} x the extra audio)" if audio_growth > 0 else ""
            print(f"{row} {growth:,.0f} MB{ratio} |", flush=True)
    if not args.skip_distribute:
        distribute_table(args.distribute_steps)


def distribute_table(steps):
    """One process against two local worker processes (and GPU rows where GPUs are visible)."""
    from machine import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    print()
    print(caption())
    print(f"| train_wavenet.py, default WaveNet, global batch {WAVENET_BATCH} x {WAVENET_FRAME} | replicas | "
          "targets/s | against one process |")
    print("|---|---:|---:|---:|")
    rows = [("one process, --distribute none" + (" (one GPU)" if gpus else " (CPU)"), 1, "none")]
    if gpus != 1:  # two workers on one GPU would share it; on CPU they share the cores, as the row says
        rows.append(("two worker processes on 127.0.0.1, --distribute multi-worker" + (
            " (a GPU each)" if gpus else " (the same CPU cores)"), 2, 2))
    if gpus > 1:
        rows.append((f"one process, --distribute mirrored ({gpus} GPUs)", gpus, "mirrored"))
    one = None
    for name, replicas, how in rows:
        rate = train_processes(how, steps, gpus)
        one = one or rate
        print(f"| {name} | {replicas} | {rate:,.0f} | {rate / one:.2f} x |", flush=True)
    if not gpus:
        print("\n(no GPU is visible here: the GPU rows are left out)")


if __name__ == "__main__":
    main()
