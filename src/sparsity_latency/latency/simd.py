"""512-bit vector registers for numba kernels: `Vector` values and the few operations the event engine needs.

LLVM keeps a numba array used as an accumulator in memory (every add is a load, an add and a store that waits
on the one before), and on this machine's CPUs it emits 256-bit vectors only. A `Vector` is an LLVM
`<lanes x dtype>` value (64 bytes: 32 × int16, 16 × int32, 8 × float64) that lives in a register: a loop that
adds into a few of them runs at load throughput. The operations are numba intrinsics, usable only inside
`numba.njit` code:

- `vzero(array)`: a zero vector of the array's element type;
- `vwidth(array)`: the lanes of that vector, a compile-time constant (`64 // array.itemsize` is read at run time,
  and a loop stepping by it divides to find its trip count);
- `vload(array, offset)`: the `lanes` elements of `array` (C-contiguous, any shape) from flat offset `offset` on;
- `vstore(array, offset, v)`: the reverse;
- `vload_as(array, offset, like)` (integer lanes): as many elements of `array` from flat offset `offset` on as a
  vector of `like`'s element type holds (16 int16 for int32), sign-extended to that type;
- `vadd(a, b)`, `vsub(a, b)`, and `vscale(v, s)`: v · s with the scalar s converted to the element type;
- `vsplat(like, s)`: a vector of the element type of `like` (an array or a vector) with every lane s;
- integer lanes only: `vgt(a, b)` and `veq(a, b)`, lane masks (−1 where a > b, resp. a = b, else 0; signed);
  `vselect(mask, a, b)`: a where the mask lane is nonzero, else b; `vbits(mask)`: the mask as the bits of a
  uint64, lane i on bit i;
- `vcompress(array, offset, v, bits)` (integer lanes): the lanes of v whose bit is set in the integer `bits`
  (lane i: bit i), one after another from flat offset `offset` on, then zeros: a whole vector is stored;
- `popcount(word)` and `trailing_zeros(word)` of an unsigned integer;
- `load_word(array, offset)`: 8 bytes of a uint8 array from any offset, as a little-endian uint64.

No bounds are checked: the caller keeps offset + lanes within the array.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

VECTOR_BITS = 512


class Vector(types.Type):
    """A numba type: one SIMD register of `lanes` elements of `dtype` (a numba scalar type)."""

    def __init__(self, dtype: types.Type) -> None:
        self.dtype = dtype
        self.lanes = VECTOR_BITS // dtype.bitwidth
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: Vector) -> None:
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def lanes(dtype: object) -> int:
    """Elements per vector of a numpy dtype."""
    return VECTOR_BITS // (8 * np.dtype(dtype).itemsize)


def _pointer(context, builder, array_type, array, offset, vector_type):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), context.get_data_type(vector_type).as_pointer())


@intrinsic
def vzero(typingctx, array):
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_data_type(vector), None)
    return vector(array), codegen


@intrinsic
def vwidth(typingctx, array):
    lanes = Vector(array.dtype).lanes

    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(64), lanes)
    return types.int64(array), codegen


@intrinsic
def vload(typingctx, array, offset):
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        return builder.load(_pointer(context, builder, signature.args[0], args[0], args[1], vector), align=1)
    return vector(array, offset), codegen


@intrinsic
def vload_as(typingctx, array, offset, like):
    vector = Vector(like.dtype)

    def codegen(context, builder, signature, args):
        element = context.get_data_type(signature.args[0].dtype)
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), ir.VectorType(element, vector.lanes).as_pointer())
        loaded = builder.load(pointer, align=1)
        wide = context.get_data_type(vector)
        return loaded if element == wide.element else builder.sext(loaded, wide)
    return vector(array, offset, like), codegen


@intrinsic
def load_word(typingctx, array, offset):
    """The 8 bytes of a uint8 array from flat offset `offset` on (any alignment) as a little-endian uint64."""
    if array.dtype != types.uint8:
        return None  # a typing error: the offset counts bytes

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(pointer, align=1)
    return types.uint64(array, offset), codegen


@intrinsic
def vstore(typingctx, array, offset, value):
    def codegen(context, builder, signature, args):
        builder.store(args[2], _pointer(context, builder, signature.args[0], args[0], args[1], signature.args[2]),
                      align=1)
        return context.get_dummy_value()
    return types.none(array, offset, value), codegen


def _lanewise(operation: str):
    """An intrinsic applying the IRBuilder method `operation` (integer lanes) or `f` + `operation` (float lanes)."""
    def typer(typingctx, a, b):
        def codegen(context, builder, signature, args):
            floating = isinstance(signature.args[0].dtype, types.Float)
            return getattr(builder, "f" + operation if floating else operation)(*args)
        return a(a, b), codegen
    return intrinsic(typer)


vadd = _lanewise("add")
vsub = _lanewise("sub")


def _splat(context, builder, vector: Vector, value, value_type):
    element = context.cast(builder, value, value_type, vector.dtype)
    splat = builder.insert_element(ir.Constant(context.get_data_type(vector), None), element,
                                   ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), None))


@intrinsic
def vscale(typingctx, v, scalar):
    def codegen(context, builder, signature, args):
        splat = _splat(context, builder, signature.args[0], args[1], signature.args[1])
        floating = isinstance(signature.args[0].dtype, types.Float)
        return builder.fmul(args[0], splat) if floating else builder.mul(args[0], splat)
    return v(v, scalar), codegen


@intrinsic
def vsplat(typingctx, like, scalar):
    vector = like if isinstance(like, Vector) else Vector(like.dtype)

    def codegen(context, builder, signature, args):
        return _splat(context, builder, vector, args[1], signature.args[1])
    return vector(like, scalar), codegen


def _compare(operator: str):
    def typer(typingctx, a, b):
        def codegen(context, builder, signature, args):
            mask = builder.icmp_signed(operator, *args)
            return builder.sext(mask, context.get_data_type(signature.return_type))
        return a(a, b), codegen
    return intrinsic(typer)


vgt = _compare(">")
veq = _compare("==")


@intrinsic
def vselect(typingctx, mask, a, b):
    def codegen(context, builder, signature, args):
        zero = ir.Constant(context.get_data_type(signature.args[0]), None)
        return builder.select(builder.icmp_signed("!=", args[0], zero), args[1], args[2])
    return a(mask, a, b), codegen


@intrinsic
def vbits(typingctx, mask):
    def codegen(context, builder, signature, args):
        lanes = signature.args[0].lanes
        bits = builder.icmp_signed("<", args[0], ir.Constant(context.get_data_type(signature.args[0]), None))
        word = builder.bitcast(bits, ir.IntType(lanes))
        return builder.zext(word, ir.IntType(64)) if lanes < 64 else word
    return types.uint64(mask), codegen


@intrinsic
def vcompress(typingctx, array, offset, value, bits):
    def codegen(context, builder, signature, args):
        vector = signature.args[2]
        data_type = context.get_data_type(vector)
        mask = builder.bitcast(builder.trunc(args[3], ir.IntType(vector.lanes)), ir.VectorType(ir.IntType(1),
                                                                                               vector.lanes))
        name = f"llvm.experimental.vector.compress.v{vector.lanes}i{vector.dtype.bitwidth}"
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            data_type, [data_type, mask.type, data_type]), name)
        packed = builder.call(function, [args[2], mask, ir.Constant(data_type, None)])
        builder.store(packed, _pointer(context, builder, signature.args[0], args[0], args[1], vector), align=1)
        return context.get_dummy_value()
    return types.none(array, offset, value, bits), codegen


@intrinsic
def popcount(typingctx, word):
    def codegen(context, builder, signature, args):
        kind = args[0].type
        function = builder.module.declare_intrinsic("llvm.ctpop", [kind], ir.FunctionType(kind, [kind]))
        return builder.call(function, [args[0]])
    return word(word), codegen


@intrinsic
def trailing_zeros(typingctx, word):
    """The number of trailing zero bits of an unsigned integer (its width for 0): the index of its lowest set bit."""
    def codegen(context, builder, signature, args):
        kind = args[0].type
        function = builder.module.declare_intrinsic("llvm.cttz", [kind],
                                                    ir.FunctionType(kind, [kind, ir.IntType(1)]))
        return builder.call(function, [args[0], ir.Constant(ir.IntType(1), 0)])
    return word(word), codegen
