"""The vocoders side by side: resynthesis of held-out speech from its log-mel spectrogram by Griffin-Lim, the
WaveNet vocoder and the GAN vocoder.

    python bench/vocoder.py --model runs/vocoder-.../model.keras --gan runs/gan-.../generator.keras
    python bench/vocoder.py --model vocoder.keras --unconditioned runs/wavenet-.../model.keras --write /tmp/listen
    python bench/vocoder.py --model vocoder.keras --seconds 4 --temperatures 0.7 --streams 8   # a quick look
    python bench/vocoder.py --gan runs/gan-.../generator.keras           # the GAN vocoder against Griffin-Lim

Takes held-out audio (default ../shared/audio/speech/validate.wav, read at the model's rate; `--start` and
`--seconds` choose the part scored) and a trained mel-conditioned WaveNet (`--model`) and/or GAN vocoder
(`--gan`; with both, their mel settings must agree). Computes the clip's log-mel spectrogram with the settings
saved in the model, then resynthesises it:
- with the GAN vocoder (`models.vocode`: one parallel pass, in chunks with overlap), timed after one warm-up call
  as the fastest of `--repeats` runs (Griffin-Lim too: this machine's speed varies from second to second);
- with the WaveNet (`models.generate(model, mel=...)`) at each `--temperatures` value. For speed the clip is cut
  at frame boundaries into `--streams` segments generated together as parallel streams (mel of shape (streams,
  frames, n_mels)); each stream first generates `--warmup-frames` frames before its segment, discarded, so the
  kept audio has a history made under the right conditioning (evaluation.vocoder.split_spectrogram). The output
  says how the clip was cut.
- with Griffin-Lim (`data.features.griffin_lim`, librosa, 32 iterations, the same STFT settings).

For each, against the original clip (evaluation/vocoder.py): STOI (pystoi; higher is better), log-spectral
distance in dB on the model's STFT settings, the multi-resolution STFT distance (spectral convergence + mean
absolute log magnitude, FFT 256/512/1024), and the mel distance (mean absolute difference, natural-log units, of
the resynthesis's log-mel to the input spectrogram); lower is better for the distances. It also prints the
model's conditioned held-out bits per sample on the clip (evaluation.likelihood, on the clip's own spectrogram)
and, with `--unconditioned MODEL`, that model's bits on the same samples, and which temperature scored best.

Prints the machine line first (bench/machine.py) and a "CPU: ..." caption above the table; its samples/s are
the samples generated per second of wall time (all streams, warm-up included; Griffin-Lim and the GAN: samples
made), and "x real time" is samples/s over the sample rate. The WaveNet rows are timed once each (their runs take
tens of seconds), the GAN vocoder and Griffin-Lim as the fastest of `--repeats`.
`--write DIR` saves the original clip and every resynthesis as 16-bit WAVs for listening.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

from cli import non_negative_float, non_negative_int, positive_float, positive_int  # noqa: E402
from machine import caption, print_machine, quiet_tensorflow  # noqa: E402

SPEECH = ROOT.parent / "shared" / "audio" / "speech"
GRIFFIN_LIM_ITERATIONS = 32


def build_parser():
    parser = argparse.ArgumentParser(prog="bench/vocoder.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained mel-conditioned WaveNet (.keras)")
    parser.add_argument("--gan", help="a trained GAN vocoder (generator.keras of train_gan.py --condition mel)")
    parser.add_argument("--audio", default=str(SPEECH / "validate.wav"),
                        help="held-out audio (default: ../shared/audio/speech/validate.wav)")
    parser.add_argument("--start", type=non_negative_float, default=0.0,
                        help="seconds into the audio where the scored clip begins (default: 0)")
    parser.add_argument("--seconds", type=positive_float, default=10.0,
                        help="seconds of audio resynthesised and scored (default: 10; less if the file is shorter)")
    parser.add_argument("--temperatures", type=non_negative_float, nargs="+", default=[0.5, 0.7, 0.9, 1.0],
                        help="WaveNet sampling temperatures to compare (default: 0.5 0.7 0.9 1.0)")
    parser.add_argument("--streams", type=positive_int, default=16,
                        help="segments of the clip generated as parallel streams (default: 16)")
    parser.add_argument("--warmup-frames", type=non_negative_int, default=8,
                        help="frames each stream generates before its segment, discarded (default: 8)")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="for a model also conditioned on classes: the class (default: its first)")
    parser.add_argument("--alignment-check", action="store_true",
                        help="also score the clip given a silent spectrogram and its own shifted by 1 and 5 frames "
                             "either way: is the conditioning used, and aligned?")
    parser.add_argument("--unconditioned", metavar="MODEL",
                        help="an unconditioned WaveNet whose held-out bits/sample on the clip are printed beside")
    parser.add_argument("--write", metavar="DIR", help="save the original clip and the resyntheses here as WAVs")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed runs of the GAN vocoder and of Griffin-Lim; the fastest is reported, as this "
                             "machine's speed varies from second to second (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    return parser


def fastest(function, repeats):
    """`(result, seconds)` of the fastest of `repeats` calls of `function` (the same result each time)."""
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - start
        if best is None or seconds < best[1]:
            best = result, seconds
    return best


def resynthesise(model, mel, settings, temperature, streams, warmup_frames, seed, classes=None):
    """The WaveNet's resynthesis of `mel` as parallel segments: `(audio, plan, seconds)`."""
    import models
    from evaluation.vocoder import join_segments, split_spectrogram

    stacked, plan = split_spectrogram(mel, settings, streams, warmup_frames)
    start = time.perf_counter()
    audio = models.generate(model, plan.samples_per_stream, mel=stacked, temperature=temperature, seed=seed,
                            classes=None if classes is None else [classes] * plan.streams)
    return join_segments(audio, plan), plan, time.perf_counter() - start


def main():
    args = build_parser().parse_args()
    print_machine()
    quiet_tensorflow()
    import numpy as np

    import models
    from data.audio import read_audio, write_audio
    from data.features import griffin_lim, log_mel, samples_for_frames
    from evaluation import signal_bits, vocoder_scores

    if args.model is None and args.gan is None:
        sys.exit("bench/vocoder.py: give --model (a WaveNet vocoder), --gan (a GAN vocoder) or both")
    model = spec = gan = class_name = None
    if args.model:
        model = models.load_model(args.model)
        spec = models.wavenet_spec(model)
        if spec.mel is None:
            sys.exit(f"bench/vocoder.py: {args.model} is not conditioned on log-mel spectrograms")
        if spec.class_names:
            class_name = args.class_name or spec.class_names[0]
            if class_name not in spec.class_names:
                sys.exit(f"bench/vocoder.py: unknown class {class_name!r}; the model's classes: "
                         f"{', '.join(spec.class_names)}")
    if args.gan:
        gan = models.load_model(args.gan)
        if not models.is_gan_vocoder(gan):
            sys.exit(f"bench/vocoder.py: --gan {args.gan} is not a GAN vocoder (train_gan.py --condition mel)")
        if spec is not None and models.vocoder_settings(gan) != spec.mel:
            sys.exit(f"bench/vocoder.py: the two vocoders' mel settings differ: {spec.mel.describe()} (--model) "
                     f"against {models.vocoder_settings(gan).describe()} (--gan)")
    settings = spec.mel if spec is not None else models.vocoder_settings(gan)
    rate = settings.sample_rate
    signal = read_audio(args.audio, rate)[0]
    first = int(round(args.start * rate))
    clip = signal[first:first + int(round(args.seconds * rate))]
    if len(clip) < 2 * settings.hop_length:
        sys.exit(f"bench/vocoder.py: {args.audio} has {len(clip)} samples from {args.start:g} s: too short")
    mel = log_mel(clip, settings)
    reference = clip[:samples_for_frames(len(mel), settings)]
    print(f"{Path(args.audio).name}: {len(clip) / rate:.2f} s from {args.start:g} s at {rate} Hz; log-mel "
          f"{mel.shape[0]} frames x {mel.shape[1]} bins ({settings.describe()}); scored on the "
          f"{len(reference)} samples the spectrogram stands for")
    if model is not None:
        print(f"WaveNet vocoder: {args.model} ({spec.stacks}x{spec.layers}, {spec.residual_channels}/"
              f"{spec.skip_channels} channels, mel {spec.mel_channels} channels"
              f"{f', class {class_name}' if class_name else ''})", flush=True)
    if gan is not None:
        print(f"GAN vocoder: {args.gan} ({gan.count_params():,} parameters)", flush=True)

    rows, written = [], {"original": reference}
    if gan is not None:
        models.vocode(gan, mel[:models.gan_vocoder.CHUNK_FRAMES + 1])  # warm-up: the traces of both chunk shapes
        audio, seconds = fastest(lambda: models.vocode(gan, mel)[0], args.repeats)
        rows.append(("GAN vocoder", vocoder_scores(reference, audio, mel, settings), seconds, len(audio) / seconds))
        written["gan"] = audio
        print(f"  GAN vocoder: {seconds:.2f} s, STOI {rows[-1][1]['stoi']:.3f}", flush=True)
    if model is not None:
        # Warm up (the compiled kernel's first call, the upsampler's first trace): the first timing is like the rest.
        resynthesise(model, mel[:4], settings, 1.0, 1, 0, args.seed, class_name)
    for temperature in (args.temperatures if model is not None else []):
        audio, plan, seconds = resynthesise(model, mel, settings, temperature, args.streams, args.warmup_frames,
                                            args.seed, class_name)
        scores = vocoder_scores(reference, audio, mel, settings)
        rows.append((f"WaveNet, temperature {temperature:g}", scores, seconds,
                     plan.streams * plan.samples_per_stream / seconds))
        written[f"wavenet_t{temperature:g}"] = audio
        print(f"  WaveNet at temperature {temperature:g}: {seconds:.1f} s, STOI {scores['stoi']:.3f}, mel distance "
              f"{scores['mel_distance']:.3f}", flush=True)
    if model is not None:
        print(f"WaveNet resynthesis: {plan.describe()}")
    audio, seconds = fastest(lambda: griffin_lim(mel, settings, n_iter=GRIFFIN_LIM_ITERATIONS, seed=args.seed),
                             args.repeats)
    rows.append((f"Griffin-Lim, {GRIFFIN_LIM_ITERATIONS} iterations", vocoder_scores(reference, audio, mel, settings),
                 seconds, len(audio) / seconds))
    written["griffin_lim"] = audio

    if model is not None:
        bits = float(signal_bits(model, spec, clip, class_id=class_name).mean())
        print(f"held-out bits/sample on the clip ({len(clip) - 1} samples): conditioned on its own log-mel"
              f"{f' and class {class_name}' if class_name else ''}: {bits:.3f}", end="")
        if args.unconditioned:
            plain = models.load_model(args.unconditioned)
            plain_spec = models.wavenet_spec(plain)
            if plain_spec.mel is not None:
                sys.exit(f"\nbench/vocoder.py: --unconditioned {args.unconditioned} is conditioned on spectrograms")
            plain_class = None
            if plain_spec.class_names:
                plain_class = class_name if class_name in plain_spec.class_names else plain_spec.class_names[0]
            unconditioned = float(signal_bits(plain, plain_spec, clip, class_id=plain_class).mean())
            print(f"; unconditioned ({args.unconditioned}): {unconditioned:.3f}", end="")
        print()
        if args.alignment_check:
            # Is the spectrogram used, and on the frames it belongs to? The same bits given a silent spectrogram, and
            # the clip's own one moved (rolled) by whole frames: a centred minimum at no shift means aligned.
            own = log_mel(clip, settings)
            variants = [("a silent spectrogram", np.full_like(own, settings.floor_value))] + [
                (f"the spectrogram {abs(shift)} frame{'s' if abs(shift) > 1 else ''} {'late' if shift > 0 else 'early'}",
                 np.roll(own, shift, axis=0)) for shift in (-5, -1, 1, 5)]
            for name, given in variants:
                other = float(signal_bits(model, spec, clip, class_id=class_name, mel=given).mean())
                print(f"alignment check: bits/sample given {name}: {other:.3f} ({other - bits:+.3f})", flush=True)
        wavenet = [row for row in rows if row[0].startswith("WaveNet")]
        by_mel = min(wavenet, key=lambda row: row[1]["mel_distance"])
        by_stoi = max(wavenet, key=lambda row: row[1]["stoi"])
        print(f"best WaveNet temperature: by mel distance {by_mel[0].split()[-1]} ({by_mel[1]['mel_distance']:.3f}), "
              f"by STOI {by_stoi[0].split()[-1]} ({by_stoi[1]['stoi']:.3f})")
    if args.write:
        folder = Path(args.write)
        folder.mkdir(parents=True, exist_ok=True)
        for name, audio in written.items():
            write_audio(folder / f"{name}.wav", audio, rate)
        print(f"wrote {len(written)} WAVs to {folder}: {', '.join(f'{name}.wav' for name in written)}")

    print()
    print(caption())
    print(f"| resynthesis of {len(reference) / rate:.1f} s of {Path(args.audio).name} | STOI | LSD (dB) "
          "| MR-STFT SC | MR-STFT log-mag | MR-STFT total | mel distance (nats) | seconds | samples/s "
          "| x real time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, scores, seconds, rate_made in rows:
        print(f"| {name} | {scores['stoi']:.3f} | {scores['lsd_db']:.2f} | {scores['mrstft_sc']:.3f} "
              f"| {scores['mrstft_log_mag']:.3f} | {scores['mrstft']:.3f} | {scores['mel_distance']:.3f} "
              f"| {seconds:.2f} | {rate_made:,.0f} | {rate_made / rate:,.1f} |")


if __name__ == "__main__":
    main()
