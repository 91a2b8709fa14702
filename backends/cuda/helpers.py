"""Device functions the generated kernels call where CUDA has no function of the IR's
meaning: NumPy's min and max, and NEURON's Random123 draw."""

from __future__ import annotations

from portneuron.ir.random123 import SHIFT32

HELPERS = {
    "pn_fmin": """\
// NumPy's minimum: a NaN on either side wins (CUDA's fmin returns the other operand).
static __device__ __forceinline__ double pn_fmin(double a, double b)
{
    return a != a ? a : (a < b ? a : b);
}
""",
    "pn_fmax": """\
// NumPy's maximum: a NaN on either side wins (CUDA's fmax returns the other operand).
static __device__ __forceinline__ double pn_fmax(double a, double b)
{
    return a != a ? a : (a > b ? a : b);
}
""",
    "pn_random123": f"""\
// Random123's Philox4x32-10 as NEURON's nrnran123 draws it (portneuron.ir.interpret):
// counter (position / 4, id3, id1, id2), key (index, 0), word position % 4, scaled into (0, 1).
static __device__ double pn_random123(double id1, double id2, double id3, double position,
                                      double index)
{{
    const unsigned long long mask = 0xffffffffull;
    const unsigned long long at = (unsigned long long)position;
    unsigned long long c0 = (at >> 2) & mask;
    unsigned long long c1 = (unsigned long long)id3 & mask;
    unsigned long long c2 = (unsigned long long)id1 & mask;
    unsigned long long c3 = (unsigned long long)id2 & mask;
    unsigned long long k0 = (unsigned long long)index & mask;
    unsigned long long k1 = 0;
    for (int round = 0; round < 10; round++) {{
        const unsigned long long p0 = 0xd2511f53ull * c0;
        const unsigned long long p1 = 0xcd9e8d57ull * c2;
        c0 = (p1 >> 32) ^ c1 ^ k0;
        c1 = p1 & mask;
        c2 = (p0 >> 32) ^ c3 ^ k1;
        c3 = p0 & mask;
        k0 = (k0 + 0x9e3779b9ull) & mask;
        k1 = (k1 + 0xbb67ae85ull) & mask;
    }}
    const unsigned long long which = at & 3;
    const unsigned long long word = which == 0 ? c0 : which == 1 ? c1 : which == 2 ? c2 : c3;
    return ((double)word + 1.0) * {SHIFT32!r};
}}
""",
}
