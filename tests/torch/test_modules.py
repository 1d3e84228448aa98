import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.ir import nodes as n
from spikeflow.torch import functional as F
from spikeflow.torch import modules as m
from tests.torch._cases import CASES, inputs, params_for

SCAN = {n.LIF: F.lif_scan, n.LI: F.li_scan, n.IF: F.if_scan, n.I: F.i_scan, n.CubaLIF: F.cuba_lif_scan, n.CubaLI: F.cuba_li_scan}


def _module(node, **kw):
    from dataclasses import fields

    return m.NEURON_MODULES[type(node)](dt=1e-3, **{f.name: getattr(node, f.name) for f in fields(node)}, **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_module_forward_equals_functional_scan_with_fresh_state(case):
    node = CASES[case]()
    module = _module(node)
    x = torch.from_numpy(inputs(node, np.random.default_rng(0)))
    y = module(x)
    assert torch.equal(y, SCAN[type(node)](x, params_for(node)))
    assert torch.equal(module(x), y), "every call starts from a zero state"
    state, steps = None, []
    coef = module.discretise(x)
    for t in range(x.shape[0]):
        z, state = module.step(x[t], state, coef)
        steps.append(z)
    assert torch.equal(torch.stack(steps), y)
    assert module.to_node() == node


def test_trainable_fields_become_parameters_and_float_keeps_constants_exact():
    node = CASES["cuba_lif_zero"]()
    module = _module(node, train_tau=True, train_threshold=True, dtype=torch.float64)
    assert sorted(name for name, _ in module.named_parameters()) == ["tau_mem", "tau_syn", "v_threshold"]
    assert module.to_node() == node
    frozen = _module(node).float()
    assert list(frozen.parameters()) == [] and frozen.to_node() == node
    x = torch.rand(5, 2, 5) * 60
    assert frozen(x).dtype == torch.float32


def test_threshold_scale_and_delay_modules():
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    th = m.Threshold(np.array([0.0, 0.5, -0.5]))
    assert torch.equal(th(x), (x > torch.tensor([0.0, 0.5, -0.5], dtype=torch.float64)).double())
    assert th.to_node() == n.Threshold(threshold=[0.0, 0.5, -0.5])
    sc = m.Scale([1.0, 2.0, 3.0], dtype=torch.float64)
    assert torch.equal(sc(x), x * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    delay = m.Delay([0.0, 1e-3, 2e-3], dt=1e-3)
    y = delay(x)
    state, steps = None, []
    for t in range(6):
        z, state = delay.step(x[t], state)
        steps.append(z)
    assert torch.equal(torch.stack(steps), y)
    assert torch.equal(y[2:, :, 2], x[:-2, :, 2]) and torch.equal(y[:2, :, 2], torch.zeros(2, 2, dtype=torch.float64))


def test_recurrent_lif_feeds_back_last_step_spikes():
    torch.manual_seed(0)
    layer = m.RecurrentLIF(4, tau=0.01, v_threshold=0.1, dtype=torch.float64)
    x = torch.rand(8, 2, 4, dtype=torch.float64) * 5
    y = layer(x)
    lif = layer.neuron
    state, z, outs = None, torch.zeros(2, 4, dtype=torch.float64), []
    for t in range(8):
        z, state = lif.step(x[t] + z @ layer.recurrent.weight.T, state)
        outs.append(z)
    torch.testing.assert_close(y, torch.stack(outs), rtol=1e-12, atol=1e-12)


def test_bad_module_parameters_raise_graph_errors():
    with pytest.raises(sf.GraphError, match="tau"):
        m.LIF(tau=-1.0)
    with pytest.raises(sf.GraphError, match="exceeds tau"):
        m.LIF(tau=1e-4, dt=1e-3)
    with pytest.raises(sf.GraphError, match="reset"):
        m.IF(reset="soft")
    with pytest.raises(sf.GraphError, match="unexpected keyword"):
        m.LI(tau=0.01, v_threshold=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_use_the_step_loop():
    node = CASES["lif_zero"]()
    x = torch.from_numpy(inputs(node, np.random.default_rng(0)))
    module = _module(node)
    assert torch.equal(module(x.cuda()).cpu(), module(x))
