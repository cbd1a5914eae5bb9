"""What a chapter says it will train before it trains it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pushpull_lite import amsdn, config, feedback, plan, train, zoo


@pytest.fixture(autouse=True)
def _profile(monkeypatch, tmp_path):
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    for module in (train, feedback, amsdn):  # no data needed to plan
        monkeypatch.setattr(module, "training_data_id", lambda root=None: "test data")


def test_jobs_follow_the_profile():
    assert len(plan.resnet_jobs("medium")) == 5 * 3  # five variants, three seeds
    assert len(plan.resnet_jobs("full")) == 5  # full: one seed per model in the chapters
    (job,) = plan.resnet_jobs("medium", variants=["PushPull2d"], seeds=[0])
    recipe = train.get_recipe("medium")
    assert job.steps == recipe.epochs * (50_000 // recipe.batch_size) and not job.cached
    assert len(plan.seed_cnn_jobs(profile="quick")) == 4
    cnnf, ff = plan.cnnf_jobs("quick")
    assert cnnf.passes > ff.passes  # the feedback cycles cost passes
    (am,) = plan.amsdn_jobs(["amsdn"], "quick")
    assert am.passes > 1
    assert len(plan.amsdn_jobs(profile="quick")) == 6  # AMSDN, its clean twin, four ablations


def test_jobs_come_from_the_registry():
    # by key, any family, one job per model and seed, in that order; labels are the display names
    jobs = plan.jobs(["resnet20-pp", "cnnf", "amsdn-clean"], "medium", seeds=[0, 1])
    assert [j.label for j in jobs] == [
        f"{zoo.get(k).name}, seed {s}" for k in ("resnet20-pp", "cnnf", "amsdn-clean") for s in (0, 1)
    ]
    same = lambda a, b: [replace(j, build=None) for j in a] == [replace(j, build=None) for j in b]  # noqa: E731
    assert same(plan.resnet_jobs("quick", variants=["PushPull2d"]), plan.jobs(["resnet20-pp"], "quick"))
    assert [j.label for j in plan.seed_cnn_jobs(zoo.SEED_CNN_VARIANTS, "quick")] == [
        j.label for j in plan.jobs(zoo.keys(family="seed_cnn"), "quick")
    ]
    # the chapters' old {label: (stages, stem)} form maps onto the registry's AMSDNs
    old = plan.amsdn_jobs({"AMSDN": (("ssrt", "adv", "multi"), None), "x": (("clean",), "conv")}, "quick")
    assert [j.label for j in old] == [j.label for j in plan.jobs(["amsdn", "amsdn-clean"], "quick", [0])]
    with pytest.raises(ValueError, match="not an AMSDN of the registry"):
        plan.amsdn_jobs({"x": (("clean",), "pushpull")}, "quick")
    with pytest.raises(ValueError, match="not of family 'resnet20'"):
        plan.resnet_jobs("quick", variants=["seedcnn"])
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        plan.jobs(["nope"], "quick")
    # a cached entry is the registry's own cache path
    e = zoo.get("cnnf-ff")
    e.model_path(0, "quick").parent.mkdir(parents=True, exist_ok=True)
    e.model_path(0, "quick").write_bytes(b"")
    assert [j.cached for j in plan.cnnf_jobs("quick")] == [False, True]


def test_a_cached_model_is_not_trained_again():
    (job,) = plan.resnet_jobs("quick", variants=["ResNet-20"], seeds=[0])
    path = train.model_path("resnet20", None, "quick", config.PROFILES["quick"].train_limit, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    (again,) = plan.resnet_jobs("quick", variants=["ResNet-20"], seeds=[0])
    assert not job.cached and again.cached


def test_the_estimate_is_timed_steps_times_steps(monkeypatch):
    monkeypatch.setattr(plan, "_time_step", lambda job, dev, repeats: 0.5)
    jobs = plan.resnet_jobs("medium", variants=["ResNet-20"], seeds=[0, 1])
    assert plan.estimate(jobs, "cpu") == pytest.approx(0.5 * sum(j.steps for j in jobs))


def test_announce_counts_in_quick_and_estimates_elsewhere(monkeypatch):
    monkeypatch.setattr(plan, "_time_step", lambda job, dev, repeats: 0.01)
    monkeypatch.setenv("PUSHPULL_PROFILE", "quick")
    text = plan.announce(plan.resnet_jobs())
    assert "5 to train now" in text and "min" not in text
    monkeypatch.setenv("PUSHPULL_PROFILE", "medium")
    text = plan.announce(plan.resnet_jobs(variants=["ResNet-20"], seeds=[0]), device="cpu")
    steps = plan.resnet_jobs(variants=["ResNet-20"], seeds=[0])[0].steps
    assert f"about {-(-int(0.01 * steps) // 60)} min on cpu" in text and "estimate" in text


def test_a_real_timed_step_runs():
    (job,) = plan.resnet_jobs("quick", variants=["PushPull2d"], seeds=[0])
    assert 0 < plan._time_step(job, torch.device("cpu"), repeats=1) < 60
