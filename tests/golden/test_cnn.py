"""The demo CNN: the training loop runs and is deterministic, the shipped model loads and is
accurate, and a bad model file is refused with a clear message."""

import time

import pytest
import torch

from golden.cnn import (BUILD_MODEL, CONV_SPECS, SHIPPED_MODEL, DemoCNN, evaluate, load_democnn,
                        save_democnn, train_democnn)
from golden.data import cluttered_digits


def test_architecture():
    m = DemoCNN()
    assert len(CONV_SPECS) >= 4
    assert [tuple(c.weight.shape) for c in m.convs] == [
        (8, 1, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3)]
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    assert m.features(torch.zeros(1, 1, 32, 32), upto=2).shape == (1, 16, 16, 16)


def test_a_few_training_steps_run_and_are_deterministic():
    calls = []
    a = train_democnn(epochs=1, max_steps=3, progress=lambda s, t: calls.append((s, t)))
    b = train_democnn(epochs=1, max_steps=3)
    assert a.steps == 3 and calls == [(1, 3), (2, 3), (3, 3)]
    assert 0.0 <= a.test_accuracy <= 1.0
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    # the training loop leaves torch's global settings as it found them
    assert not torch.are_deterministic_algorithms_enabled()


def test_shipped_model_is_accurate():
    model = load_democnn()
    x, y = cluttered_digits("test")
    assert evaluate(model, x, y) >= 0.95


def test_save_and_load_round_trip(tmp_path):
    model = DemoCNN()
    path = save_democnn(model, tmp_path / "sub" / "m.pt")
    assert path.is_file()
    loaded = load_democnn(path)
    for (k, v), (_, w) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(v, w), k
    assert not loaded.training


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_democnn(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a saved demo CNN"):
        load_democnn(junk)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a state dict of the demo CNN"):
        load_democnn(other)


def test_model_paths():
    assert SHIPPED_MODEL.name == "democnn.pt" and SHIPPED_MODEL.parent.name == "data"
    assert BUILD_MODEL.parts[-3:] == ("build", "models", "democnn.pt")


@pytest.mark.slow
def test_full_training_reproduces_the_shipped_model():
    start = time.perf_counter()
    result = train_democnn()
    assert time.perf_counter() - start < 300
    shipped = load_democnn()
    x, y = cluttered_digits("test")
    shipped_acc = evaluate(shipped, x, y)
    same = all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                 shipped.state_dict().values()))
    print(f"retrained: {100 * result.test_accuracy:.1f} % in {result.seconds:.0f} s; "
          f"shipped: {100 * shipped_acc:.1f} %; bit-identical weights: {same}")
    # Same torch build and CPU kind give identical weights; another CPU may round differently.
    assert result.test_accuracy >= 0.93
    assert abs(result.test_accuracy - shipped_acc) <= 0.02


def test_conv_specs_chain_on_the_32x32_input():
    """Each conv's geometry is on the map the previous one produces, from 32x32 digits."""
    h = w = 32
    cin = 1
    for spec in CONV_SPECS:
        g = spec.geometry
        assert (g.in_channels, g.height, g.width) == (cin, h, w)
        assert spec.relu
        cin, h, w = g.out_channels, g.out_height, g.out_width
    assert (cin, h, w) == (32, 8, 8)
