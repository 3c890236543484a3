"""codec.gaussian.GaussianConditional: CompressAI's tables, chosen by binary search."""

import pytest
import torch
from compressai.entropy_models import GaussianConditional as CompressAIGaussianConditional

from codec.gaussian import GaussianConditional


def _table():
    from compressai.models.google import get_scale_table  # the table the codecs' update() sets

    return get_scale_table()


def test_indexes_are_compressais_for_every_scale_and_non_finite_ones():
    ours, theirs = GaussianConditional(_table().tolist()), CompressAIGaussianConditional(_table().tolist())
    table = ours.scale_table
    scales = torch.cat([
        torch.rand(5000) * 80,  # beyond the table's last scale too
        torch.rand(1000) * 0.2,  # at and below its lower bound
        table, table.nextafter(torch.tensor(0.0)), table.nextafter(torch.tensor(1e9)),  # ties, and either side
        torch.tensor([0.0, -1.0, float("nan"), float("inf"), -float("inf")]),
    ]).reshape(1, 1, -1)
    got, want = ours.build_indexes(scales), theirs.build_indexes(scales)
    assert got.dtype == want.dtype == torch.int32
    assert torch.equal(got, want)
    assert int(got.min()) == 0 and int(got.max()) == len(table) - 1


@pytest.mark.parametrize("name", ["hybrid", "wavelet"])
def test_both_learned_codecs_use_it_and_load_compressais_state(name):
    from codec.hybrid.config import Config as HybridConfig
    from codec.hybrid.model import HybridModel
    from codec.wavelet.config import Config as WaveletConfig
    from codec.wavelet.model import Model as WaveletModel

    model = HybridModel(HybridConfig.tiny()) if name == "hybrid" else WaveletModel(WaveletConfig.tiny())
    models = [m for m in model.modules() if isinstance(m, CompressAIGaussianConditional)]
    assert models and all(isinstance(m, GaussianConditional) for m in models)
    state = CompressAIGaussianConditional(_table().tolist()).state_dict()
    assert models[0].state_dict().keys() == state.keys()
