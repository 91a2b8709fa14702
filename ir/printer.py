"""A text form of the IR for people: `portneuron compile --emit ir` prints this."""

from __future__ import annotations

from .nodes import (
    AddTo,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    Emit,
    Expr,
    If,
    Kernel,
    Lane,
    Launch,
    Load,
    Loop,
    Mechanism,
    Records,
    Select,
    Serial,
    Stmt,
    Store,
    Unary,
    Var,
    View,
    While,
)
from .walk import statements

_INFIX = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^",
    "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=",
    "and": "&&", "or": "||",
}  # fmt: skip


def format_expr(e: Expr) -> str:
    match e:
        case Const(value=value):
            return repr(value).lower() if isinstance(value, bool) else repr(value)
        case Var(name=name):
            return name
        case Lane():
            return "lane"
        case Load(array=array, index=index):
            return f"{array}[{format_expr(index)}]"
        case Unary(op="neg", operand=operand):
            return f"-{_operand(operand)}"
        case Unary(op=op, operand=operand):
            return f"!{_operand(operand)}"
        case Binary(op=op, lhs=lhs, rhs=rhs) if op in _INFIX:
            return f"{_operand(lhs)} {_INFIX[op]} {_operand(rhs)}"
        case Binary(op=op, lhs=lhs, rhs=rhs):
            return f"{op}({format_expr(lhs)}, {format_expr(rhs)})"
        case Call(fn=fn, args=args):
            return f"{fn}({', '.join(format_expr(a) for a in args)})"
        case Select(cond=cond, then=then, otherwise=otherwise):
            return f"select({format_expr(cond)}, {format_expr(then)}, {format_expr(otherwise)})"
        case Cast(dtype=dtype, operand=operand):
            return f"{dtype.value}({format_expr(operand)})"
    raise TypeError(f"not an IR expression: {e!r}")


def _operand(e: Expr) -> str:
    text = format_expr(e)
    return f"({text})" if isinstance(e, (Binary, Unary)) else text


def format_block(body: tuple[Stmt, ...], indent: str) -> list[str]:
    lines: list[str] = []
    for s in body:
        match s:
            case Assign(name=name, value=value):
                lines.append(f"{indent}{name} = {format_expr(value)}")
            case Store(array=array, index=index, value=value):
                lines.append(f"{indent}{array}[{format_expr(index)}] = {format_expr(value)}")
            case AddTo(array=array, index=index, value=value):
                lines.append(f"{indent}{array}[{format_expr(index)}] += {format_expr(value)}")
            case If(cond=cond, then=then, otherwise=otherwise):
                lines.append(f"{indent}if {format_expr(cond)} {{")
                lines += format_block(then, indent + "  ")
                if otherwise:
                    lines.append(f"{indent}}} else {{")
                    lines += format_block(otherwise, indent + "  ")
                lines.append(f"{indent}}}")
            case Loop(var=var, start=start, stop=stop, body=inner, step=step, parallel=par):
                bounds = f"{format_expr(start)}, {format_expr(stop)}"
                step_text = "" if step == 1 else f", {step}"
                kind = "parallel for" if par else "for"
                lines.append(f"{indent}{kind} {var} in range({bounds}{step_text}) {{")
                lines += format_block(inner, indent + "  ")
                lines.append(f"{indent}}}")
            case While(cond=cond, body=inner):
                lines.append(f"{indent}while {format_expr(cond)} {{")
                lines += format_block(inner, indent + "  ")
                lines.append(f"{indent}}}")
            case Serial(body=inner):
                lines.append(f"{indent}serial {{")
                lines += format_block(inner, indent + "  ")
                lines.append(f"{indent}}}")
            case Launch(kernel=callee, lo=lo, hi=hi, bind=bind):
                args = ", ".join(f"{name} = {_bound(value)}" for name, value in bind)
                lines.append(
                    f"{indent}launch {callee.name} over range({format_expr(lo)}, "
                    f"{format_expr(hi)}) ({args})"
                )
            case Emit(stream=stream, values=values):
                lines.append(f"{indent}emit {stream}({', '.join(format_expr(v) for v in values)})")
            case _:
                raise TypeError(f"not an IR statement: {s!r}")
    return lines


def _bound(value) -> str:
    match value:
        case View(array=array, offset=offset):
            return f"{array}[{format_expr(offset)}:]"
        case Records(fields=fields, count=count):
            return f"records({', '.join(map(_bound, fields))}; count {_bound(count)})"
    return format_expr(value)


def format_kernel(kernel: Kernel) -> str:
    params = ", ".join(
        f"{p.name}: {p.dtype.value}" + (f"[{p.space}]" if p.is_array else "") for p in kernel.params
    )
    lines = [f"kernel {kernel.name} over {kernel.lanes} ({params}) {{"]
    for stream in kernel.streams:
        fields = ", ".join(f"{n}: {t.value}" for n, t in stream.fields)
        lines.append(f"  stream {stream.name}({fields})")
    lines += format_block(kernel.body, "  ")
    lines.append("}")
    callees = {s.kernel.name: s.kernel for s in statements(kernel.body) if isinstance(s, Launch)}
    return "\n\n".join(["\n".join(lines), *(format_kernel(k) for k in callees.values())])


def format_mechanism(mechanism: Mechanism) -> str:
    lines = [f"mechanism {mechanism.name} ({mechanism.kind})"]
    if mechanism.source:
        lines.append(f"  source {mechanism.source}")
    for v in mechanism.variables:
        where = "" if v.per_instance else " global"
        unit = f" ({v.unit})" if v.unit else ""
        lines.append(f"  {v.kind}{where} {v.name} = {v.default!r}{unit}")
    for ion in mechanism.ions:
        lines.append(f"  ion {ion.name} read {list(ion.read)} write {list(ion.write)}")
    for t in mechanism.tables:
        depend = f" depend {list(t.depend)}" if t.depend else ""
        lines.append(
            f"  table {t.name} {list(t.outputs)} from {t.lo} to {t.hi} points {t.points}{depend}"
        )
    for note in mechanism.notes:
        lines.append(f"  note: {note}")
    text = "\n".join(lines)
    return text + "\n\n" + "\n\n".join(format_kernel(k) for k in mechanism.kernels) + "\n"
