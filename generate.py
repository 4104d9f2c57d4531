"""Generate audio from a trained model.

    python generate.py runs/wavenet-.../model.keras --seconds 10 --output speech.wav
    python generate.py runs/wavenet-.../model.keras --num 8 --output-dir samples/   # 8 streams in one batch
    python generate.py runs/wavenet-.../model.keras --prime start.wav --seconds 5 --output continued.wav
    python generate.py runs/gan-.../generator.keras --num 8 --output-dir clips/ --seed 1   # GAN clips

The sample rate is the one the model was trained at (saved in the model). A GAN generator makes clips of its
fixed length: --seconds, --temperature and --prime apply to WaveNets only, and are refused for a GAN. Audio is
written as it is generated, so minutes of it need no more memory than the file itself.
"""

import argparse
import time
from pathlib import Path

from cli import (ArgumentParser, UsageError, non_negative_float, positive_float, positive_int, quiet_tensorflow,
                 run, sigterm_interrupts)

DEFAULT_SECONDS = 5.0
DEFAULT_TEMPERATURE = 1.0
# A WAV's sizes are 32-bit fields: a 16-bit mono file holds at most this many samples (4 GiB less its header).
WAV_MAX_SAMPLES = (2 ** 32 - 1 - 44) // 2


def build_parser():
    parser = ArgumentParser(prog="generate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model.keras from train_wavenet.py, or generator.keras from train_gan.py")
    # WaveNet-only flags default to None, so that one given to a GAN generator can be refused.
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help=f"length of each output (default: {DEFAULT_SECONDS:g}; WaveNets only)")
    parser.add_argument("--output", help="output WAV file (one stream)")
    parser.add_argument("--num", type=positive_int, help="write this many files, generated together in one batch")
    parser.add_argument("--output-dir", help="folder for the files of --num (sample_001.wav, ...)")
    parser.add_argument("--temperature", type=non_negative_float, default=None,
                        help=f"sampling temperature; 0 takes the most likely sample (default: {DEFAULT_TEMPERATURE:g}; "
                             "WaveNets only)")
    parser.add_argument("--prime", help="audio file whose continuation is generated (WaveNets only)")
    parser.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    parser.add_argument("--engine", choices=("auto", "numba", "numpy"), default=None,
                        help="WaveNet generation path: the compiled kernel (numba), the portable NumPy path, or auto: "
                             "the kernel, and NumPy with a warning if it cannot be built (default: $WAVEGEN_ENGINE, "
                             "else auto); both give the same audio")
    return parser


def output_paths(args):
    """The files to write, checked before any work is done: each a .wav, not a folder, in a folder that exists
    or can be made and in which files can be created."""
    from data.files import folder_problem

    if args.num is None:
        if not args.output:
            raise UsageError("give --output FILE.wav, or --num N --output-dir DIR")
        paths, named = [Path(args.output)], args.output
    else:
        if not args.output_dir:
            raise UsageError("--num needs --output-dir")
        paths, named = [Path(args.output_dir) / f"sample_{i + 1:03d}.wav" for i in range(args.num)], args.output_dir
    for path in paths:
        if path.exists() and path.is_dir():
            raise UsageError(f"{path}: is a folder, not a file")
        if path.suffix.lower() != ".wav":
            raise UsageError(f"{path}: output must be a .wav file")
    problem = folder_problem(paths[0].parent)
    if problem:
        raise UsageError(f"{named}: cannot write there: {problem}")
    return paths


def make_folders(paths):
    """Creates the missing folders of `paths` (all in one folder, see `output_paths`), when about to write;
    returns them, deepest first, so that `remove_folders` can take them back after a failure."""
    created = []
    for folder in reversed([paths[0].parent, *paths[0].parent.parents]):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as error:
                remove_folders(created[::-1])
                raise UsageError(f"{folder}: cannot create the folder ({error.strerror or error})") from None
            created.append(folder)
    return created[::-1]


def remove_folders(folders):
    """Removes folders this run created, if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def write_clips(generator, paths, seed):
    """Writes one GAN clip per path."""
    import models
    from data.audio import write_audio

    sample_rate = generator.get_layer("audio").sample_rate
    clips = models.generate_clips(generator, len(paths), seed=seed)
    created, finished = make_folders(paths), False
    try:
        for path, clip in zip(paths, clips):
            write_audio(path, clip, sample_rate)
        finished = True
    finally:
        if not finished:
            remove_folders(created)
    print(f"wrote {len(paths)} clip(s) of {clips.shape[1] / sample_rate:.2f} s at {sample_rate} Hz: "
          f"{', '.join(str(p) for p in paths[:3])}{' ...' if len(paths) > 3 else ''}")
    return paths


def wavenet_length(args, sample_rate):
    """Samples per output of `--seconds`: at least one, and no more than a WAV holds."""
    seconds = DEFAULT_SECONDS if args.seconds is None else args.seconds
    num_samples = int(round(seconds * sample_rate))
    if num_samples < 1:
        raise UsageError(f"--seconds {seconds:g} is less than one sample at the model's {sample_rate} Hz; "
                         f"ask for at least {1 / sample_rate:.6g} s")
    if num_samples > WAV_MAX_SAMPLES:
        raise UsageError(f"--seconds {seconds:g} is {num_samples:,} samples at the model's {sample_rate} Hz, more than "
                         f"a 16-bit WAV holds (4 GiB: {WAV_MAX_SAMPLES / sample_rate:,.0f} s); ask for less per file")
    return num_samples


def main(argv=None):
    args = build_parser().parse_args(argv)
    paths = output_paths(args)  # before TensorFlow loads: a bad output fails in a second
    with sigterm_interrupts():  # SIGTERM, like Ctrl-C, removes the half-written files
        return generate_files(args, paths)


def generate_files(args, paths):
    """Loads the model and writes `paths`; nothing is created on disk until the request is known to be good."""
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
    if models.is_gan_generator(model):
        given = [flag for flag, value in (("--seconds", args.seconds), ("--temperature", args.temperature),
                                          ("--prime", args.prime)) if value is not None]
        if given:
            length, rate = model.output_shape[1], model.get_layer("audio").sample_rate
            flags = f"{', '.join(given[:-1])} and {given[-1]}" if len(given) > 1 else given[0]
            raise UsageError(f"{args.model}: a GAN generator makes clips of its fixed length ({length} samples, "
                             f"{length / rate:.2f} s at {rate} Hz); {flags} "
                             f"appl{'ies' if len(given) == 1 else 'y'} to WaveNets only")
        return write_clips(model, paths, args.seed)
    try:
        spec = models.wavenet_spec(model)
    except ValueError as error:
        raise UsageError(f"{args.model}: {error}") from None
    num_samples = wavenet_length(args, spec.sample_rate)
    temperature = DEFAULT_TEMPERATURE if args.temperature is None else args.temperature
    prime = read_audio(args.prime, spec.sample_rate)[0] if args.prime else None

    created, temporary, files, finished = [], [], [], False
    progress = keras.utils.Progbar(num_samples, unit_name="sample", stateful_metrics=["samples/s"])
    start, done = time.perf_counter(), 0
    try:
        created = make_folders(paths)
        for path in paths:
            temporary.append(atomic_path(path))
            files.append(sf.SoundFile(str(temporary[-1]), "w", samplerate=spec.sample_rate, channels=1,
                                      subtype="PCM_16", format="WAV"))
        for chunk in models.generate_chunks(model, num_samples, num_streams=len(paths), temperature=temperature,
                                            prime=prime, seed=args.seed, engine=args.engine,
                                            chunk_size=max(1, spec.sample_rate // 10)):
            for file, stream in zip(files, chunk):
                file.write(stream)
            done += chunk.shape[1]
            rate = done * len(paths) / (time.perf_counter() - start)
            progress.update(done, values=[("samples/s", rate)])
        for file, tmp, path in zip(files, temporary, paths):
            file.close()
            tmp.replace(path)
        finished = True
    finally:
        for file in files:
            file.close()
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
        if not finished:
            remove_folders(created)
    seconds = time.perf_counter() - start
    print(f"wrote {len(paths)} file(s) of {num_samples / spec.sample_rate:g} s at {spec.sample_rate} Hz in "
          f"{seconds:.1f} s ({done * len(paths) / seconds:,.0f} samples/s): {', '.join(str(p) for p in paths[:3])}"
          f"{' ...' if len(paths) > 3 else ''}")
    return paths


if __name__ == "__main__":
    run(main, "generate.py")
