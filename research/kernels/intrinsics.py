"""Three machine operations Numba does not offer, as LLVM intrinsics for compiled loops.

* :func:`prefetch`, a cache hint. A sweep row runs the execution function only on the bars
  where an order is pending (some 18,000 of a million for an SMA cross), reading their open,
  high, low and close time from arrays that the marking between orders never touches: each
  such read was a miss to main memory, at irregular distances no hardware prefetcher can
  guess, and cost the row more than all its arithmetic. Where the next order bars are known a
  few orders ahead, :func:`prefetch` asks for their cache lines while the bars before them
  are marked. A prefetch changes no value: only how soon a later read is served.
* :func:`trailing_zeros` (one instruction), to find the first set byte of a 64-bit word.
* :func:`float_from_bits`, a 64-bit pattern read as the double it encodes (what
  ``np.array([bits]).view(np.float64)[0]`` gives, without an array).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, array, index):
    """Hint that ``array[index]`` will be read soon (LLVM's ``llvm.prefetch``: read, keep in
    all cache levels). ``index`` must lie within ``array`` (not checked; a prefetch never
    faults, but a hint outside the array is wasted)."""
    signature = types.void(array, types.intp)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        values = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, values, [args[1]], wraparound=False
        )
        i32, byte_pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        pointer = builder.bitcast(pointer, byte_pointer)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        builder.call(function, [pointer, i32(0), i32(3), i32(1)])  # read, high locality, data
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def trailing_zeros(typingctx, word):
    """The number of trailing zero bits of the 64-bit unsigned ``word`` (64 for ``0``): one
    instruction (LLVM's ``llvm.cttz``)."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]), "llvm.cttz.i64"
        )
        return builder.call(function, [args[0], ir.IntType(1)(0)])

    return signature, codegen


@intrinsic
def float_from_bits(typingctx, bits):
    """The float64 whose IEEE 754 bit pattern is the int64 ``bits``."""
    signature = types.float64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return signature, codegen
