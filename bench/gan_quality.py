"""How close a WaveGAN gets to real piano after a fixed CPU budget.

    python bench/gan_quality.py                          # 10 minutes on ../shared/audio/piano/train.wav
    python bench/gan_quality.py --minutes 3 --extra "--model-dim 16"

Holds out the last 20% of the recording, trains `train_gan.py --time-limit` on the rest, then runs
`evaluate.py` on the generator: Frechet distance of log-mel statistics, NDB and nearest-neighbour distance of
generated clips, each against training clips, next to held-out real clips and white noise. Also prints the
training steps per second from history.csv.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
PIANO = ROOT.parent / "shared" / "audio" / "piano" / "train.wav"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--audio", default=str(PIANO))
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "bench-gan"))
    parser.add_argument("--extra", default="--model-dim 32 --batch-size 8",
                        help="more train_gan.py flags, in one string")
    parser.add_argument("--num", type=int, default=64, help="clips per evaluated set")
    args = parser.parse_args()

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
        rows = list(csv.DictReader((Path(args.output_dir) / "history.csv").open()))
        steps = len(rows) * 10
        print(f"trained {steps} generator steps in {args.minutes:g} min; median "
              f"{np.median([float(r['steps_per_second']) for r in rows]):.3f} steps/s, "
              f"{np.median([float(r['clips_per_second']) for r in rows]):.2f} clips/s")
        result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"),
                                 str(Path(args.output_dir) / "generator.keras"), str(held_out), "--train", str(train),
                                 "--num", str(args.num)], check=True, env=env, cwd=ROOT, capture_output=True, text=True)
        print(result.stdout.strip())


if __name__ == "__main__":
    main()
