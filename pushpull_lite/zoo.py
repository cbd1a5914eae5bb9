"""The registry of every model of the book: one :class:`Entry` per model, looked up by a stable key.

An entry says what the model is (family, architecture, first layer and its arguments, training stages),
how it is trained (which of the profile's recipes), where the book introduces it (its chapter), what it
is compared with (its plain ``baseline``) and whether the leaderboard's standard protocol measures it
(``standard``). ``entry.train(seed, profile)`` trains it or loads it from the model cache through the
training function its chapter uses (:func:`pushpull_lite.train.train_model`,
:func:`pushpull_lite.feedback.train_cnnf` / :func:`~pushpull_lite.feedback.train_feedforward`,
:func:`pushpull_lite.amsdn.train_amsdn`), with the arguments the chapters always passed, so every chapter
hits the same cache entries. Results files are joined by the key (:mod:`pushpull_lite.results`).

Defined here and used in chapters 2-8, :mod:`pushpull_lite.experiments` and :mod:`pushpull_lite.plan`::

    zoo.get("resnet20-pp").train(seed=0)                # chapter 2's PushPull2d ResNet-20, cached
    [e.key for e in zoo.entries(family="seed_cnn")]       # chapter 4's four seed-CNN variants
    zoo.entries(standard=True)                             # the leaderboard's standard protocol

:data:`RESNET_VARIANTS`, :data:`SEED_CNN_VARIANTS` and :func:`train_resnet_variants` are views of the
registry keyed by the short labels chapters 2 and 3 print (no second list).
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from . import amsdn, config, feedback
from .models import FirstLayer, build, count_parameters, first_layer
from .train import TrainedModel, get_recipe, model_path, train_model

__all__ = [
    "FAMILIES",
    "RECIPES",
    "REGISTRY",
    "RESNET_VARIANTS",
    "SEED_CNN_VARIANTS",
    "Entry",
    "Trained",
    "by_name",
    "entries",
    "get",
    "key_for_name",
    "keys",
    "train_resnet_variants",
]

#: family -> what its members share (they are compared with the family's plain model)
FAMILIES = {
    "resnet20": "ResNet-20 with five first layers, clean training (chapter 2)",
    "seed_cnn": "the multi-scale project's CNN with four first layers, its Adam recipe (chapter 4)",
    "cnnf": "CNN-F and its same-size feed-forward CNN, both PGD-trained (chapter 5)",
    "amsdn": "AMSDN in miniature, its clean-trained twin and its training ablations (chapter 6)",
}
#: Entry.recipe -> which recipe of the profile trains the model
RECIPES = {
    "resnet": "profile.resnet_recipe on profile.train_limit images (pushpull_lite.train.RECIPES)",
    "cnn": "profile.cnn_recipe on profile.cnn_train_limit images (pushpull_lite.train.RECIPES)",
    "cnnf": "pushpull_lite.feedback.RECIPES[profile.name] (the feed-forward twin: its .feedforward())",
    "amsdn": "pushpull_lite.amsdn.RECIPES[profile.name]",
}


@dataclass(frozen=True)
class Trained:
    """A trained (or cache-loaded) model of the registry, for one seed and profile.

    network: what the training function returns (eval mode): a ResNet or seed CNN, a
    :class:`~pushpull_lite.feedback.CNNF`, a :class:`~pushpull_lite.feedback.FeedForwardCNN`, an
    :class:`~pushpull_lite.amsdn.AMSDN`. model: images (N, 3, H, W) in [0, 1] -> logits (N, 10) (the
    network itself, the CNN-F run with its trained cycles, or the AMSDN's logits). train_seconds: wall
    time of the run that trained it (the original run's when loaded). info: the training function's
    other outputs (``config``, ``path``; AMSDN: ``train_seconds`` per stage).
    """

    entry: Entry
    seed: int
    profile: str
    network: nn.Module
    model: nn.Module
    train_seconds: float
    from_cache: bool
    history: list[dict]
    info: dict

    @property
    def parameters(self) -> int:
        """Trainable parameters of the network."""
        return count_parameters(self.network)


@dataclass(frozen=True)
class Entry:
    """One model of the book.

    key: stable identifier (results files, the runner's ``--only``); name: the display name, the row of
    the leaderboard; label: the short name in its chapter's tables; family: see :data:`FAMILIES`; arch:
    the architecture; first_layer: the first layer's name (None: the architecture's plain one; for CNN-F
    and AMSDN the ``first_layer``/``stem`` argument) and ``first_layer_args`` its keyword arguments as
    sorted (name, value) pairs; stages: AMSDN's training stages; recipe: which of the profile's recipes
    trains it (see :data:`RECIPES`); chapter: the notebook that introduces it; baseline: the key of the
    plain model of its family it is compared with (None for the plain ones); ablation_of: the key of the
    model it is a training ablation of; standard: measured by the leaderboard's standard protocol.
    """

    key: str
    name: str
    label: str
    family: str
    arch: str
    chapter: str
    recipe: str
    first_layer: str | None = None
    first_layer_args: tuple[tuple[str, object], ...] = ()
    stages: tuple[str, ...] = ()
    baseline: str | None = None
    ablation_of: str | None = None
    standard: bool = False
    description: str = field(default="", compare=False)

    def first_layer_factory(self) -> FirstLayer | None:
        """The :class:`~pushpull_lite.models.FirstLayer` that :func:`~pushpull_lite.train.train_model`
        gets (None: the architecture's plain one). Only for the families trained by ``train_model``."""
        if self.recipe not in ("resnet", "cnn"):
            raise ValueError(
                f"{self.key}: first_layer_factory is for ResNets and seed CNNs, not {self.family}"
            )
        if self.first_layer is None:
            return None
        return first_layer(self.first_layer, **dict(self.first_layer_args))

    def recipe_for(self, profile: str | config.Profile | None = None):
        """The recipe that trains this model in ``profile`` (default: the active one): a
        :class:`~pushpull_lite.train.Recipe`, :class:`~pushpull_lite.feedback.FeedbackRecipe` or
        :class:`~pushpull_lite.amsdn.AMSDNRecipe`."""
        prof = _profile(profile)
        if self.recipe == "resnet":
            return get_recipe(prof.resnet_recipe)
        if self.recipe == "cnn":
            return get_recipe(prof.cnn_recipe)
        if self.recipe == "cnnf":
            r = feedback.get_recipe(prof.name)
            return r.feedforward() if self.arch == "cnn" else r
        return amsdn.get_recipe(prof.name)

    def train_limit(self, profile: str | config.Profile | None = None) -> int | None:
        """Training images in ``profile`` (None: all 50,000)."""
        prof = _profile(profile)
        if self.recipe == "resnet":
            return prof.train_limit
        if self.recipe == "cnn":
            return prof.cnn_train_limit
        return self.recipe_for(prof).train_limit

    def build_network(self, profile: str | config.Profile | None = None) -> nn.Module:
        """An untrained copy of the network (no data, no training), with ``profile``'s sizes."""
        r = self.recipe_for(profile)
        if self.recipe in ("resnet", "cnn"):
            return build(self.arch, self.first_layer_factory())
        if self.recipe == "cnnf":
            net = feedback.build(r, first_layer=self.first_layer)
            return net.feedforward_cnn() if self.arch == "cnn" else net
        return amsdn.build(r.arch, stem=self.first_layer)

    def build(self, profile: str | config.Profile | None = None) -> nn.Module:
        """An untrained model in eval mode: images (N, 3, H, W) in [0, 1] -> logits (N, 10)."""
        return self._logits(self.build_network(profile), profile).eval()

    def model_path(self, seed: int = 0, profile: str | config.Profile | None = None):
        """Where the model cache keeps this model for ``seed`` in ``profile`` (it may not exist yet)."""
        prof = _profile(profile)
        if self.recipe in ("resnet", "cnn"):
            return model_path(
                self.arch, self.first_layer_factory(), self.recipe_for(prof), self.train_limit(prof), seed
            )
        if self.recipe == "cnnf":
            return feedback.model_path(self.recipe_for(prof), seed, first_layer=self.first_layer)
        return amsdn.model_path(self.recipe_for(prof), seed, stages=self.stages, stem=self.first_layer)

    def train(
        self,
        seed: int = 0,
        profile: str | config.Profile | None = None,
        *,
        progress: bool = True,
        device=None,
    ) -> Trained:
        """Train this model with ``profile``'s recipe (default: the active profile), or load it from the
        model cache; the same call, and so the same cache entry, as its chapter's."""
        prof = _profile(profile)
        r = self.recipe_for(prof)
        if self.recipe in ("resnet", "cnn"):
            tm = train_model(
                self.arch,
                self.first_layer_factory(),
                r,
                self.train_limit(prof),
                seed,
                device=device,
                progress=progress,
            )
            net, seconds, cached, history = tm.model, tm.train_seconds, tm.from_cache, tm.history
            info = {"config": tm.config, "path": tm.path, "history": history, "train_seconds": seconds}
            info["from_cache"] = cached
        else:
            if self.recipe == "cnnf":
                fn = feedback.train_feedforward if self.arch == "cnn" else feedback.train_cnnf
                base = feedback.get_recipe(prof.name)
                net, info = fn(base, seed, first_layer=self.first_layer, device=device, progress=progress)
                seconds = info["train_seconds"]
            else:
                net, info = amsdn.train_amsdn(
                    r, seed, stages=self.stages, stem=self.first_layer, device=device, progress=progress
                )
                seconds = info["train_seconds"]["total"]
            cached, history = info["from_cache"], info["history"]
        return Trained(self, seed, prof.name, net, self._logits(net, prof), seconds, cached, history, info)

    def _logits(self, net: nn.Module, profile) -> nn.Module:
        if self.arch == "cnnf":
            return feedback.WithCycles(net, self.recipe_for(profile).cycles)
        if self.arch == "amsdn":
            return amsdn.LogitsOnly(net)
        return net


def _profile(profile: str | config.Profile | None) -> config.Profile:
    return profile if isinstance(profile, config.Profile) else config.get_profile(profile)


def _fl(name: str, **kwargs) -> dict:
    return {"first_layer": name, "first_layer_args": tuple(sorted(kwargs.items()))}


def _resnet(key: str, label: str, fl: dict, description: str) -> Entry:
    plain = key == "resnet20"
    return Entry(
        key,
        "ResNet-20" if plain else f"ResNet-20 ({label})",
        label,
        "resnet20",
        "resnet20",
        "02_pushpull_layer",
        "resnet",
        baseline=None if plain else "resnet20",
        standard=True,
        description=description,
        **fl,
    )


def _seed_cnn(key: str, label: str, fl: dict, description: str) -> Entry:
    return Entry(
        key,
        f"seed CNN ({label})",
        label,
        "seed_cnn",
        "seed_cnn",
        "04_adversarial",
        "cnn",
        baseline=None if key == "seedcnn" else "seedcnn",
        standard=True,
        description=description,
        **fl,
    )


def _amsdn(key: str, label: str, stages: tuple[str, ...], stem: str, description: str) -> Entry:
    return Entry(
        key,
        f"AMSDN mini, {'+'.join(stages)} ({stem} stem)",
        label,
        "amsdn",
        "amsdn",
        "06_amsdn",
        "amsdn",
        first_layer=stem,
        stages=stages,
        baseline=None if key == "amsdn-clean" else "amsdn-clean",
        ablation_of=None if key in ("amsdn", "amsdn-clean") else "amsdn",
        description=description,
    )


_ENTRIES = (
    _resnet("resnet20", "ResNet-20", {}, "plain 3x3 first layer"),
    _resnet("resnet20-pp", "PushPull2d", _fl("pushpull", alpha=1.0, scale=2.0), "the 2020 push-pull layer"),
    _resnet(
        "resnet20-ppconv3",
        "PushPullConv2d avg3",
        _fl("pushpull-conv", avg_kernel_size=3),
        "PushPull-Conv, its pull averaged over 3x3",
    ),
    _resnet(
        "resnet20-ppconv5",
        "PushPullConv2d avg5",
        _fl("pushpull-conv", avg_kernel_size=5),
        "PushPull-Conv, its pull averaged over 5x5",
    ),
    _resnet(
        "resnet20-ms", "Multi-scale PP", _fl("multiscale"), "the seed project's multi-scale push-pull layer"
    ),
    _seed_cnn("seedcnn", "conv", _fl("conv", bias=True), "the seed's CNN with a plain 3x3 convolution"),
    _seed_cnn("seedcnn-pp", "push-pull", _fl("pushpull"), "single-scale push-pull first layer"),
    _seed_cnn(
        "seedcnn-ms-seed",
        "multi-scale, seed's pull",
        _fl("multiscale", derived_pull=False),
        "the seed's multi-scale layer as written (its own pull kernels)",
    ),
    _seed_cnn(
        "seedcnn-ms",
        "multi-scale, derived pull",
        _fl("multiscale", derived_pull=True),
        "multi-scale push-pull with pull kernels derived from the push kernels",
    ),
    Entry(
        "cnnf",
        "CNN-F (2 cycles, PGD-trained)",
        "CNN-F",
        "cnnf",
        "cnnf",
        "05_feedback",
        "cnnf",
        first_layer="conv",
        baseline="cnnf-ff",
        description="recurrent generative feedback, 2 cycles (the recipes' cycles, checked by the tests)",
    ),
    Entry(
        "cnnf-ff",
        "CNN (CNN-F's forward path, PGD-trained)",
        "feed-forward CNN",
        "cnnf",
        "cnn",
        "05_feedback",
        "cnnf",
        first_layer="conv",
        description="the CNN-F's forward path trained alone (0 cycles), same size and attack",
    ),
    _amsdn("amsdn", "AMSDN", ("ssrt", "adv", "multi"), "conv", "all three defensive training stages"),
    _amsdn("amsdn-clean", "clean-trained", ("clean",), "conv", "the same network, clean training only"),
    _amsdn("amsdn-no-ssrt", "without ssrt", ("adv", "multi"), "conv", "no contrastive pre-training"),
    _amsdn("amsdn-no-adv", "without adv", ("ssrt", "multi"), "conv", "no PGD adversarial training stage"),
    _amsdn("amsdn-no-multi", "without multi", ("ssrt", "adv"), "conv", "no mixed-attack stage"),
    _amsdn("amsdn-ppstem", "push-pull stem", ("ssrt", "adv", "multi"), "pushpull", "a push-pull first layer"),
)

#: key -> :class:`Entry`, in the book's order (chapter, then family, plain model first where it is)
REGISTRY: Mapping[str, Entry] = types.MappingProxyType({e.key: e for e in _ENTRIES})
_BY_NAME = {e.name: e for e in _ENTRIES}


def get(key: str) -> Entry:
    """The entry with registry key ``key``, e.g. ``zoo.get("resnet20-pp")``.

    Defined in :mod:`pushpull_lite.zoo`; chapters ask the registry by key instead of keeping model lists.
    """
    if key not in REGISTRY:
        raise ValueError(f"unknown model key {key!r}; expected one of {list(REGISTRY)}")
    return REGISTRY[key]


def entries(
    family: str | None = None,
    chapter: str | None = None,
    standard: bool | None = None,
    ablation_of: str | None = None,
) -> list[Entry]:
    """The registry's entries in order, those matching every filter given (None: any).

    family: see :data:`FAMILIES`; chapter: the notebook's name, e.g. ``"04_adversarial"``; standard: True
    for the leaderboard's standard protocol (False: the others); ablation_of: the key of the model.
    Defined in :mod:`pushpull_lite.zoo`.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    return [
        e
        for e in _ENTRIES
        if (family is None or e.family == family)
        and (chapter is None or e.chapter == chapter)
        and (standard is None or e.standard == standard)
        and (ablation_of is None or e.ablation_of == ablation_of)
    ]


def keys(**filters) -> list[str]:
    """The keys of :func:`entries` (same filters), e.g. ``zoo.keys(family="resnet20")``."""
    return [e.key for e in entries(**filters)]


def by_name(name: str) -> Entry:
    """The entry whose display name is ``name`` (results files written before they held keys).

    Defined in :mod:`pushpull_lite.zoo`; used by :func:`pushpull_lite.results.load`.
    """
    if name not in _BY_NAME:
        raise ValueError(f"no model of the registry is called {name!r}; expected one of {list(_BY_NAME)}")
    return _BY_NAME[name]


def key_for_name(name: str) -> str | None:
    """The key of the entry displayed as ``name``, or None when no entry is (a model outside the registry)."""
    e = _BY_NAME.get(name)
    return None if e is None else e.key


def _resolve(item: str | Entry, family: str | None = None) -> Entry:
    """An entry from itself, its key, or (within ``family``) its label."""
    if isinstance(item, Entry):
        return item
    if item in REGISTRY:
        return REGISTRY[item]
    if family is not None:
        for e in entries(family=family):
            if e.label == item:
                return e
    where = list(REGISTRY) if family is None else [e.key for e in entries(family=family)]
    raise ValueError(f"unknown model {item!r}; expected a registry key from {where} (or its label)")


#: label -> first layer of ResNet-20 (None: the plain 3x3 convolution); a view of the registry
RESNET_VARIANTS: dict[str, FirstLayer | None] = {
    e.label: e.first_layer_factory() for e in entries(family="resnet20")
}
#: label -> first layer of the multi-scale project's CNN (chapter 4); a view of the registry
SEED_CNN_VARIANTS: dict[str, FirstLayer] = {
    e.label: e.first_layer_factory() for e in entries(family="seed_cnn")
}


def train_resnet_variants(
    profile: str | None = None,
    seeds: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
    arch: str = "resnet20",
    progress: bool = True,
) -> dict[str, list[TrainedModel]]:
    """Train (or load) each ResNet-20 variant for each seed with the profile's ResNet recipe and subset.

    variants: labels of :data:`RESNET_VARIANTS` or registry keys (default: the family's five). Returns
    {label: [TrainedModel per seed]} in registry order of the variants asked for.
    """
    prof = config.get_profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    chosen = entries(family="resnet20") if variants is None else [_resolve(v, "resnet20") for v in variants]
    bad = [e.key for e in chosen if e.family != "resnet20"]
    if bad:
        raise ValueError(
            f"variants {bad} are not ResNet-20 variants; expected labels from {list(RESNET_VARIANTS)}"
        )
    if not seeds:
        raise ValueError("seeds must not be empty")
    return {
        e.label: [
            train_model(
                arch, e.first_layer_factory(), prof.resnet_recipe, prof.train_limit, seed, progress=progress
            )
            for seed in seeds
        ]
        for e in chosen
    }
