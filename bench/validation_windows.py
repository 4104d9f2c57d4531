"""Why a run's per-epoch validation bits differ from evaluate.py's score of the whole held-out file.

    python bench/validation_windows.py runs/speech            # a run folder of train_wavenet.py
    python bench/validation_windows.py RUN --validate V.wav --steps 16   # another held-out file, more batches

`train_wavenet.py` validates each epoch on `--validation-steps` batches of fixed random windows of the held-out
audio (the run's seed + 1), each window starting with no history (the causal padding is silence); `evaluate.py`
scores every sample of the file with its whole receptive field before it. The two can differ for two reasons,
and this separates them for one trained, unconditioned model:

- cut history: the same windows' targets scored as in training and scored with their whole history (the
  whole-file pass), by position of the target within its window;
- which windows: those targets' bits against the whole file's, and how far sets of as many random windows
  stray from the whole file (the spread of 200 random sets, scored with whole history).
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

import numpy as np  # noqa: E402

from cli import positive_int  # noqa: E402
from machine import print_machine, quiet_tensorflow  # noqa: E402

BANDS = (0, 64, 256, 512, 1024, 2048, 4096, 8192)  # the position table's rows, up to the window's length


def main():
    parser = argparse.ArgumentParser(prog="bench/validation_windows.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a train_wavenet.py run folder (model.keras and config.json)")
    parser.add_argument("--validate", default=None,
                        help="one held-out audio file (default: the run's own --validate)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="validation batches (default: the run's --validation-steps)")
    args = parser.parse_args()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    validate = args.validate or config.get("validate")
    if not validate:
        parser.error(f"{run} validated on part of its training audio; name a held-out file with --validate")
    quiet_tensorflow()
    import models
    from data.audio import load_audio
    from data.frames import FrameGenerator
    from evaluation import signal_bits

    model = models.load_model(run / "model.keras")
    spec = models.wavenet_spec(model)
    if spec.conditioned:
        parser.error(f"{run}: a conditioned model; this bench takes unconditioned ones")
    signals = load_audio(validate, spec.sample_rate).signals
    if len(signals) != 1:
        parser.error(f"{validate}: {len(signals)} files; this bench scores one held-out file")
    signal = signals[0]
    print_machine()
    whole = signal_bits(model, spec, signal)  # whole[n]: sample n + 1 given everything before it
    batch, frame = config["batch_size"], config["frame_size"]
    steps = args.steps or config["validation_steps"]
    frames = FrameGenerator([signal], frame, batch, steps, mode=config["head"], seed=config["seed"] + 1,
                            reshuffle=False)
    cut, full = [], []
    for index in range(steps):
        x, y = frames[index]
        cut.append(np.asarray(models.bits_per_sample(spec.distribution, y, model.predict_on_batch(x),
                                                     spec.num_classes)))
        full.append(np.stack([whole[start:start + frame] for start in frames.window_starts(index)]))
    cut, full = np.concatenate(cut), np.concatenate(full)  # (windows, frame): target n of each window
    windows = len(cut)
    print(f"{run}: {spec.stacks} x {spec.layers} layers (receptive field {spec.receptive_field}), {windows} "
          f"validation windows of {frame} targets ({steps} batches of {batch}), {Path(validate).name}: "
          f"{len(signal):,} samples")
    print()
    print("| targets scored | history | bits/sample |")
    print("|---|---|---:|")
    print(f"| the validation windows | cut at the window's start (as train_wavenet.py validates) | {cut.mean():.4f} |")
    print(f"| the validation windows | whole | {full.mean():.4f} |")
    print(f"| the whole file | whole (evaluate.py) | **{whole.mean():.4f}** |")
    print()
    print("By the target's position in its window:")
    print()
    print("| positions | cut history | whole history |")
    print("|---|---:|---:|")
    bands = [b for b in BANDS if b < frame] + [frame]
    for low, high in zip(bands, bands[1:]):
        print(f"| {low}-{high - 1} | {cut[:, low:high].mean():.4f} | {full[:, low:high].mean():.4f} |")
    rng = np.random.default_rng(0)
    # Mean bits of every window start, from a running sum: any random set of windows is then a mean of these.
    sums = np.concatenate([[0.0], np.cumsum(whole, dtype=np.float64)])
    window_means = (sums[frame:] - sums[:-frame]) / frame
    strays = np.array([window_means[rng.integers(0, len(window_means), windows)].mean() for _ in range(200)])
    strays -= whole.mean()
    print()
    print(f"{windows} random windows, whole history, 200 sets: mean minus the whole file's {strays.mean():+.4f}, "
          f"standard deviation {strays.std():.4f}, largest {np.abs(strays).max():.4f}; the run's own set: "
          f"{full.mean() - whole.mean():+.4f}")


if __name__ == "__main__":
    main()
