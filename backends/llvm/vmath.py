"""Math written in LLVM IR, for a double or a vector of doubles alike.

llvmlite lowers a vector `llvm.exp` to one libm call per element, and NVPTX has no libm at
all, so the exponential is built here from plain arithmetic, twice. `exp_libc` is glibc's
own algorithm, which gives the C library's bits in every lane where the host's exp is
glibc's (the llvm backend's default; below). `exp` is Cody-Waite reduction
x = n ln2 + r with ln2 split in two, e^r from Cephes' rational form
1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)), and 2^n applied in two halves so that results in the
subnormal range are rounded once. Within 2 ulp of the C library's exp over the whole
double range (tests/test_vmath.py: 88 % equal, 12 % 1 ulp apart, 3 in 400,000 2 ulp);
NaN stays NaN, e^-inf = 0, e^inf = inf.
"""

from __future__ import annotations

import functools
import math

from llvmlite import ir

from .llvm_types import F64_T, I64_T, gather

LOG2E = 1.4426950408889634073599
LN2_HI = 6.93145751953125e-1  # few significant bits: n * LN2_HI is exact
LN2_LO = 1.42860682030941723212e-6
P = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
Q = (
    3.00198505138664455042e-6,
    2.52448340349684104192e-3,
    2.27265548208155028766e-1,
    2.00000000000000000009e0,
)
LOWEST, HIGHEST = -746.0, 710.0  # beyond these e^x is 0 or inf in double precision


def like(x: ir.Value, value: float | int, element: ir.Type = F64_T) -> ir.Constant:
    """The constant `value` of type `element`, splat to a vector where `x` is one (an
    integer's bits as LLVM writes them: 2^63 and above as negative numbers)."""
    if isinstance(element, ir.IntType) and value >= 2 ** (element.width - 1):
        value -= 2**element.width
    if isinstance(x.type, ir.VectorType):
        return ir.Constant(ir.VectorType(element, x.type.count), [value] * x.type.count)
    return ir.Constant(element, value)


def type_like(x: ir.Value, element: ir.Type) -> ir.Type:
    """`element`, or a vector of it as long as `x` where `x` is a vector."""
    if isinstance(x.type, ir.VectorType):
        return ir.VectorType(element, x.type.count)
    return element


def _floor(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    module = b.module
    suffix = f"v{x.type.count}f64" if isinstance(x.type, ir.VectorType) else "f64"
    name = f"llvm.floor.{suffix}"
    fn = module.globals.get(name) or ir.Function(module, ir.FunctionType(x.type, [x.type]), name)
    return b.call(fn, [x])


def _horner(b: ir.IRBuilder, x: ir.Value, coefficients: tuple[float, ...]) -> ir.Value:
    acc = like(x, coefficients[0])
    for c in coefficients[1:]:
        acc = b.fadd(b.fmul(acc, x), like(x, c))
    return acc


def _power_of_two(b: ir.IRBuilder, n: ir.Value) -> ir.Value:
    """2**n for integer n in [-1022, 1023], from the exponent bits."""
    bits = b.shl(b.add(n, like(n, 1023, I64_T)), like(n, 52, I64_T))
    return b.bitcast(bits, type_like(n, F64_T))


def exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e**x, elementwise for a vector."""
    low, high = like(x, LOWEST), like(x, HIGHEST)
    clamped = b.select(b.fcmp_ordered("<", x, low), low, x)
    clamped = b.select(b.fcmp_ordered(">", clamped, high), high, clamped)
    n = _floor(b, b.fadd(b.fmul(like(x, LOG2E), clamped), like(x, 0.5)))
    r = b.fsub(clamped, b.fmul(n, like(x, LN2_HI)))
    r = b.fsub(r, b.fmul(n, like(x, LN2_LO)))
    rr = b.fmul(r, r)
    p = b.fmul(r, _horner(b, rr, P))
    e = b.fdiv(p, b.fsub(_horner(b, rr, Q), p))
    e = b.fadd(like(x, 1.0), b.fmul(like(x, 2.0), e))
    k = b.fptosi(n, type_like(x, I64_T))
    half = b.ashr(k, like(k, 1, I64_T))
    result = b.fmul(b.fmul(e, _power_of_two(b, half)), _power_of_two(b, b.sub(k, half)))
    return b.select(b.fcmp_unordered("uno", x, x), x, result)


# ---------------------------------------------------------------- the C library's exp
#
# glibc's exp (since 2.28: sysdeps/ieee754/dbl-64/e_exp.c, from Arm's optimized-routines),
# its algorithm and constants, written here as IR that takes vectors: the same operations
# in the same order give the same bits in every lane as the C library gives one argument.
#
#   x = k ln2/N + r, N = 128: kd = x N/ln2 + 1.5 2^52 (rounds k into the low bits), ki its
#   bits, kd -= 1.5 2^52; r = x - kd ln2hi/N - kd ln2lo/N
#   2^(k/N) = scale (1 + tail): tail and scale's bits from a table of 2^(j/128), j = ki mod
#   128, the exponent ki / 128 added to the bits
#   e^x = scale + scale (tail + r + r^2 (C2 + r C3) + r^4 (C4 + r C5))
#
# with |x| < 2^-54 giving 1 + x, |x| >= 1024 the limits (0, inf, 1 + x for inf and NaN),
# and 512 <= |x| < 1024 a rescaled scale (specialcase) that rounds subnormal results once.
# glibc builds it twice on x86-64 and picks at run time: with fused multiply-add (-mfma
# -mavx2, where the CPU has both: GCC fuses each a*b + c) and without (SSE2). `fused`
# selects which of the two this writes; `libm_exp_variant` says which the host's C
# library is.

EXP_N = 128
EXP_INV_LN2_N = float.fromhex("0x1.71547652b82fep0") * EXP_N
EXP_NEG_LN2_HI_N = float.fromhex("-0x1.62e42fefa0000p-8")
EXP_NEG_LN2_LO_N = float.fromhex("-0x1.cf79abc9e3b3ap-47")
EXP_SHIFT = float.fromhex("0x1.8p52")
EXP_C2, EXP_C3, EXP_C4, EXP_C5 = (
    float.fromhex(c)
    for c in ("0x1.ffffffffffdbdp-2", "0x1.555555555543cp-3", "0x1.55555cf172b91p-5",
              "0x1.1111167a4d017p-7")
)  # fmt: skip
TOP12_TINY, TOP12_512, TOP12_1024, TOP12_INF = 0x3C9, 0x408, 0x409, 0x7FF


@functools.cache
def exp_table() -> tuple[int, ...]:
    """glibc's __exp_data.tab: for j < 128, 2^(j/128) = H (1 + T) with H the double
    nearest 2^(j/128) and T the double nearest its remainder (in 60 decimal digits, each
    rounded once to a double); entry 2j is T's bits, 2j + 1 H's bits less j 2^52 / 128
    (the exponent the caller adds back)."""
    import struct
    from decimal import Decimal, localcontext

    def bits(value: float) -> int:
        return struct.unpack("<Q", struct.pack("<d", value))[0]

    table = []
    with localcontext() as context:
        context.prec = 60
        for j in range(EXP_N):
            exact = Decimal(2) ** (Decimal(j) / EXP_N)
            high = float(exact)
            table += [
                bits(float(exact / Decimal(high) - 1)),
                (bits(high) - (j << 52) // EXP_N) % 2**64,
            ]
    return table


def _table_global(module: ir.Module) -> ir.GlobalVariable:
    name = "portneuron.exp_table"
    if name not in module.globals:
        array = ir.ArrayType(I64_T, 2 * EXP_N)
        table = ir.GlobalVariable(module, array, name=name)
        signed = [v - 2**64 if v >= 2**63 else v for v in exp_table()]
        table.initializer = ir.Constant(array, [ir.Constant(I64_T, v) for v in signed])
        table.global_constant, table.linkage = True, "internal"
    return module.globals[name]


def _lookup(b: ir.IRBuilder, index: ir.Value) -> ir.Value:
    """The table's entries at `index` (i64, a scalar or a vector of them: one gather)."""
    table = _table_global(b.module)
    if not isinstance(index.type, ir.VectorType):
        zero = ir.Constant(I64_T, 0)
        at = b.gep(table, [zero, index], inbounds=True, source_etype=table.value_type)
        return b.load(at, typ=I64_T)
    return gather(b, table, index, I64_T, None)


def _fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """x y + z rounded once (llvm.fma)."""
    suffix = f"v{x.type.count}f64" if isinstance(x.type, ir.VectorType) else "f64"
    name = f"llvm.fma.{suffix}"
    fn = b.module.globals.get(name) or ir.Function(
        b.module, ir.FunctionType(x.type, [x.type] * 3), name
    )
    return b.call(fn, [x, y, z])


def _any(b: ir.IRBuilder, bits: ir.Value) -> ir.Value:
    """Whether any element of an i1 vector (or the i1 itself) is set."""
    if not isinstance(bits.type, ir.VectorType):
        return bits
    whole = ir.IntType(bits.type.count)
    return b.icmp_unsigned("!=", b.bitcast(bits, whole), ir.Constant(whole, 0))


def _special_case(
    b: ir.IRBuilder, x: ir.Value, tmp: ir.Value, sbits: ir.Value, ki: ir.Value, fused: bool
) -> ir.Value:
    """glibc's specialcase: e^x for 512 <= |x| < 1024 from the scale's bits rescaled."""

    def c(value: float) -> ir.Value:
        return like(x, value)

    def i(value: int) -> ir.Value:
        return like(x, value, I64_T)

    up = b.bitcast(b.sub(sbits, i(1009 << 52)), type_like(x, F64_T))
    scaled = _fma(b, up, tmp, up) if fused else b.fadd(b.fmul(up, tmp), up)
    over = b.fmul(c(2.0**1009), scaled)
    down = b.bitcast(b.add(sbits, i(1022 << 52)), type_like(x, F64_T))
    product = b.fmul(down, tmp)  # one product for y and lo, not fused: GCC fuses a product
    y = b.fadd(down, product)  # only where all its uses are in its block (lo's is not)
    lo = b.fadd(b.fsub(down, y), product)
    hi = b.fadd(c(1.0), y)
    lo = b.fadd(b.fadd(b.fsub(c(1.0), hi), y), lo)
    rounded = b.fsub(b.fadd(hi, lo), c(1.0))
    rounded = b.select(b.fcmp_ordered("==", rounded, c(0.0)), c(0.0), rounded)  # not -0
    under = b.fmul(c(2.0**-1022), b.select(b.fcmp_ordered("<", y, c(1.0)), rounded, y))
    positive = b.icmp_unsigned("==", b.and_(ki, i(0x80000000)), i(0))
    return b.select(positive, over, under)


def exp_libc(b: ir.IRBuilder, x: ir.Value, fused: bool) -> ir.Value:
    """e**x as glibc's exp computes it, elementwise for a vector: its build with fused
    multiply-add (`fused`) or without."""

    def mul_add(p: ir.Value, q: ir.Value, c: ir.Value) -> ir.Value:  # p q + c, as GCC does
        return _fma(b, p, q, c) if fused else b.fadd(b.fmul(p, q), c)

    def c(value: float) -> ir.Value:
        return like(x, value)

    def i(value: int) -> ir.Value:
        return like(x, value, I64_T)

    i64 = type_like(x, I64_T)
    abstop = b.and_(b.lshr(b.bitcast(x, i64), i(52)), i(0x7FF))
    kd = mul_add(c(EXP_INV_LN2_N), x, c(EXP_SHIFT))
    ki = b.bitcast(kd, i64)
    kd = b.fsub(kd, c(EXP_SHIFT))
    if fused:  # (x + kd hi) + kd lo
        r = _fma(b, kd, c(EXP_NEG_LN2_LO_N), _fma(b, kd, c(EXP_NEG_LN2_HI_N), x))
    else:
        r = b.fadd(b.fadd(x, b.fmul(kd, c(EXP_NEG_LN2_HI_N))), b.fmul(kd, c(EXP_NEG_LN2_LO_N)))
    index = b.shl(b.and_(ki, i(EXP_N - 1)), i(1))
    tail = b.bitcast(_lookup(b, index), type_like(x, F64_T))
    sbits = b.add(_lookup(b, b.or_(index, i(1))), b.shl(ki, i(45)))
    r2 = b.fmul(r, r)
    low = mul_add(r2, mul_add(r, c(EXP_C3), c(EXP_C2)), b.fadd(tail, r))
    tmp = mul_add(b.fmul(r2, r2), mul_add(r, c(EXP_C5), c(EXP_C4)), low)
    scale = b.bitcast(sbits, type_like(x, F64_T))
    result = mul_add(scale, tmp, scale)
    # 512 <= |x| < 1024: k > 0 may overflow the exponent, k < 0 rounds into subnormals once;
    # worked out only where a lane needs it (it is 40 % of the whole otherwise)
    special = b.icmp_unsigned(">=", abstop, i(TOP12_512))
    with b.goto_entry_block():
        slot = b.alloca(x.type)
    b.store(result, slot)
    with b.if_then(_any(b, special)):
        b.store(b.select(special, _special_case(b, x, tmp, sbits, ki, fused), result), slot)
    result = b.load(slot, typ=x.type)
    # |x| >= 1024: 0 below (-inf included), inf above, 1 + x for inf and NaN; tiny: 1 + x
    negative = b.icmp_signed("<", b.bitcast(x, i64), i(0))
    limit = b.select(negative, c(0.0), c(math.inf))
    limit = b.select(b.icmp_unsigned(">=", abstop, i(TOP12_INF)), b.fadd(c(1.0), x), limit)
    minus_inf = b.icmp_unsigned("==", b.bitcast(x, i64), i(0xFFF0000000000000))
    limit = b.select(minus_inf, c(0.0), limit)
    result = b.select(b.icmp_unsigned(">=", abstop, i(TOP12_1024)), limit, result)
    return b.select(b.icmp_unsigned("<", abstop, i(TOP12_TINY)), b.fadd(c(1.0), x), result)


#: The llvm backend's ways to compute exp: "libm" calls the C library, lane by lane;
#: "vector" is `exp` (within 2 ulp of it); "libc-fused" and "libc-plain" are `exp_libc`,
#: glibc's two builds.
MATH = ("libm", "vector", "libc-fused", "libc-plain")

#: Arguments whose exp glibc's two builds round apart: (x, fused, plain), as hex.
BUILDS_DIFFER = (
    ("-0x1.222bb1d1f2400p+0", "0x1.49a31de0502b7p-2", "0x1.49a31de0502b6p-2"),
    ("0x1.662645ae06ca0p+5", "0x1.80b16513246cbp+64", "0x1.80b16513246cap+64"),
    ("-0x1.4830673169e40p+6", "0x1.8c6658da4b031p-119", "0x1.8c6658da4b030p-119"),
    ("-0x1.d76089ddb8ba0p+6", "0x1.fb487ef91a85fp-171", "0x1.fb487ef91a860p-171"),
    ("0x1.44339b2847b08p+7", "0x1.d14c38ce50969p+233", "0x1.d14c38ce50968p+233"),
    ("-0x1.9c04c2e152580p+7", "0x1.bb13129ceb437p-298", "0x1.bb13129ceb436p-298"),
    ("-0x1.dd2027fec78c2p+7", "0x1.c606171f55285p-345", "0x1.c606171f55284p-345"),
    ("-0x1.1b8870bbc63d6p+8", "0x1.ee01fee308219p-410", "0x1.ee01fee30821ap-410"),
    ("0x1.793df9410f970p+8", "0x1.2f71904454245p+544", "0x1.2f71904454244p+544"),
    ("0x1.c34933b1c8ee0p+8", "0x1.0c5ab04931959p+651", "0x1.0c5ab04931958p+651"),
    ("-0x1.fb6ddd2fb53b4p+8", "0x1.e943dedca7437p-733", "0x1.e943dedca7438p-733"),
    ("0x1.2c92a2795a77ap+9", "0x1.34a23bb4d7323p+867", "0x1.34a23bb4d7322p+867"),
)


@functools.cache
def host_math() -> str:
    """The exp that gives the host C library's bits: "libc-fused" or "libc-plain" where
    its exp is glibc's of that build (it gives that build's results where the two differ),
    "libm" (call it) where it is neither."""
    got = [math.exp(float.fromhex(x)) for x, _, _ in BUILDS_DIFFER]
    for mode, column in (("libc-fused", 1), ("libc-plain", 2)):
        if got == [float.fromhex(case[column]) for case in BUILDS_DIFFER]:
            return mode
    return "libm"


def exp_of(math_mode: str):
    """The IR writer of exp for a backend's `math` other than "libm"."""
    if math_mode == "vector":
        return exp
    fused = {"libc-fused": True, "libc-plain": False}[math_mode]
    return lambda b, x: exp_libc(b, x, fused)
