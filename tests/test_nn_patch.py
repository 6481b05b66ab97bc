"""The fast modules are drop-ins: same constructors and state_dict; patch/unpatch swap them in place."""
import inspect
import subprocess
import sys

import pytest
import torch
from torch import nn

import avel_fast
import avel_fast.models
import avel_fast.nn
from avel_fast import reference
from test_reference_models import SMALL_DPNET, SMALL_EDRNET

MODULES = ["RGCT", "TemporalConv", "DPBlock", "GatedFusion", "LSSLoss"]


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


@pytest.mark.parametrize("name", MODULES)
def test_fast_modules_subclass_the_reference_with_the_same_signature(name):
    fast, ref = getattr(avel_fast.nn, name), getattr(reference, name)
    assert issubclass(fast, ref) and fast is not ref
    assert inspect.signature(fast) == inspect.signature(ref)


@pytest.mark.parametrize("name,args", [("RGCT", (5, 3)), ("TemporalConv", (5, 3)), ("DPBlock", (5, 3)),
                                       ("GatedFusion", (3, 3)), ("LSSLoss", ())])
def test_fast_modules_add_no_state(name, args):
    assert shapes(getattr(avel_fast.nn, name)(*args)) == shapes(getattr(reference, name)(*args))


@pytest.mark.parametrize("name", ["DPNet", "EDRNet"])
def test_models_match_the_reference_signature_and_state_dict(name):
    fast_cls, ref_cls = getattr(avel_fast.models, name), getattr(reference, name)
    assert inspect.signature(fast_cls) == inspect.signature(ref_cls)
    with torch.device("meta"):
        fast, ref = fast_cls(), ref_cls()
    assert list(shapes(fast).items()) == list(shapes(ref).items())
    assert {type(m) for m in fast.modules()} & {getattr(reference, n) for n in MODULES} == set()


def test_models_compute_what_the_reference_computes():
    torch.manual_seed(0)
    audio, visual = torch.randn(4, 10, 6), torch.rand(4, 10, 7, 7, 8)
    for fast_cls, ref_cls, kwargs, extra in [
        (avel_fast.models.DPNet, reference.DPNet, SMALL_DPNET, {"group_size": 2}),
        (avel_fast.models.EDRNet, reference.EDRNet, SMALL_EDRNET, {}),
    ]:
        ref = ref_cls(**kwargs).eval()
        fast = fast_cls(**kwargs).eval()
        fast.load_state_dict(ref.state_dict())
        torch.testing.assert_close(fast(audio, visual, **extra), ref(audio, visual, **extra))


def test_patch_round_trip_keeps_weights_and_outputs():
    torch.manual_seed(0)
    model = reference.DPNet(**SMALL_DPNET).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parameters = list(model.parameters())
    audio, visual = torch.randn(2, 10, 6), torch.rand(2, 10, 8)
    expected = model(audio, visual)

    assert avel_fast.nn.patch(model) is model
    assert type(model.blocks[0].rgct) is avel_fast.nn.RGCT
    assert type(model.blocks[1]) is avel_fast.nn.DPBlock
    assert type(model.blocks[1].tcn) is avel_fast.nn.TemporalConv
    assert type(model.fusion) is avel_fast.nn.GatedFusion
    assert all(a is b for a, b in zip(model.parameters(), parameters))
    torch.testing.assert_close(model(audio, visual), expected)

    avel_fast.nn.unpatch(model)
    assert type(model.blocks[0].rgct) is reference.RGCT and type(model.fusion) is reference.GatedFusion
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(audio, visual), expected)


class UserModel(nn.Module):
    """A model of someone else's that uses reference modules deep inside."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Identity(), reference.RGCT(3, 3))
        self.loss = reference.LSSLoss(margin=0.5)


class CustomRGCT(reference.RGCT):
    """A user's subclass: not an exact reference type, so patch leaves it alone."""


def test_patch_works_inside_any_model_and_spares_user_subclasses():
    model = UserModel()
    model.extra = CustomRGCT(3, 3)
    avel_fast.patch(model)
    assert type(model.body[1]) is avel_fast.nn.RGCT
    assert type(model.loss) is avel_fast.nn.LSSLoss and model.loss.margin == 0.5
    assert type(model.extra) is CustomRGCT
    avel_fast.unpatch(model)
    assert type(model.body[1]) is reference.RGCT and type(model.loss) is reference.LSSLoss


def test_top_level_exports_are_the_nn_functions():
    assert avel_fast.patch is avel_fast.nn.patch and avel_fast.unpatch is avel_fast.nn.unpatch
    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        avel_fast.not_there  # noqa: B018


def test_importing_avel_fast_initialises_neither_triton_nor_cuda():
    code = (
        "import sys, avel_fast, avel_fast.nn, avel_fast.models; avel_fast.patch; import torch; "
        "assert 'triton' not in sys.modules, 'triton imported'; "
        "assert not torch.cuda.is_initialized(), 'CUDA initialised'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
