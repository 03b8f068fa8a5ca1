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

With --cluster (and by default, after the single-CTA runs) the same for `sm90pairc2`: two CTAs
(a token's two head blocks), each producer writing its half of every half tile's rows into both
CTAs' tiles (the peer's by st.async: the write lands at a random later time and completes a
transaction on the peer's full barrier, whose bytes the peer's thread 0 expects with an arrival
of its own), each compute warpgroup freeing a half tile in both CTAs (local and remote arrival;
a free barrier counts both). A remote write is checked against the peer's readers both when it
is issued and when it lands.

  python3 tools/sim/pair_schedule.py [--runs 3000] [--seed 1] [--cluster | --no-cluster]

Exit status 0 iff every run finished without a deadlock or a race.
"""
import argparse
import random
import sys


class MBarrier:
    """Arrival count and transaction count (expect_tx / complete_tx, signed as in PTX): a phase
    completes when both reach zero."""

    def __init__(self, count):
        self.count, self.pending, self.completed, self.tx = count, count, 0, 0

    def arrive(self, n=1, expect_tx=0):
        self.tx += expect_tx
        self.pending -= n
        assert self.pending >= 0, "mbarrier: more arrivals than its count"
        self._complete()

    def complete_tx(self, n=1):
        self.tx -= n
        self._complete()

    def _complete(self):
        if self.pending == 0 and self.tx == 0:
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
            if s.peer is not None:
                # thread 0: an arrival that expects the bytes the peer's producer writes here
                yield ("op", lambda h=half: s.full[h].arrive(1, expect_tx=1))
                # st.async of this CTA's rows into the peer's tile: lands later, completing there
                yield ("async", lambda h=half, p=pi: s.peer_write(h, p))
            yield ("op", lambda h=half, p=pi: [s.buf.write(b, p, s.who("producer")) for b in s.parts(h)])
            # cp.async / dequantized stores complete, then the full barrier's arrival
            yield ("op", lambda h=half: s.full[h].arrive())
        # the mask of this pair (both compute warpgroups are past the previous pair's masks)
        yield ("op", lambda p=pi: s.buf.write("mask", p, s.who("producer")))
        yield ("op", lambda: s.valid.arrive())
        ph ^= 1


def wg0(s, npairs):
    ph = 0
    if npairs > 0:
        yield ("wait_mbar", s.full["K0L"], 0)
        yield ("op", lambda: [s.buf.begin_read(b, 0, "wg0.qk") for b in s.whole("K0L")])
        yield ("wait_mbar", s.full["K0H"], 0)
        yield ("op", lambda: [s.buf.begin_read(b, 0, "wg0.qk") for b in s.whole("K0H")])
        yield ("op", lambda: [s.buf.end_read(b, "wg0.qk") for b in s.whole("K0L") + s.whole("K0H")])  # wait0
    for pi in range(npairs):
        yield ("wait_mbar", s.valid, ph)
        yield ("op", lambda p=pi: (s.buf.begin_read("mask", p, "wg0.mask"), s.buf.end_read("mask", "wg0.mask")))
        yield ("op", lambda p=pi: s.buf.write("sM", p, "wg0"))          # its row maximum
        yield ("arrive", s.nb["max0"])
        yield ("op", lambda p=pi: [s.buf.begin_read(b, p, "wg0.pv") for b in s.whole("K0L")])  # P0 V0 (registers)
        yield ("op", lambda: [s.buf.end_read(b, "wg0.pv") for b in s.whole("K0L")])            # wait0
        yield ("op", lambda: s.release("K0L"))
        yield ("sync", s.nb["max1"])
        yield ("op", lambda p=pi: (s.buf.begin_read("sM", p, "wg0.sM"), s.buf.end_read("sM", "wg0.sM")))
        yield ("op", lambda p=pi: [s.buf.write(b, p, "wg0") for b in s.s0])  # P0 rescaled, into S0
        yield ("arrive", s.nb["p0"])
        yield ("sync", s.nb["p1"])
        yield ("op", lambda p=pi: [s.buf.begin_read(b, p, "wg0.pv") for b in ("S1",) + s.whole("K1L")])
        ph ^= 1
        if pi + 1 < npairs:
            yield ("wait_mbar", s.full["K0L"], ph)
            yield ("op", lambda p=pi + 1: [s.buf.begin_read(b, p, "wg0.qk") for b in s.whole("K0L")])
            # wgmma.wait_group 1: P1 V1 (the older group) is done
            yield ("op", lambda: [s.buf.end_read(b, "wg0.pv") for b in ("S1",) + s.whole("K1L")])
            yield ("op", lambda: s.release("K1L"))
            yield ("wait_mbar", s.full["K0H"], ph)
            yield ("op", lambda p=pi + 1: [s.buf.begin_read(b, p, "wg0.qk") for b in s.whole("K0H")])
            yield ("op", lambda: [s.buf.end_read(b, "wg0.qk") for b in s.whole("K0L") + s.whole("K0H")])  # wait0
        else:
            yield ("op", lambda: [s.buf.end_read(b, "wg0.pv") for b in ("S1",) + s.whole("K1L")])
            yield ("op", lambda: s.release("K1L"))


def wg1(s, npairs, d576):
    ph = 0
    for pi in range(npairs):
        yield ("wait_mbar", s.full["K1H"], ph)
        yield ("op", lambda p=pi: [s.buf.begin_read(b, p, "wg1.qk") for b in s.whole("K1H")])
        yield ("wait_mbar", s.full["K1L"], ph)
        yield ("op", lambda p=pi: [s.buf.begin_read(b, p, "wg1.qk") for b in s.whole("K1L")])
        yield ("op", lambda: [s.buf.end_read(b, "wg1.qk") for b in s.whole("K1H") + s.whole("K1L")])  # wait0
        yield ("wait_mbar", s.valid, ph)
        yield ("op", lambda p=pi: (s.buf.begin_read("mask", p, "wg1.mask"), s.buf.end_read("mask", "wg1.mask")))
        yield ("sync", s.nb["max0"])
        yield ("op", lambda p=pi: (s.buf.begin_read("sM", p, "wg1.sM"), s.buf.end_read("sM", "wg1.sM")))
        yield ("op", lambda p=pi: s.buf.write("sM", p, "wg1"))           # the combined maximum
        yield ("arrive", s.nb["max1"])
        yield ("op", lambda p=pi: [s.buf.begin_read(b, p, "wg1.pv") for b in s.whole("K1H")])  # P1 V1 (registers)
        yield ("op", lambda p=pi: s.buf.write("S1", p, "wg1"))
        yield ("sync", s.nb["p0"])
        # P0 V0 from S0; at D 576 S0 lives in K0's high half (its RoPE chunk)
        yield ("op", lambda p=pi: [s.buf.begin_read(b, p, "wg1.pv") for b in s.s0 + s.whole("K0H", rope=False)])
        yield ("arrive", s.nb["p1"])
        yield ("op", lambda: [s.buf.end_read(b, "wg1.pv") for b in s.whole("K1H")])            # wait_group 1
        yield ("op", lambda: s.release("K1H"))
        yield ("op", lambda: [s.buf.end_read(b, "wg1.pv") for b in s.s0 + s.whole("K0H", rope=False)])  # wait0
        yield ("op", lambda: s.release("K0H"))
        ph ^= 1


class State:
    """One CTA. In a cluster (`sm90pairc2`) rank r's producer writes rows "#r" of every half tile,
    here and in the peer; a free barrier counts this CTA's and the peer's release, a full barrier
    this CTA's producer and its thread 0's expect_tx arrival (plus the peer's transactions)."""

    def __init__(self, d576, rank=None):
        self.rank, self.peer = rank, None
        c2 = rank is not None
        self.free = {h: MBarrier(2 if c2 else 1) for h in ("K0L", "K0H", "K1L", "K1H")}
        self.full = {h: MBarrier(2 if c2 else 1) for h in ("K0L", "K0H", "K1L", "K1H")}
        self.valid = MBarrier(1)
        self.nb = {n: NamedBarrier(n) for n in ("max0", "max1", "p0", "p1")}
        self.buf = Buffers()
        self.ranks = ("#0", "#1") if c2 else ("",)
        # K0's high half: value dims 256..511 ("K0H") and, at D 576, the RoPE chunk, which holds
        # S0 once QK^T has read it (all 64 rows: both ranks' parts in a cluster).
        self.d576 = d576
        self.s0 = tuple("K0H.rope" + r for r in self.ranks) if d576 else ("S0",)

    def who(self, agent):
        return agent if self.rank is None else f"{agent}{self.rank}"

    def parts(self, half, sfx=None):
        """What one producer writes of a half tile (its own rows in a cluster)."""
        sfx = ("" if self.rank is None else f"#{self.rank}") if sfx is None else sfx
        return (half + sfx,) + (("K0H.rope" + sfx,) if half == "K0H" and self.d576 else ())

    def whole(self, half, rope=True):
        """What a compute warpgroup reads of a half tile: every rank's rows."""
        out = ()
        for r in self.ranks:
            out += self.parts(half, r) if rope else (half + r,)
        return out

    def release(self, half):
        self.free[half].arrive()
        if self.peer is not None:
            self.peer.free[half].arrive()  # the remote arrival on the peer's free barrier

    def peer_write(self, half, pair):
        """This CTA's rows of `half`, written into the peer's tile: (issue check, landing)."""
        peer, names = self.peer, self.parts(half)
        who = self.who("producer") + "->peer"
        for b in names:
            if peer.buf.readers.get(b):
                raise Race(f"{who} issues into the peer's {b} (pair {pair}) while {sorted(peer.buf.readers[b])} read it")

        def land():
            for b in names:
                peer.buf.write(b, pair, who)
            peer.full[half].complete_tx(1)
        return land


def run_once(npairs, d576, rng, cluster=False):
    if cluster:
        a, b = State(d576, 0), State(d576, 1)
        a.peer, b.peer = b, a
        ctas = (a, b)
    else:
        ctas = (State(d576),)
    agents = {}
    for c in ctas:
        agents[c.who("producer")] = producer(c, npairs)
        agents[c.who("wg0")] = wg0(c, npairs)
        agents[c.who("wg1")] = wg1(c, npairs, d576)
    pending = {name: None for name in agents}   # the step an agent is blocked on
    sync_gen = {}                                # agent -> named-barrier generation it waits past
    done = set()
    in_flight = []                               # st.async writes issued, not landed

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

    where = f"{npairs} pair(s), D {576 if d576 else 512}{', cluster' if cluster else ''}"
    while len(done) < len(agents) or in_flight:
        runnable = [n for n in agents if n not in done and ready(n)]
        if in_flight:
            runnable.append("land")
        if not runnable:
            blocked = {n: pending[n][0] for n in agents if n not in done}
            return f"deadlock with {where}: blocked {blocked}"
        name = rng.choice(runnable)
        try:
            if name == "land":
                in_flight.pop(rng.randrange(len(in_flight)))()
                continue
            pending[name] = None
            try:
                step = next(agents[name])
            except StopIteration:
                done.add(name)
                continue
            kind = step[0]
            if kind == "op":
                step[1]()
            elif kind == "async":
                in_flight.append(step[1]())
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
            return f"race with {where}: {e}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--cluster", action="store_true", help="only the two-CTA model (sm90pairc2)")
    g.add_argument("--no-cluster", action="store_true", help="only the one-CTA model (sm90pair)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    modes = [False] if a.no_cluster else [True] if a.cluster else [False, True]
    bad = 0
    for cluster in modes:
        for npairs in range(0, 7):
            for d576 in (True, False):
                for _ in range(a.runs // 14 + 1):
                    err = run_once(npairs, d576, rng, cluster)
                    if err:
                        print(err)
                        bad += 1
                        break
    names = {False: "one CTA", True: "a cluster of two"}
    print(f"pair_schedule: {'FAILED' if bad else 'ok'}: 0..6 pairs x D 576/512 x "
          f"{' and '.join(names[m] for m in modes)}, {a.runs} random interleavings each")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
