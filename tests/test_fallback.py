"""Without numba: the package imports, models load, and generation runs on the NumPy path with the same audio."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import models
from tests.conftest import ROOT, tone

BLOCKED = "raise ImportError('blocked by the test: this machine has no {0}')\n"
CHILD = """
import sys, warnings, json
import numpy as np
import pytest
import keras
import models
imported_numba = 'numba' in sys.modules
model = keras.saving.load_model(sys.argv[1])
prime = np.load(sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    net = models.IncrementalWaveNet(model)
    greedy = models.generate(net, 40, num_streams=2, temperature=0, prime=prime)
    sampled = models.generate(net, 40, num_streams=2, temperature=1.0, prime=prime, seed=5)
np.save(sys.argv[3], np.stack([greedy, sampled]))
print(json.dumps({'numba_after_import': imported_numba, 'numba_loaded': 'numba' in sys.modules, 'engine': net.engine,
                  'warnings': [str(w.message) for w in caught]}))
"""


def test_without_numba_everything_loads_and_generation_falls_back(tmp_path, tiny_wavenet):
    blocker = tmp_path / "blocked"
    for name in ("numba", "llvmlite"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(BLOCKED.format(name))
    model = tiny_wavenet("regressor", "logistic-mixture")
    model.save(tmp_path / "model.keras")
    prime = tone(0.01, frequencies=(300,))
    np.save(tmp_path / "prime.npy", prime)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("WAVEGEN_ENGINE", None)
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "model.keras"), str(tmp_path / "prime.npy"),
                             str(tmp_path / "out.npy")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["numba_after_import"] is False and report["numba_loaded"] is False
    assert report["engine"] == "numpy"
    assert len(report["warnings"]) == 1 and "NumPy fallback" in report["warnings"][0]
    assert "ImportError" in report["warnings"][0]
    greedy, sampled = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(greedy, models.generate(model, 40, num_streams=2, temperature=0, prime=prime,
                                                       engine="numba"), atol=1e-5)
    np.testing.assert_allclose(sampled, models.generate(model, 40, num_streams=2, temperature=1.0, prime=prime,
                                                        seed=5, engine="numba"), atol=1e-5)


def test_a_kernel_that_cannot_be_built_falls_back_with_one_warning(tiny_wavenet, monkeypatch):
    import warnings

    from models import generation, kernels

    def broken(*args):
        raise RuntimeError("LLVM ERROR: Cannot select: intrinsic %llvm.x86.avx512 (simulated)")

    monkeypatch.setattr(generation, "_COMPILED_STATUS", None)
    monkeypatch.setattr(kernels, "run", broken)
    monkeypatch.delenv("WAVEGEN_ENGINE", raising=False)
    model = tiny_wavenet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = models.generate(model, 20, temperature=0)
        second = models.generate(model, 20, temperature=0)
    messages = [str(w.message) for w in caught if "generation kernel" in str(w.message)]
    assert len(messages) == 1 and "RuntimeError: LLVM ERROR" in messages[0] and "NumPy fallback" in messages[0]
    np.testing.assert_array_equal(first, second)
    with pytest.raises(RuntimeError, match="simulated"):  # asked for by name, the failure is not hidden
        models.generate(model, 20, temperature=0, engine="numba")


def test_generate_script_engines_write_the_same_file(tmp_path, tiny_wavenet):
    """`generate.py --engine numpy` writes what the compiled kernel generates for the same seed."""
    import soundfile as sf

    from tests.conftest import run_script

    model = tiny_wavenet("regressor", "logistic-mixture")
    model.save(tmp_path / "model.keras")
    out = tmp_path / "numpy.wav"
    result = run_script("generate.py", tmp_path / "model.keras", "--seconds", "0.02", "--output", out, "--seed", "4",
                        "--engine", "numpy")
    assert result.returncode == 0, result.stderr[-2000:]
    written = sf.read(str(out), dtype="float32")[0]
    compiled = models.generate(model, 160, seed=4, engine="numba")[0]
    assert written.shape == (160,) and np.abs(written).max() > 0
    assert np.abs(written - compiled).max() <= 2.0 / 32768  # equal up to 16-bit rounding
