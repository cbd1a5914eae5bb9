"""The model registry: every entry builds and classifies, keys and names are unique, the lookups work, and
every entry asks the model cache for the very entry its chapter always asked for (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pushpull_lite import amsdn, config, experiments, feedback, models, train, zoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """Cache paths without CIFAR-10: a fixed training-data id and an empty cache."""
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    for module in (train, feedback, amsdn):
        monkeypatch.setattr(module, "training_data_id", lambda root=None: "test data")


@pytest.mark.parametrize("key", list(zoo.REGISTRY))
def test_every_entry_builds_classifies_and_points_at_the_registry_and_its_chapter(key):
    e = zoo.get(key)
    assert e.key == key and e.family in zoo.FAMILIES and e.recipe in zoo.RECIPES
    torch.manual_seed(0)
    model = e.build("quick")  # untrained: no data, no training
    assert not model.training
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert (ROOT / "book" / f"{e.chapter}.ipynb").is_file(), e.chapter
    if e.baseline is not None:  # the plain model of the same family, itself without a baseline
        base = zoo.get(e.baseline)
        assert base.family == e.family and base.baseline is None and base.key != key
    if e.ablation_of is not None:
        assert zoo.get(e.ablation_of).family == e.family
    if e.recipe in ("resnet", "cnn"):  # the first layer and its arguments are what train_model gets
        fl = e.first_layer_factory()
        assert (
            fl is None
            if e.first_layer is None
            else fl == models.first_layer(e.first_layer, **dict(e.first_layer_args))
        )


def test_keys_names_and_labels_are_unique():
    all_entries = zoo.entries()
    keys = [e.key for e in all_entries]
    names = [e.name for e in all_entries]
    assert len(set(keys)) == len(keys) == len(zoo.REGISTRY)
    assert len(set(names)) == len(names)
    for family in zoo.FAMILIES:
        labels = [e.label for e in zoo.entries(family=family)]
        assert len(set(labels)) == len(labels), family


def test_the_standard_protocol_is_the_registrys_standard_entries():
    standard = zoo.entries(standard=True)
    assert list(experiments.ENTRIES) == [e.key for e in standard]
    assert list(experiments.ENTRIES.values()) == standard
    # chapter 8's nine models, in the book's order
    assert list(experiments.ENTRIES) == [
        "resnet20",
        "resnet20-pp",
        "resnet20-ppconv3",
        "resnet20-ppconv5",
        "resnet20-ms",
        "seedcnn",
        "seedcnn-pp",
        "seedcnn-ms-seed",
        "seedcnn-ms",
    ]


def test_lookups():
    assert zoo.get("resnet20-pp").name == "ResNet-20 (PushPull2d)"
    assert zoo.by_name("seed CNN (push-pull)").key == "seedcnn-pp"
    assert zoo.key_for_name("seed CNN (push-pull)") == "seedcnn-pp" and zoo.key_for_name("nope") is None
    with pytest.raises(ValueError, match="unknown model key 'nope'"):
        zoo.get("nope")
    with pytest.raises(ValueError, match="no model of the registry is called"):
        zoo.by_name("nope")
    with pytest.raises(ValueError, match="unknown family"):
        zoo.entries(family="nope")
    assert zoo.keys(family="cnnf") == ["cnnf", "cnnf-ff"]
    assert zoo.keys(chapter="06_amsdn") == zoo.keys(family="amsdn")
    assert zoo.keys(ablation_of="amsdn") == [
        "amsdn-no-ssrt",
        "amsdn-no-adv",
        "amsdn-no-multi",
        "amsdn-ppstem",
    ]
    assert not zoo.entries(family="amsdn", standard=True)
    # the chapters' label views are the registry's, in its order
    assert list(zoo.RESNET_VARIANTS) == [e.label for e in zoo.entries(family="resnet20")]
    assert list(zoo.SEED_CNN_VARIANTS) == [e.label for e in zoo.entries(family="seed_cnn")]


def test_display_names_say_what_the_recipes_train_in_every_profile():
    # chapters 5 and 6 wrote these names from the recipe: they must stay true in every profile
    for profile in config.PROFILE_NAMES:
        cycles = feedback.get_recipe(profile).cycles
        assert zoo.get("cnnf").name == f"CNN-F ({cycles} cycles, PGD-trained)", profile
        stem = amsdn.get_recipe(profile).arch.stem
        for e in zoo.entries(family="amsdn"):
            assert e.name == f"AMSDN mini, {'+'.join(e.stages)} ({e.first_layer} stem)"
            if e.key != "amsdn-ppstem":
                assert e.first_layer == stem, (profile, e.key)


# The calls the chapters made before the registry, written out independently: the cache keys must not move.
OLD_RESNET = {
    "resnet20": None,
    "resnet20-pp": models.first_layer("pushpull", alpha=1.0, scale=2.0),
    "resnet20-ppconv3": models.first_layer("pushpull-conv", avg_kernel_size=3),
    "resnet20-ppconv5": models.first_layer("pushpull-conv", avg_kernel_size=5),
    "resnet20-ms": models.first_layer("multiscale"),
}
OLD_SEED_CNN = {
    "seedcnn": models.first_layer("conv", bias=True),
    "seedcnn-pp": models.first_layer("pushpull"),
    "seedcnn-ms-seed": models.first_layer("multiscale", derived_pull=False),
    "seedcnn-ms": models.first_layer("multiscale", derived_pull=True),
}
OLD_AMSDN = {  # key: (stages, stem) as chapter 6 passed them (chapter 7: stem None for "amsdn")
    "amsdn": (("ssrt", "adv", "multi"), None),
    "amsdn-clean": (("clean",), None),
    "amsdn-no-ssrt": (("adv", "multi"), None),
    "amsdn-no-adv": (("ssrt", "multi"), None),
    "amsdn-no-multi": (("ssrt", "adv"), None),
    "amsdn-ppstem": (("ssrt", "adv", "multi"), "pushpull"),
}


@pytest.mark.parametrize("profile", config.PROFILE_NAMES)
def test_every_entry_keeps_its_chapters_cache_entry(no_data, profile):
    prof = config.get_profile(profile)
    expected = {}
    for key, fl in OLD_RESNET.items():
        expected[key] = train.model_path("resnet20", fl, prof.resnet_recipe, prof.train_limit, 1)
    for key, fl in OLD_SEED_CNN.items():
        expected[key] = train.model_path("seed_cnn", fl, prof.cnn_recipe, prof.cnn_train_limit, 1)
    r = feedback.get_recipe(profile)
    expected["cnnf"] = feedback.model_path(r, 1)
    expected["cnnf-ff"] = feedback.model_path(r.feedforward(), 1)
    for key, (stages, stem) in OLD_AMSDN.items():
        expected[key] = amsdn.model_path(amsdn.get_recipe(profile), 1, stages=stages, stem=stem)
    assert set(expected) == set(zoo.REGISTRY)
    for key, path in expected.items():
        assert zoo.get(key).model_path(1, profile) == path, key
    assert len(set(expected.values())) == len(expected)  # no two entries share a checkpoint


def test_train_calls_its_chapters_training_function(monkeypatch):
    """Each family's train() calls its chapter's function with the chapter's arguments (faked)."""
    calls = []
    net = torch.nn.Linear(1, 1)

    def fake_train_model(arch, fl, recipe, train_limit, seed, **kw):
        calls.append(("train_model", arch, fl, recipe.name, train_limit, seed))
        return train.TrainedModel(net, {"arch": arch}, [{"loss": 1.0}], 12.0, from_cache=True, path=None)

    def fake_feedback(kind):
        def fn(recipe, seed, **kw):
            calls.append((kind, recipe.name, seed, kw["first_layer"]))
            return net, {"history": [], "train_seconds": 3.0, "from_cache": False, "config": {}}

        return fn

    def fake_amsdn(recipe, seed, *, stages, stem, **kw):
        calls.append(("train_amsdn", recipe.name, seed, stages, stem))
        info = {"history": [], "train_seconds": {"adv": 2.0, "total": 5.0}, "from_cache": True, "config": {}}
        return amsdn.build(recipe.arch, stem=stem), info

    monkeypatch.setattr(zoo, "train_model", fake_train_model)
    monkeypatch.setattr(feedback, "train_cnnf", fake_feedback("train_cnnf"))
    monkeypatch.setattr(feedback, "train_feedforward", fake_feedback("train_feedforward"))
    monkeypatch.setattr(amsdn, "train_amsdn", fake_amsdn)
    prof = config.get_profile("medium")

    t = zoo.get("seedcnn-ms").train(2, "medium")
    assert calls[-1] == ("train_model", "seed_cnn", OLD_SEED_CNN["seedcnn-ms"], prof.cnn_recipe, 20_000, 2)
    assert (t.model, t.network, t.train_seconds, t.from_cache, t.seed, t.profile) == (
        net,
        net,
        12.0,
        True,
        2,
        "medium",
    )
    zoo.get("resnet20-pp").train(0, "medium")
    assert calls[-1] == ("train_model", "resnet20", OLD_RESNET["resnet20-pp"], prof.resnet_recipe, None, 0)
    t = zoo.get("cnnf").train(0, "medium")
    assert calls[-1] == ("train_cnnf", "cnnf-medium", 0, "conv")
    assert isinstance(t.model, feedback.WithCycles) and t.model.cycles == 2 and t.train_seconds == 3.0
    zoo.get("cnnf-ff").train(0, "medium")
    assert calls[-1] == ("train_feedforward", "cnnf-medium", 0, "conv")  # it makes the .feedforward() itself
    t = zoo.get("amsdn-ppstem").train(0, "medium")
    assert calls[-1] == ("train_amsdn", "medium", 0, ("ssrt", "adv", "multi"), "pushpull")
    assert (
        isinstance(t.model, amsdn.LogitsOnly)
        and t.train_seconds == 5.0
        and t.info["train_seconds"]["adv"] == 2.0
    )
    assert t.parameters == models.count_parameters(t.network)
