"""Event sets that spikeflow generates itself (DigitSaccades, SpokenDigits): made once, cached in
the HDF5 event store under a key of their settings, read back torchvision style."""

from __future__ import annotations

import abc
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spikeflow.datasets.events import check_index
from spikeflow.datasets.store import EventStore
from spikeflow.errors import FormatError


class GeneratedEventSet(abc.ABC):
    """``ds[i] -> (events, label)`` over a cache ``root/<name>/<split>_<key>.h5``.

    A subclass sets ``name``, ``sensor_size`` and ``duration_us``, calls :meth:`_use_cache` from its
    ``__init__`` with the settings that make its data, and writes both splits in ``_generate``.
    A cache made with other settings, or damaged, is rebuilt with a warning.
    """

    name = ""
    sensor_size: tuple[int, ...] = ()
    duration_us = 0

    def _use_cache(self, root: str | os.PathLike, train: bool, transform: Callable | None,
                   target_transform: Callable | None, params: dict[str, Any], progress: bool) -> None:
        self.root, self.train = Path(root), train
        self.transform, self.target_transform = transform, target_transform
        self.params = params
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        self.folder = self.root / self.name
        self.paths = {split: self.folder / f"{split}_{key}.h5" for split in ("train", "test")}
        self.path = self.paths["train" if train else "test"]
        if not all(self._cache_ok(p) for p in self.paths.values()):
            self._generate(progress)
        self._store: EventStore | None = None
        self._pid = -1
        with EventStore(self.path) as store:
            self.targets = store.labels.copy()

    @abc.abstractmethod
    def _generate(self, progress: bool) -> None:
        """Write both splits of the cache (``self.paths``), with their labels and ``params`` metadata."""

    def _cache_ok(self, path: Path) -> bool:
        if not path.exists():
            return False
        try:
            with EventStore(path) as store:
                if store.metadata.get("params") == self.params:
                    return True
                reason = "it was made with other settings"
        except FormatError as exc:
            reason = str(exc)
        warnings.warn(f"{self.name}: rebuilding cache {path}: {reason}", stacklevel=4)
        return False

    def _open(self) -> EventStore:
        # h5py handles do not survive fork: DataLoader workers each open their own.
        if self._store is None or self._pid != os.getpid():
            self._store = EventStore(self.path)
            self._pid = os.getpid()
        return self._store

    def close(self) -> None:
        """Close the cache file (it reopens on the next access)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        i = check_index(index, len(self), f"{self.name}({'train' if self.train else 'test'})")
        events = self._open().read(i)
        target = int(self.targets[i])
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target

    def read_window(self, index, t_start: float, t_end: float) -> np.ndarray:
        """Raw events of sample ``index`` with ``t_start <= t < t_end`` (µs), read from the cache only for that window."""
        i = check_index(index, len(self), self.name)
        return self._open().read_window(i, t_start, t_end)
