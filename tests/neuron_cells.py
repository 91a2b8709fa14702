"""Small NEURON models for the equivalence and validation tests, built in NEURON itself.

Each builder clears what was built before, registers gid 0 for its cell (direct mode, like
CoreNEURON, transfers cells with gids) and returns the objects to keep alive, with the
segments worth recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from neuron import h
from neuron_models import clear_neuron

pc = h.ParallelContext()
h.load_file("stdrun.hoc")


@dataclass
class Built:
    segments: list
    keep: list = field(default_factory=list)


def _register(soma, gid: int = 0) -> None:
    pc.set_gid2node(gid, pc.id())
    pc.cell(gid, h.NetCon(soma(0.5)._ref_v, None, sec=soma))


def ball_and_sticks(drive: str, nernst: bool = False) -> Built:
    """An hh soma with two dendrites carrying hh and pas, driven by `drive`:

    "iclamp": an IClamp at the soma; "play": the IClamp's amplitude played from a Vector
    (continuous, with a step); "expsyn": a NetStim through an ExpSyn on a dendrite;
    "exp2syn": a noisy NetStim (Random123) through an Exp2Syn on a dendrite. With `nernst`,
    sodium's reversal potential follows its concentrations (ion_style: einit, eadvance)."""
    clear_neuron()
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20
    soma.insert("hh")
    dends = []
    for k in range(2):
        dend = h.Section(name=f"dend{k}")
        dend.L, dend.diam, dend.nseg = 200, 1, 5
        dend.insert("pas")
        dend.insert("hh")
        for seg in dend:
            seg.hh.gnabar, seg.pas.g = 0.02, 2e-4
        dend.connect(soma(1))
        dends.append(dend)
    for sec in (soma, *dends):
        sec.Ra, sec.cm = 120, 1.1
    keep = [soma, *dends]
    if nernst:
        for sec in (soma, *dends):
            sec.nai, sec.nao = 12.0, 135.0
        soma.push()
        h.ion_style("na_ion", 1, 2, 1, 1, 0)
        h.pop_section()
    if drive in ("iclamp", "play"):
        stim = h.IClamp(soma(0.5))
        stim.delay, stim.dur, stim.amp = 2, 30, 0.25
        keep.append(stim)
        if drive == "play":
            t = h.Vector([0, 4, 9.99, 10, 10, 21.3, 35])
            amp = h.Vector([0, 0.3, 0.05, 0.4, 0.2, 0.1, 0.35])
            amp.play(stim._ref_amp, t, 1)
            keep += [t, amp]
    else:
        ns = h.NetStim()
        ns.start, ns.interval, ns.number = 3, 6, 8
        if drive == "expsyn":
            syn = h.ExpSyn(dends[0](0.7))
            syn.tau, weight = 3, 0.02
        else:
            syn = h.Exp2Syn(dends[1](0.4))
            syn.tau1, syn.tau2, weight = 0.5, 4, 0.02
            ns.noise = 0.6
            ns.noiseFromRandom123(3, 5, 7)
        nc = h.NetCon(ns, syn)
        nc.weight[0], nc.delay = weight, 1.5
        keep += [ns, syn, nc]
    _register(soma)
    segments = [soma(0.5), dends[0](0.1), dends[0](0.7), dends[1](0.9), dends[1](1.0)]
    return Built(segments, keep)


def run_neuron(built: Built, tstop: float, dt: float = 0.025, v_init: float = -65.0) -> np.ndarray:
    """NEURON's voltages at `built.segments`, one row per step (t = 0 first)."""
    vecs = [h.Vector().record(seg._ref_v) for seg in built.segments]
    h.dt = dt
    h.finitialize(v_init)
    while h.t < tstop - dt / 2:
        h.fadvance()
    return np.array([v.to_python() for v in vecs]).T


def rallpack1(nseg: int) -> Built:
    """Rallpack 1: a sealed passive cable 1 mm x 1 um (Rm 4 ohm m2, Cm 0.01 F/m2, Ra 1 ohm m)
    with 0.1 nA injected at x = 0 from t = 0; rest -65 mV."""
    clear_neuron()
    cable = h.Section(name="cable")
    cable.L, cable.diam, cable.nseg, cable.Ra, cable.cm = 1000, 1, nseg, 100, 1
    cable.insert("pas")
    for seg in cable:
        seg.pas.g, seg.pas.e = 2.5e-5, -65  # 1 / (4 ohm m2) in S/cm2
    stim = h.IClamp(cable(0))
    stim.delay, stim.dur, stim.amp = 0, 1e9, 0.1
    _register(cable)
    return Built([cable(0), cable(1)], [cable, stim])


def rallpack1_analytic(t_ms: np.ndarray, x: float, terms: int = 4000) -> np.ndarray:
    """The exact depolarisation [mV] of Rallpack 1 at electrotonic position x (0 or 1).

    The cable is one space constant long (lambda = sqrt(Rm d / 4 Ra) = 1 mm), tau = Rm Cm =
    40 ms; the current-step response of a sealed finite cable as a cosine series (Rall)."""
    length, tau = 1.0, 40.0
    r_axial = 4 * 1.0 / (np.pi * 1e-12)  # ohm/m
    scale = r_axial * 1e-3 * 1e-10 * 1e3  # r_a * lambda * I [mV]
    big_t = np.asarray(t_ms)[:, None] / tau
    alpha = np.arange(1, terms + 1)[None, :] * np.pi / length
    series = (np.cos(alpha * x) * np.exp(-(1 + alpha**2) * big_t) / (1 + alpha**2)).sum(axis=1)
    steady = np.cosh(length - x) / np.sinh(length)
    return scale * (steady - np.exp(-big_t[:, 0]) / length - 2 / length * series)


def custom_cell() -> Built:
    """A soma with hh, a calcium current (cachan), calcium buffering solved by
    derivimplicit (cadecay), a K channel that assigns v (vcopy) and a channel whose TABLE
    bounds are PARAMETERs (tabrange), two that INITIAL settles by STEADYSTATE (sskin, ssgate)
    and one by a LINEAR block (linss), one of array STATEs and a written GLOBAL array
    (arrchan), a kinetic scheme with cai among its reactants (kinmix), a TABLE that reads a
    RANGE value (tabmg), a synapse queueing
    its events in arrays indexed at run time (ArrSyn), POINTERs and BEFORE/AFTER blocks:
    each dendrite segment's axial current from its parent's v (axcur) summed into a point
    process (AxSum), which reads a far v, a VecStim of our own (EvtVec) replaying a Vector of
    times into ArrSyn, WATCH statements: a spike detector on the soma (IzhW, spikes as gid 1)
    driving a synapse that WATCHes its conductance (WatchSyn, on the dendrite, also driven
    by the NetStim), and a dendrite with pas, cachan, an ion current set only in a SOLVEd
    block (kslow), calcium buffering by derivimplicit over
    three states (cabuf), a current that reads what a BEFORE STEP block sampled (bstep)
    and a leak integrated by euler (eulergate) receiving two NetCons
    from one NetStim through a facilitating synapse with NET_RECEIVE INITIAL (FacSyn). Needs
    tests/mods compiled and loaded."""
    clear_neuron()
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20
    for mech in (
        "hh", "cachan", "cadecay", "vcopy", "tabrange", "sskin", "ssgate", "linss", "arrchan",
        "kinmix", "tabmg",
    ):  # fmt: skip
        soma.insert(mech)
    soma(0.5).tabmg.mg = 1.8  # the TABLE reads this RANGE value (DEPEND mg)
    dend = h.Section(name="dend")
    dend.L, dend.diam, dend.nseg = 300, 1.5, 7
    dend.insert("pas")
    dend.insert("cachan")
    dend.insert("cabuf")
    dend.insert("kslow")
    dend.insert("eulergate")
    dend.insert("bstep")
    dend.connect(soma(1))
    syn = h.FacSyn(dend(0.6))
    ns = h.NetStim()
    ns.start, ns.interval, ns.number = 2, 4, 10
    axsum = axial_sum(soma, dend)
    queue = h.ArrSyn(dend(0.2))
    replay = h.EvtVec()  # a VecStim of tests/mods: its Vector's times as events
    times = h.Vector([1.3, 4.7, 4.7, 9.0, 21.25])
    replay.play(times)
    izh = h.IzhW(soma(0.5))  # WATCHes the soma's v and its own u; spikes as gid 1
    izh.vpeak, izh.vlow = -57.5, -59.5  # the soma's EPSPs cross these
    watcher = h.WatchSyn(dend(0.4))  # WATCHes its conductance
    ncs = []
    for source, target, weight, delay in (
        (ns, syn, 0.004, 1.0), (ns, syn, 0.002, 2.5), (ns, queue, 0.001, 1.5),
        (replay, queue, 0.0015, 0.5), (ns, watcher, 0.002, 1.0), (izh, watcher, 0.0015, 0.5),
    ):  # fmt: skip
        nc = h.NetCon(source, target)
        nc.weight[0], nc.delay = weight, delay
        ncs.append(nc)
    _register(soma)
    pc.set_gid2node(1, pc.id())
    pc.cell(1, h.NetCon(izh, None))
    keep = [soma, dend, syn, queue, axsum, ns, replay, times, izh, watcher, *ncs]
    return Built([soma(0.5), dend(0.3), dend(0.9)], keep)


def axial_sum(soma, dend):
    """tests/mods' axcur in `dend` (POINTERs: each segment's parent v, and the sum of an
    AxSum at the soma, which reads dend(0.9)'s v through its own): the AxSum."""
    dend.insert("axcur")
    axsum = h.AxSum(soma(0.5))
    h.setpointer(dend(0.9)._ref_v, "vremote", axsum)
    previous = soma(1.0)
    for seg in dend:
        h.setpointer(previous._ref_v, "vparent", seg.axcur)
        h.setpointer(axsum._ref_sum, "total", seg.axcur)
        seg.axcur.len = 10 * seg.x
        previous = seg
    return axsum


def fornetcon_cell() -> Built:
    """A soma with hh and FncSyn (tests/mods: FOR_NETCONS potentiating the NetCons that
    delivered lately) driven by three NetCons from two NetStims. Needs tests/mods compiled
    and loaded."""
    clear_neuron()
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20
    soma.insert("hh")
    syn = h.FncSyn(soma(0.5))
    fast, slow = h.NetStim(), h.NetStim()
    fast.start, fast.interval, fast.number = 1, 3, 12
    slow.start, slow.interval, slow.number = 2.5, 7, 5
    ncs = []
    for source, weight, delay in ((fast, 0.002, 1.0), (slow, 0.003, 2.0), (fast, 0.001, 3.5)):
        nc = h.NetCon(source, syn)
        nc.weight[0], nc.delay = weight, delay
        ncs.append(nc)
    _register(soma)
    return Built([soma(0.5)], [soma, syn, fast, slow, *ncs])


def axial_cell() -> tuple:
    """The POINTER tests' cell: a 20 um soma with hh and an IClamp step (0.3 nA, 1-20 ms),
    and a 200 um dendrite of 3 segments with pas and axcur (tests/mods), its POINTERs
    unset. (soma, dend, stim)"""
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20
    soma.insert("hh")
    dend = h.Section(name="dend")
    dend.L, dend.diam, dend.nseg = 200, 1, 3
    dend.insert("pas")
    dend.insert("axcur")
    dend.connect(soma(1))
    stim = h.IClamp(soma(0.5))
    stim.delay, stim.dur, stim.amp = 1, 19, 0.3
    return soma, dend, stim


def one_compartment(
    name: str, kind: str, receives: bool, pointers: tuple = (), settings: dict | None = None
) -> Built:
    """A 20 um soma with a leak and an IClamp step (0.2 nA, 5-25 ms), and mechanism `name`
    (`_compartment`); an artificial cell's spikes are gid 1's. The corpus tests' current
    step."""
    clear_neuron()
    soma, keep = _compartment(name, kind, receives, pointers, settings)
    stim = h.IClamp(soma(0.5))
    stim.delay, stim.dur, stim.amp = 5, 20, 0.2
    keep.append(stim)
    _register(soma)
    if kind == "artificial_cell" and receives:  # its spikes, as gid 1 (without NET_RECEIVE
        pc.set_gid2node(1, pc.id())  # it is no NetCon source for NEURON)
        pc.cell(1, h.NetCon(keep[1], None))
    return Built([soma(0.5)], keep)


#: The corpus tests' voltage-clamp steps [mV], one compartment each.
CLAMP_LEVELS = (-90.0, -50.0, -10.0, 40.0)


def clamped_compartments(
    name: str, kind: str, receives: bool, pointers: tuple = (), settings: dict | None = None
) -> Built:
    """One compartment as `one_compartment`'s per level of CLAMP_LEVELS (gid k the k-th),
    each under an SEClamp (its default 1 Mohm series resistance) holding -65 mV, stepping
    to the level from 5 to 25 ms and back: the corpus tests' voltage-clamp steps. The
    clamps follow the compartments in `keep`."""
    clear_neuron()
    segments, keep, clamps = [], [], []
    for k, level in enumerate(CLAMP_LEVELS):
        soma, kept = _compartment(name, kind, receives, pointers, settings, f"soma{k}")
        clamp = h.SEClamp(soma(0.5))
        clamp.dur1, clamp.amp1, clamp.dur2, clamp.amp2 = 5, -65, 20, level
        clamp.dur3, clamp.amp3 = 1e9, -65
        _register(soma, k)
        segments.append(soma(0.5))
        keep += kept
        clamps.append(clamp)
    return Built(segments, keep + clamps)


def _compartment(
    name: str, kind: str, receives: bool, pointers, settings, section: str = "soma"
) -> tuple:
    """A 20 um soma with a leak and mechanism `name`: inserted (density), or placed at the
    middle (point process), driven by a NetStim burst through a NetCon where it has a
    NET_RECEIVE. POINTER k points at x<k> of a `ptrsink` (tests/mods) in the soma, which
    INITIAL sets; `settings` are values for the mechanism's RANGE variables ("play": a
    VecStim's event times). (the soma, what to keep: the soma, then the point process)"""
    soma = h.Section(name=section)
    soma.L = soma.diam = 20
    soma.insert("pas")
    soma.g_pas, soma.e_pas = 1e-4, -65
    keep: list = [soma]
    if kind == "density":
        soma.insert(name)
        target = getattr(soma(0.5), name)
    else:
        target = getattr(h, name)(soma(0.5))
        keep.append(target)
        if receives:
            ns = h.NetStim()
            ns.start, ns.interval, ns.number = 3, 4, 6
            nc = h.NetCon(ns, target)
            nc.weight[0], nc.delay = 0.002, 1.0
            keep += [ns, nc]
    for variable, value in (settings or {}).items():
        if variable == "play":  # a VecStim's event times
            times = h.Vector(value)
            target.play(times)
            keep.append(times)
        else:
            setattr(target, variable, value)
    if pointers:
        soma.insert("ptrsink")
        sink = soma(0.5).ptrsink
        for k, pointer in enumerate(pointers):
            h.setpointer(getattr(sink, f"_ref_x{k}"), pointer, target)
    return soma, keep
