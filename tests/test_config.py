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


def test_relative_paths_mean_the_same_folder_from_the_root_and_from_a_chapter(tmp_path, monkeypatch):
    # README's setting for the project's machines, as a chapter's kernel (cwd book/) and the root see it
    root = config.checkout_root()
    assert root is not None, "the tests run from the book's checkout"
    monkeypatch.setenv("PUSHPULL_DATA", "../shared/data")
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    seen = []
    for cwd in (root, root / "book"):
        monkeypatch.chdir(cwd)
        seen.append(config.data_root())
    assert seen[0] == seen[1] == root / "../shared/data"
    monkeypatch.setenv("PUSHPULL_CACHE", "data/other-cache")
    monkeypatch.chdir(root / "book")
    assert config.cache_dir() == root / "data" / "other-cache"
    # an explicit argument is a path like any other: taken from the working directory
    assert config.data_root("x") == root / "book" / "x"


def test_relative_data_root_loads_cifar10_from_a_chapter_folder(monkeypatch):
    # the issue: from book/, PUSHPULL_DATA relative to the repository root found nothing
    root = config.checkout_root()
    shared = root.parent / "shared" / "data"
    if not (shared / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip("needs ../shared/data beside the checkout (the project's machines and CI have it)")
    from pushpull_lite import data

    monkeypatch.setenv("PUSHPULL_DATA", "../shared/data")
    monkeypatch.chdir(root / "book")
    images, labels = data.load_cifar10("test", limit=10)
    assert images.shape == (10, 3, 32, 32) and "JPEG copy" in data.cifar10_source()


def test_a_cache_that_is_a_file_is_named(tmp_path, monkeypatch):
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    monkeypatch.setenv("PUSHPULL_CACHE", str(target))
    with pytest.raises(NotADirectoryError, match=r"PUSHPULL_CACHE.*folder|is a file"):
        config.cache_dir()


@pytest.mark.parametrize("value", ["bogus", "gpu0"])
def test_a_bad_device_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("PUSHPULL_DEVICE", value)
    with pytest.raises(ValueError, match=f"PUSHPULL_DEVICE='{value}'"):
        config.device()


def test_cuda_asked_for_on_a_machine_without_it_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PUSHPULL_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        config.device()


def test_full_trains_one_seed_in_the_chapters_and_three_for_the_reference_results():
    full = config.PROFILES["full"]
    assert full.seeds == (0,) and len(full.reference_seeds) == 3
    assert all(len(p.reference_seeds) >= 3 for p in config.PROFILES.values())


def test_smoke_runs_scale_every_size_and_keep_the_structure(monkeypatch):
    monkeypatch.setenv("PUSHPULL_SMOKE", "50")
    monkeypatch.setenv("PUSHPULL_PROFILE", "medium")
    prof, real = config.get_profile(), config.PROFILES["medium"]
    assert prof.test_limit is None and real.test_limit is None  # "all of it" stays "all of it"
    assert prof.attack_limit == 20 and prof.cnn_train_limit == 400 and prof.seeds == real.seeds
    assert "SMOKE" in prof.description and config.smoke_epochs(160) == 1
    assert config.smoke_size(3) == 10  # at least one image per class
    assert config.model_cache_dir().parent.name == "smoke-50"  # never the real model cache
    monkeypatch.setenv("PUSHPULL_SMOKE", "1")
    with pytest.raises(ValueError, match="PUSHPULL_SMOKE"):
        config.get_profile()
    monkeypatch.delenv("PUSHPULL_SMOKE")
    assert config.get_profile() is real and config.smoke_epochs(160) == 160


def test_progress_bars_are_text_never_widgets():
    from tqdm.std import tqdm

    bar = config.progress(range(3), enabled=False)
    assert type(bar) is tqdm and list(bar) == [0, 1, 2]


def test_an_explicit_device_this_machine_lacks_is_named(monkeypatch):
    # load_strisciuglio2020(device="cuda") on a CPU machine said the checkpoint was not readable
    from pushpull_lite import pretrained

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        config.device("cuda")
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        pretrained.load_strisciuglio2020("resnet20", device="cuda")
    assert config.device("cpu") == torch.device("cpu")
