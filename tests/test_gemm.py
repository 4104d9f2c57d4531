"""The register-tiled product behind generation, against NumPy, on every tile shape and both vector widths."""

import os
import subprocess
import sys

import numpy as np
import pytest

from models import gemm
from models.precision import from_bfloat16, to_bfloat16
from tests.conftest import ROOT


def check_against_numpy(seed=0):
    rng = np.random.default_rng(seed)
    # Rows 1...2 * ROWS + 1 reach every row tail; widths reach every column tail of both vector widths.
    for m in list(range(1, 2 * gemm.ROWS + 2)) + [32]:
        for k, n in ((1, 16), (3, 48), (64, 192), (128, 128), (37, 80), (128, 256)):
            a = rng.standard_normal((m, k + 5), np.float32)[:, :k]  # strided rows
            b = rng.standard_normal((k, n + 16), np.float32)  # wider than the output
            bias = rng.standard_normal(n + 16, np.float32)
            c = np.full((m, n), np.nan, np.float32)
            expected = a.astype(np.float64) @ b[:, :n] + bias[:n]
            gemm.matmul(a, b, bias, c, False)
            np.testing.assert_allclose(c, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))
            gemm.matmul(a, b, bias, c, True)
            np.testing.assert_allclose(c, 2 * expected, rtol=1e-4, atol=2e-4 * np.sqrt(k))
            split = k // 2
            gemm.matmul_pair(a[:, :split], np.ascontiguousarray(a[:, split:]), b, bias, c, False)
            np.testing.assert_allclose(c, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k))
            # bfloat16 weights: the same product of the rounded weights
            rounded = to_bfloat16(b)
            gemm.matmul(a, rounded, bias, c, False)
            np.testing.assert_allclose(c, a.astype(np.float64) @ from_bfloat16(rounded)[:, :n] + bias[:n],
                                       rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_matmul_matches_numpy_on_every_tile_shape():
    check_against_numpy()


def test_matmul_with_the_other_vector_width():
    # NUMBA_CPU_NAME=generic selects the 8-lane tiles (and plain x86-64 code), as on a CPU without AVX-512.
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "PYTHONPATH": str(ROOT)}
    code = ("from models import gemm; from tests.test_gemm import check_against_numpy; "
            "assert gemm.LANES == 8, gemm.LANES; check_against_numpy(); print('ok')")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_bfloat16_rounding_is_to_nearest_even():
    values = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 2 ** -7 + 2 ** -8, 1.0 + 2 ** -9, -3.0e-3, 65504.0], np.float32)
    rounded = from_bfloat16(to_bfloat16(values))
    # ties go to the even neighbour; otherwise the nearest of the two bfloat16 values around each
    np.testing.assert_array_equal(rounded[:4], [1.0, 1.0, 1.0 + 2 ** -6, 1.0])
    np.testing.assert_allclose(rounded, values, rtol=2 ** -8)
    assert to_bfloat16(values).dtype == np.uint16


def test_matmul_with_zero_rows_writes_nothing():
    buffer = np.full((2, 16), 7.0, np.float32)
    gemm.matmul(np.zeros((0, 4), np.float32), np.ones((4, 16), np.float32), np.ones(16, np.float32), buffer[:0],
                True)
    assert np.all(buffer == 7.0)  # the empty output starts where the buffer does: any write would show


@pytest.mark.parametrize("environment,lanes", [
    ({"NUMBA_CPU_NAME": "generic"}, 8),  # portable code (numba then enables no extra features)
    ({"NUMBA_CPU_FEATURES": "+avx2,+fma,-avx512f"}, 8),  # the host's CPU with AVX-512 switched off
    ({}, None),  # the host: 16 lanes exactly when it has AVX-512
])
def test_vector_width_follows_numbas_target(environment, lanes):
    if lanes is None:
        flags = open("/proc/cpuinfo").read().split()
        lanes = 16 if "avx512f" in flags else 8
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env.update(environment, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", "from models import gemm; print(gemm.LANES)"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) == lanes


def test_products_use_fmuladd_not_fma():
    """llvm.fma becomes scalar fmaf library calls on CPUs without FMA; llvm.fmuladd fuses only where it can."""
    import numba

    @numba.njit  # not cached, so its code can be inspected
    def product(a, b, bias, c):
        gemm._matmul(a, b, bias, c, False)

    a, b, bias, c = (np.ones((2, 4), np.float32), np.ones((4, 16), np.float32), np.zeros(16, np.float32),
                     np.zeros((2, 16), np.float32))
    product(a, b, bias, c)
    np.testing.assert_array_equal(c, 4.0)
    ir = "\n".join(product.inspect_llvm().values())
    assert "llvm.fmuladd.v" in ir and "llvm.fma.v" not in ir


def test_matmul_refuses_other_dtypes_at_compile_time():
    from numba.core.errors import TypingError

    with pytest.raises(TypingError, match="float32"):
        gemm.matmul(np.ones((2, 4)), np.ones((4, 16)), np.ones(16), np.zeros((2, 16)), False)
    with pytest.raises(TypingError, match="float32"):
        gemm.matmul(np.ones((2, 4), np.float32), np.ones((4, 16), np.int32), np.ones(16, np.float32),
                    np.zeros((2, 16), np.float32), False)


@pytest.mark.parametrize("which", ["b transposed", "c every other column", "a every other column", "bias strided"])
def test_matmul_refuses_rows_that_are_not_contiguous(which):
    a, b = np.ones((3, 4), np.float32), np.ones((4, 16), np.float32)
    bias, c = np.zeros(16, np.float32), np.zeros((3, 16), np.float32)
    if which == "b transposed":
        b = np.ones((16, 4), np.float32).T
    elif which == "c every other column":
        c = np.zeros((3, 32), np.float32)[:, ::2]
    elif which == "a every other column":
        a = np.ones((3, 8), np.float32)[:, ::2]
    else:
        bias = np.zeros(32, np.float32)[::2]
    with pytest.raises(ValueError, match="contiguous rows"):
        gemm.matmul(a, b, bias, c, False)


@pytest.mark.parametrize("a_shape,b_shape,bias_size,c_shape", [
    ((3, 5), (4, 16), 16, (3, 16)),   # a deeper than b
    ((3, 4), (4, 16), 16, (2, 16)),   # rows differ
    ((3, 4), (4, 16), 16, (3, 32)),   # c wider than b
    ((3, 4), (4, 32), 16, (3, 32)),   # c wider than the bias
    ((3, 4), (4, 20), 20, (3, 20)),   # not a multiple of the vector width (8 or 16)
])
def test_matmul_refuses_shapes_it_would_overrun(a_shape, b_shape, bias_size, c_shape):
    with pytest.raises(ValueError, match="matmul"):
        gemm.matmul(np.ones(a_shape, np.float32), np.ones(b_shape, np.float32), np.ones(bias_size, np.float32),
                    np.zeros(c_shape, np.float32), False)


@pytest.mark.parametrize("accumulate", [False, True])
def test_matmul_writes_only_its_output_columns(accumulate):
    a = np.ones((3, 4), np.float32)
    c = np.zeros((3, 48), np.float32)
    gemm.matmul(a, np.ones((4, 64), np.float32), np.zeros(64, np.float32), c[:, :32], accumulate)
    assert np.all(c[:, :32] == 4) and np.all(c[:, 32:] == 0)
