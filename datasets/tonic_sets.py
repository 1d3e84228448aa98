"""Real event datasets through tonic, strictly offline.

Each class reads the files tonic's own class would read, in tonic's folder layout under
``root/<Name>/``, with tonic's readers. Nothing is ever downloaded: when the files are missing, a
``DataError`` lists exactly which files or folders are expected under ``root`` and where to obtain
them. A local archive (tonic's download file name) is extracted once if the extracted files are
missing. A damaged sample raises ``FormatError`` naming the dataset, the index and the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np

from spikeflow.datasets.events import check_events, check_index
from spikeflow.errors import DataError, FormatError, SpikeflowError


class _Offline(ABC):
    """Base: find (or extract) the files, build tonic's dataset without its download path."""

    tonic_name: str = ""
    url: str = ""

    def __init__(self, root: str | os.PathLike, train: bool = True, transform: Callable | None = None, target_transform: Callable | None = None,
                 download: bool = False, **kwargs):
        self.root = Path(root)
        if download:
            expected, _ = self._expected(train)
            raise DataError(
                f"{type(self).__name__}: spikeflow never downloads (download=True). Obtain the files from {self.url} and "
                f"place them under {self.root / self.tonic_name} (expected: {', '.join(str(e) for e in expected)}), then "
                f"call {type(self).__name__}(root={str(self.root)!r})"
            )
        self.train = train
        # Transforms run here, after the raw events are checked, not inside tonic.
        self.transform = transform
        self.target_transform = target_transform
        self.location = self.root / self.tonic_name
        split = "train" if train else "test"
        expected, archive = self._expected(train)
        if not self._present(expected) and archive is not None and (self.location / archive).is_file():
            self._extract(self.location / archive, expected)
        if not self._present(expected):
            lines = "\n".join(f"  {self.location / e}" for e in expected)
            alt = f"\nor the archive (extracted on first use):\n  {self.location / archive}" if archive else ""
            raise DataError(
                f"{type(self).__name__} ({split}): dataset files not found under root={self.root}.\n"
                f"Expected:\n{lines}{alt}\nObtain them from {self.url} and place them there; "
                "spikeflow never downloads."
            )
        tonic_cls = self._tonic_class()
        offline = type(tonic_cls.__name__, (tonic_cls,), {"_check_exists": lambda s: True, "download": _no_download})
        try:
            self._ds = offline(str(self.root), train=train, **kwargs)
        except SpikeflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - tonic/h5py raise anything on damaged files
            raise FormatError(f"{type(self).__name__} ({split}) under {self.location}: cannot index the files: {type(exc).__name__}: {exc}") from exc
        self.sensor_size = tuple(tonic_cls.sensor_size)
        self.dtype = tonic_cls.dtype

    # -- per dataset ----------------------------------------------------------------------------
    @abstractmethod
    def _expected(self, train: bool) -> tuple[list[str], str | None]:
        """Relative paths (globs allowed) that must exist, and the archive that provides them."""

    @abstractmethod
    def _tonic_class(self):
        """The tonic dataset class whose layout and reader are used."""

    def _sample_file(self, index: int) -> str:
        data = getattr(self._ds, "data", None)
        return str(data[index]) if isinstance(data, list) and index < len(data) and isinstance(data[index], str) else str(self.location)

    # -- shared ---------------------------------------------------------------------------------
    def _present(self, expected: list[str]) -> bool:
        return all(any(self.location.glob(e)) for e in expected)

    def _extract(self, archive: Path, expected: list[str]) -> None:
        from tonic.download_utils import extract_archive

        # Extract next to the target, then move the top-level entries in: a crash mid-way never
        # leaves a half-extracted tree where the files are expected.
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=self.location))
        try:
            try:
                extract_archive(str(archive), str(tmp))
            except Exception as exc:  # noqa: BLE001 - zip/tar errors of all kinds
                raise FormatError(f"{archive}: cannot extract archive: {type(exc).__name__}: {exc}") from exc
            for entry in tmp.iterdir():
                target = self.location / entry.name
                if not target.exists():
                    os.replace(entry, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def targets(self) -> list:
        return list(getattr(self._ds, "targets", []))

    def __len__(self) -> int:
        try:
            return len(self._ds)
        except Exception as exc:  # noqa: BLE001
            raise FormatError(f"{type(self).__name__}: cannot count samples under {self.location}: {exc}") from exc

    def __getitem__(self, index):
        i = check_index(index, len(self), type(self).__name__)
        where = f"{type(self).__name__} sample {i} ({self._sample_file(i)})"
        try:
            events, target = self._ds[i]
        except SpikeflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - tonic's readers fail in many ways on bad files
            raise FormatError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(events, np.ndarray) or events.dtype.names is None or len(events) == 0:
            raise FormatError(f"{where}: no events")
        try:
            check_events(events, self.sensor_size, sorted_t=False, what=where)
        except DataError as exc:
            raise FormatError(str(exc)) from exc
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target


def _no_download(self) -> None:
    raise DataError(f"{type(self).__name__}: files missing under {self.location_on_system}; spikeflow never downloads")


class NMNIST(_Offline):
    """N-MNIST (Orchard et al. 2015): ``root/NMNIST/Train/<digit>/<id>.bin`` (or ``Test``).

    Example:
        >>> NMNIST("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        spikeflow.errors.DataError: NMNIST (train): dataset files not found under root=/nonexistent...
    """

    tonic_name = "NMNIST"
    url = "https://www.garrickorchard.com/datasets/n-mnist (train.zip / test.zip on data.mendeley.com/datasets/468j46mzdv)"

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, first_saccade_only: bool = False,
                 download: bool = False):
        super().__init__(root, train, transform, target_transform, download, first_saccade_only=first_saccade_only)

    def _expected(self, train):
        folder = "Train" if train else "Test"
        return [f"{folder}/[0-9]/*.bin"], ("train.zip" if train else "test.zip")

    def _tonic_class(self):
        from tonic.datasets import NMNIST as T

        return T


class DVSGesture(_Offline):
    """IBM DVS128 Gesture, tonic's preprocessed version: ``root/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy``."""

    tonic_name = "DVSGesture"
    url = "https://research.ibm.com/interactive/dvsgesture/ (tonic's preprocessed ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz on figshare)"

    def _expected(self, train):
        folder = "ibmGestureTrain" if train else "ibmGestureTest"
        return [f"{folder}/user*_*/*.npy"], f"{folder}.tar.gz"

    def _tonic_class(self):
        from tonic.datasets import DVSGesture as T

        return T


class SHD(_Offline):
    """Spiking Heidelberg Digits: ``root/SHD/shd_train.h5`` (or ``shd_test.h5``) with spikes/times, spikes/units, labels."""

    tonic_name = "SHD"
    url = "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/"

    def _expected(self, train):
        name = "shd_train.h5" if train else "shd_test.h5"
        return [name], f"{name}.zip"

    def _tonic_class(self):
        from tonic.datasets import SHD as T

        return T

    @property
    def targets(self) -> list:
        import h5py

        with h5py.File(self.location / self._ds.data_filename, "r") as f:
            return [int(v) for v in f["labels"][()]]


class NTIDIGITS18(_Offline):
    """N-TIDIGITS18 cochlea spikes: ``root/NTIDIGITS18/n-tidigits.hdf5`` (train_/test_ labels, addresses, timestamps)."""

    tonic_name = "NTIDIGITS18"
    url = "https://docs.google.com/document/d/1Uxe7GsKKXcy6SlDUX4hoJVAC0-UkH-8kr5UXp0Ndi1M (n-tidigits.hdf5)"

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, single_digits: bool = False,
                 download: bool = False):
        super().__init__(root, train, transform, target_transform, download, single_digits=single_digits)

    def _expected(self, train):
        return ["n-tidigits.hdf5"], None

    def _tonic_class(self):
        from tonic.datasets import NTIDIGITS18 as T

        return T


class POKERDVS(_Offline):
    """POKER-DVS card pips: ``root/POKERDVS/pips_train/<cl|he|di|sp>/*.npy`` (or ``pips_test``)."""

    tonic_name = "POKERDVS"
    url = "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html (tonic's pips_train.tar.gz / pips_test.tar.gz)"

    def _expected(self, train):
        folder = "pips_train" if train else "pips_test"
        return [f"{folder}/{c}/*.npy" for c in ("cl", "he", "di", "sp")], f"{folder}.tar.gz"

    def _tonic_class(self):
        from tonic.datasets import POKERDVS as T

        return T
