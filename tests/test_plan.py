"""What a chapter says it will train before it trains it."""

from __future__ import annotations

import pytest
import torch

from pushpull_lite import config, plan, zoo


@pytest.fixture(autouse=True)
def _profile(monkeypatch, tmp_path):
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    for module in (plan.train, plan.feedback, plan.amsdn):  # no data needed to plan
        monkeypatch.setattr(module, "training_data_id", lambda root=None: "test data")


def test_jobs_follow_the_profile():
    assert len(plan.resnet_jobs("medium")) == 5 * 3  # five variants, three seeds
    assert len(plan.resnet_jobs("full")) == 5  # full: one seed per model in the chapters
    (job,) = plan.resnet_jobs("medium", variants=["PushPull2d"], seeds=[0])
    recipe = plan.train.get_recipe("medium")
    assert job.steps == recipe.epochs * (50_000 // recipe.batch_size) and not job.cached
    assert len(plan.seed_cnn_jobs(zoo.SEED_CNN_VARIANTS, "quick")) == 4
    cnnf, ff = plan.cnnf_jobs("quick")
    assert cnnf.passes > ff.passes  # the feedback cycles cost passes
    (am,) = plan.amsdn_jobs({"AMSDN": (("ssrt", "adv", "multi"), None)}, "quick")
    assert am.passes > 1


def test_a_cached_model_is_not_trained_again():
    (job,) = plan.resnet_jobs("quick", variants=["ResNet-20"], seeds=[0])
    path = plan.train.model_path("resnet20", None, "quick", config.PROFILES["quick"].train_limit, 0)
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
