"""Run many seeded fuzz cases in a child process with a per-case time limit.

A hang inside C code (libhdf5) holds the GIL, so no in-process timer can stop it: the cases run in
a forked child that reports each finished case over a pipe, and the parent kills the child and
fails the test, naming the case, when one case takes longer than ``per_case_timeout``.
"""

from __future__ import annotations

import json
import os
import select
import signal
from collections import Counter
from typing import Callable

import spikeflow as sf


def classify(fn: Callable[[], object]) -> str:
    """``"ok"``, ``"refused <ErrorType>"`` for a SpikeflowError, ``"LEAK <Type>: message"`` otherwise."""
    try:
        fn()
    except sf.SpikeflowError as err:
        return "refused " + ("hang" if "did not finish" in str(err) else type(err).__name__)
    except Exception as err:  # noqa: BLE001 - that is what the fuzz looks for
        return f"LEAK {type(err).__name__}: {str(err)[:200]}"
    return "ok"


def run_cases(case: Callable[[int], str], n_cases: int, per_case_timeout: float = 60.0) -> Counter:
    """Run ``case(i)`` for ``i`` in ``range(n_cases)`` in a child process; return the outcome counts.

    ``case`` returns an outcome string (see :func:`classify`). Raises AssertionError naming the
    case that exceeded ``per_case_timeout`` seconds or that killed the child.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            with os.fdopen(write_end, "w", buffering=1) as out:
                for i in range(n_cases):
                    out.write(json.dumps([i, case(i)]) + "\n")
        except BaseException:  # noqa: BLE001 - the parent sees the child die
            code = 1
        os._exit(code)
    os.close(write_end)
    counts: Counter = Counter()
    leaks: list[str] = []
    last, buffer = -1, b""
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], per_case_timeout)
            if not ready:
                raise AssertionError(f"fuzz case {last + 1} did not finish within {per_case_timeout} s (a hang)")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                last, outcome = json.loads(line)
                counts[outcome.split(":")[0]] += 1
                if outcome.startswith("LEAK"):
                    leaks.append(f"case {last}: {outcome}")
    finally:
        os.close(read_end)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
    assert last == n_cases - 1, f"the fuzz child died after case {last} (status {status}): case {last + 1} crashed it"
    assert not leaks, f"{len(leaks)} cases raised errors outside SpikeflowError: {leaks[:5]}"
    return counts


def damage(data: bytes, rng, start: int = 0) -> bytes:
    """One seeded byte-level damage of ``data`` (at or after ``start``): zeroed or random block,
    flipped bytes, truncation or extension; always different from ``data``."""
    out = bytearray(data)
    kind = int(rng.integers(5))
    n = len(out)
    if kind == 0:  # zero a block, as a bad sector would
        a = int(rng.integers(start, n))
        size = len(out[a : a + int(rng.integers(1, 65))])
        out[a : a + size] = bytes(size)
    elif kind == 1:  # flip a few bits
        for _ in range(int(rng.integers(1, 5))):
            out[int(rng.integers(start, n))] ^= 1 << int(rng.integers(8))
    elif kind == 2:  # overwrite a block with noise
        a = int(rng.integers(start, n))
        size = len(out[a : a + int(rng.integers(1, 33))])
        out[a : a + size] = rng.integers(0, 256, size, dtype="u1").tobytes()
    elif kind == 3:  # truncate
        del out[int(rng.integers(0, n)) :]
    else:  # append junk
        out += rng.integers(0, 256, int(rng.integers(1, 100)), dtype="u1").tobytes()
    if bytes(out) == data:  # a flip that changed nothing (zeroing zeros): force a change
        out[start if start < n else 0] ^= 0xFF
    return bytes(out)
