"""The standard protocol and the reference-results runner, on a real (quick) model of the book."""

from __future__ import annotations

import pytest

from pushpull_lite import autoattack, data, experiments, results, zoo


def _needs_data() -> None:
    try:
        data.load_cifar10("test", limit=10)
    except data.DataNotFoundError as exc:
        pytest.skip(f"needs CIFAR-10 (set PUSHPULL_DATA=../shared/data or connect to the internet): {exc}")


def test_entries_cover_the_book_models_and_refuse_unknown_keys():
    names = [e.name for e in experiments.ENTRIES.values()]
    assert len(set(names)) == len(names)
    assert "ResNet-20" in names and "seed CNN (conv)" in names
    # derived from the registry: its standard entries, the same objects
    assert list(experiments.ENTRIES) == zoo.keys(standard=True)
    assert all(experiments.get_entry(k) is zoo.get(k) for k in experiments.ENTRIES)
    with pytest.raises(ValueError, match="unknown entry 'cnnf'"):  # in the registry, not in the protocol
        experiments.get_entry("cnnf")
    with pytest.raises(ValueError, match="unknown entry 'nope'"):
        experiments.get_entry("nope")
    with pytest.raises(ValueError, match="unknown entry"):
        experiments.run_all("quick", only=["nope"])


def test_every_push_pull_entry_has_a_plain_baseline_of_its_family():
    for e in experiments.ENTRIES.values():
        if e.baseline is None:
            assert "(" not in e.name or e.name.endswith("(conv)"), e.name  # only the plain models
            continue
        base = experiments.get_entry(e.baseline)
        assert base.baseline is None and base.chapter == e.chapter
        assert e.name.split(" (")[0] == base.name.split(" (")[0], (e.name, base.name)


@pytest.mark.slow
def test_a_quick_entry_reproduces_its_results_file(monkeypatch):
    """Run one leaderboard entry, then measure the same model again: the file holds exactly those numbers."""
    _needs_data()
    monkeypatch.setenv("PUSHPULL_PROFILE", "quick")
    # the directory chapter 8 reads in `quick`: its run then finds this entry measured for this code version
    out = results.results_dir("quick")
    path = experiments.run_entry("seedcnn", "quick", directory=out)
    row = results.load(path)
    assert (
        row["chapter"] == experiments.CHAPTER and row["name"] == "seed CNN (conv)" and row["key"] == "seedcnn"
    )
    assert row["provenance"]["profile"] == "quick"
    assert row["seeds"] == [0] and row["n_test"] == 1000 and row["n_attack"] == 200
    m = row["metrics"]
    # the protocol's own sanity: the attacks can only lower accuracy, PGD is at least as strong as FGSM
    assert 30 <= m["clean_acc"] <= 100
    assert m["worst_acc"] <= min(m["fgsm_acc"], m["pgd_acc"]) <= m["fgsm_acc"] <= m["clean_acc"]
    assert m["mce"] > 0 and m["noise_acc"] <= m["clean_acc"] + 5
    # one threat model: the worst case names its attacks, and credits every lost image to the first one
    worst = row["extra"]["worst_case"]
    assert worst["threat"] == "linf 8/255" and worst["attacks"][:2] == ["FGSM", "PGD-10"]
    if autoattack.torchattacks_version() is not None:
        assert worst["attacks"][2:] == ["APGD-CE", "APGD-T", "Square"]
        assert worst["budget"] == autoattack.budget("quick").as_dict()
    found = row["extra"]["found_by"][0]
    assert sum(found.values()) == 200 and found["robust"] == pytest.approx(m["worst_acc"] * 2, abs=1e-9)

    entry = experiments.get_entry("seedcnn")
    trained = entry.train(0, "quick", progress=False)  # from the model cache
    assert trained.from_cache and row["parameters"] == trained.parameters
    again = experiments.measure(trained.model, "quick")
    assert again["metrics"] == pytest.approx(row["metrics"], abs=1e-9)

    # resumable: a second run with the same code and profile does not measure again
    before = path.stat().st_mtime_ns
    assert experiments.run_entry("seedcnn", "quick", directory=out) == path
    assert path.stat().st_mtime_ns == before
    assert experiments.is_done(entry, out, "quick")
    assert not experiments.is_done(entry, out, "medium")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiments.main(["--help"])
    assert exit_info.value.code == 0
    assert "--profile" in capsys.readouterr().out


def test_the_runner_writes_after_every_seed_and_resumes_with_the_seeds_it_has(tmp_path, monkeypatch):
    """Per-seed resumption, with training and measuring replaced by stand-ins that count their calls."""
    _needs_data()
    monkeypatch.setenv("PUSHPULL_PROFILE", "quick")
    calls = []

    class FakeTrained:
        model = object()
        train_seconds = 12.0
        parameters = 1234

    def fake_train(self, seed, profile=None, progress=True):
        calls.append(("train", self.key, seed))
        return FakeTrained()

    def fake_measure(model, profile=None):
        seed = calls[-1][2]
        found = {"clean": 50, "FGSM": 100, "PGD-10": 40, "robust": 10 - seed}
        return {
            "metrics": {"clean_acc": 70.0 + seed, "worst_acc": (10 - seed) / 2},
            "worst_case": {"threat": "linf 8/255", "attacks": ["FGSM", "PGD-10"], "found_by": found},
            "n_test": 1000,
            "n_attack": 200,
            "n_per_set": 50,
            "corruption_source": "generated",
        }

    monkeypatch.setattr(zoo.Entry, "train", fake_train)
    monkeypatch.setattr(experiments, "measure", fake_measure)
    entry = experiments.get_entry("resnet20")

    path = experiments.run_entry("resnet20", "quick", directory=tmp_path, seeds=(0, 1))
    row = results.load(path)
    assert row["seeds"] == [0, 1] and row["metrics"]["clean_acc"] == 70.5
    assert row["provenance"]["source"] == results.source_hash()
    assert experiments.is_done(entry, tmp_path, "quick", (0, 1))
    assert experiments.is_done(entry, tmp_path, "quick", (1,))  # a file may hold more seeds than asked
    assert not experiments.is_done(entry, tmp_path, "quick", (0, 1, 2))
    assert len(calls) == 2

    # extending to more seeds measures only the new ones and keeps the others, in seed order
    path = experiments.run_entry("resnet20", "quick", directory=tmp_path, seeds=(3, 2, 0))
    row = results.load(path)
    assert [c[2] for c in calls] == [0, 1, 3, 2]
    assert row["seeds"] == [0, 1, 2, 3]
    assert [s["clean_acc"] for s in row["extra"]["per_seed"]] == [70.0, 71.0, 72.0, 73.0]
    assert [f["robust"] for f in row["extra"]["found_by"]] == [10, 9, 8, 7]
    assert row["extra"]["train_seconds_per_seed"] == [12.0] * 4
    # nothing left to do: no call; a smaller request is done too (the file keeps all four seeds)
    experiments.run_entry("resnet20", "quick", directory=tmp_path, seeds=(0, 1, 2))
    assert len(calls) == 4 and results.load(path)["seeds"] == [0, 1, 2, 3]

    # a file measured by other code (another sources' hash) is not resumed from: its seeds and the new
    # ones are all measured again, so the file is never narrowed to fewer seeds
    monkeypatch.setattr(results, "source_hash", lambda: "0123456789ab")
    assert not experiments.is_done(entry, tmp_path, "quick", (0,))
    experiments.run_entry("resnet20", "quick", directory=tmp_path, seeds=(4,))
    assert [c[2] for c in calls[4:]] == [0, 1, 2, 3, 4] and results.load(path)["seeds"] == [0, 1, 2, 3, 4]
    assert results.load(path)["provenance"]["source"] == "0123456789ab"

    with pytest.raises(ValueError, match="seeds"):
        experiments.run_entry("resnet20", "quick", directory=tmp_path, seeds=(-1,))
