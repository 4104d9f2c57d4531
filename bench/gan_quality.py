"""How close a WaveGAN gets to real piano after a fixed CPU budget.

    python bench/gan_quality.py                          # 10 minutes on ../shared/audio/piano/train.wav
    python bench/gan_quality.py --minutes 3 --extra "--model-dim 16"

Holds out the last 20% of the recording, trains `train_gan.py --time-limit` on the rest, then runs
`evaluate.py` on the generator: Frechet distance of log-mel statistics, NDB and nearest-neighbour distance of
generated clips, each against training clips, next to held-out real clips and white noise. Also prints the
training steps per second from history.csv.

The machine (CPU model, CPU count, AVX2 / AVX-512 / AVX-512 BF16 / AMX, library versions; bench/machine.py) is
printed first, and a "CPU: ..." caption above the table, since the training budget is CPU time. To check only
that the bench runs (the figures mean nothing):

    python bench/gan_quality.py --minutes 0.5 --num 4 --output-dir /tmp/g --extra "--model-dim 4 --batch-size 2"
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

from machine import caption, print_machine  # noqa: E402

PIANO = ROOT.parent / "shared" / "audio" / "piano" / "train.wav"


def main():
    parser = argparse.ArgumentParser(prog="bench/gan_quality.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--audio", default=str(PIANO))
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "bench-gan"))
    parser.add_argument("--extra", default="--model-dim 32 --batch-size 8",
                        help="more train_gan.py flags, in one string")
    parser.add_argument("--num", type=int, default=64, help="clips per evaluated set")
    args = parser.parse_args()

    print_machine()
    audio, rate = sf.read(args.audio, dtype="float32")
    cut = int(len(audio) * 0.8)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp:
        train, held_out = Path(tmp) / "train.wav", Path(tmp) / "held_out.wav"
        sf.write(str(train), audio[:cut], rate)
        sf.write(str(held_out), audio[cut:], rate)
        command = [sys.executable, str(ROOT / "train_gan.py"), "--train", str(train), "--time-limit",
                   str(args.minutes), "--epochs", "100000", "--steps-per-epoch", "10", "--sample-every", "0",
                   "--output-dir", args.output_dir, *args.extra.split()]
        print(f"{Path(args.audio).name}: {len(audio) / rate:.0f} s at {rate} Hz; training on the first 80%, "
              f"held out the last 20%")
        print("$ python " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        if not (Path(args.output_dir) / "history.csv").is_file():
            sys.exit(f"bench/gan_quality.py: no epoch finished within --minutes {args.minutes:g}: give it longer")
        rows = list(csv.DictReader((Path(args.output_dir) / "history.csv").open()))
        steps = len(rows) * 10
        print(f"trained {steps} generator steps in {args.minutes:g} min; median "
              f"{np.median([float(r['steps_per_second']) for r in rows]):.3f} steps/s, "
              f"{np.median([float(r['clips_per_second']) for r in rows]):.2f} clips/s")
        result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"),
                                 str(Path(args.output_dir) / "generator.keras"), str(held_out), "--train", str(train),
                                 "--num", str(args.num), "--json"], check=True, env=env, cwd=ROOT, capture_output=True,
                                text=True)
    results = json.loads(result.stdout)["results"]
    length = json.loads((Path(args.output_dir) / "config.json").read_text()).get("slice_length", "?")
    labels = {"generated": f"generated (WaveGAN, {args.minutes:g} CPU minutes)", "held-out real": "held-out real",
              "white noise": "white noise"}
    print()
    print(caption())
    print(f"| {args.num} clips of {length} samples | Frechet distance (log-mel) | NDB (10 bins) | "
          f"NN distance to training |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        print(f"| {labels.get(name, name)} | {values['frechet_distance']:.2f} | {values['ndb']:.2f} | "
              f"{values['nn_distance']:.2f} |")


if __name__ == "__main__":
    main()
