"""The rram-lsm target: a resistive-memory crossbar running matrices, with digital LIF periphery.

``export(graph, path, device=..., **crossbar options)`` maps every Affine/Linear matrix and every
Conv1d/Conv2d kernel (its im2col matrix, read once per output position) onto tiles of RRAM cells
through the device model (:mod:`.device`, :mod:`.crossbar`, :mod:`.export`);
``load_export(path)`` returns the program whose ``run(x)`` is the crossbar reference simulation
(:mod:`.executor`). Register: ``register_target("rram-lsm", ".rram")``.
"""

from ..capabilities import Capabilities
from .crossbar import ENERGY_PJ, Crossbar
from .device import Chip, Device
from .executor import RramProgram, load_export
from .export import export

#: A hardware target whose reference executor runs the numba fixed-point format (``prog.precision``).
CAPABILITIES = Capabilities(kind="target", engine="rram-lsm", precisions=("fixed",))

__all__ = ["CAPABILITIES", "ENERGY_PJ", "Chip", "Crossbar", "Device", "RramProgram", "export", "load_export"]
