"""Binding a mechanism set's kernels to the model's arrays.

The front end names kernel parameters by a fixed scheme (see portneuron.nmodl.mechanism);
here each name is resolved once to the array or value it stands for, and the kernels are
compiled by the backend. Running a kernel is then one backend call with a prepared
argument table; only the uniform values (t, dt) change between calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from portneuron.backends.base import Backend
from portneuron.errors import PortneuronError
from portneuron.ir import Kernel
from portneuron.model import MechanismSet, Model, PointerTarget
from portneuron.nmodl.tabulated import array_name, bounds, grid, mfac

from . import cable


def place_array(model: Model, node_arrays: dict[str, np.ndarray], space: str) -> np.ndarray | None:
    """The array a `PointerTarget`'s space names (a node's v, a mechanism's or an ion's
    variable, the model's `outside` values), None for a space that is none of them."""
    kind, _, rest = space.partition(":")
    if space == "node.v":
        return node_arrays["node.v"]
    if space == "outside":
        return model.outside
    if kind == "mech":
        index, _, variable = rest.partition(":")
        return model.mechanisms[int(index)].data[variable].reshape(-1)
    if kind == "ion":
        ion, _, variable = rest.partition(":")
        return model.ion(ion).data[variable]
    return None


class BoundMechanism:
    """One mechanism set with its compiled kernels and their arguments."""

    def __init__(
        self,
        index: int,
        mset: MechanismSet,
        model: Model,
        node_arrays: dict[str, np.ndarray],
        backend: Backend,
    ) -> None:
        self.index, self.set, self.backend = index, mset, backend
        mech = mset.mechanism
        self.kernels: dict[str, Any] = {}
        self.lanes: dict[str, int] = {}
        self.args: dict[str, Any] = {
            "t": 0.0, "dt": 0.025, "celsius": model.celsius,
            "random123_index": model.random123_index,
        }  # fmt: skip
        self.args["usetable"] = float(mset.globals.get("usetable", 1.0))
        self.args["node_index"] = mset.node_index
        self.args.update(node_arrays)
        for var in mech.variables:
            if var.per_instance:
                if var.name not in mset.data:  # a GLOBAL the mechanism writes: from its value
                    start = float(mset.globals.get(var.name, var.default))
                    shape = (mset.count, var.length) if var.length else mset.count
                    mset.data[var.name] = np.full(shape, start)
                # an array's elements instance by instance, as the kernels index them
                self.args[f"mech.{var.name}"] = mset.data[var.name].reshape(-1)
            else:
                self.args[f"global.{var.name}"] = float(mset.globals.get(var.name, var.default))
        for ion in mech.ions:
            ion_set = model.ion(ion.name)
            if ion_set is None:
                raise ValueError(f"{mech.name} uses ion {ion.name}, which the model lacks")
            self.args[f"ion.{ion.name}.index"] = mset.ion_index[ion.name]
            for name, array in ion_set.data.items():
                self.args[f"ion.{ion.name}.{name}"] = array
        for table in mech.tables:
            lo, hi = bounds(table, self.args)
            self.args[f"table.{table.name}.x"] = grid(table, lo, hi)
            self.args[f"table.{table.name}.lo"] = lo
            self.args[f"table.{table.name}.mfac"] = mfac(table, lo, hi)
            for out in table.outputs:
                self.args[array_name(table, out)] = np.zeros(table.points)
        self.groups = 1
        if mech.shared:
            self._bind_shared(model)
        if mech.diffusion:  # each instance's volume and constant (portneuron.sim.diffusion)
            self.args["diffusion.vol"] = np.zeros(mset.count)
            self.args["diffusion.dc"] = np.zeros(mset.count)
        if mech.watch_flags:  # each instance's WATCH conditions (portneuron.sim.watch)
            self.args["watch.active"] = np.zeros(mset.count * len(mech.watch_flags))
            self.args["watch.above"] = np.zeros(mset.count * len(mech.watch_flags))
        self.weight_columns: dict[str, np.ndarray] = {}
        self.spare_row = 0
        #: The kernels it runs, as IR: the mechanism's, an ELECTRODE_CURRENT's current
        #: kernel adding into the membrane current's sums where the model has them.
        self.ir = {k.name: k for k in mech.kernels}
        if mech.electrode_current and cable.FAST_IMEM[0] in node_arrays and "current" in self.ir:
            self.ir["current"] = cable.electrode_sums(self.ir["current"])
        for kernel in self.ir.values():
            self._check(kernel)
            hot = not (kernel.name == "init" or kernel.name.startswith("table_"))  # run once
            self.kernels[kernel.name] = backend.compile(kernel, hot)
            if kernel.lanes == "group":
                self.lanes[kernel.name] = self.groups
        self._table_state: tuple | None = None

    def _bind_shared(self, model: Model) -> None:
        """The values the instances of a cell group (NEURON's thread) share, from the
        GLOBAL's value, and each instance's group. The instances of a group follow one
        another; kernels that write shared values take them in that order."""
        mset, mech = self.set, self.set.mechanism
        group = np.zeros(mset.count, dtype=np.int64)
        if model.source_group is not None and not mset.is_artificial and mset.count:
            group = np.asarray(model.source_group)[mset.node_index]
            if (np.diff(group) < 0).any():
                group = np.zeros(mset.count, dtype=np.int64)  # not by group: one for all
        _, dense = np.unique(group, return_inverse=True)
        self.groups = int(dense.max()) + 1 if mset.count else 1
        self.args["shared.group"] = dense.astype(np.int32)
        first = np.searchsorted(dense, np.arange(self.groups + 1)).astype(np.int32)
        self.args["shared.first"] = first
        lengths = {v.name: max(v.length, 1) for v in mech.variables}
        defaults = {v.name: v.default for v in mech.variables}
        for name in mech.shared:
            start = float(mset.globals.get(name, defaults.get(name, 0.0)))
            self.args[f"shared.{name}"] = np.full(self.groups * lengths.get(name, 1), start)

    def bind_vectors(self) -> None:
        """Each instance's event Vector (VecStim's): the times, and where each one's start."""
        for name in self.set.mechanism.vectors:
            found = self.set.vectors.get(name)
            if found is None:
                if self.set.count:
                    raise PortneuronError(
                        f"{self.set.name}: the event times of its Vectors are not in the model: "
                        f"this vecevent.mod keeps each Vector's address in {name!r}, which "
                        f"NEURON's writer does not follow; run it in direct mode, or use the "
                        f"vecevent.mod with a BBCOREPOINTER that NEURON ships"
                    )
                found = (np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32))
            times, offset, size = found
            # one value more, so that a masked lane's load has somewhere to read
            self.args[f"vector.{name}.data"] = np.append(times, 0.0)
            self.args[f"vector.{name}.offset"] = offset.astype(np.int32)
            self.args[f"vector.{name}.size"] = size.astype(np.int32)

    def bind_pointers(self, model: Model, node_arrays: dict[str, np.ndarray]) -> None:
        """Each POINTER's target array and every instance's index into it: a node's v, a
        mechanism's variable or an ion's (once every set has its data)."""
        for name in self.set.mechanism.pointers:
            target = self.set.pointers.get(name)
            if target is None:
                if self.set.count == 0:
                    target = PointerTarget("node.v", np.zeros(0, np.int32))
                else:
                    raise PortneuronError(
                        f"{self.set.name}: POINTER {name} is not set (NEURON's setpointer, or "
                        f"the model builder's, must point it somewhere before the run)"
                    )
            array = place_array(model, node_arrays, target.space)
            if array is None:
                raise PortneuronError(f"{self.set.name}: POINTER {name} points at {target.space}")
            self.args[f"pointer.{name}"] = array
            self.args[f"pointer.{name}.index"] = target.index.astype(np.int32)

    def _check(self, kernel: Kernel) -> None:
        for p in kernel.params:
            prefix = p.name.split(".")[0]
            if p.name in self.args or prefix in (
                "event",
                "netcon",
                "fornetcon",
                "pointer",
                "vector",
            ):
                continue
            raise ValueError(f"{self.set.name}: kernel {kernel.name} needs {p.name!r}")

    def has(self, name: str) -> bool:
        return name in self.kernels

    def set_weights(
        self, columns: dict[str, np.ndarray], spare_row: int, instances: np.ndarray
    ) -> None:
        """Weight columns of the NetCons that target this set, plus a spare zero row: the
        weights a self-event sent from INITIAL carries. `instances`: each row's target.
        FOR_NETCONS walks `fornetcon.row[first[i]:end[i]]`, instance i's rows in NetCon
        order (CoreNEURON's _fornetcon_weight_perm)."""
        self.weight_columns, self.spare_row = columns, spare_row
        for arg, column in columns.items():
            self.args[f"netcon.{arg}"] = column
        if any(p.name == "fornetcon.row" for k in self.set.mechanism.kernels for p in k.params):
            rows = np.argsort(instances, kind="stable")
            ordered, every = instances[rows], np.arange(self.set.count)
            self.args["fornetcon.row"] = rows.astype(np.int32)
            self.args["fornetcon.first"] = np.searchsorted(ordered, every).astype(np.int32)
            self.args["fornetcon.end"] = np.searchsorted(ordered, every, "right").astype(np.int32)

    def run(self, name: str, t: float, dt: float, lanes: int | None = None) -> dict:
        self.args["t"], self.args["dt"] = t, dt
        n = self.lanes.get(name, self.set.count) if lanes is None else lanes
        if n == 0 or not self.set.count:
            return {}
        return self.backend.run(self.kernels[name], self.args, n)

    def check_tables(self, dt: float) -> None:
        """Rebuild the TABLEs if a DEPEND value changed since they were built."""
        mech = self.set.mechanism
        if not mech.tables or not self.args["usetable"] or not self.set.count:
            return  # NEURON builds a table with its first instance: none, no table

        def value(name: str):  # a RANGE value as the first instance has it
            if f"mech.{name}" in self.args:
                return float(self.args[f"mech.{name}"][0])
            return self.args.get(name, self.args.get(f"global.{name}"))

        state = tuple(value(name) for t in mech.tables for name in t.depend)
        if state == self._table_state:
            return
        for table in mech.tables:
            self.run(f"table_{table.name}", 0.0, dt, lanes=table.points)
        self._table_state = state

    def deliver(self, instance: int, t: float, flag: float, row: int, dt: float) -> dict:
        """Run NET_RECEIVE for one event."""
        self.args["event.instance"] = np.array([instance], dtype=np.int32)
        self.args["event.t"] = np.array([t])
        self.args["event.flag"] = np.array([flag])
        self.args["event.netcon"] = np.array([row], dtype=np.int32)
        return self.run("net_receive", t, dt, lanes=1)
