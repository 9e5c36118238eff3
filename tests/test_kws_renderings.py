"""Training clips rendered again (`tfdynhp.datasets.kws.renderings`, `plan_split(rendering=)`)
and the feed that trains on one rendering per epoch (`RotatingBatches`,
`training.train(train_renderings=)`)."""

import shutil

import numpy as np
import pytest

from tfdynhp import training
from tfdynhp.datasets.kws import augment, espeak, plan
from tfdynhp.datasets.kws.dataset import load_synthetic_kws
from tfdynhp.datasets.kws.renderings import load_training_renderings
from tfdynhp.datasets.loaders import load_sklearn
from tfdynhp.model.rotating_batches import RotatingBatches

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")
UTTERANCE = ("label", "text", "accent", "variant", "speed", "pitch")
CONDITIONS = ("offset", "level_dbfs", "snr_db", "noise", "talkers", "bandpass", "reverb")


def _plan(rendering):
    speakers = [("en", f"v{i}") for i in range(5)]
    return plan.plan_split("train", 60, ("yes", "no"), ("cat", "dog"), speakers,
                           augment.DIFFICULTIES["medium"], seed=0, rendering=rendering)


def test_a_rendering_keeps_the_utterances_and_redraws_the_conditions():
    base, first, again, second = _plan(0), _plan(1), _plan(1), _plan(2)
    assert base == plan.plan_split("train", 60, ("yes", "no"), ("cat", "dog"),
                                   [("en", f"v{i}") for i in range(5)],
                                   augment.DIFFICULTIES["medium"], seed=0)  # unchanged
    assert first == again  # deterministic
    for other in (first, second):
        for a, b in zip(base, other):
            assert all(getattr(a, k) == getattr(b, k) for k in UTTERANCE)
            assert a.seed != b.seed
        for key in ("offset", "snr_db", "level_dbfs"):
            assert all(getattr(a, key) != getattr(b, key) for a, b in zip(base, other))
    assert [c.offset for c in first] != [c.offset for c in second]
    # The redrawn conditions follow the difficulty's distribution.
    assert all(0 <= c.snr_db <= 20 for c in first)
    assert 0.2 < np.mean([c.reverb is not None for c in first]) < 0.8


def test_rotating_batches_serve_one_rendering_per_epoch():
    xs = [np.full((10, 3), r, np.float32) for r in range(3)]
    data = RotatingBatches(xs, np.arange(10), batch_size=4, seed=0)
    assert data.num_renderings == 3
    for epoch in range(5):
        data.on_epoch_begin()
        batches = [data[i][0] for i in range(len(data))]
        assert all(np.all(b == epoch % 3) for b in batches)
        assert sorted(np.concatenate([data[i][1] for i in range(len(data))])) == list(range(10))
        data.on_epoch_end()
    with pytest.raises(ValueError, match="same shape"):
        RotatingBatches([xs[0], xs[1][:5]], np.arange(10))
    with pytest.raises(ValueError, match="non-empty list"):
        RotatingBatches([], np.arange(10))


@pytest.mark.slow
def test_train_alternates_renderings_inside_fit():
    (x, y), (xt, yt) = load_sklearn("digits", seed=0)
    blank = np.zeros_like(x)  # a rendering with no information: its epochs learn nothing
    data = ((x, y), (xt[:100], yt[:100]), (xt, yt))
    result = training.train(data=data, arch="64", mode="dense", epochs=4, batch_size=32,
                            lr=3e-3, verbose=0, train_renderings=[blank])
    accuracy = [h["accuracy"] for h in result.history]
    assert accuracy[2] >= 0.8 and accuracy[1] <= 0.25 and accuracy[3] <= 0.25, accuracy
    assert result.summary["train_renderings"] == 2
    with pytest.raises(ValueError, match="own validation split"):
        training.train(data=((x, y), (xt, yt)), arch="64", mode="dense", epochs=1,
                       verbose=0, train_renderings=[blank])
    with pytest.raises(ValueError, match="shape of x_train"):
        training.train(data=data, arch="64", mode="dense", epochs=1, verbose=0,
                       train_renderings=[blank[:10]])


@needs_espeak
@pytest.mark.slow
def test_training_renderings_are_synthesized_once_and_cached(tmp_path, monkeypatch):
    options = {"keywords": ["yes", "no"], "difficulty": "medium", "size": 80, "seed": 1,
               "cache_dir": tmp_path, "verbose": 0}
    xs, y = load_training_renderings(2, **options)
    (x_train, y_train), _ = load_synthetic_kws(**options)
    assert len(xs) == 2 and xs[1].shape == x_train.shape
    np.testing.assert_array_equal(xs[0], x_train)
    np.testing.assert_array_equal(y, y_train)
    assert np.mean(np.abs(xs[1] - xs[0])) > 0.1  # other conditions, other features
    # Normalized like the data set (rendering 0's statistics): about zero mean, unit std.
    assert abs(float(xs[1].mean())) < 0.5 and 0.5 < float(xs[1].std()) < 1.5
    monkeypatch.setattr(espeak, "synthesize", lambda *a, **k: pytest.fail("synthesized"))
    again, _ = load_training_renderings(2, **options)  # from the cache
    np.testing.assert_array_equal(again[1], xs[1])
