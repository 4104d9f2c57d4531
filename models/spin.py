"""A spin barrier for compiled code: threads that each run a share of one computation meet here many thousand times
a second, which is too often for an operating-system wait (tens of microseconds) or a thread pool per call.

Each thread has a flag of its own (`STRIDE` int64s apart, so no two flags share a cache line) in a flags array, and
an abort flag follows them. `wait(flags, worker, workers, epoch)` publishes "worker has reached barrier `epoch`"
with a release store, then spins with acquire loads until every other worker's flag has reached `epoch`; so what
any worker wrote before the barrier is visible to every worker after it. Epochs only grow (1, 2, 3, ...), so the
flags never need resetting within one run. After `SPINS` spins a waiting thread yields its core at each further
spin (`sched_yield`): with more threads than free cores (another program, or two test workers) a waiting thread
then hands its time slice to the thread it waits for instead of burning it.

The atomics are LLVM `load atomic ... acquire` and `store atomic ... release` emitted through numba intrinsics;
on x86 the spin loop also issues `pause`.
"""

import numba
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

STRIDE = 16  # int64s between flags: 128 bytes, two cache lines (the adjacent-line prefetcher pairs them)
SPINS = 256
_X86 = binding.get_process_triple().startswith(("x86_64", "i386", "i686"))


def flags_size(workers):
    """Length of the int64 flags array for `workers` threads: one flag each, then the abort flag."""
    return (workers + 1) * STRIDE


def _slot(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _check_flags(array):
    if not isinstance(array, types.Array) or array.dtype != types.int64 or array.ndim != 1:
        raise TypingError(f"spin: flags must be a 1-D int64 array, got {array}")


@intrinsic
def load_acquire(typingctx, array, index):
    """`array[index]` read with acquire ordering (no bounds check)."""
    _check_flags(array)

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_slot(context, builder, signature.args[0], args[0], args[1]), "acquire", 8)

    return types.int64(array, types.intp), codegen


@intrinsic
def store_release(typingctx, array, index, value):
    """`array[index] = value` written with release ordering (no bounds check)."""
    _check_flags(array)

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(value, _slot(context, builder, signature.args[0], args[0], args[1]), "release", 8)
        return context.get_dummy_value()

    return types.void(array, types.intp, types.int64), codegen


@intrinsic
def relax(typingctx):
    """One spin of a wait loop: `pause` on x86 (spares the sibling hyperthread and the memory order machinery)."""

    def codegen(context, builder, signature, args):
        if _X86:  # LLVM's intrinsic for the instruction (numba's code emitter takes no inline assembly)
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def yield_core(typingctx):
    """`sched_yield()`: lets another runnable thread have this core."""

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                  "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(inline="always", cache=True)
def wait(flags, worker, workers, epoch):
    """Barrier `epoch` (1, 2, ... in order) of `workers` threads; returns False when the run was aborted."""
    store_release(flags, worker * STRIDE, epoch)
    for other in range(workers):
        if other == worker:
            continue
        spins = 0
        while load_acquire(flags, other * STRIDE) < epoch:
            if load_acquire(flags, workers * STRIDE) != 0:
                return False
            spins += 1
            if spins > SPINS:
                yield_core()
            else:
                relax()
    return True


@numba.njit(cache=True)
def abort(flags, workers):
    """Tells every thread waiting at a barrier of this run to give up (a worker failed)."""
    store_release(flags, workers * STRIDE, 1)


