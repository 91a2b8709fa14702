"""Device functions the generated kernels call where CUDA has no function of the IR's
meaning: NumPy's min and max, and NEURON's Random123 draw. Each is a template that a
dialect (render.py, `Dialect.helper`) fills with its spelling of `{inline}` (a helper's
qualifiers), `{u64}` (a 64-bit unsigned integer) and `{ull}` (that type's literal suffix)."""

from __future__ import annotations

from portneuron.ir.random123 import SHIFT32

HELPERS = {
    "pn_fmin": """\
// NumPy's minimum: a NaN on either side wins (CUDA's fmin returns the other operand).
{inline} double pn_fmin(double a, double b)
{{
    return a != a ? a : (a < b ? a : b);
}}
""",
    "pn_fmax": """\
// NumPy's maximum: a NaN on either side wins (CUDA's fmax returns the other operand).
{inline} double pn_fmax(double a, double b)
{{
    return a != a ? a : (a > b ? a : b);
}}
""",
    "pn_random123": """\
// Random123's Philox4x32-10 as NEURON's nrnran123 draws it (portneuron.ir.interpret):
// counter (position / 4, id3, id1, id2), key (index, 0), word position % 4, scaled into (0, 1).
{inline} double pn_random123(double id1, double id2, double id3, double position,
    double index)
{{
    const {u64} mask = 0xffffffff{ull};
    const {u64} at = ({u64})position;
    {u64} c0 = (at >> 2) & mask;
    {u64} c1 = ({u64})id3 & mask;
    {u64} c2 = ({u64})id1 & mask;
    {u64} c3 = ({u64})id2 & mask;
    {u64} k0 = ({u64})index & mask;
    {u64} k1 = 0;
    for (int round = 0; round < 10; round++) {{
        const {u64} p0 = 0xd2511f53{ull} * c0;
        const {u64} p1 = 0xcd9e8d57{ull} * c2;
        c0 = (p1 >> 32) ^ c1 ^ k0;
        c1 = p1 & mask;
        c2 = (p0 >> 32) ^ c3 ^ k1;
        c3 = p0 & mask;
        k0 = (k0 + 0x9e3779b9{ull}) & mask;
        k1 = (k1 + 0xbb67ae85{ull}) & mask;
    }}
    const {u64} which = at & 3;
    const {u64} word = which == 0 ? c0 : which == 1 ? c1 : which == 2 ? c2 : c3;
    return ((double)word + 1.0) * SHIFT32;
}}
""".replace("SHIFT32", repr(SHIFT32)),
}
