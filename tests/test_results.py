"""Results files: round trip, provenance, and refusals of malformed input."""

import json

import pytest

from pushpull_lite import results


def _write(tmp_path, **kw):
    args = dict(chapter="02_pushpull_layer", metrics={"clean_acc": 56.2}, seeds=[0], n_test=1000)
    args.update(kw)
    return results.record("ResNet-20 (conv)", directory=tmp_path, **args)


def test_record_round_trips_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPULL_PROFILE", "quick")
    path = _write(
        tmp_path,
        metrics={"clean_acc": 56.2, "pgd_acc": 1.5},
        spread={"clean_acc": 0.4},
        n_attack=200,
        attack={"norm": "linf", "eps": 8 / 255, "steps": 10},
        train_seconds=12.345,
        parameters=272474,
    )
    assert path.name == "resnet-20-conv.json"
    row = results.load(path)
    assert row["metrics"] == {"clean_acc": 56.2, "pgd_acc": 1.5}
    assert row["spread"] == {"clean_acc": 0.4}
    assert row["train_seconds"] == 12.3
    assert row["provenance"]["profile"] == "quick"
    assert row["provenance"]["code"].startswith("0.")
    assert results.load_all(tmp_path) == [row]


def test_load_all_of_missing_directory_is_empty(tmp_path):
    assert results.load_all(tmp_path / "nothing") == []


def test_results_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHPULL_RESULTS", str(tmp_path))
    assert results.results_dir() == tmp_path


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(metrics={"accuracy": 50.0}), "unknown keys"),
        (dict(metrics={"clean_acc": 150.0}), r"\[0, 100\]"),
        (dict(metrics={"clean_acc": float("nan")}), "finite"),
        (dict(metrics={}), "at least one"),
        (dict(seeds=[]), "seeds"),
        (dict(n_test=0), "n_test"),
        (dict(metrics={"pgd_acc": 3.0}), "attack"),
        (dict(spread={"mce": 1.0}), "spread"),
    ],
)
def test_record_refuses_bad_input(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        _write(tmp_path, **kw)


def test_load_refuses_other_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match="missing"):
        results.load(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.load(bad)


def test_slug():
    assert results.slug("ResNet-20 (PP, avg 3)") == "resnet-20-pp-avg-3"
    with pytest.raises(ValueError):
        results.slug("()")
