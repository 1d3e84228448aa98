"""Router: a multicast key range per slice, routing tables per chip, merged key/mask entries.

Slice ``s`` sends key ``(s << index_bits) | neuron``; its mask covers the slice number. Chips sit
on a square grid with SpiNNaker's six links (E, NE, N, W, SW, S); a packet travels the diagonal
first, then along x, then along y. Every chip on a packet's way gets an entry
``(key, mask) -> (links out, local PEs)``. Merging joins two entries of a chip with the same route
whose keys differ in one unmasked bit: the merged entry matches exactly the union, so no key changes
its route. A chip whose merged table exceeds ``router_entries`` is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spikeflow.errors import BackendError

from .target import Target

LINKS = {"E": (1, 0), "NE": (1, 1), "N": (0, 1), "W": (-1, 0), "SW": (-1, -1), "S": (0, -1)}
LINK_IDS = {k: i for i, k in enumerate(LINKS)}
KEY_BITS = 32


class RoutingError(BackendError):
    """Keys or routing tables do not fit the chip."""


@dataclass
class Entry:
    key: int
    mask: int
    links: tuple[int, ...]
    pes: tuple[int, ...]  # cores on this chip


def index_bits(largest_slice: int) -> int:
    return max(1, math.ceil(math.log2(max(largest_slice, 2))))


def slice_key(slice_index: int, bits: int) -> tuple[int, int]:
    """``(key, mask)`` of a slice's range; refuses more slices than 32-bit keys hold."""
    if slice_index >= 1 << (KEY_BITS - bits):
        raise RoutingError(f"slice {slice_index}: {KEY_BITS}-bit keys with {bits} neuron bits hold only {1 << (KEY_BITS - bits)} slices")
    return slice_index << bits, ((1 << KEY_BITS) - 1) ^ ((1 << bits) - 1)


def grid(chips: int) -> int:
    """Width of the square chip grid."""
    return max(1, math.ceil(math.sqrt(chips)))


def chip_xy(chip: int, width: int) -> tuple[int, int]:
    return chip % width, chip // width


def path(src: int, dst: int, width: int) -> list[tuple[int, int]]:
    """``[(chip, link out)]`` from chip ``src`` to chip ``dst`` (diagonal, then x, then y)."""
    (x, y), (tx, ty) = chip_xy(src, width), chip_xy(dst, width)
    hops = []
    while (x, y) != (tx, ty):
        dx, dy = tx - x, ty - y
        if dx > 0 and dy > 0:
            link = "NE"
        elif dx < 0 and dy < 0:
            link = "SW"
        elif dx:
            link = "E" if dx > 0 else "W"
        else:
            link = "N" if dy > 0 else "S"
        hops.append((y * width + x, LINK_IDS[link]))
        x, y = x + LINKS[link][0], y + LINKS[link][1]
    return hops


def build_tables(sources: list[tuple[int, int, int, list[tuple[int, int]]]], chips: int) -> dict[int, list[Entry]]:
    """Routing tables from ``(key, mask, source chip, [(chip, core) destinations])`` per slice."""
    width = grid(chips)
    tables: dict[int, dict[tuple[int, int], tuple[set, set]]] = {}
    for key, mask, src_chip, dests in sources:
        for chip, core in dests:
            for hop_chip, link in path(src_chip, chip, width):
                tables.setdefault(hop_chip, {}).setdefault((key, mask), (set(), set()))[0].add(link)
            tables.setdefault(chip, {}).setdefault((key, mask), (set(), set()))[1].add(core)
    return {c: [Entry(k, m, tuple(sorted(li)), tuple(sorted(pe))) for (k, m), (li, pe) in sorted(t.items())] for c, t in sorted(tables.items())}


def merge(entries: list[Entry]) -> list[Entry]:
    """Join entries with the same route whose keys differ in one unmasked bit, until none do."""
    groups: dict[tuple, set[tuple[int, int]]] = {}
    for e in entries:
        groups.setdefault((e.links, e.pes), set()).add((e.key, e.mask))
    out = []
    for (links, pes), items in groups.items():
        changed = True
        while changed:
            changed = False
            for bit in range(KEY_BITS):
                b = 1 << bit
                for key, mask in sorted(items):
                    if not mask & b or key & b or (key, mask) not in items:
                        continue
                    twin = (key | b, mask)
                    if twin in items:
                        items -= {(key, mask), twin}
                        items.add((key, mask ^ b))
                        changed = True
        out += [Entry(k, m, links, pes) for k, m in sorted(items)]
    return sorted(out, key=lambda e: (e.key, e.mask))


def route(sources, target: Target) -> tuple[dict[int, list[Entry]], dict[int, int]]:
    """Merged tables per chip and the entry count per chip before merging; refuses overfull chips."""
    tables = build_tables(sources, target.chips)
    before = {c: len(t) for c, t in tables.items()}
    merged = {c: merge(t) for c, t in tables.items()}
    for c, t in merged.items():
        if len(t) > target.router_entries:
            raise RoutingError(f"chip {c}: routing table needs {len(t)} entries after merging ({before[c]} before), "
                               f"the router holds {target.router_entries}")
    return merged, before


def lookup(table: list[Entry], key: int) -> Entry | None:
    """The first entry matching ``key`` (tables are disjoint after merging, so the first is the one)."""
    for e in table:
        if key & e.mask == e.key:
            return e
    return None


def deliver(tables: dict[int, list[Entry]], key: int, src_chip: int, chips: int) -> set[tuple[int, int]]:
    """Follow ``key`` through the tables from ``src_chip``: the ``(chip, core)`` pairs it reaches."""
    width = grid(chips)
    seen, todo, out = set(), [src_chip], set()
    while todo:
        chip = todo.pop()
        if chip in seen:
            continue
        seen.add(chip)
        e = lookup(tables.get(chip, []), key)
        if e is None:
            continue
        out |= {(chip, core) for core in e.pes}
        x, y = chip_xy(chip, width)
        for link in e.links:
            dx, dy = list(LINKS.values())[link]
            todo.append((y + dy) * width + x + dx)
    return out
