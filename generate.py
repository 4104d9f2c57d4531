"""Generate audio from a trained model.

    python generate.py runs/wavenet-.../model.keras --seconds 10 --output speech.wav
    python generate.py runs/wavenet-.../model.keras --num 8 --output-dir samples/   # 8 streams in one batch
    python generate.py runs/wavenet-.../model.keras --prime start.wav --seconds 5 --output continued.wav
    python generate.py runs/gan-.../generator.keras --num 8 --output-dir clips/ --seed 1   # GAN clips

The sample rate is the one the model was trained at (saved in the model). A GAN generator makes clips of its
fixed length (--seconds, --temperature and --prime apply to WaveNets only). Audio is written as it is
generated, so minutes of it need no more memory than the file itself.
"""

import argparse
import time
from pathlib import Path

from cli import (ArgumentParser, UsageError, non_negative_float, positive_float, positive_int, quiet_tensorflow,
                 run)


def build_parser():
    parser = ArgumentParser(prog="generate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model.keras from train_wavenet.py, or generator.keras from train_gan.py")
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="length of each output (default: 5)")
    parser.add_argument("--output", help="output WAV file (one stream)")
    parser.add_argument("--num", type=positive_int, help="write this many files, generated together in one batch")
    parser.add_argument("--output-dir", help="folder for the files of --num (sample_001.wav, ...)")
    parser.add_argument("--temperature", type=non_negative_float, default=1.0,
                        help="sampling temperature; 0 takes the most likely sample (default: 1)")
    parser.add_argument("--prime", help="audio file whose continuation is generated")
    parser.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    return parser


def output_paths(args):
    """The files to write, checked before any work is done."""
    if args.num is None:
        if not args.output:
            raise UsageError("give --output FILE.wav, or --num N --output-dir DIR")
        paths = [Path(args.output)]
    else:
        if not args.output_dir:
            raise UsageError("--num needs --output-dir")
        paths = [Path(args.output_dir) / f"sample_{i + 1:03d}.wav" for i in range(args.num)]
    for path in paths:
        if path.exists() and path.is_dir():
            raise UsageError(f"{path}: is a folder, not a file")
        if path.suffix.lower() != ".wav":
            raise UsageError(f"{path}: output must be a .wav file")
    return paths


def write_clips(generator, paths, seed):
    """Writes one GAN clip per path."""
    import models
    from data.audio import write_audio

    sample_rate = generator.get_layer("audio").sample_rate
    clips = models.generate_clips(generator, len(paths), seed=seed)
    for path, clip in zip(paths, clips):
        write_audio(path, clip, sample_rate)
    print(f"wrote {len(paths)} clip(s) of {clips.shape[1] / sample_rate:.2f} s at {sample_rate} Hz: "
          f"{', '.join(str(p) for p in paths[:3])}{' ...' if len(paths) > 3 else ''}")
    return paths


def main(argv=None):
    args = build_parser().parse_args(argv)
    paths = output_paths(args)
    quiet_tensorflow()
    import keras
    import soundfile as sf

    import models
    from data.audio import read_audio
    from data.files import atomic_path

    try:
        model = models.load_model(args.model)
    except models.ModelFileError as error:
        raise UsageError(str(error)) from None
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    if models.is_gan_generator(model):
        return write_clips(model, paths, args.seed)
    try:
        spec = models.wavenet_spec(model)
    except ValueError as error:
        raise UsageError(f"{args.model}: {error}") from None
    prime = read_audio(args.prime, spec.sample_rate)[0] if args.prime else None
    num_samples = int(round(args.seconds * spec.sample_rate))

    temporary = [atomic_path(path) for path in paths]
    files = [sf.SoundFile(str(tmp), "w", samplerate=spec.sample_rate, channels=1, subtype="PCM_16", format="WAV")
             for tmp in temporary]
    progress = keras.utils.Progbar(num_samples, unit_name="sample", stateful_metrics=["samples/s"])
    start, done = time.perf_counter(), 0
    try:
        for chunk in models.generate_chunks(model, num_samples, num_streams=len(paths),
                                            temperature=args.temperature, prime=prime, seed=args.seed,
                                            chunk_size=max(1, spec.sample_rate // 10)):
            for file, stream in zip(files, chunk):
                file.write(stream)
            done += chunk.shape[1]
            rate = done * len(paths) / (time.perf_counter() - start)
            progress.update(done, values=[("samples/s", rate)])
        for file, tmp, path in zip(files, temporary, paths):
            file.close()
            tmp.replace(path)
    finally:
        for file, tmp in zip(files, temporary):
            file.close()
            tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    print(f"wrote {len(paths)} file(s) of {args.seconds:g} s at {spec.sample_rate} Hz in {seconds:.1f} s "
          f"({done * len(paths) / seconds:,.0f} samples/s): {', '.join(str(p) for p in paths[:3])}"
          f"{' ...' if len(paths) > 3 else ''}")
    return paths


if __name__ == "__main__":
    run(main, "generate.py")
