"""Results files: round trip, provenance, and refusals of malformed input."""

import json
import subprocess

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
    assert path.name == "02-pushpull-layer__resnet-20-conv.json"
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


@pytest.mark.parametrize(
    "metrics, message",
    [
        (
            {"clean_acc": 0.5},
            r"metrics\['clean_acc'\] = 0.5 is at most 1: accuracies are percent in \[0, 100\]",
        ),
        ({"clean_acc": 1.0, "mce": 104.0}, r"metrics\['clean_acc'\] = 1 is at most 1"),
        ({"noise_acc": 0.6, "fgsm_acc": 0.2}, r"metrics\['noise_acc'\] = 0.6 and every other accuracy"),
        ({"detection_rate": 0.9, "false_positive_rate": 0.05}, r"'detection_rate'.*percent in \[0, 100\]"),
    ],
)
def test_record_refuses_fractions_for_percentages(tmp_path, metrics, message):
    attack = {"norm": "linf", "eps": 8 / 255, "steps": 10}
    with pytest.raises(ValueError, match=message):
        _write(tmp_path, metrics=metrics, n_attack=100, attack=attack)
    assert not list(tmp_path.iterdir())


def test_record_accepts_small_percentages_next_to_large_ones(tmp_path):
    metrics = {"clean_acc": 85.3, "pgd_acc": 0.5, "worst_acc": 0.0}
    path = _write(tmp_path, metrics=metrics, n_attack=100, attack={"norm": "linf", "eps": 8 / 255})
    assert results.load(path)["metrics"] == metrics
    # all accuracies zero: nothing to multiply by 100
    _write(tmp_path, chapter="09_x", metrics={"pgd_acc": 0.0}, n_attack=100, attack={"eps": 8 / 255})


def test_record_refuses_a_second_name_with_the_same_file(tmp_path):
    kw = dict(chapter="02_a", seeds=[0], n_test=10, directory=tmp_path)
    first = results.record("ResNet-20 (PP)", metrics={"clean_acc": 90.0}, **kw)
    assert results.slug("resnet 20 pp") == results.slug("ResNet-20 (PP)")
    with pytest.raises(ValueError, match=r"already holds the results of 'ResNet-20 \(PP\)'.*'resnet 20 pp'"):
        results.record("resnet 20 pp", metrics={"clean_acc": 50.0}, **kw)
    assert results.load(first)["metrics"] == {"clean_acc": 90.0}  # untouched
    # the same name again overwrites, as before
    again = results.record("ResNet-20 (PP)", metrics={"clean_acc": 91.0}, **kw)
    assert again == first and results.load(first)["metrics"] == {"clean_acc": 91.0}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"null", "expected a JSON object, got NoneType"),
        (b"3.5", "expected a JSON object, got float"),
        (b'[{"name": "x"}]', "expected a JSON object, got list"),
        (b"\xff\xfe{", "not UTF-8"),
        (b'{"name": ', "not valid JSON"),
        ("no provenance", r"missing \['provenance'\]"),
        ("provenance null", "'provenance' must be a JSON object"),
        ("metrics a list", "must be a mapping"),
    ],
)
def test_load_names_the_path_of_a_file_that_is_not_a_results_file(tmp_path, content, message):
    good = json.loads(_write(tmp_path).read_text())
    bad = tmp_path / "bad.json"
    if content == "no provenance":
        content = json.dumps({k: v for k, v in good.items() if k != "provenance"}).encode()
    elif content == "provenance null":
        content = json.dumps(dict(good, provenance=None)).encode()
    elif content == "metrics a list":
        content = json.dumps(dict(good, metrics=[56.2])).encode()
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        results.load(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(ValueError, match=message):
        results.load_all(tmp_path)


def test_slug():
    assert results.slug("ResNet-20 (PP, avg 3)") == "resnet-20-pp-avg-3"
    with pytest.raises(ValueError):
        results.slug("()")


def test_files_are_per_chapter_and_merge_joins_them(tmp_path):
    a = results.record(
        "M",
        chapter="02_a",
        metrics={"clean_acc": 50.0},
        spread={"clean_acc": 1.0},
        seeds=[0],
        n_test=1000,
        parameters=10,
        directory=tmp_path,
    )
    b = results.record(
        "M",
        chapter="03_b",
        metrics={"clean_acc": 51.0, "mce": 100.0},
        seeds=[0],
        n_test=500,
        directory=tmp_path,
    )
    c = results.record(
        "M",
        chapter="04_c",
        metrics={"pgd_acc": 3.0},
        seeds=[0],
        n_test=100,
        n_attack=100,
        attack={"norm": "linf", "eps": 8 / 255, "steps": 10},
        directory=tmp_path,
    )
    assert len({a, b, c}) == 3
    (row,) = results.merge(results.load_all(tmp_path))
    # clean accuracy: 1,000 test images beat 500; mCE only measured in 03_b
    assert row["metrics"] == {"clean_acc": 50.0, "mce": 100.0, "pgd_acc": 3.0}
    assert row["sources"] == {"clean_acc": "02_a", "mce": "03_b", "pgd_acc": "04_c"}
    assert row["spread"] == {"clean_acc": 1.0}
    assert row["attacks"] == {"pgd_acc": {"norm": "linf", "eps": 8 / 255, "steps": 10}}
    assert row["parameters"] == 10
    assert row["chapters"] == ["02_a", "03_b", "04_c"]


def test_merge_never_takes_a_minimum_of_worst_cases_across_chapters(tmp_path):
    budget = {"norm": "linf", "eps": 8 / 255, "steps": 10}
    kw = dict(seeds=[0], directory=tmp_path, attack=budget)
    results.record("M", chapter="07_a", metrics={"worst_acc": 9.0}, n_test=100, n_attack=100, **kw)
    results.record("M", chapter="08_b", metrics={"worst_acc": 12.0}, n_test=1000, n_attack=200, **kw)
    (row,) = results.merge(results.load_all(tmp_path))
    # different images and seeds: the one on more images stands, not the lower of the two
    assert row["metrics"]["worst_acc"] == 12.0 and row["sources"]["worst_acc"] == "08_b"
    other = dict(budget, eps=16 / 255)
    results.record(
        "M",
        chapter="09_c",
        metrics={"worst_acc": 2.0},  # above 1: a lone accuracy <= 1 % is refused as a likely fraction
        n_test=50,
        n_attack=50,
        seeds=[0],
        directory=tmp_path,
        attack=other,
    )
    (row,) = results.merge(results.load_all(tmp_path))
    assert row["metrics"]["worst_acc"] == 12.0  # a larger eps, on fewer images, does not replace it


def test_committed_reference_results_are_valid_and_labelled():
    """Every committed reference file loads, belongs to its profile and names its data and seeds."""
    from pushpull_lite import experiments

    names = {e.name for e in experiments.ENTRIES.values()}
    paths = sorted(results.REFERENCE_ROOT.glob("*/*.json"))
    assert len(paths) >= 7 and len(results.load_reference("medium")) == len(paths)
    for path in paths:
        row = results.load(path)
        # written before results held keys: the key comes from the display name, and is a standard entry's
        assert row["key"] in experiments.ENTRIES and experiments.ENTRIES[row["key"]].name == row["name"], path
        prov = row["provenance"]
        assert prov["profile"] == path.parent.name, path
        assert prov["data"] and prov["code"] and prov["device"], path
        assert row["name"] in names and row["chapter"] == experiments.CHAPTER, path
        per_seed = row["extra"]["per_seed"]
        assert len(per_seed) == len(row["seeds"]) >= 1, path
        for key, mean in row["metrics"].items():
            values = [s[key] for s in per_seed]
            assert mean == pytest.approx(sum(values) / len(values)), (path, key)


def test_the_runner_writes_into_the_checkout_there_and_never_into_an_installed_package(monkeypatch, tmp_path):
    from pushpull_lite import config, experiments

    assert experiments.default_output("medium") == results.reference_dir("medium")
    monkeypatch.setattr(config, "checkout_root", lambda: None)  # as installed in site-packages
    monkeypatch.setenv("PUSHPULL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PUSHPULL_RESULTS", raising=False)
    assert experiments.default_output("medium") == tmp_path / "cache" / "results" / "medium"
    with pytest.raises(ValueError, match="profile"):
        results.reference_dir("fast")


def test_code_version_tells_two_uncommitted_states_apart(tmp_path, monkeypatch):
    # the runner skips an entry "already measured for this code version": an edited, uncommitted package
    # must not pass for another edited state of the same commit
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(git + args, cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.setattr(results, "_PACKAGE_DIR", pkg)
    monkeypatch.setattr(results, "REFERENCE_ROOT", pkg / "reference_results")
    clean = results.code_version()
    assert " git " in clean and "dirty" not in clean
    (pkg / "a.py").write_text("x = 2\n")
    one = results.code_version()
    (pkg / "a.py").write_text("x = 3\n")
    two = results.code_version()
    assert "+dirty src " in one and one != two
    (pkg / "a.py").write_text("x = 1\n")
    assert results.code_version() == clean


def test_record_stores_the_registry_key_and_checks_it(tmp_path):
    kw = dict(chapter="07_evaluation", metrics={"clean_acc": 50.0}, seeds=[0], n_test=10, directory=tmp_path)
    path = results.record(key="resnet20-pp", **kw)
    row = results.load(path)
    assert row["key"] == "resnet20-pp" and row["name"] == "ResNet-20 (PushPull2d)"
    assert path.name == "07-evaluation__resnet-20-pushpull2d.json"  # file names as before: by display name
    # a registry model given by its display name gets its key; a model outside the registry has none
    assert results.load(results.record("seed CNN (conv)", **kw))["key"] == "seedcnn"
    assert results.load(results.record("my model", **kw))["key"] is None
    with pytest.raises(ValueError, match="unknown model key 'nope'"):
        results.record(key="nope", **kw)
    with pytest.raises(ValueError, match="not the display name of 'resnet20'"):
        results.record("ResNet-20 (plain)", key="resnet20", **kw)
    with pytest.raises(ValueError, match="non-empty"):
        results.record(**kw)


def test_merge_joins_rows_by_key_not_by_name(tmp_path):
    kw = dict(seeds=[0], n_test=100, directory=tmp_path)
    results.record(key="cnnf", chapter="05_feedback", metrics={"clean_acc": 40.0, "noise_acc": 35.0}, **kw)
    results.record(key="cnnf", chapter="07_evaluation", metrics={"clean_acc": 41.0}, **kw)
    # a file from before keys, whose row name is the registry's display name: it joins by its key too
    legacy = results.record(key="cnnf-ff", chapter="05_feedback", metrics={"clean_acc": 45.0}, **kw)
    payload = json.loads(legacy.read_text())
    del payload["key"]
    legacy.write_text(json.dumps(payload))
    results.record(
        key="cnnf-ff",
        chapter="07_evaluation",
        metrics={"fgsm_acc": 20.0},
        n_attack=50,
        attack={"norm": "linf", "eps": 8 / 255, "steps": 1},
        **kw,
    )
    results.record("outside", chapter="07_evaluation", metrics={"clean_acc": 30.0}, **kw)
    rows = {r["key"] or r["name"]: r for r in results.merge(results.load_all(tmp_path))}
    assert set(rows) == {"cnnf", "cnnf-ff", "outside"}
    assert rows["cnnf"]["chapters"] == ["05_feedback", "07_evaluation"]
    assert rows["cnnf"]["metrics"] == {"clean_acc": 40.0, "noise_acc": 35.0}  # a tie: the earlier chapter
    assert rows["cnnf-ff"]["metrics"] == {"clean_acc": 45.0, "fgsm_acc": 20.0}
    assert rows["cnnf-ff"]["name"] == "CNN (CNN-F's forward path, PGD-trained)"
    # raw rows without a key (as a caller may build them) join by the key of their display name
    raw = [dict(r, key=None) for r in results.load_all(tmp_path)]
    assert {r["key"] for r in results.merge(raw)} == {"cnnf", "cnnf-ff", None}
