"""The run settings: profiles, device, seeds and paths."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pushpull_lite import config


def test_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("PUSHPULL_PROFILE", "Medium")
    assert config.get_profile().name == "medium"
    monkeypatch.setenv("PUSHPULL_PROFILE", "fast")
    with pytest.raises(ValueError, match="PUSHPULL_PROFILE='fast' is not a profile"):
        config.get_profile()


def test_default_profile_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("PUSHPULL_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.profile_name() == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.profile_name() == "full"


def test_profiles_grow_from_quick_to_paper():
    quick, medium = config.PROFILES["quick"], config.PROFILES["medium"]
    assert quick.train_limit < 50_000 and medium.train_limit is None
    assert len(medium.seeds) >= 3 and medium.test_limit is None
    assert 1_000 <= medium.attack_limit <= 2_000
    assert config.PROFILES["full"].attack_limit is None
    assert set(config.PROFILES) == set(config.PROFILE_NAMES)


def test_seed_everything_repeats_every_generator():
    draws = []
    for _ in range(2):
        config.seed_everything(7)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(-1)


def test_paths_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPULL_DATA", str(tmp_path / "ro"))
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    assert config.data_root() == tmp_path / "ro"
    assert config.data_root(tmp_path / "x") == tmp_path / "x"
    assert config.cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()


def test_device_override(monkeypatch):
    monkeypatch.setenv("PUSHPULL_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
