"""Training recipes compared as curves of held-out bits per sample against wall-clock time, on one machine.

    python bench/recipe.py --minutes 30                          # every recipe, 30 minutes each
    python bench/recipe.py --minutes 5 --recipes constant,cosine,cosine+ema   # names: RECIPES below

Each named recipe (RECIPES below: train_wavenet.py flags) trains the WaveNet on train.wav for `--minutes` of
wall-clock time (`train_wavenet.py --time-limit`), validating on the same windows of validate.wav after each
epoch; an epoch is `--epoch-targets` training targets whatever the recipe's batch and window, so the curves have
points at about the same times. At the end `evaluate.py` scores the saved model on the whole of validate.wav.

One table follows, with the CPU named above it: per recipe, the validation bits per sample reached by each
`--every` minutes of training (the last epoch that ended by then; the time counts training and validation, not
TensorFlow's start-up), the whole-file score, and the training steps and targets per second. To check only that
the bench runs (the figures mean nothing):

    python bench/recipe.py --minutes 0.3 --recipes constant --epoch-targets 16384 --validation-targets 16384

`--rate R` stands in for a faster machine: each recipe trains the whole epochs that a machine training R targets
per second fits into `--minutes` (`train_wavenet.py --epochs`, the schedule fitted to those steps, no time limit),
and the table's minutes are that machine's (the training targets over R; its validation time is not counted, so a
`--time-limit` run at that rate would hold somewhat fewer steps). The steps compute the same thing on every CPU
(the same seed and data order, up to floating-point rounding), so the curve is the one that machine would draw,
whatever this one's speed, and the run may share this machine with other work; only the targets/s column is this
machine's.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

from machine import caption, print_machine  # noqa: E402

SPEECH = ROOT.parent / "shared" / "audio" / "speech"
# The recipe before #16, spelled out, so that each recipe below names only what it changes.
BEFORE = {"--schedule": "constant", "--warmup-steps": "0", "--ema": "0", "--input": "scalar", "--batch-size": "4",
          "--frame-size": "4096", "--learning-rate": "2e-3"}


def recipe(**changes):
    """train_wavenet.py flags: `BEFORE` with `changes` (`batch_size=8` for `--batch-size 8`)."""
    settings = {**BEFORE, **{"--" + name.replace("_", "-"): str(value) for name, value in changes.items()}}
    return [text for pair in settings.items() for text in pair]


COSINE = {"schedule": "cosine", "warmup_steps": 50}
# The recipes measured; "constant" is the recipe before #16, "defaults" whatever train_wavenet.py's defaults are
# ("wide": 96/192 channels; "narrow": 48/96; "narrower": 32/64; "deep": 3 stacks; "mixture": the logistic-mixture
# head; "lr4e-3": twice the peak rate). "4x1024" is --batch-size 4 --frame-size 1024 (4x512: --frame-size 512);
# "ema0.999": a moving average over about the last 1,000 steps instead of 100; "bf16": --precision mixed_bfloat16,
# for CPUs with AMX or AVX-512 BF16; "speeds": the training audio at 0.9, 1 and 1.1 times its speed.
WIDE = ["--residual-channels", "96", "--skip-channels", "192"]
BF16 = ["--precision", "mixed_bfloat16"]
SPEEDS = ["--speeds", "0.9,1,1.1"]
RECIPES = {
    "constant": recipe(),
    "cosine": recipe(**COSINE),
    "cosine+ema": recipe(**COSINE, ema=0.99),
    "cosine+clip": recipe(**COSINE, clip_norm=1),
    "cosine lr4e-3": recipe(**COSINE, learning_rate=4e-3),
    "cosine 4x2048": recipe(**COSINE, frame_size=2048),
    "cosine 4x1024": recipe(**COSINE, frame_size=1024),
    "cosine 4x1024+ema": recipe(**COSINE, frame_size=1024, ema=0.99),
    "cosine 4x1024+embedded": recipe(**COSINE, frame_size=1024, input="embedded"),
    "defaults": [],
    "defaults wide": WIDE,
    "defaults deep": ["--stacks", "3"],
    "defaults mixture": ["--head", "regressor", "--loss", "logistic-mixture"],
    "defaults lr4e-3": ["--learning-rate", "4e-3"],
    "defaults narrow": ["--residual-channels", "48", "--skip-channels", "96"],
    "defaults narrower": ["--residual-channels", "32", "--skip-channels", "64"],
    "defaults 4x512": ["--frame-size", "512"],
    "defaults ema0.999": ["--ema", "0.999"],
    "defaults speeds": SPEEDS,
    "defaults bf16": BF16,
    "defaults wide bf16": BF16 + WIDE,
    "defaults wide bf16 speeds": BF16 + WIDE + SPEEDS,
}


def flag(flags, name, default):
    """The value of `--name` in a recipe's flags, or `default` (train_wavenet.py's default)."""
    return type(default)(flags[flags.index(name) + 1]) if name in flags else default


def budget_flags(name, flags, args):
    """`train_wavenet.py` flags for one recipe's epochs and budget: `--steps-per-epoch` and `--validation-steps`
    for about `--epoch-targets` and `--validation-targets` whatever its batch and window, then `--time-limit`, or
    with `--rate` the whole epochs that rate fits into `--minutes` (exits, naming the recipe, if none fits)."""
    batch, frame = flag(flags, "--batch-size", 4), flag(flags, "--frame-size", 1024)
    steps = max(1, round(args.epoch_targets / (batch * frame)))
    validation_steps = max(1, round(args.validation_targets / (batch * frame)))
    sizes = ["--steps-per-epoch", str(steps), "--validation-steps", str(validation_steps)]
    if not args.rate:
        return ["--time-limit", str(args.minutes), "--epochs", "100000", *sizes]
    epochs = int(args.rate * 60 * args.minutes / (steps * batch * frame) + 1e-9)
    if epochs < 1:
        sys.exit(f"bench/recipe.py: {name}: {args.rate:g} targets/s fit no whole epoch ({steps * batch * frame:,} "
                 f"targets) into --minutes {args.minutes:g}: give it longer")
    return ["--epochs", str(epochs), *sizes]


def train(name, flags, budget, args, run_dir):
    """Trains one recipe into `run_dir` for `budget` (`budget_flags`); returns `(rows of history.csv, whole-file
    bits, wall seconds, config)`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(ROOT / "train_wavenet.py"), "--train", args.train, "--validate", args.validate,
               *budget, "--sample-every", "0", "--output-dir", str(run_dir), *flags]
    print(f"{name}: $ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    history = run_dir / "history.csv"
    if not history.is_file():
        sys.exit(f"bench/recipe.py: {name}: no epoch finished within --minutes {args.minutes:g}: give it longer")
    with history.open() as file:
        rows = list(csv.DictReader(file))
    evaluation = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(run_dir / "model.keras"),
                                 args.validate, "--json"], check=True, env=env, cwd=ROOT, capture_output=True,
                                text=True)
    config = json.loads((run_dir / "config.json").read_text())
    return rows, json.loads(evaluation.stdout)["bits_per_sample"], seconds, config


def curve(rows, marks, epoch_seconds=None):
    """The validation bits of the last epoch ended by each of `marks` (seconds of epochs, each epoch taking
    `epoch_seconds` if given, else its measured time), or None."""
    elapsed, points = 0.0, []
    for row in rows:
        elapsed += epoch_seconds or float(row["seconds_per_epoch"])
        points.append((elapsed, float(row["val_bits_per_sample"])))
    return [next((bits for t, bits in reversed(points) if t <= mark), None) for mark in marks]


def main():
    parser = argparse.ArgumentParser(prog="bench/recipe.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget of each recipe")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help=f"comma-separated names of: {'; '.join(RECIPES)}")
    parser.add_argument("--every", type=float, default=None, help="minutes between the table's columns "
                        "(default: a sixth of --minutes)")
    parser.add_argument("--train", default=str(SPEECH / "train.wav"))
    parser.add_argument("--validate", default=str(SPEECH / "validate.wav"))
    parser.add_argument("--epoch-targets", type=int, default=25 * 4 * 4096, help="training targets per epoch")
    parser.add_argument("--validation-targets", type=int, default=4 * 4 * 4096,
                        help="validation targets per epoch (the same windows every epoch)")
    parser.add_argument("--rate", type=float, default=None, help="targets per second of the machine to stand in "
                        "for: train the epochs it fits into --minutes, with no time limit (see above)")
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "bench-recipe"))
    args = parser.parse_args()
    if args.rate is not None and args.rate <= 0:
        parser.error(f"--rate must be positive, got {args.rate:g}")
    names = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; choose from: {'; '.join(RECIPES)}")
    every = args.every or args.minutes / 6
    marks = [every * (i + 1) for i in range(max(1, int(args.minutes / every + 1e-9)))]
    budgets = {name: budget_flags(name, RECIPES[name], args) for name in names}  # before any recipe trains

    print_machine()
    results = []
    for index, name in enumerate(names):
        run_dir = Path(args.output_dir) / f"{index:02d}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        rows, bits, seconds, config = train(name, RECIPES[name], budgets[name], args, run_dir)
        state = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
        steps = state["epoch"] * config["steps_per_epoch"] + state["step"]
        speed = sum(float(row["targets_per_second"]) for row in rows) / len(rows)
        epoch_targets = config["steps_per_epoch"] * config["batch_size"] * config["frame_size"]
        epoch_seconds = args.rate and epoch_targets / args.rate
        points = curve(rows, [60 * m for m in marks], epoch_seconds)
        results.append((name, points, bits, steps, speed, config["parameters"]))
        print(f"{name}: {bits:.3f} bits/sample on the whole of {Path(args.validate).name} after {seconds / 60:.1f} "
              f"min ({steps} steps in {len(rows)} whole epochs)", flush=True)

    print()
    print(caption())
    budget = (f"the epochs that {args.rate:,.0f} targets/s fit into {args.minutes:g} min per recipe, on the minutes of "
              "a machine that fast; targets/s is this machine's" if args.rate else f"{args.minutes:g} min per recipe")
    print(f"Validation bits/sample on {Path(args.validate).name} against minutes of training on "
          f"{Path(args.train).name} ({budget}):")
    print()
    columns = [f"{m:.3g} min" for m in marks] + ["whole file", "steps", "targets/s", "parameters"]
    print("| recipe | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(marks) + 4))
    for name, points, bits, steps, speed, parameters in results:
        cells = " | ".join("" if p is None else f"{p:.3f}" for p in points)
        print(f"| {name} | {cells} | **{bits:.3f}** | {steps:,} | {speed:,.0f} | {parameters:,} |")


if __name__ == "__main__":
    main()
