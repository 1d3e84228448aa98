"""File and peer I/O around the graph IR: spikeflow's HDF5 format, NIR, and live snnTorch/Norse models.

The IR itself (:mod:`spikeflow.ir`) never imports h5py, nir or a peer library; these modules do.
"""

from spikeflow.io.hdf5 import load, save
from spikeflow.io.nir_bridge import from_nir, to_nir
from spikeflow.io.peers import from_norse, from_snntorch

__all__ = ["from_nir", "from_norse", "from_snntorch", "load", "save", "to_nir"]
