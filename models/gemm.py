"""A small-matrix product for the generation loop, written as LLVM vector code through numba.

Generation multiplies a few dozen rows (one per stream) by weight matrices of about 128 x 128, thousands
of times a second. BLAS libraries are tuned for large products: they copy ("pack") both operands before
every call, and the OpenBLAS that NumPy and SciPy ship runs its AVX2 kernels on AVX-512 machines. At these
sizes that leaves much of the core idle (the README's generation section has the measurements). `matmul`
instead computes `c = a @ b + bias` (or `c += a @ b + bias`) straight from the row-major operands: each tile of
`ROWS` rows by `VECTORS` vector registers of columns keeps its sums in registers for the whole inner dimension, and
each weight vector loaded is used once per row of the tile. A product of one or two rows (one stream: a chain of
matrix-vector products) takes tiles as wide as the registers allow (`NARROW_VECTORS`), so that enough independent
sums are in flight to hide the multiply-add latency.

numba caches compiled code by the file of each compiled function: code that inlines these products
(`models.kernels`) keeps a cached copy of the old products after this file changes alone. Delete
`models/__pycache__/*.nb[ic]` after editing it.

Column counts must be multiples of `LANES` (the generation code pads its weights with zero columns); operands
must be float32 (refused when the caller is compiled) with each row's elements adjacent (checked on every call,
as are the shapes: the generated code has no bounds checks of its own). The vector width follows numba's own
target (`NUMBA_CPU_NAME`, `NUMBA_CPU_FEATURES`), so code built for another CPU never uses absent registers.
"""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic


def _target_features():
    """The ISA features numba compiles for: its own target settings (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES), not
    the raw host's. An empty string when a CPU name is set without features (LLVM then takes that CPU's)."""
    try:
        from numba.core.registry import cpu_target

        return cpu_target.target_context.codegen()._tm_features or ""
    except Exception:  # a numba without that attribute: read its settings the way it does
        if numba.config.CPU_FEATURES is not None:
            return numba.config.CPU_FEATURES
        if numba.config.CPU_NAME is not None:
            return ""
        from llvmlite import binding

        return binding.get_host_cpu_features().flatten()


def _register_shape():
    """Vector width and tile shapes: what fills the vector registers of the target (32 with AVX-512, else 16).

    Returns `(lanes, rows, vectors, narrow)`: `rows x vectors` tiles in general, and for a product of one or two
    rows (one stream, a matrix-vector product) `narrow[m - 1]` vectors per tile: each sum is a chain of dependent
    multiply-adds, and a row of only 2 or 4 chains leaves the multiply-add units idle for most of their latency.
    """
    if "+avx512f" in _target_features().split(","):
        # 6 x 4 sums + 4 weight vectors + 1 broadcast = 29 of 32 registers; one row: 16 sums (weights are
        # operands of the multiply-adds, used once); two rows: 2 x 8 sums + 8 weight vectors + 2 broadcasts.
        return 16, 6, 4, (16, 8)
    return 8, 6, 2, (8, 4)  # 6 x 2 + 2 + 1 = 15 of 16; one row: 8 sums; two rows: 8 + 4 + 2 = 14


LANES, ROWS, VECTORS, NARROW_VECTORS = _register_shape()
# Every padded size is a multiple of this, whichever vector width is chosen (models.generation pads to it).
COLUMN_MULTIPLE = 16
assert COLUMN_MULTIPLE % LANES == 0
_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _const(value):
    return ir.Constant(_I64, value)


class _Operand:
    """A 2-D array's data pointer and row stride (in elements) inside generated code; `bfloat16` when it holds
    bfloat16 bit patterns (uint16)."""

    def __init__(self, context, builder, array_type, value):
        array = context.make_array(array_type)(context, builder, value)
        self.data = array.data
        self.bfloat16 = array_type.dtype == types.uint16
        self.shape = [builder.extract_value(array.shape, i) for i in range(array_type.ndim)]
        self.row_stride = (builder.udiv(builder.extract_value(array.strides, 0),
                                        _const(2 if self.bfloat16 else 4)) if array_type.ndim == 2 else None)

    def row(self, builder, index):
        return builder.gep(self.data, [builder.mul(index, self.row_stride)])


def _emit_tile(builder, parts, b, bias, c, r0, j0, accumulate, rows, vectors):
    """Straight-line code for one `rows` x `vectors * LANES` tile of `[parts[0], parts[1], ...] @ b`."""
    vector = ir.VectorType(ir.FloatType(), LANES)
    pointer = vector.as_pointer()
    # fmuladd, not fma: fused where the target has FMA, a multiply and an add where it has not (llvm.fma would
    # become scalar fmaf library calls there).
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fmuladd.v{LANES}f32")

    def load(address):
        return builder.load(builder.bitcast(address, pointer), align=4)

    def load_weights(address):
        if not b.bfloat16:
            return load(address)
        # bfloat16 is the top half of a float32: widen each to 32 bits and shift it up.
        halves = builder.load(builder.bitcast(address, ir.VectorType(ir.IntType(16), LANES).as_pointer()), align=2)
        words = builder.shl(builder.zext(halves, ir.VectorType(_I32, LANES)),
                            ir.Constant(ir.VectorType(_I32, LANES), [16] * LANES))
        return builder.bitcast(words, vector)

    zero = ir.Constant(vector, [0.0] * LANES)
    sums, targets = [], []
    for r in range(rows):
        c_row = builder.gep(c.row(builder, builder.add(r0, _const(r))), [j0])
        for v in range(vectors):
            target = builder.gep(c_row, [_const(v * LANES)])
            start = builder.fadd(load(builder.gep(bias.data, [builder.add(j0, _const(v * LANES))])),
                                 builder.select(accumulate, load(target), zero))
            slot = cgutils.alloca_once(builder, vector)  # promoted to a register by LLVM
            builder.store(start, slot)
            sums.append(slot)
            targets.append(target)
    undef = ir.Constant(vector, ir.Undefined)
    broadcast = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    b_columns = builder.gep(b.data, [j0])
    for a in parts:  # each part multiplies the next `a.shape[1]` rows of b
        a_rows = [a.row(builder, builder.add(r0, _const(r))) for r in range(rows)]
        with cgutils.for_range(builder, a.shape[1]) as loop:
            b_row = builder.gep(b_columns, [builder.mul(loop.index, b.row_stride)])
            weights = [load_weights(builder.gep(b_row, [_const(v * LANES)])) for v in range(vectors)]
            for r in range(rows):
                value = builder.load(builder.gep(a_rows[r], [loop.index]))
                value = builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(_I32, 0)), undef,
                                               broadcast)
                for v in range(vectors):
                    slot = sums[r * vectors + v]
                    builder.store(builder.call(fma, [value, weights[v], builder.load(slot)]), slot)
        b_columns = builder.gep(b_columns, [builder.mul(a.shape[1], b.row_stride)])
    for slot, target in zip(sums, targets):
        builder.store(builder.load(slot), builder.bitcast(target, pointer), align=4)


def _emit_tiles(builder, a_, b_, bias_, c_, accumulate_, rows_total, columns_total, row_step, vector_step):
    """Loops over the output in tiles of up to `row_step` rows by `vector_step` vectors, each tile's shape a
    case of a switch (the last row and column tiles may be smaller)."""
    with cgutils.for_range_slice(builder, _const(0), columns_total, _const(vector_step * LANES)) as (j0, _):
        left = builder.udiv(builder.sub(columns_total, j0), _const(LANES))
        vectors = builder.select(builder.icmp_unsigned("<", left, _const(vector_step)), left, _const(vector_step))
        with cgutils.for_range_slice(builder, _const(0), rows_total, _const(row_step)) as (r0, _):
            left = builder.sub(rows_total, r0)
            rows = builder.select(builder.icmp_unsigned("<", left, _const(row_step)), left, _const(row_step))
            key = builder.add(builder.mul(rows, _const(vector_step + 1)), vectors)
            merge = builder.append_basic_block("tile_done")
            switch = builder.switch(key, merge)
            for r in range(1, row_step + 1):
                for v in range(1, vector_step + 1):
                    block = builder.append_basic_block(f"tile_{r}x{v}")
                    switch.add_case(_const(r * (vector_step + 1) + v), block)
                    with builder.goto_block(block):
                        _emit_tile(builder, a_, b_, bias_, c_, r0, j0, accumulate_, r, v)
                        builder.branch(merge)
            builder.position_at_end(merge)


def _codegen(parts):
    """Generated code for `c (+)= [a_1 ... a_parts] @ b + bias`; arguments `a_1 ... a_parts, b, bias, c, accumulate`."""

    def codegen(context, builder, signature, args):
        operands = [_Operand(context, builder, t, v) for t, v in zip(signature.args[:-1], args[:-1])]
        a_, (b_, bias_, c_) = operands[:parts], operands[parts:]
        accumulate_ = args[-1]
        rows_total, columns_total = a_[0].shape[0], c_.shape[1]
        one, two = (builder.icmp_unsigned("==", rows_total, _const(m)) for m in (1, 2))
        with builder.if_else(one) as (then_one, otherwise):
            with then_one:
                _emit_tiles(builder, a_, b_, bias_, c_, accumulate_, rows_total, columns_total, 1,
                            NARROW_VECTORS[0])
            with otherwise:
                with builder.if_else(two) as (then_two, more):
                    with then_two:
                        _emit_tiles(builder, a_, b_, bias_, c_, accumulate_, rows_total, columns_total, 2,
                                    NARROW_VECTORS[1])
                    with more:
                        _emit_tiles(builder, a_, b_, bias_, c_, accumulate_, rows_total, columns_total, ROWS,
                                    VECTORS)
        return context.get_dummy_value()

    return codegen


def _check_types(arrays, names):
    """Refuse at compile time what the generated code cannot read: it assumes float32 (or, for `b`, bfloat16 bits
    in uint16) and known dimensions."""
    for array, (name, ndim) in zip(arrays, names):
        dtypes = (types.float32, types.uint16) if name == "b" else (types.float32,)
        if not isinstance(array, types.Array) or array.dtype not in dtypes or array.ndim != ndim:
            kinds = " or ".join(str(dtype) for dtype in dtypes)
            raise TypingError(f"matmul: {name} must be a {ndim}-D {kinds} array, got {array}")


@intrinsic
def _matmul(typingctx, a, b, bias, c, accumulate):
    _check_types((a, b, bias, c), (("a", 2), ("b", 2), ("bias", 1), ("c", 2)))
    return types.void(a, b, bias, c, types.boolean), _codegen(1)


@intrinsic
def _matmul_pair(typingctx, a1, a2, b, bias, c, accumulate):
    _check_types((a1, a2, b, bias, c), (("a1", 2), ("a2", 2), ("b", 2), ("bias", 1), ("c", 2)))
    return types.void(a1, a2, b, bias, c, types.boolean), _codegen(2)


@numba.njit(cache=True)
def _check(rows, depth, b, bias, c):
    # The generated code does no bounds checks of its own: refuse shapes it would read or write past.
    if c.shape[0] != rows or depth > b.shape[0] or c.shape[1] > b.shape[1] or c.shape[1] > bias.shape[0]:
        raise ValueError("matmul: operand shapes do not match")
    if c.shape[1] % LANES != 0:
        raise ValueError("matmul: output columns must be a multiple of gemm.LANES")
    if rows == 0 or c.shape[1] == 0:
        return  # nothing is read or written
    # Rows may be strided, but each row's elements must be adjacent: the code loads whole vectors from them.
    size = b.itemsize
    if b.strides[1] != size or c.strides[1] != 4 or bias.strides[0] != 4:
        raise ValueError("matmul: b, bias and c must have contiguous rows (unit element stride)")
    if (b.strides[0] % size != 0 or c.strides[0] % 4 != 0 or (b.shape[0] > 1 and b.strides[0] < size * b.shape[1])
            or (c.shape[0] > 1 and c.strides[0] < 4 * c.shape[1])):
        raise ValueError("matmul: b and c rows must not overlap")


@numba.njit(cache=True)
def _check_a(a):
    if a.shape[0] == 0 or a.shape[1] == 0:
        return
    if a.shape[1] > 1 and a.strides[1] != 4:
        raise ValueError("matmul: a must have contiguous rows (unit element stride)")
    if a.shape[0] > 1 and a.strides[0] % 4 != 0:
        raise ValueError("matmul: a's row stride must be a whole number of elements")


@numba.njit(cache=True)
def matmul(a, b, bias, c, accumulate):
    """`c = a @ b[:, :n] + bias[:n]`, or `c += ...` when `accumulate`, where `n = c.shape[1]`.

    Args:
        a: `(m, k)` float32, rows may be strided.
        b: `(k, >= n)` float32, or uint16 holding bfloat16 bit patterns
            (`models.precision.to_bfloat16`): half the bytes to read,
            the products still in float32.
        bias: `(>= n,)` float32.
        c: `(m, n)` float32 output; `n` a multiple of `LANES`.
        accumulate: add to `c` instead of overwriting it.

    Example:

    >>> matmul(x, w, b, y, False)  # y = x @ w + b
    """
    _check_a(a)
    _check(a.shape[0], a.shape[1], b, bias, c)
    _matmul(a, b, bias, c, accumulate)


@numba.njit(cache=True)
def matmul_pair(a1, a2, b, bias, c, accumulate):
    """`matmul(np.hstack([a1, a2]), b, bias, c, accumulate)` without building the stacked matrix."""
    if a2.shape[0] != a1.shape[0]:
        raise ValueError("matmul: operand shapes do not match")
    _check_a(a1)
    _check_a(a2)
    _check(a1.shape[0], a1.shape[1] + a2.shape[1], b, bias, c)
    _matmul_pair(a1, a2, b, bias, c, accumulate)
