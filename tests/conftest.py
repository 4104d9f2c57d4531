"""Shared fixtures: tiny models, generated audio files, and a runner for the command-line scripts."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (os.cpu_count() or 1):
    # As many pytest-xdist workers as cores: one TensorFlow thread each (and in the scripts they start, which
    # inherit the environment), not every worker's thread pools spinning on every core. The GAN and robustness
    # tests ran about a fifth faster so on 2 cores.
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Splits the CPU into two logical devices before TensorFlow starts, so that `--distribute mirrored` tests run
    two replicas in one process (tests/test_distribute.py). Nothing else places work on the second one.

    Not in pytest-xdist's controller, which runs no test: importing TensorFlow there delayed the workers' start by
    6-8 s."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_collection_modifyitems(items):
    """Runs the files that hold slow tests first, slow tests first within them, so that the two pytest-xdist
    workers share out the long tests at the start instead of one of them finishing a long test alone at the end.
    Each file's tests stay together, so a file's module fixtures are still built once per worker."""
    files = {}
    for item in items:
        files.setdefault(item.path, []).append(item)

    def slow(item):
        return item.get_closest_marker("slow") is not None
    order = sorted(files, key=lambda path: not any(map(slow, files[path])))
    items[:] = [item for path in order for item in sorted(files[path], key=lambda item: not slow(item))]


TINY = dict(stacks=2, layers=3, residual_channels=8, skip_channels=16)
TINY_FLAGS = ["--layers", "3", "--stacks", "2", "--residual-channels", "8", "--skip-channels", "16",
              "--frame-size", "256", "--batch-size", "2", "--steps-per-epoch", "2", "--validation-steps", "1",
              "--epochs", "1", "--sample-every", "1", "--sample-seconds", "0.1"]


def tone(seconds=1.0, rate=8000, frequencies=(440.0,), amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * f * t) for f in frequencies) / len(frequencies)
    return (amplitude * signal).astype(np.float32)


def write_wav(path, signal, rate=8000, subtype="PCM_16", **kwargs):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal, rate, subtype=subtype, **kwargs)
    return path


def randomize(model, seed=1, scale=0.3):
    """Perturbs every weight, biases included, so tests are not passed by zero biases."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([w + rng.normal(0, scale, w.shape).astype(w.dtype) for w in weights])
    return model


@pytest.fixture
def tiny_wavenet():
    import keras

    import models

    def build(head="classifier", loss=None, seed=0, **overrides):
        keras.utils.set_random_seed(seed)
        return randomize(models.build_wavenet(head, loss, sample_rate=8000, **{**TINY, **overrides}), seed + 1)

    return build


def run_main(script, *args):
    """Runs a script's `main(argv)` in this process through `cli.run`, as `python script ...` would; returns what
    the process would have: `returncode`, `stdout`, `stderr`. For refusals of a loaded model and for further runs
    of a script whose fresh-process run a test has already checked: a fresh interpreter spends most of its 6-8 s
    importing TensorFlow, which this process has already done."""
    import contextlib
    import importlib
    import io
    import types

    import cli

    module = importlib.import_module(script.removesuffix(".py"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.run(lambda: module.main([str(arg) for arg in args]), script)
            status = 0
        except SystemExit as stop:
            status = stop.code
    return types.SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def run_script(script, *args, cwd=None, timeout=300, env=None, fresh=False):
    """Runs one of the project's scripts as `python script args` would (with `env` added to the environment, such
    as data/faults.py's `WAVEGEN_KILL_AT`), in a process forked from one that has imported TensorFlow but none of
    the project's modules (tests/forked.py; in a fresh interpreter with `fresh`); returns the CompletedProcess."""
    from tests import forked

    return forked.run(ROOT / script, *args, cwd=cwd or ROOT, env=script_env(env), timeout=timeout, fresh=fresh)


def script_env(extra=None):
    """The environment a test gives a script it runs: this one without `WAVEGEN_KILL_AT` (a test sets it for the
    script it means to stop), TensorFlow's logging quiet, the project importable, then `extra`."""
    return {**{k: v for k, v in os.environ.items() if k != "WAVEGEN_KILL_AT"}, "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(ROOT), **(extra or {})}
