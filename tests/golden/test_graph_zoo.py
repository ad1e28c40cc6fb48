"""The zoo's torchvision architectures lowered, quantized to ``isaac`` and run end to end
through the crossbar golden model, and the tiny ResNet's training reproduced."""

import pytest
import torch

from arch.config import load_config
from golden.graph import lower, run_float
from golden.qnet import layer_mappings, qforward, quantize_graph
from golden.zoo import TINYRESNET_SHIPPED, build, train_tinyresnet

# Timings on the shared 2-core machine (one thread), one 64x64 image: resnet18 ~17 s,
# mobilenet_v2 ~60 s (its depthwise layers: one mostly empty 128x128 crossbar per channel,
# simulated in full), vgg11_bn ~370 s (the 25088 -> 4096 classifier alone is 6272 crossbars).
ZOO_CASES = [
    pytest.param("resnet18", 5476, id="resnet18"),
    pytest.param("mobilenet_v2", 8523, id="mobilenet_v2", marks=pytest.mark.slow),
    pytest.param("vgg11_bn", 62908, id="vgg11_bn", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, crossbars", ZOO_CASES)
def test_zoo_model_runs_end_to_end_on_isaac(name, crossbars):
    cfg = load_config("isaac")
    model = build(name, num_classes=10)
    g = torch.Generator().manual_seed(1)
    cal = torch.rand(4, 3, 64, 64, generator=g)
    graph = lower(model, cal[:1])
    with torch.no_grad():
        assert torch.allclose(run_float(graph, cal[:1]), model(cal[:1]), atol=1e-4, rtol=1e-3)
    qg = quantize_graph(cfg, graph, cal)
    out = qforward(qg, cal[:1])
    assert out.shape == (1, 10) and out.dtype == torch.int64
    assert cfg.output_min <= int(out.min()) and int(out.max()) <= cfg.output_max
    maps = layer_mappings(qg)
    assert len(maps) == len(qg.crossbar_nodes)
    if crossbars is not None:
        assert sum(m.crossbars for m in maps) == crossbars


@pytest.mark.slow
def test_tinyresnet_training_reproduces_the_shipped_weights():
    shipped = torch.load(TINYRESNET_SHIPPED, weights_only=True)
    trained = train_tinyresnet().model.state_dict()
    assert shipped.keys() == trained.keys()
    for k in shipped:
        assert torch.equal(shipped[k], trained[k]), k
