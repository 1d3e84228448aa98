import math

import pytest
import torch

from spikeflow.errors import SpikeflowError
from spikeflow.torch.surrogate import SURROGATES, surrogate


def test_registry_holds_the_required_surrogates():
    assert {"atan", "fast_sigmoid", "sigmoid", "triangle", "straight_through"} <= set(SURROGATES)
    for name, cls in SURROGATES.items():
        assert cls.name == name and hasattr(cls(), "slope")


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_forward_is_heaviside_and_backward_is_the_derivative(name):
    sg = surrogate(name)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    y = sg(x)
    assert torch.equal(y, (x > 0).double())
    g = torch.randn(41, dtype=torch.float64)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * sg.derivative(x.detach()))


@pytest.mark.parametrize("slope", [0.5, 2.0, 7.0])
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_derivative_is_the_derivative_of_the_primitive(name, slope):
    sg = surrogate(name, slope=slope)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(sg.primitive(x).sum(), x)
    torch.testing.assert_close(sg.derivative(x.detach()), grad, rtol=1e-12, atol=1e-12)


def test_slope_is_a_field_that_changes_the_gradient():
    x = torch.tensor([0.3], dtype=torch.float64)
    assert surrogate("atan", slope=2.0).derivative(x) != surrogate("atan", slope=4.0).derivative(x)
    assert float(surrogate("atan", slope=2.0).derivative(torch.zeros(1))) == 1.0
    assert float(surrogate("triangle", slope=2.0).derivative(torch.tensor([0.6]))) == 0.0
    assert math.isclose(float(surrogate("fast_sigmoid", slope=25.0).derivative(torch.tensor([0.04]))), 0.25)


def test_subclasses_do_not_replace_registered_surrogates():
    class Steeper(SURROGATES["atan"]):
        pass

    assert SURROGATES["atan"] is not Steeper and type(surrogate("atan")) is not Steeper


def test_lookup_errors_and_instances():
    with pytest.raises(SpikeflowError, match="unknown name 'bogus'"):
        surrogate("bogus")
    with pytest.raises(SpikeflowError, match="unexpected parameter 'alpha'"):
        surrogate("atan", alpha=2.0)
    sg = surrogate("sigmoid", slope=3.0)
    assert surrogate(sg) is sg
    with pytest.raises(SpikeflowError):
        surrogate(sg, slope=1.0)
