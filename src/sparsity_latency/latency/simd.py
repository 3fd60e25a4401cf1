"""512-bit vector registers for numba kernels: `Vector` values and the few operations the event engine needs.

LLVM keeps a numba array used as an accumulator in memory (every add is a load, an add and a store that waits
on the one before), and on this machine's CPUs it emits 256-bit vectors only. A `Vector` is an LLVM
`<lanes x dtype>` value (64 bytes: 32 × int16, 16 × int32, 8 × float64) that lives in a register: a loop that
adds into a few of them runs at load throughput. The operations are numba intrinsics, usable only inside
`numba.njit` code:

- `vzero(array)`: a zero vector of the array's element type;
- `vload(array, offset)`: the `lanes` elements of `array` (C-contiguous, any shape) from flat offset `offset` on;
- `vstore(array, offset, v)`: the reverse;
- `vadd(a, b)`, and `vscale(v, s)`: v · s with the scalar s converted to the element type.

No bounds are checked: the caller keeps offset + lanes within the array.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
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
def vload(typingctx, array, offset):
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        return builder.load(_pointer(context, builder, signature.args[0], args[0], args[1], vector), align=1)
    return vector(array, offset), codegen


@intrinsic
def vstore(typingctx, array, offset, value):
    def codegen(context, builder, signature, args):
        builder.store(args[2], _pointer(context, builder, signature.args[0], args[0], args[1], signature.args[2]),
                      align=1)
        return context.get_dummy_value()
    return types.none(array, offset, value), codegen


@intrinsic
def vadd(typingctx, a, b):
    def codegen(context, builder, signature, args):
        floating = isinstance(signature.args[0].dtype, types.Float)
        return builder.fadd(*args) if floating else builder.add(*args)
    return a(a, b), codegen


@intrinsic
def vscale(typingctx, v, scalar):
    def codegen(context, builder, signature, args):
        vector = signature.args[0]
        element = context.cast(builder, args[1], signature.args[1], vector.dtype)
        splat = builder.insert_element(ir.Constant(context.get_data_type(vector), None), element,
                                       ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), None))
        floating = isinstance(vector.dtype, types.Float)
        return builder.fmul(args[0], splat) if floating else builder.mul(args[0], splat)
    return v(v, scalar), codegen


@intrinsic
def trailing_zeros(typingctx, word):
    """The number of trailing zero bits of an unsigned integer (its width for 0): the index of its lowest set bit."""
    def codegen(context, builder, signature, args):
        kind = args[0].type
        function = builder.module.declare_intrinsic("llvm.cttz", [kind],
                                                    ir.FunctionType(kind, [kind, ir.IntType(1)]))
        return builder.call(function, [args[0], ir.Constant(ir.IntType(1), 0)])
    return word(word), codegen
