"""Progress bars that suit where they are shown.

On a terminal or in a notebook: a live tqdm bar labelled by its stage. In a log (CI, a file, a
pipe) tqdm's redraws would write thousands of partial lines, so there is no bar; the callers write
one line per epoch or stage with ``tqdm.write`` instead.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm.auto import tqdm


def interactive() -> bool:
    """True on a terminal or in a Jupyter kernel, where a redrawn bar shows as one line."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress_bar(iterable: Iterable | None = None, *, desc: str, enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, desc=desc, ...)``, shown only when ``enabled`` and :func:`interactive`."""
    return tqdm(iterable, desc=desc, disable=not (enabled and interactive()), **kwargs)
