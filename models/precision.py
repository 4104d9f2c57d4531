"""bfloat16 rounding for generation's weights, in NumPy (no numba, no Keras): the compiled products
(`models.gemm`) read the bit patterns, the NumPy engine and the Keras reference the rounded float32 values."""

import numpy as np

PRECISIONS = ("float32", "bfloat16")


def to_bfloat16(array):
    """float32 `array` rounded to the nearest bfloat16 (ties to even), as uint16 bit patterns for `matmul`'s `b`."""
    bits = np.ascontiguousarray(array, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def from_bfloat16(bits):
    """The float32 values of bfloat16 bit patterns (`to_bfloat16`'s output)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def bfloat16_values(array):
    """float32 `array` rounded to the nearest bfloat16, kept as float32."""
    return from_bfloat16(to_bfloat16(array))
