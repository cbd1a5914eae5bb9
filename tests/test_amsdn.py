"""AMSDN in miniature: output dict, gradients, stage switches, BPDA, bad arguments, the model cache."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from pushpull_lite import amsdn, attacks, train

torch.set_num_threads(1)

SMALL = amsdn.Architecture(widths=(8, 8, 8, 8), fpn_channels=8, consistency_views=3)


@pytest.fixture
def model() -> amsdn.AMSDN:
    torch.manual_seed(0)
    return amsdn.AMSDN(SMALL).eval()


def images(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_output_keys_and_shapes(model):
    with torch.no_grad():
        out = model(images(), details=True)
    assert {"logits", "anomaly", "detected", "embedding"} <= set(out)
    assert out["logits"].shape == (5, 10) and out["anomaly"].shape == (5,) and out["detected"].shape == (5,)
    assert out["detected"].dtype == torch.bool and out["embedding"].shape == (5, 32)
    assert ((out["anomaly"] > 0) & (out["anomaly"] < 1)).all()
    assert torch.equal(out["detected"], out["anomaly"] > SMALL.threshold)
    # P2..P5 at 16, 8, 4, 2 pixels; one spatial attention map per level; pyramid weights sum to 1
    assert [tuple(p.shape) for p in out["pyramid"]] == [(5, 8, s, s) for s in (16, 8, 4, 2)]
    assert [tuple(a.shape) for a in out["spatial"]] == [(5, 1, s, s) for s in (16, 8, 4, 2)]
    assert len(out["purified"]) == 4 and out["weights"].shape == (5, 4)
    assert torch.allclose(out["weights"].sum(1), torch.ones(5))


def test_consistency_check_averages_noisy_views(model):
    x = images(4)
    with amsdn.switched(model, consistency=True), torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(1)
        b = model(x)
        c = model(x)
    assert a["logits"].shape == (4, 10) and a["agreement"].shape == (4,)
    # the logits are log mean probabilities: they exponentiate to a distribution
    assert torch.allclose(a["logits"].exp().sum(1), torch.ones(4), atol=1e-5)
    # the views are a multiple of 1 / views apart
    views = SMALL.consistency_views
    assert torch.allclose(a["agreement"] * views, (a["agreement"] * views).round())
    expected = (a["anomaly"] > SMALL.threshold) | (a["agreement"] < SMALL.consistency_agreement)
    assert torch.equal(a["detected"], expected)
    assert torch.equal(a["logits"], b["logits"]) and not torch.equal(a["logits"], c["logits"])  # randomised
    assert not model.consistency  # restored


def test_every_parameter_gets_a_gradient_in_training_mode(model):
    model.train()
    out = model(images(6))
    (out["logits"].logsumexp(1).sum() + out["anomaly"].sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # the denoisers' 1x1 convs start at zero, so their input layers see no gradient yet; all else must
    assert all(".conv." not in n or n.startswith("denoise") for n in missing), missing
    assert not [n for n in missing if not n.startswith("denoise")], missing


def test_rounding_blocks_the_gradient_and_bpda_restores_it(model):
    x = images(3).requires_grad_(True)
    y = torch.tensor([0, 1, 2])
    loss = torch.nn.functional.cross_entropy(amsdn.LogitsOnly(model)(x), y)
    (plain,) = torch.autograd.grad(loss, x)
    assert plain.abs().max() == 0  # round() has zero gradient: a plain gradient attack sees nothing
    loss = torch.nn.functional.cross_entropy(amsdn.LogitsOnly(model, bpda=True)(x), y)
    (bpda,) = torch.autograd.grad(loss, x)
    assert bpda.abs().max() > 0
    # with squeezing switched off the straight-through gradient is the true gradient of the unsqueezed net
    with amsdn.switched(model, squeeze=False):
        q = amsdn.squeeze_bits(x.detach(), SMALL.squeeze_bits).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(amsdn.LogitsOnly(model, gate="soft")(q), y)
        (true,) = torch.autograd.grad(loss, q)
    loss = torch.nn.functional.cross_entropy(amsdn.LogitsOnly(model, bpda=True, gate="soft")(x), y)
    (straight,) = torch.autograd.grad(loss, x)
    assert torch.allclose(straight, true, atol=1e-6)


def test_squeeze_bits_rounds_to_levels():
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 1.0]).view(1, 1, 1, 5)
    assert amsdn.squeeze_bits(x, 1).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    out = amsdn.squeeze_bits(torch.rand(2, 3, 4, 4), 3) * 7
    assert torch.allclose(out, out.round(), atol=1e-5)


def test_hard_gate_is_the_detection_decision_and_bpda_passes_the_soft_gradient(model):
    score = torch.tensor([0.2, 0.7], requires_grad=True)
    with amsdn.switched(model, gate="hard"):
        assert model._gate(score).tolist() == [0.0, 1.0]
        assert not model._gate(score).requires_grad
        with amsdn.switched(model, bpda=True):
            g = model._gate(score)
            assert g.tolist() == [0.0, 1.0]
            (grad,) = torch.autograd.grad(g.sum(), score)
            assert grad.tolist() == [1.0, 1.0]
    model.train()
    assert torch.equal(model._gate(score), score)  # "auto": soft while training


def test_logits_only_wrapper_shares_weights_and_feeds_pgd(model):
    wrapped = amsdn.LogitsOnly(model, bpda=True)
    x, y = images(4), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert torch.equal(wrapped(x), model(x)["logits"])
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in model.parameters()}
    x_adv = attacks.pgd(wrapped, x, y, eps=8 / 255, step_size=2 / 255, steps=2)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert not model.bpda and "bpda=True" in repr(wrapped)


def test_switches_change_what_they_say_and_restore(model):
    x = images(4)
    with torch.no_grad():
        base = model(x, details=True)
        with amsdn.switched(model, attention=False, pyramid=False):
            off = model(x, details=True)
            assert model.switches()["attention"] is False
        with amsdn.switched(model, purification=False, gate="hard"):
            raw = model(x)["logits"]
        with amsdn.switched(model, squeeze=False):
            unsqueezed = model(x)["logits"]
    assert off["spatial"] == [] and torch.allclose(off["weights"], torch.full((4, 4), 0.25))
    assert not torch.equal(off["logits"], base["logits"])
    assert not torch.equal(unsqueezed, base["logits"])
    # the denoisers start as the identity, so purification cannot change an untrained model's output
    assert torch.allclose(raw, base["logits"], atol=1e-6)
    assert model.switches() == {
        "squeeze": True,
        "attention": True,
        "pyramid": True,
        "purification": True,
        "consistency": False,
    }


def test_pushpull_stem_builds_and_runs():
    m = amsdn.build(SMALL, stem="pushpull").eval()
    assert type(m.backbone.stem).__name__ == "PushPull2d"
    with torch.no_grad():
        assert m(images(2))["logits"].shape == (2, 10)


def test_nt_xent_matches_a_hand_computed_case():
    z = torch.eye(2)
    t = 0.5
    # each row: its pair at similarity 1/t, the other two candidates at 0, itself excluded
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert amsdn._nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"widths": (8, 8, 8)}, "widths"),
        ({"depths": (1, 0, 1, 1)}, "depths"),
        ({"stem": "gabor"}, "stem"),
        ({"squeeze_bits": 9}, "squeeze_bits"),
        ({"threshold": 1.0}, "threshold"),
        ({"consistency_views": 1}, "consistency_views"),
    ],
)
def test_bad_architecture_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        replace(SMALL, **kwargs)


def test_bad_arguments_raise(model):
    with pytest.raises(ValueError, match="adv_epochs"):
        amsdn.AMSDNRecipe("bad", adv_epochs=-1)
    with pytest.raises(ValueError, match="multi_attacks"):
        amsdn.AMSDNRecipe("bad", multi_attacks=("fgsm",))
    with pytest.raises(ValueError, match="recipe"):
        amsdn.get_recipe("huge")
    with pytest.raises(ValueError, match="unknown stage"):
        amsdn._check_stages("stages", ("ssrt", "pretrain"))
    with pytest.raises(ValueError, match="no classifier"):
        amsdn._check_stages("stages", ("ssrt",))
    with pytest.raises(ValueError, match="clean"):
        amsdn._check_stages("stages", ("clean", "adv"))
    with pytest.raises(TypeError, match="stages"):
        amsdn._check_stages("stages", "adv")
    assert amsdn._check_stages("stages", ("multi", "ssrt", "adv")) == ("ssrt", "adv", "multi")
    with pytest.raises(ValueError, match="unknown switch"):
        with amsdn.switched(model, denoise=False):
            pass
    with pytest.raises(ValueError, match="gate"):
        amsdn.LogitsOnly(model, gate="sometimes")
    with pytest.raises(TypeError, match="AMSDN"):
        amsdn.LogitsOnly(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="consistency"):
        with amsdn.switched(model, consistency=True):
            model(images(1), details=True)
    with pytest.raises(ValueError, match="squeeze"):
        with amsdn.switched(amsdn.build(SMALL, squeeze_bits=None), squeeze=True):
            pass
    with pytest.raises(ValueError, match="seed"):
        amsdn.train_amsdn("quick", seed=-1)


def test_recipes_scale_with_the_profile(monkeypatch):
    q, m, f = (amsdn.RECIPES[k] for k in ("quick", "medium", "full"))
    assert q.arch.widths == (16, 32, 48, 64) and q.arch.fpn_channels == 16
    assert q.train_limit < m.train_limit and f.train_limit is None
    assert q.adv_epochs <= m.adv_epochs <= f.adv_epochs and q.pgd_steps <= f.pgd_steps
    monkeypatch.setenv("PUSHPULL_PROFILE", "medium")
    assert amsdn.get_recipe() is m


# two batches per epoch; the multi-attack stage's two batches use the two attacks of chapter 6's module
TINY = amsdn.AMSDNRecipe(
    "tiny",
    arch=SMALL,
    train_limit=20,
    batch_size=10,
    ssrt_epochs=1,
    adv_epochs=1,
    multi_epochs=1,
    pgd_steps=1,
    patch_steps=1,
    pixels=1,
    pixel_steps=1,
    multi_attacks=("patch", "pixels"),
)


def test_training_stages_run_and_the_cache_returns_the_same_model(tree_root):
    model, info = amsdn.train_amsdn(TINY, 0, progress=False)
    assert not info["from_cache"] and info["path"].is_file()
    assert [h["stage"] for h in info["history"]] == ["ssrt", "adv", "multi"]
    assert set(info["train_seconds"]) == {"ssrt", "adv", "multi", "total"}
    assert info["train_seconds"]["total"] == pytest.approx(
        sum(v for k, v in info["train_seconds"].items() if k != "total")
    )
    again, info2 = amsdn.train_amsdn(TINY, 0, progress=False)
    assert info2["from_cache"] and info2["train_seconds"] == info["train_seconds"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not again.training

    # another stage list or stem is another config, hence another file
    _, other = amsdn.train_amsdn(TINY, 0, stages=("clean",), progress=False)
    assert other["path"] != info["path"] and {h["stage"] for h in other["history"]} == {"clean"}
    assert other["config"]["stages"] == ["clean"]

    # a checkpoint loaded for the wrong config says which fields differ
    wrong = amsdn.training_config(TINY, ("clean",), 0, info["config"]["data_source"])
    with pytest.raises(train.CheckpointMismatchError, match="stages"):
        train.load_checkpoint(info["path"], amsdn.AMSDN(SMALL), wrong)


def test_detector_aware_pgd_stays_in_the_ball_and_reports_evasion(model):
    x, y = images(6), torch.arange(6)
    torch.manual_seed(0)
    x_adv, evaded = amsdn.detector_aware_pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=3)
    assert x_adv.shape == x.shape and evaded.shape == (6,) and evaded.dtype == torch.bool
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        out = model(x_adv)
    # an example reported as evaded is misclassified and undetected at the returned image
    assert ((out["logits"].argmax(1) != y) & ~out["detected"])[evaded].all()
    assert not model.bpda and not model.training
    with pytest.raises(ValueError, match="eps"):
        amsdn.detector_aware_pgd(model, x, y, eps=-1.0, step_size=0.1, steps=1)
    with pytest.raises(TypeError, match="AMSDN"):
        amsdn.detector_aware_pgd(torch.nn.Linear(2, 2), x, y, eps=0.1, step_size=0.1, steps=1)


def test_evaluation_budgets_grow_with_the_profile():
    q, m, f = (amsdn.get_budget(k) for k in ("quick", "medium", "full"))
    assert q.cert_n >= 1_000  # enough samples that r = 0.5 is certifiable at sigma = 0.25
    assert q.n_attack <= m.n_attack <= f.n_attack and q.cert_n <= m.cert_n <= f.cert_n


def test_calibrated_threshold_flags_the_asked_share(model):
    x = images(40, seed=3)
    t = amsdn.calibrate_threshold(model, x, fpr=0.1)
    assert model.threshold == t
    with torch.no_grad():
        flagged = model(x)["detected"].float().mean().item()
    assert flagged == pytest.approx(0.1, abs=0.03)
    with pytest.raises(ValueError, match="fpr"):
        amsdn.calibrate_threshold(model, x, fpr=0.0)


def test_calibration_split_holds_out_images_in_every_profile():
    # the defect: with the whole test set evaluated (medium and up) nothing was left to calibrate on
    labels = torch.arange(10_000) % 10
    for n_test in (1_000, None):
        evaluate, calibrate = amsdn.calibration_split(labels, n_test, 1_000)
        assert len(calibrate) == 1_000 and not set(evaluate.tolist()) & set(calibrate.tolist())
        assert len(evaluate) == (n_test or 9_000)
    # quick: the evaluation set is the stratified subset every chapter reads with load_cifar10(limit=1000)
    from pushpull_lite.data import stratified_indices

    evaluate, _ = amsdn.calibration_split(labels, 1_000, 1_000)
    assert torch.equal(evaluate, stratified_indices(labels, 1_000))
    # held out by class too when the whole set is evaluated
    _, calibrate = amsdn.calibration_split(labels, None, 1_000)
    assert torch.bincount(labels[calibrate]).tolist() == [100] * 10
    with pytest.raises(ValueError, match="too few"):
        amsdn.calibration_split(labels, 9_500, 1_000)
    with pytest.raises(ValueError, match="n_calibrate"):
        amsdn.calibration_split(labels, None, 0)


def test_every_profile_budget_leaves_images_to_calibrate_on():
    for name in ("quick", "medium", "full", "paper"):
        b = amsdn.get_budget(name)
        evaluate, calibrate = amsdn.calibration_split(torch.arange(10_000) % 10, b.n_test, b.n_calibrate)
        assert len(calibrate) == b.n_calibrate and len(evaluate) >= 1_000, name
