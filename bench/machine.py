"""What machine a bench ran on, and its dense matrix-multiply rate: shared by every script in bench/.

    python bench/machine.py                    # the machine line, then the matmul rates (a few seconds)

Speeds differ by up to 2x between machines of one cloud type (an AMD EPYC with AVX-512, an Intel Xeon with
AVX-512 BF16 and AMX), so every bench prints `machine_line()` first and a `caption()` above each table, and
states its goals as ratios measured within one run (a share of this machine's matmul rate, a multiple of
another model timed in the same run).
"""

import importlib.metadata
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project root: benches measure its packages

from cli import quiet_tensorflow  # noqa: E402,F401  (re-exported for the benches)

# Vector extensions worth naming, as /proc/cpuinfo spells their flags.
EXTENSIONS = (("AVX2", ("avx2",)), ("AVX-512", ("avx512f",)), ("AVX-512 BF16", ("avx512_bf16",)),
              ("AMX", ("amx_tile", "amx_bf16", "amx_int8")))
LIBRARIES = (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("NumPy", "numpy"), ("numba", "numba"))


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as file:
            return file.read()
    except OSError:
        return ""


def cpu_model():
    """The CPU's name from /proc/cpuinfo ("model name"), else `platform.processor()`, else "unknown CPU"."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags():
    """The CPU's feature flags (the first processor's "flags" line in /proc/cpuinfo; empty elsewhere)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_count():
    """CPUs this process may run on (its affinity mask), which is what the benches use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def extensions(flags=None):
    """{"AVX2": True, "AVX-512": ..., "AVX-512 BF16": ..., "AMX": ...}; AMX lists the parts present."""
    flags = cpu_flags() if flags is None else flags
    found = {}
    for name, wanted in EXTENSIONS:
        present = [flag for flag in wanted if flag in flags]
        if name == "AMX":
            found[name] = "/".join(flag.replace("amx_", "") for flag in present) if present else False
        else:
            found[name] = bool(present)
    return found


def versions():
    """{"TensorFlow": "2.21.0", ...} for the libraries that are installed (read from package metadata, so
    nothing is imported)."""
    found = {}
    for name, package in LIBRARIES:
        if importlib.util.find_spec(package) is None:
            continue
        try:
            found[name] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "installed"
    return found


def _extension_text(found, with_absent=True):
    parts = []
    for name, value in found.items():
        if value:
            parts.append(f"{name} ({value})" if isinstance(value, str) else name)
        elif with_absent:
            parts.append(f"no {name}")
    return ", ".join(parts) or "none of AVX2, AVX-512, AMX"


def machine_line():
    """One line: CPU model, CPU count, vector extensions (present and absent), library versions."""
    found = extensions()
    libraries = ", ".join(f"{name} {version}" for name, version in versions().items())
    return f"machine: {cpu_model()}; {cpu_count()} CPUs; {_extension_text(found)}; {libraries}"


def caption():
    """A short line to print right above a table: "CPU: <model>, <n> CPUs, <extensions present>", followed by
    an empty line, so that the table pasted into Markdown still starts a block of its own."""
    return f"CPU: {cpu_model()}, {cpu_count()} CPUs, {_extension_text(extensions(), with_absent=False)}\n"


def print_machine():
    """Prints `machine_line()` (every bench does this first) and returns it."""
    line = machine_line()
    print(line, flush=True)
    return line


def best_rate(function, flops, seconds=2.0, blocks=4):
    """FLOP/s of `function` (doing `flops` each call): the fastest of `blocks` blocks of repeated calls (other
    tenants of a shared machine can only slow a block down). One call first, untimed, to compile and warm up."""
    function()
    best = 0.0
    for _ in range(blocks):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / blocks:
            function()
            count += 1
        best = max(best, flops * count / (time.perf_counter() - start))
    return best


def measure_matmul(seconds=2.0, size=2048):
    """Dense matrix-multiply rates on all cores, FLOP/s of a `size`^3 product:
    {"tensorflow_float32", "tensorflow_bfloat16", "numpy_float32"}.

    TensorFlow's oneDNN uses AVX-512 (and AMX for bfloat16) where the CPU has them; the OpenBLAS that NumPy
    ships may not, so the faster float32 rate (`float32_limit`) is the machine's float32 limit."""
    import numpy as np
    import tensorflow as tf

    flops = 2 * size ** 3
    results = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.normal((size, size), dtype=tf.float32), dtype)
        matmul = tf.function(lambda x: tf.linalg.matmul(x, x), jit_compile=False)
        results[f"tensorflow_{dtype}"] = best_rate(lambda: matmul(a).numpy(), flops, seconds)
    x = np.random.default_rng(0).random((size, size), np.float32)
    results["numpy_float32"] = best_rate(lambda: x @ x, flops, seconds)
    return results


def float32_limit(rates):
    """The faster of TensorFlow's and NumPy's float32 matmul rates."""
    return max(rates["tensorflow_float32"], rates["numpy_float32"])


def matmul_line(rates, size=2048):
    """One line with the three rates and how far bfloat16 is above float32 in TensorFlow."""
    return (f"dense matmul {size}^3 on all cores: TensorFlow float32 {rates['tensorflow_float32'] / 1e9:,.0f} "
            f"GFLOP/s, bfloat16 {rates['tensorflow_bfloat16'] / 1e9:,.0f} GFLOP/s "
            f"({rates['tensorflow_bfloat16'] / rates['tensorflow_float32']:.2f} x float32); NumPy float32 "
            f"{rates['numpy_float32'] / 1e9:,.0f} GFLOP/s")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per matmul rate (4 blocks)")
    parser.add_argument("--no-matmul", action="store_true", help="print the machine line only")
    args = parser.parse_args()
    print_machine()
    if not args.no_matmul:
        quiet_tensorflow()
        print(matmul_line(measure_matmul(args.seconds)))
