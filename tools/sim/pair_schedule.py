#!/usr/bin/env python3
"""A model of the sm90pair kernel's synchronisation, run over random interleavings.

backends/cuda/sm90/attention_sm90_pair.cuh has three warpgroups that hand data over through
mbarriers (phase-parity waits) and named barriers (bar.arrive by one warpgroup, bar.sync by the
other). A protocol slip there hangs the GPU or reads a half-written tile, and device time is
scarce, so this script replays each warpgroup's sequence of waits, arrivals, writes and reads
(transcribed from the kernel, one step per line, in the kernel's order) as coroutines under a
random scheduler and checks, for 1..6 pairs of key tiles:
  - no deadlock: every warpgroup finishes;
  - no race: a buffer (K0 low/high, K1 low/high, S0, S1, the row-maximum slot sM, the mask) is
    never written while a reader's asynchronous read (wgmma between issue and wait) or a plain
    read is still open, and a reader only reads data of its own pair.
Named barriers and mbarriers follow the PTX semantics the kernel relies on: an mbarrier completes
a phase when its count of arrivals is reached; try_wait.parity(p) returns once the phase of parity
p has completed (a fresh barrier: parity 1 passes at once); a named barrier of 256 completes when
two warpgroups (128 threads each) have arrived, bar.sync waiting for that.

  python3 tools/sim/pair_schedule.py [--runs 3000] [--seed 1]

Exit status 0 iff every run finished without a deadlock or a race.
"""
import argparse
import random
import sys


class MBarrier:
    def __init__(self, count):
        self.count, self.pending, self.completed = count, count, 0

    def arrive(self, n=1):
        self.pending -= n
        assert self.pending >= 0, "mbarrier: more arrivals than its count"
        if self.pending == 0:
            self.completed += 1
            self.pending = self.count

    def passed(self, parity):
        # Phase k (0-based) has parity k & 1. Waiting on parity p returns once the latest
        # completed phase has parity p, i.e. the barrier's current (incomplete) phase does not.
        return (self.completed & 1) != parity


class NamedBarrier:
    """bar.arrive / bar.sync of 256 threads between two warpgroups."""

    def __init__(self, name):
        self.name, self.who, self.generation = name, [], 0

    def arrive(self, who):
        if who in self.who:
            raise Race(f"{who} arrives twice at named barrier {self.name} before the other warpgroup")
        self.who.append(who)
        if len(self.who) == 2:
            self.who = []
            self.generation += 1


class Race(Exception):
    pass


class Buffers:
    """Who holds each buffer, and which pair's data it holds."""

    def __init__(self):
        self.readers = {}   # name -> set of reader tags
        self.data = {}      # name -> pair index written last

    def write(self, name, pair, who):
        if self.readers.get(name):
            raise Race(f"{who} writes {name} (pair {pair}) while {sorted(self.readers[name])} read it")
        self.data[name] = pair

    def begin_read(self, name, pair, who):
        if self.data.get(name) != pair:
            raise Race(f"{who} reads {name} for pair {pair} but it holds pair {self.data.get(name)}")
        self.readers.setdefault(name, set()).add(who)

    def end_read(self, name, who):
        self.readers[name].discard(who)


# Each step a coroutine yields: ("wait_mbar", bar, parity) | ("sync", nb) | ("op", callable).
def producer(s, npairs):
    ph = 1
    for pi in range(npairs):
        for half in ("K0L", "K1H", "K0H", "K1L"):
            yield ("wait_mbar", s.free[half], ph)
            yield ("op", lambda h=half, p=pi: [s.buf.write(b, p, "producer") for b in s.parts(h)])
            # cp.async / dequantized stores complete, then the full barrier's arrival
            yield ("op", lambda h=half: s.full[h].arrive())
        # the mask of this pair (both compute warpgroups are past the previous pair's masks)
        yield ("op", lambda p=pi: s.buf.write("mask", p, "producer"))
        yield ("op", lambda: s.valid.arrive())
        ph ^= 1


def wg0(s, npairs):
    ph = 0
    if npairs > 0:
        yield ("wait_mbar", s.full["K0L"], 0)
        yield ("op", lambda: s.buf.begin_read("K0L", 0, "wg0.qk"))
        yield ("wait_mbar", s.full["K0H"], 0)
        yield ("op", lambda: [s.buf.begin_read(b, 0, "wg0.qk") for b in s.parts("K0H")])
        yield ("op", lambda: [s.buf.end_read(b, "wg0.qk") for b in ("K0L",) + s.parts("K0H")])  # wait0
    for pi in range(npairs):
        yield ("wait_mbar", s.valid, ph)
        yield ("op", lambda p=pi: (s.buf.begin_read("mask", p, "wg0.mask"), s.buf.end_read("mask", "wg0.mask")))
        yield ("op", lambda p=pi: s.buf.write("sM", p, "wg0"))          # its row maximum
        yield ("arrive", s.nb["max0"])
        yield ("op", lambda p=pi: s.buf.begin_read("K0L", p, "wg0.pv"))  # P0 V0 (registers)
        yield ("op", lambda: s.buf.end_read("K0L", "wg0.pv"))            # wait0
        yield ("op", lambda: s.free["K0L"].arrive())
        yield ("sync", s.nb["max1"])
        yield ("op", lambda p=pi: (s.buf.begin_read("sM", p, "wg0.sM"), s.buf.end_read("sM", "wg0.sM")))
        yield ("op", lambda p=pi: s.buf.write(s.s0, p, "wg0"))           # P0 rescaled, into S0
        yield ("arrive", s.nb["p0"])
        yield ("sync", s.nb["p1"])
        yield ("op", lambda p=pi: (s.buf.begin_read("S1", p, "wg0.pv"), s.buf.begin_read("K1L", p, "wg0.pv")))
        ph ^= 1
        if pi + 1 < npairs:
            yield ("wait_mbar", s.full["K0L"], ph)
            yield ("op", lambda p=pi + 1: s.buf.begin_read("K0L", p, "wg0.qk"))
            # wgmma.wait_group 1: P1 V1 (the older group) is done
            yield ("op", lambda: (s.buf.end_read("S1", "wg0.pv"), s.buf.end_read("K1L", "wg0.pv")))
            yield ("op", lambda: s.free["K1L"].arrive())
            yield ("wait_mbar", s.full["K0H"], ph)
            yield ("op", lambda p=pi + 1: [s.buf.begin_read(b, p, "wg0.qk") for b in s.parts("K0H")])
            yield ("op", lambda: [s.buf.end_read(b, "wg0.qk") for b in ("K0L",) + s.parts("K0H")])  # wait0
        else:
            yield ("op", lambda: (s.buf.end_read("S1", "wg0.pv"), s.buf.end_read("K1L", "wg0.pv")))
            yield ("op", lambda: s.free["K1L"].arrive())


def wg1(s, npairs, d576):
    ph = 0
    for pi in range(npairs):
        yield ("wait_mbar", s.full["K1H"], ph)
        yield ("op", lambda p=pi: s.buf.begin_read("K1H", p, "wg1.qk"))
        yield ("wait_mbar", s.full["K1L"], ph)
        yield ("op", lambda p=pi: s.buf.begin_read("K1L", p, "wg1.qk"))
        yield ("op", lambda: (s.buf.end_read("K1H", "wg1.qk"), s.buf.end_read("K1L", "wg1.qk")))  # wait0
        yield ("wait_mbar", s.valid, ph)
        yield ("op", lambda p=pi: (s.buf.begin_read("mask", p, "wg1.mask"), s.buf.end_read("mask", "wg1.mask")))
        yield ("sync", s.nb["max0"])
        yield ("op", lambda p=pi: (s.buf.begin_read("sM", p, "wg1.sM"), s.buf.end_read("sM", "wg1.sM")))
        yield ("op", lambda p=pi: s.buf.write("sM", p, "wg1"))           # the combined maximum
        yield ("arrive", s.nb["max1"])
        yield ("op", lambda p=pi: s.buf.begin_read("K1H", p, "wg1.pv"))  # P1 V1 (registers)
        yield ("op", lambda p=pi: s.buf.write("S1", p, "wg1"))
        yield ("sync", s.nb["p0"])
        # P0 V0 from S0; at D 576 S0 lives in K0's high half (its RoPE chunk)
        yield ("op", lambda p=pi: (s.buf.begin_read(s.s0, p, "wg1.pv"), s.buf.begin_read("K0H", p, "wg1.pv")))
        yield ("arrive", s.nb["p1"])
        yield ("op", lambda: s.buf.end_read("K1H", "wg1.pv"))            # wait_group 1
        yield ("op", lambda: s.free["K1H"].arrive())
        yield ("op", lambda: (s.buf.end_read(s.s0, "wg1.pv"), s.buf.end_read("K0H", "wg1.pv")))  # wait0
        yield ("op", lambda: s.free["K0H"].arrive())
        ph ^= 1


class State:
    def __init__(self, d576):
        self.free = {h: MBarrier(1) for h in ("K0L", "K0H", "K1L", "K1H")}
        self.full = {h: MBarrier(1) for h in ("K0L", "K0H", "K1L", "K1H")}
        self.valid = MBarrier(1)
        self.nb = {n: NamedBarrier(n) for n in ("max0", "max1", "p0", "p1")}
        self.buf = Buffers()
        # K0's high half: value dims 256..511 ("K0H") and, at D 576, the RoPE chunk, which holds
        # S0 once QK^T has read it.
        self.rope = ("K0H.rope",) if d576 else ()
        self.s0 = "K0H.rope" if d576 else "S0"

    def parts(self, half):
        return (half,) + (self.rope if half == "K0H" else ())


def run_once(npairs, d576, rng):
    s = State(d576)
    agents = {"producer": producer(s, npairs), "wg0": wg0(s, npairs), "wg1": wg1(s, npairs, d576)}
    pending = {name: None for name in agents}   # the step an agent is blocked on
    sync_gen = {}                                # agent -> named-barrier generation it waits past
    done = set()

    def ready(name):
        step = pending[name]
        if step is None:
            return True
        kind = step[0]
        if kind == "wait_mbar":
            return step[1].passed(step[2])
        if kind == "sync":
            return step[1].generation > sync_gen[name]
        return True

    while len(done) < len(agents):
        runnable = [n for n in agents if n not in done and ready(n)]
        if not runnable:
            blocked = {n: pending[n][0] for n in agents if n not in done}
            return f"deadlock with {npairs} pair(s), D {576 if d576 else 512}: blocked {blocked}"
        name = rng.choice(runnable)
        pending[name] = None
        try:
            step = next(agents[name])
        except StopIteration:
            done.add(name)
            continue
        except Race as e:
            return f"race with {npairs} pair(s): {e}"
        kind = step[0]
        try:
            if kind == "op":
                step[1]()
            elif kind == "arrive":
                step[1].arrive(name)
            elif kind == "sync":
                nb = step[1]
                sync_gen[name] = nb.generation
                nb.arrive(name)
                pending[name] = step
            elif kind == "wait_mbar":
                pending[name] = step
        except Race as e:
            return f"race with {npairs} pair(s): {e}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    bad = 0
    for npairs in range(0, 7):
        for d576 in (True, False):
            for _ in range(a.runs // 14 + 1):
                err = run_once(npairs, d576, rng)
                if err:
                    print(err)
                    bad += 1
                    break
    print(f"pair_schedule: {'FAILED' if bad else 'ok'}: 0..6 pairs x D 576/512, "
          f"{a.runs} random interleavings")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
