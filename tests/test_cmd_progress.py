"""``aqua train`` and ``aqua quantize`` report their long loops through the CLI's shared
progress helper (``aqua.cli.progress``), through a callback passed into the library call, so
that they are not silent for minutes when standard output is piped."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

import aqua.cli
from aqua.cli import main


@pytest.fixture
def bars(monkeypatch):
    """Replace ``aqua.cli.progress``; record every bar's description and advances."""
    seen: list[dict] = []

    @contextmanager
    def progress(description, total):
        bar = {"description": description, "total": total, "steps": 0}
        seen.append(bar)

        def advance(n=1, total=None):
            if total is not None:
                bar["total"] = total
            bar["steps"] += n
        yield advance

    monkeypatch.setattr(aqua.cli, "progress", progress)
    return seen


def test_train_reports_every_step(bars, tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--output", str(tmp_path / "m.pt")]) == 0
    steps = int(capsys.readouterr().out.split("trained ")[1].split()[0])
    assert [b["description"] for b in bars] == ["training the demo CNN"]
    assert bars[0]["steps"] == bars[0]["total"] == steps > 0


def test_quantize_reports_search_steps(bars, tmp_path, capsys):
    assert main(["quantize", "--images", "20", "--no-hardware"]) == 0
    capsys.readouterr()
    assert [b["description"] for b in bars] == ["quantization search"]
    # 3 tensors x 5 layers for each of the two searches, then the three baselines
    assert bars[0]["steps"] == bars[0]["total"] == 6 * 5 + 3
