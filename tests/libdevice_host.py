"""CUDA's own math on the CPU: the functions of the toolkit's libdevice (the LLVM bitcode
that nvcc links for `exp`, `log`, `pow`, ... in device code), compiled for this machine by
llvmlite, so that the CPU stand-in (cuda_host.py) computes what a GPU computes.

libdevice is written with a few PTX operations (`llvm.nvvm.*`); here each is the IEEE
operation it names (fma.rn, add.rn, mul.rn, trunc, round, d2i.rn: exact on both), bit moves
(d2i.lo/hi, lohi.i2d), 128-bit integer arithmetic (inline PTX in the trig argument
reduction), or, for the hardware approximations, the nearest the CPU gets:
`rcp.approx.ftz.d` and `rsqrt.approx.ftz.f64` (from the high word, low word zero, which
libdevice refines by Newton's method: log, log10, pow, tan, atan, atan2, asin, acos, cosh,
tanh) and `ex2.approx.ftz.f32` (tanh). exp, expm1, sin, cos and sinh use none of them and
are the GPU's bits; the others may differ from a GPU's in rare last bits.
"""

from __future__ import annotations

import re
from pathlib import Path

from portneuron.backends.cuda.runtime import find_nvcc, toolkit_roots

#: The IR's math intrinsics that CUDA C computes with libdevice (`exp(x)` is `__nv_exp(x)`).
FUNCTIONS = {"exp": 1, "expm1": 1, "log": 1, "log10": 1, "sin": 1, "cos": 1, "tan": 1,
             "asin": 1, "acos": 1, "atan": 1, "sinh": 1, "cosh": 1, "tanh": 1, "atan2": 2,
             "pow": 2}  # fmt: skip


def _high_words(code: str) -> tuple[str, str, str]:
    """A hardware approximation: `code` makes %q of %x, x's high word (its low word
    zero), and the result is %q's high word."""
    return (
        "double", "double %a",
        "%b = bitcast double %a to i64\n  %h = and i64 %b, -4294967296\n"
        f"  %x = bitcast i64 %h to double\n  {code}\n"
        "  %c = bitcast double %q to i64\n  %m = and i64 %c, -4294967296\n"
        "  %r = bitcast i64 %m to double",
    )  # fmt: skip


#: The PTX operations libdevice's FUNCTIONS use, as LLVM IR for the CPU.
SHIMS = {
    "add.rn.d": ("double", "double %a, double %b", "%r = fadd double %a, %b"),
    "mul.rn.d": ("double", "double %a, double %b", "%r = fmul double %a, %b"),
    "fma.rn.d": (
        "double", "double %a, double %b, double %c",
        "%r = call double @llvm.fma.f64(double %a, double %b, double %c)",
    ),
    "fabs.f64": ("double", "double %a", "%r = call double @llvm.fabs.f64(double %a)"),
    "fabs.f32": ("float", "float %a", "%r = call float @llvm.fabs.f32(float %a)"),
    "fabs.ftz.f32": ("float", "float %a", "%r = call float @llvm.fabs.f32(float %a)"),
    "trunc.d": ("double", "double %a", "%r = call double @llvm.trunc.f64(double %a)"),
    "round.f": ("float", "float %a", "%r = call float @llvm.round.f32(float %a)"),
    "d2i.rn": (
        "i32", "double %a",
        "%n = call double @llvm.rint.f64(double %a)\n  %r = fptosi double %n to i32",
    ),
    "d2i.lo": ("i32", "double %a", "%b = bitcast double %a to i64\n  %r = trunc i64 %b to i32"),
    "d2i.hi": (
        "i32", "double %a",
        "%b = bitcast double %a to i64\n  %s = lshr i64 %b, 32\n  %r = trunc i64 %s to i32",
    ),
    "lohi.i2d": (
        "double", "i32 %lo, i32 %hi",
        "%l = zext i32 %lo to i64\n  %h = zext i32 %hi to i64\n  %s = shl i64 %h, 32\n"
        "  %o = or i64 %s, %l\n  %r = bitcast i64 %o to double",
    ),
    "rcp.approx.ftz.d": _high_words("%q = fdiv double 1.0, %x"),
    "rsqrt.approx.ftz.d": _high_words(
        "%s = call double @llvm.sqrt.f64(double %x)\n  %q = fdiv double 1.0, %s"
    ),
    "ex2.approx.ftz.f32": ("float", "float %a", "%r = call float @llvm.exp2.f32(float %a)"),
}  # fmt: skip

DECLARATIONS = """
declare double @llvm.fma.f64(double, double, double)
declare double @llvm.fabs.f64(double)
declare float @llvm.fabs.f32(float)
declare double @llvm.trunc.f64(double)
declare float @llvm.round.f32(float)
declare double @llvm.rint.f64(double)
declare double @llvm.sqrt.f64(double)
declare float @llvm.exp2.f32(float)
declare double @llvm.copysign.f64(double, double)
declare i64 @llvm.ctlz.i64(i64, i1)
declare i32 @llvm.smin.i32(i32, i32)
"""
#: __nvvm_reflect's answers: sm_90, no flushing of subnormals, sqrt correctly rounded.
REFLECT = {"__CUDA_ARCH": 900, "__CUDA_FTZ": 0, "__CUDA_PREC_SQRT": 1}


#: The 128-bit integer arithmetic that libdevice's trig argument reduction writes in PTX
#: (inline asm), by the first instruction that tells it apart, as i128 operations.
WIDE = {
    "mad.lo.cc.u32   r0": ("i64 %a, i64 %b, i64 %c", "mul i128 %A, %B\n  %r = add i128 %s, %C"),
    "mul.lo.u32": ("i64 %a, i64 %b", "mul i128 %A, %B\n  %r = add i128 %s, 0"),
    "sub.cc.u32": ("i64 %a, i64 %ah, i64 %b, i64 %bh", "sub i128 %A, %B\n  %r = add i128 %s, 0"),
    "add.cc.u32": ("i64 %a, i64 %ah, i64 %b, i64 %bh", "add i128 %A, %B\n  %r = add i128 %s, 0"),
}


def _wide_function(key: str) -> str:
    params, code = WIDE[key]
    names = re.findall(r"%(\w+)", params)
    lines = []
    for name in names:
        if name.endswith("h"):
            continue
        lines.append(f"%{name}0 = zext i64 %{name} to i128")
        if f"{name}h" in names:  # a 128-bit operand given as (low, high)
            lines += [f"%{name}1 = zext i64 %{name}h to i128", f"%{name}2 = shl i128 %{name}1, 64",
                      f"%{name.upper()} = or i128 %{name}0, %{name}2"]  # fmt: skip
        else:
            lines.append(f"%{name.upper()} = add i128 %{name}0, 0")
    lines += [f"%s = {code}", "%lo = trunc i128 %r to i64", "%t = lshr i128 %r, 64",
              "%hi = trunc i128 %t to i64", "%p = insertvalue { i64, i64 } undef, i64 %lo, 0",
              "%q = insertvalue { i64, i64 } %p, i64 %hi, 1"]  # fmt: skip
    name = "pn.wide." + "_".join(key.split()[0].split("."))
    return (
        f"define internal {{ i64, i64 }} @{name}({params}) {{\n  "
        + "\n  ".join(lines)
        + "\n  ret { i64, i64 } %q\n}\n"
    )


def _wide(match: re.Match) -> str:
    key = next((k for k in WIDE if k in match.group(1)), None)
    if key is None:
        raise RuntimeError(f"libdevice has inline PTX without a CPU shim: {match.group(1)[:80]}")
    return f"call {{ i64, i64 }} @pn.wide.{'_'.join(key.split()[0].split('.'))}({match.group(2)})"


def libdevice_path() -> Path | None:
    """The toolkit's libdevice: beside nvcc, or where toolkits install."""
    roots = toolkit_roots()
    nvcc = find_nvcc()
    if nvcc is not None:
        roots.insert(0, Path(nvcc).resolve().parent.parent)
    places = [r / "nvvm" / "libdevice" / "libdevice.10.bc" for r in roots]
    return next((p for p in places if p.is_file()), None)


def host_ir(bitcode: bytes) -> str:
    """FUNCTIONS' libdevice definitions (and what they use) as LLVM IR for this CPU."""
    import llvmlite.binding as llvm

    text = str(llvm.parse_bitcode(bitcode))
    functions = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^define [^\n]*?@([\w.$]+)\(.*?^\}\n", text, re.S | re.M)
    }
    constants = {m.group(1): m.group(0) for m in re.finditer(r"^@([\w.$]+) = .*\n", text, re.M)}
    todo, kept, used = [f"__nv_{name}" for name in FUNCTIONS], {}, set()
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        kept[name] = functions[name]
        for callee in re.findall(r"@([\w.$]+)", functions[name]):
            if callee in functions:
                todo.append(callee)
            elif callee in constants:
                used.add(callee)
    types = "".join(re.findall(r"^%[\w.]+ = type .*\n", text, re.M))
    body = types + "".join(constants[c] for c in sorted(used)) + "".join(kept.values())
    body = re.sub(r" addrspace\(\d+\)", "", body)
    for name, key in re.findall(r'^@(\.str[.\d]*) = .*? c"(\w+)\\00"', text, re.M):
        value = REFLECT[key]  # libdevice's compile-time switches
        body = body.replace(f"call i32 @__nvvm_reflect(ptr @{name})", f"add i32 0, {value}")
    body = re.sub(r" #\d+(?= \{|\n|,)", "", body)  # attribute groups (alwaysinline, ...) dropped
    body = re.sub(r", ![\w.]+ !\d+", "", body)  # and metadata (source locations, loop hints)
    body = re.sub(
        r'asm "rsqrt\.approx\.ftz\.f64 \$0, \$1;", "=d,d"\(',
        "@llvm.nvvm.rsqrt.approx.ftz.d(", body,
    )  # fmt: skip
    body = re.sub(r'call \{ i64, i64 \} asm "(.*?)", "[=l,]*"\((.*?)\)', _wide, body)
    missing = set(re.findall(r"@llvm\.nvvm\.([\w.]+)\(", body)) - set(SHIMS)
    if missing:
        raise RuntimeError(f"libdevice uses PTX operations without a CPU shim: {missing}")
    body = re.sub(r"@llvm\.nvvm\.([\w.]+)\(", lambda m: f"@pn.{m.group(1)}(", body)
    shims = "".join(
        f"define internal {ret} @pn.{name}({params}) {{\n  {code}\n  ret {ret} %r\n}}\n"
        for name, (ret, params, code) in SHIMS.items()
    )
    wide = "".join(_wide_function(k) for k in WIDE)
    return DECLARATIONS + shims + wide + body


def libdevice_object(folder: Path) -> Path | None:
    """An object file with libdevice's FUNCTIONS for this CPU (None without a toolkit)."""
    path = libdevice_path()
    if path is None:
        return None
    out = folder / "libdevice_host.o"
    if not out.exists():
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(host_ir(path.read_bytes()))
        module.triple = llvm.get_process_triple()
        module.verify()
        machine = llvm.Target.from_triple(module.triple).create_target_machine(reloc="pic", opt=2)
        out.write_bytes(machine.emit_object(module))
    return out


def header() -> str:
    """C++ lines that make the math calls of CUDA C libdevice's (after <math.h>)."""
    lines = []
    for name, arity in FUNCTIONS.items():
        params = ", ".join(["double"] * arity)
        names = ", ".join("xy"[:arity])
        lines.append(f'extern "C" double __nv_{name}({params});')
        lines.append(f"#define {name}({names}) __nv_{name}({names})")
    return "\n".join(lines) + "\n"
