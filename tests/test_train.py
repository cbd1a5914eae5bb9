"""Training: a tiny fit lowers the loss, runs repeat exactly, the model cache returns the same weights."""

from __future__ import annotations

import json

import pytest
import torch

from pushpull_lite import config, measure, models, train

TINY = train.Recipe("tiny", epochs=2, batch_size=16, lr=0.05, channels_last=False)


def test_fit_lowers_the_loss_and_learns_the_colour_rule(tree_root):
    from pushpull_lite.data import load_cifar10

    x, y = load_cifar10("train")
    config.seed_everything(0)
    model = models.resnet20()
    history = train.fit(
        model, x, y, train.Recipe("t", epochs=6, batch_size=16, lr=0.05, augment=False), progress=False
    )
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert not model.training


def test_fit_is_reproducible_on_the_cpu(tree_root):
    from pushpull_lite.data import load_cifar10

    x, y = load_cifar10("train")
    weights = []
    for _ in range(2):
        config.seed_everything(1)
        model = models.resnet20()
        train.fit(model, x, y, TINY, seed=1, progress=False)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_evaluate_and_predict_restore_the_mode():
    model = models.resnet20().train()
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    logits = measure.predict(model, images, batch_size=3)
    assert logits.shape == (7, 10) and model.training
    acc = measure.accuracy(model, images, logits.argmax(1))
    assert acc == 1.0
    with pytest.raises(ValueError, match="labels"):
        measure.accuracy(model, images, torch.zeros(6, dtype=torch.int64))


def test_lr_schedules():
    one = train.Recipe("o", epochs=10, lr=1.0, warmup_fraction=0.2)
    lrs = [train.lr_at(one, s, 100, 10) for s in range(100)]
    assert max(lrs) == pytest.approx(1.0, abs=0.02) and lrs[0] == pytest.approx(0.1)
    assert lrs[-1] < 0.01 and lrs.index(max(lrs)) in range(18, 23)
    step = train.Recipe("s", epochs=10, lr=1.0, schedule="step", milestones=(3, 6))
    assert [train.lr_at(step, e * 10, 100, 10) for e in (0, 3, 6)] == pytest.approx([1.0, 0.1, 0.01])


def test_model_cache_trains_once_and_returns_the_same_weights(tree_root, cache):
    pp = models.first_layer("conv", bias=True)
    first = train.train_model("resnet20", pp, TINY, train_limit=40, seed=0, device="cpu", progress=False)
    assert not first.from_cache and first.path.is_file()
    assert first.path.parent == cache / "models"
    second = train.train_model("resnet20", pp, TINY, train_limit=40, seed=0, device="cpu", progress=False)
    assert second.from_cache
    s1, s2 = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert second.history == first.history and second.train_seconds == pytest.approx(first.train_seconds)
    # every part of the config enters the key
    other_seed = train.train_model("resnet20", pp, TINY, train_limit=40, seed=1, device="cpu", progress=False)
    assert other_seed.path != first.path and not other_seed.from_cache
    assert train.train_model("resnet20", None, TINY, 40, 0, device="cpu", progress=False).path != first.path


def test_checkpoint_from_another_config_is_a_clear_error(tree_root, cache):
    model = models.resnet20()
    cfg = train.training_config("resnet20", None, TINY, 40, 0, "somewhere")
    path = cache / "ckpt.pt"
    train.save_checkpoint(path, model, cfg, [], 1.0)
    other = dict(cfg, seed=3)
    with pytest.raises(train.CheckpointMismatchError, match="seed"):
        train.load_checkpoint(path, models.resnet20(), other)
    # a file saved by save_checkpoint loads with weights_only=True (no pickled code)
    blob = torch.load(path, weights_only=True)
    assert json.loads(blob["config_json"]) == cfg
    history, seconds = train.load_checkpoint(path, models.resnet20(), cfg)
    assert history == [] and seconds == 1.0


def test_recipe_validation():
    with pytest.raises(ValueError, match="epochs"):
        train.Recipe("x", epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        train.Recipe("x", epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="recipe 'fast' is unknown"):
        train.get_recipe("fast")
    assert train.with_epochs("quick", 3).epochs == 3
