"""codec.gdn: CompressAI's GDN with an in-place forward for coding."""

from __future__ import annotations

import pytest
import torch
from compressai.layers import GDN as CompressAIGDN

from codec.gdn import GDN, use_in_place_gdn
from codec.hybrid import Config as HybridConfig
from codec.hybrid.model import HybridModel


@pytest.mark.parametrize("inverse", [False, True])
def test_in_place_forward_gives_compressais_numbers(inverse):
    torch.manual_seed(0)
    stock = CompressAIGDN(8, inverse=inverse)
    with torch.no_grad():
        stock.gamma.add_(0.05 * torch.rand_like(stock.gamma))
        stock.beta.add_(0.1 * torch.rand_like(stock.beta))
    ours = GDN(8, inverse=inverse)
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(2, 8, 9, 13).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.no_grad():
        expected = stock(x)
        got = ours(x)
    assert torch.equal(got, expected)
    assert torch.equal(x, before)  # the input is left alone
    # With gradients the forward is CompressAI's, which autograd can go back through.
    x.requires_grad_(True)
    out = ours(x)
    assert torch.equal(out.detach(), expected)
    out.square().sum().backward()
    assert x.grad is not None and ours.gamma.grad is not None


def test_every_gdn_of_a_model_is_swapped_and_its_state_dict_is_unchanged():
    model = HybridModel(HybridConfig.tiny())
    kinds = {type(m) for m in model.modules() if isinstance(m, CompressAIGDN)}
    assert kinds == {GDN}
    keys = model.state_dict().keys()
    use_in_place_gdn(model)  # a second time changes nothing
    assert model.state_dict().keys() == keys
