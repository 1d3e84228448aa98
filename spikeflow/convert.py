"""ANN-to-SNN conversion with quantisation-clip-floor-shift (QCFS) activations (Bu et al., ICLR 2022).

Train an ordinary network whose activations are :class:`QCFS`; :func:`ann_to_snn` turns it into
an integrate-and-fire graph that reaches the ANN's accuracy in few steps:

* each ``QCFS`` becomes an :class:`~spikeflow.ir.IF` layer with threshold :math:`\\lambda`
  (the learnt clip value) and subtractive reset, so spike counts track the quantised activation;
* a spike stands for :math:`\\lambda`, so :math:`\\lambda` is folded into the next synapse;
* BatchNorm (eval statistics) is folded into the preceding Linear / Conv2d;
* every IF membrane starts at :math:`\\lambda/2` (the "shift" of QCFS). The IR has no
  initial-state field, so a small pulse sub-graph made of existing nodes adds
  :math:`\\lambda/2` to each IF layer's input at step 0 only: ``one`` (zero weights, bias 1)
  minus ``one`` delayed by a step is exactly 1 at :math:`t=0` and exactly 0 afterwards. Every
  backend, NIR and HDF5 run it unchanged; ``graph.metadata["conversion"]`` names the pulse nodes.

Inputs are fed as they are every step (analog or event frames); the ANN sees their time average.

Example:
    >>> import torch
    >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), QCFS(levels=4, threshold=2.0), torch.nn.Linear(8, 3))
    >>> g = ann_to_snn(ann)
    >>> sorted(k for k in g.nodes if not k.startswith("vinit"))
    ['affine1', 'affine3', 'if2', 'input', 'output']
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from spikeflow.errors import GraphError
from spikeflow.ir import nodes as n
from spikeflow.ir.graph import Graph


class QCFS(nn.Module):
    """Quantisation-clip-floor-shift activation, a drop-in replacement for ReLU when training for
    conversion.

    .. math:: h(x) = \\lambda\\, \\mathrm{clip}\\Big(\\tfrac{1}{L}\\big\\lfloor \\tfrac{x L}{\\lambda} + \\varphi \\big\\rfloor, 0, 1\\Big)

    The floor passes gradients straight through; :math:`\\lambda` (``threshold``) is trained.

    Args:
        levels: quantisation steps :math:`L` (about the number of SNN steps it is made for).
        threshold: initial clip value :math:`\\lambda` (> 0).
        shift: :math:`\\varphi`, 0.5 matches the half-threshold initial membrane of the SNN.
    """

    def __init__(self, levels: int = 8, threshold: float = 4.0, shift: float = 0.5):
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise GraphError(f"QCFS field 'levels': expected an integer >= 1, got {levels!r}")
        if not threshold > 0:
            raise GraphError(f"QCFS field 'threshold': expected > 0, got {threshold!r}")
        self.levels, self.shift = levels, float(shift)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.threshold
        z = x * self.levels / lam + self.shift
        z = z + (torch.floor(z) - z).detach()  # floor forward, identity backward
        return lam * torch.clamp(z / self.levels, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold):.4g}, shift={self.shift}"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _layers(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for layer in model for leaf in _layers(layer)]
    return [model]


def _fold_bn(node: n.Node, bn: nn.Module, where: str) -> n.Node:
    if bn.running_mean is None or bn.running_var is None:
        raise GraphError(f"{where}BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    gain = _numpy(bn.weight) if bn.weight is not None else np.ones(bn.num_features)
    beta = _numpy(bn.bias) if bn.bias is not None else np.zeros(bn.num_features)
    scale = gain / np.sqrt(_numpy(bn.running_var) + bn.eps)
    if node.weight.shape[0] != scale.size:
        raise GraphError(f"{where}BatchNorm has {scale.size} features, the preceding layer {node.weight.shape[0]} outputs")
    weight = node.weight * scale.reshape((-1,) + (1,) * (node.weight.ndim - 1))
    bias = (node.bias - _numpy(bn.running_mean)) * scale + beta
    kind = type(node)
    extra = {} if kind is n.Affine else {"stride": node.stride, "padding": node.padding, "dilation": node.dilation, "groups": node.groups}
    return kind(weight=weight, bias=bias, **extra)


def ann_to_snn(model: nn.Module, input_shape: tuple[int, ...] | None = None, *, dt: float = 1e-3, half_threshold: bool = True) -> Graph:
    """Convert a QCFS-trained ReLU-style network into an IF spiking graph.

    Args:
        model: an ``nn.Sequential`` (nested ones are flattened) of ``Linear``, ``Conv2d``,
            ``BatchNorm1d/2d`` (right after a Linear / Conv2d), ``AvgPool2d``, ``Flatten``,
            :class:`QCFS`, ``Dropout`` and ``Identity``.
        input_shape: per-sample input shape; needed when the first layer is not ``Linear``.
        dt: time step of the graph (IF neurons get ``r = 1/dt`` so one step adds the input once).
        half_threshold: start every membrane at half its threshold (the pulse sub-graph).

    Returns:
        A validated graph: synapses, IF layers, ``output`` (the last layer's values every step;
        their time average approximates the ANN's output).

    Raises:
        GraphError: an unsupported layer (plain ReLU, MaxPool, ...), BatchNorm in the wrong place,
            or shapes that do not fit; the message names the layer.
    """
    layers = [layer for layer in _layers(model) if not isinstance(layer, (nn.Identity, nn.Dropout))]
    if not layers:
        raise GraphError("ann_to_snn: the model has no layers")
    if input_shape is None:
        if not isinstance(layers[0], nn.Linear):
            raise GraphError(f"ann_to_snn: cannot infer the input shape from the first layer ({type(layers[0]).__name__}); pass input_shape=")
        input_shape = (layers[0].in_features,)
    shape = tuple(int(s) for s in input_shape)
    nodes: dict[str, n.Node] = {"input": n.Input(shape=shape)}
    chain = ["input"]
    shapes = {"input": shape}
    spike_scale = 1.0  # what one spike of the previous IF layer stands for (its lambda)
    thresholds: dict[str, float] = {}
    r = 1.0 / dt
    for i, layer in enumerate(layers, start=1):
        where = f"ann_to_snn: layer {i} ({type(layer).__name__}): "
        last = chain[-1]
        if isinstance(layer, nn.Linear):
            bias = _numpy(layer.bias) if layer.bias is not None else np.zeros(layer.out_features)
            node: n.Node = n.Affine(weight=_numpy(layer.weight) * spike_scale, bias=bias)
            spike_scale = 1.0
        elif isinstance(layer, nn.Conv2d):
            if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
                raise GraphError(f"{where}needs numeric zero padding, got padding={layer.padding!r}, padding_mode={layer.padding_mode!r}")
            bias = _numpy(layer.bias) if layer.bias is not None else np.zeros(layer.out_channels)
            node = n.Conv2d(weight=_numpy(layer.weight) * spike_scale, bias=bias, stride=layer.stride, padding=layer.padding,
                            dilation=layer.dilation, groups=layer.groups)
            spike_scale = 1.0
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not isinstance(nodes[last], (n.Affine, n.Conv2d)):
                raise GraphError(f"{where}BatchNorm must follow a Linear or Conv2d layer to be folded, it follows {type(nodes[last]).__name__}")
            nodes[last] = _fold_bn(nodes[last], layer, where)
            continue
        elif isinstance(layer, nn.AvgPool2d):
            if layer.ceil_mode or not layer.count_include_pad or layer.divisor_override is not None:
                raise GraphError(f"{where}only ceil_mode=False, count_include_pad=True and no divisor_override convert exactly")
            pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
            node = n.AvgPool2d(kernel_size=pair(layer.kernel_size), stride=pair(layer.stride or layer.kernel_size), padding=pair(layer.padding))
        elif isinstance(layer, nn.Flatten):
            start = layer.start_dim - 1 if layer.start_dim > 0 else layer.start_dim
            end = layer.end_dim - 1 if layer.end_dim > 0 else layer.end_dim
            if layer.start_dim == 0:
                raise GraphError(f"{where}flattening the batch dimension cannot convert")
            node = n.Flatten(start_dim=start, end_dim=end)
        elif isinstance(layer, QCFS):
            lam = float(layer.threshold.detach())
            if not lam > 0:
                raise GraphError(f"{where}threshold must be > 0 to convert, got {lam}")
            node = n.IF(v_threshold=lam, r=r, reset="subtract")
            spike_scale = lam
        elif isinstance(layer, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)):
            raise GraphError(f"{where}train with QCFS activations instead: a plain {type(layer).__name__} has no clip value to become a threshold")
        else:
            raise GraphError(f"{where}is not supported by the conversion (Linear, Conv2d, BatchNorm, AvgPool2d, Flatten, QCFS)")
        name = f"{type(node).__name__.lower()}{i}"
        try:
            shapes[name] = node.output_shape(shapes[last])
        except GraphError as err:
            raise GraphError(f"{where}{err}") from None
        nodes[name] = node
        chain.append(name)
        if isinstance(node, n.IF):
            thresholds[name] = float(node.v_threshold)
    if spike_scale != 1.0:
        # the network ends in a QCFS: its spikes stand for lambda, so the output scales them
        nodes["output_scale"] = n.Scale(scale=spike_scale)
        shapes["output_scale"] = shapes[chain[-1]]
        chain.append("output_scale")
    nodes["output"] = n.Output(shape=shapes[chain[-1]])
    edges = list(zip(chain, chain[1:] + ["output"]))
    graph = Graph(nodes, edges, dt=dt, metadata={"conversion": {"method": "qcfs", "half_threshold": bool(half_threshold)}})
    if half_threshold and thresholds:
        pulse_nodes = _add_half_threshold(graph, shapes, thresholds, dt * r)
        graph.metadata["conversion"]["pulse_nodes"] = pulse_nodes
    return graph.validate()


def _add_half_threshold(graph: Graph, shapes: dict, thresholds: dict[str, float], gain: float) -> list[str]:
    """Add ``lambda/2`` to every IF layer's input at step 0 only, with existing nodes."""
    added: list[str] = []

    def add(name: str, node: n.Node, sources: list[str]) -> str:
        graph.nodes[name] = node
        graph.edges.extend((s, name) for s in sources)
        shapes[name] = node.output_shape(shapes[sources[0]])
        added.append(name)
        return name

    inp = shapes["input"]
    if len(inp) == 3:  # a one-channel map of ones: 1x1 convolution with zero weights and bias 1
        one = add("vinit_one", n.Conv2d(weight=np.zeros((1, inp[0], 1, 1)), bias=np.ones(1)), ["input"])
    else:
        src = "input" if len(inp) == 1 else add("vinit_flat_input", n.Flatten(), ["input"])
        one = add("vinit_one", n.Affine(weight=np.zeros((1, math.prod(inp))), bias=np.ones(1)), [src])
    late = add("vinit_late", n.Delay(delay=graph.dt), [one])
    neg = add("vinit_neg", n.Scale(scale=-1.0), [late])
    pulse = add("vinit_pulse", n.Scale(scale=1.0), [one, neg])  # 1 - 0 at t = 0, then exactly 1 - 1 = 0
    maps: dict[tuple[int, ...], str] = {}

    def pulse_of(target: tuple[int, ...]) -> str:
        """The pulse as a map of ``target`` shape: (1,) or (1, h, w), shrunk by average pooling."""
        if target in maps:
            return maps[target]
        have = shapes[pulse]
        if target == have:
            maps[target] = pulse
            return pulse
        if len(have) != 3:
            raise GraphError(f"ann_to_snn: cannot shape the initial-membrane pulse {have} into {target}")
        if target == (1,):
            src = pulse_of((1, 1, 1))
            maps[target] = add("vinit_pulse_flat", n.Flatten(), [src])
            return maps[target]
        (_, h, w), (_, th, tw) = have, target
        if th > h or tw > w:
            raise GraphError(f"ann_to_snn: a layer of spatial size {(th, tw)} is larger than the input {(h, w)}; the pulse cannot grow")
        sh, sw = max(h // th, 1), max(w // tw, 1)
        kernel = (h - (th - 1) * sh, w - (tw - 1) * sw)
        # averaging ones gives exactly one (and zeros zero), so the pulse keeps its exact values
        name = add(f"vinit_pulse_{th}x{tw}", n.AvgPool2d(kernel_size=kernel, stride=(sh, sw)), [pulse])
        maps[target] = name
        return name

    for name, lam in thresholds.items():
        shape = shapes[name]
        value = (lam / 2) / gain
        if len(shape) == 1:
            node = n.Linear(weight=np.full((shape[0], 1), value))
            src = pulse_of((1,))
        elif len(shape) == 3:
            node = n.Conv2d(weight=np.full((shape[0], 1, 1, 1), value), bias=np.zeros(shape[0]))
            src = pulse_of((1,) + shape[1:])
        else:
            raise GraphError(f"ann_to_snn: IF layer {name!r} of shape {shape}: the initial-membrane pulse supports (n,) and (c, h, w)")
        init = add(f"vinit_{name}", node, [src])
        graph.edges.append((init, name))  # the IF input: its synapse plus the pulse
    return added
