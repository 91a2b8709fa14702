"""UNITS-block constants (`FARADAY = (faraday) (coulomb)`), valued as NEURON values them.

A factor definition names the ratio of two units from NEURON's units database
(`nrnunits.lib`, with NEURON 9's CODATA 2018 constants): `(faraday) (coulomb)` is the
Faraday constant in coulombs per mole, `(k-mole) (joule/degC)` the gas constant. NEURON's
translator, nocmodl, works the ratio out from the database and writes it into the C code as
an exact hexadecimal double. portneuron asks the same program, from the same `neuron` wheel
with the same database, for the same definitions, and reads its numbers back: the values are
NEURON's to the bit by construction, and a unit the database lacks is refused with nocmodl's
own reason. (`(mM) = (milli/liter)` lines only name units, which a constant may use: NMODL
does not convert units in expressions, so they change no other number.)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from portneuron.errors import NmodlError

from .parse import SourceMap, neuron_root, nmodl_module

_STATIC = re.compile(r"^\s*static double (\w+) = ([^;]+);", re.MULTILINE)
_CANNOT = re.compile(r"Error: (.*?) at line \d+ in file")


@cache
def nocmodl() -> tuple[Path, Path]:
    """NEURON's translator and the units database nrnivmodl gives it (MODLUNIT)."""
    data = neuron_root() / ".data"
    return data / "bin" / "nocmodl", data / "share" / "nrn" / "lib" / "nrnunits.lib"


def unit_factors(block, source_map: SourceMap) -> dict[str, float]:
    """The constants a UNITS block defines, by name, with NEURON's values."""
    definitions = [
        d for d in block.definitions if d.get_node_type_name() in ("FactorDef", "UnitDef")
    ]
    factors = [d for d in definitions if d.get_node_type_name() == "FactorDef"]
    if not factors:
        return {}
    # the unit definitions too: a factor may use a unit the block defines, (foo) = (2 mV)
    lines = tuple(nmodl_module().to_nmodl(d) for d in definitions)
    values, error = _evaluate(lines)
    if error is not None:
        bad, reason = error
        what = definitions[bad]
        name = what.get_node_name() if what.get_node_type_name() == "FactorDef" else lines[bad]
        raise source_map.error(
            f"UNITS {'constant ' if name != lines[bad] else ''}{name}: {reason} (NEURON's "
            f"units database, nrnunits.lib)",
            ("UNITS", ""),
            name.split("=")[0].strip(" ()"),
        )
    return {d.get_node_name(): values[d.get_node_name()] for d in factors}


@cache
def _evaluate(lines: tuple[str, ...]) -> tuple[dict[str, float], tuple[int, str] | None]:
    """nocmodl's values for factor definitions `lines`, or (index of the bad line, why)."""
    program, database = nocmodl()
    if not program.exists():
        raise NmodlError(f"the neuron wheel has no nocmodl ({program}); reinstall neuron", "")
    source = "NEURON { SUFFIX portneuron_units }\nUNITS {\n" + "\n".join(lines) + "\n}\n"
    with tempfile.TemporaryDirectory(prefix="portneuron-units-") as tmp:
        mod = Path(tmp) / "units.mod"
        mod.write_text(source)
        run = subprocess.run(
            [str(program), str(mod), "-o", tmp],
            capture_output=True,
            text=True,
            env={**os.environ, "MODLUNIT": str(database)},
            cwd=tmp,
        )
        cpp = mod.with_suffix(".cpp")
        if run.returncode != 0 or not cpp.exists():
            output = run.stdout + run.stderr
            reason = _CANNOT.search(output)
            line = re.search(r"at line (\d+) in file", output)
            bad = int(line.group(1)) - 3 if line else 0
            why = reason.group(1) if reason else output.strip().splitlines()[-1:] or ["failed"]
            return {}, (min(max(bad, 0), len(lines) - 1), why if reason else why[0])
        text = cpp.read_text()
    values = {}
    for name, value in _STATIC.findall(text):
        values[name] = float.fromhex(value) if "0x" in value else float(value)
    return values, None
