"""Runs the project's scripts for the tests in processes forked from one that has already imported TensorFlow.

A fresh interpreter spends 5-6 of its first seconds importing TensorFlow, Keras and librosa, and the suite starts
scripts some hundred times. `launch` instead asks a multiprocessing fork server (one per test process, started on
first use) that has imported those third-party libraries and nothing of the project's to fork a child; the child
takes the environment, working folder and arguments it is given, points its standard output and error at files,
and runs the script as `__main__`, as `python script ...` would. The project's own modules (`models`, `data`, ...)
are imported afresh in every child, so what a script does at import is still tested. The library state that is
shared is what importing leaves: TensorFlow creates its runtime on first use, in the child.

What a child does not get from `env` is what Python reads at its own start (`PYTHONHASHSEED`, `PYTHONWARNINGS`,
`PYTHONPATH`: `sys.path` is the test process's, with the script's folder first), and what importing the libraries
prints goes to the fork server's stderr, not the child's. So tests about the interpreter itself (a missing numba,
the allocator setting made at import, nothing on stderr at start) pass `fresh=True` or start one themselves, and
`WAVEGEN_TEST_FRESH=1` makes every launch a fresh interpreter.
"""

import atexit
import functools
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from pathlib import Path

# What the scripts import from outside the project, the slowest first: TensorFlow and Keras (5-6 s), librosa's
# modules (their numba functions compile at import; librosa loads its submodules lazily, on first use, so those the
# scripts use are named: 2-3 s of every training run's first sample), matplotlib's pyplot and its Agg backend
# (spectrogram images), TensorBoard, scikit-learn's k-means (the token LM's codebook).
PRELOAD = ["tensorflow", "keras", "numpy", "scipy.signal", "soundfile", "numba", "librosa", "librosa.core",
           "librosa.core.audio", "librosa.core.spectrum", "librosa.feature", "librosa.feature.spectral",
           "librosa.filters", "librosa.sequence", "librosa.display", "matplotlib.pyplot",
           "matplotlib.backends.backend_agg", "tensorboard.summary.v2", "sklearn.cluster"]
FRESH = os.environ.get("WAVEGEN_TEST_FRESH") == "1"
_context = None


def _fork_server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(script, args, cwd, env, out_path, err_path):
    """In the forked child: becomes `python script args` (`python -c CODE args` when `script` is `-c` and the
    code is `args[0]`) in `cwd` with exactly `env`, then exits as that would."""
    for stream, path in ((sys.stdout, out_path), (sys.stderr, err_path)):
        stream.flush()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(descriptor, stream.fileno())
        os.close(descriptor)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR is read again on first use, from the child's environment
    import numpy

    numpy.random.seed()  # each child its own global NumPy state, as a fresh interpreter has (`random` is reseeded)
    if script == "-c":
        sys.argv, sys.path[0] = ["-c", *args[1:]], ""
        main = types.ModuleType("__main__")  # as `python -c`: the code's globals are the module `__main__`
        sys.modules["__main__"] = main
        run = functools.partial(exec, compile(args[0], "<string>", "exec"), main.__dict__)
    else:
        sys.argv, sys.path[0] = [script, *args], str(Path(script).parent)
        run = functools.partial(runpy.run_path, script, run_name="__main__")
    code = 0
    try:
        run()
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # uncaught, Python ends by SIGINT
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # as the interpreter does at exit: waits for threads that are not daemons, then atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


class Launched:
    """A script started by `launch`: `pid`, `wait(timeout)` and `kill()`; once `wait` has seen it end,
    `returncode`, `stdout` and `stderr` as `subprocess.Popen` with text pipes would give them."""

    def __init__(self, command, cwd, env, fresh=False):
        self.args = command
        self.returncode = self.stdout = self.stderr = None
        self._fresh = fresh or FRESH
        self._folder = Path(tempfile.mkdtemp(prefix="launched-"))
        out, err = self._folder / "stdout", self._folder / "stderr"
        out.touch(), err.touch()  # there even if the child fails before it opens them
        if self._fresh:
            with out.open("w") as out_file, err.open("w") as err_file:
                self._process = subprocess.Popen([sys.executable, *command], cwd=cwd, env=env,
                                                 stdin=subprocess.DEVNULL, stdout=out_file, stderr=err_file)
        else:
            arguments = (command[0], command[1:], str(cwd), dict(env), str(out), str(err))
            self._process = _fork_server().Process(target=_child, args=arguments)
            self._process.start()
        self.pid = self._process.pid

    def wait(self, timeout=None):
        """Waits for the script to end and returns its exit status (minus the signal's number if one ended it);
        raises `subprocess.TimeoutExpired` if it is still running after `timeout` seconds."""
        if self.returncode is None:
            if self._fresh:
                self._process.wait(timeout)
                code = self._process.returncode
            else:
                self._process.join(timeout)
                code = self._process.exitcode
                if code is None:
                    raise subprocess.TimeoutExpired(self.args, timeout)
            try:
                self.stdout, self.stderr = ((self._folder / name).read_text() for name in ("stdout", "stderr"))
            finally:
                shutil.rmtree(self._folder, ignore_errors=True)
            self.returncode = code
        return self.returncode

    def poll(self):
        """The exit status once the script has ended (and `wait` has collected it), else None."""
        return self.wait() if self._ended() else None

    def _ended(self):
        # The fork server reaps its children at once, so a process id is free again as soon as the child ends:
        # look before signalling, so as not to signal another process that reused it.
        return self._process.poll() is not None if self._fresh else self._process.exitcode is not None

    def send_signal(self, signum):
        if self.returncode is None and not self._ended():
            os.kill(self.pid, signum)

    def kill(self):
        """Sends SIGKILL unless the script has already ended."""
        if self.returncode is None and not self._ended():
            self._process.kill()


def launch(script, *args, cwd, env, fresh=False):
    """Starts `python script args` with exactly the environment `env`, forked as described above (in a fresh
    interpreter with `fresh`), and returns its `Launched`."""
    return Launched([str(script), *map(str, args)], cwd, env, fresh)


def run_code(code, *args, cwd, env, timeout=300, fresh=False):
    """As `run`, for `python -c code args`."""
    return run("-c", code, *args, cwd=cwd, env=env, timeout=timeout, fresh=fresh)


def run(script, *args, cwd, env, timeout=300, fresh=False):
    """`launch`, then waits: returns a `subprocess.CompletedProcess`, or raises `subprocess.TimeoutExpired` after
    killing a script that outlives `timeout` seconds, as `subprocess.run` does."""
    launched = launch(script, *args, cwd=cwd, env=env, fresh=fresh)
    try:
        launched.wait(timeout)
    except subprocess.TimeoutExpired:
        launched.kill()
        launched.wait()
        # What it printed before it hung, for the failing test's report.
        raise subprocess.TimeoutExpired(launched.args, timeout, output=launched.stdout, stderr=launched.stderr)
    return subprocess.CompletedProcess(launched.args, launched.returncode, launched.stdout, launched.stderr)
