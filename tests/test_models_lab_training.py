"""Training a lab can run on its own: ImageNet weights checked by Keras' own hash, animals from file
names, an honest split, a held-out test report, the AU pain cut-off, evaluate leaving manifests alone."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from amgs.cli import main
from amgs.datasets import DatasetError
from amgs.models.split import animals_from_names, read_split, split_three, write_split
from amgs.models.weights import NOTOP_FILE, KerasHash, WeightsError, import_weights, keras_notop_hash


def test_keras_hash_is_read_from_the_installed_keras_source():
    h = keras_notop_hash()
    assert re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{64}", h.value)
    assert h.algorithm == ("sha256" if len(h.value) == 64 else "md5")
    source = h.source.read_text()
    assert "site-packages" in str(h.source) and h.source.name == "inception_v3.py"
    # the hash sits in the same get_file call as the notop file name
    call = source[source.index(f'"{NOTOP_FILE}"') :][:400]
    assert h.value in call


def test_weights_import_checks_the_hash_and_stores_where_keras_looks(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    good = tmp_path / "copied.h5"
    good.write_bytes(b"pretend these are InceptionV3 notop weights" * 100)
    expected = KerasHash(hashlib.md5(good.read_bytes()).hexdigest(), "md5", Path("injected-by-test"))
    target = import_weights(good, expected=expected)
    assert target == tmp_path / "kh" / "models" / NOTOP_FILE
    assert target.read_bytes() == good.read_bytes()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".import-")]

    wrong = tmp_path / "wrong.h5"
    wrong.write_bytes(b"some other file")
    target.unlink()
    with pytest.raises(WeightsError, match=r"has md5 [0-9a-f]{32}, but Keras expects " + expected.value):
        import_weights(wrong, expected=expected)
    assert not target.exists()  # nothing stored


def test_weights_import_command_refuses_a_wrong_file_against_the_real_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    junk = tmp_path / NOTOP_FILE
    junk.write_bytes(b"truncated download")
    r = CliRunner().invoke(main, ["model", "weights", "import", str(junk)])
    assert r.exit_code == 1
    assert "Keras expects " + keras_notop_hash().value in r.output
    assert not (tmp_path / "kh" / "models" / NOTOP_FILE).exists()
    r = CliRunner().invoke(main, ["model", "weights", "status"])
    assert r.exit_code == 1 and "missing" in r.output


def test_head_recipe_on_random_weights_is_refused(tmp_path):
    from amgs.models.train import TrainConfig, check_config, resolve_recipe

    with pytest.raises(ValueError, match="frozen RANDOM backbone"):
        check_config(TrainConfig(recipe="head", weights="none"))
    assert resolve_recipe("auto", "imagenet") == "head"
    assert resolve_recipe("auto", "none") == "finetune"
    (tmp_path / "d" / "pain").mkdir(parents=True)
    r = CliRunner().invoke(
        main,
        [
            "model",
            "train",
            str(tmp_path / "d"),
            "-o",
            str(tmp_path / "r"),
            "--recipe",
            "head",
            "--weights",
            "none",
        ],
    )
    assert r.exit_code == 1 and "frozen RANDOM backbone" in r.output


def test_animal_ids_from_names_and_an_honest_split(tmp_path):
    paths = ["pain/CTC03_day2_0141.jpg", "no pain/AJ F4 post 12h.jpg", "x/CTC11_0001.jpg", "odd.jpg"]
    ids, missed = animals_from_names(paths, ["", "", "", ""], r"^(?:(?P<animal>CTC\d+)_|AJ (?P<a2>\w+) )")
    # named group 'animal' wins; AJ row has no 'animal' group value -> missed
    assert list(ids) == ["CTC03", "", "CTC11", ""] and missed == [paths[1], paths[3]]
    ids, _ = animals_from_names(paths, ["", "", "", "M9"], r"^(CTC\d+|AJ \w+)")
    assert list(ids) == ["CTC03", "AJ F4", "CTC11", "M9"]  # animals.csv (known) wins
    with pytest.raises(DatasetError, match="not a regular expression"):
        animals_from_names(paths, [""] * 4, "(")

    animals = np.array([f"A{i % 10}" for i in range(200)])
    s = split_three(animals, 0.15, 0.2, seed=1)
    parts = [set(animals[s.train]), set(animals[s.val]), set(animals[s.test])]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sorted(np.concatenate([s.train, s.val, s.test])) == list(range(200))
    assert s.by == "animal" and "split by animal" in s.describe(animals)
    by_image = split_three(np.array([""] * 50), 0.2, 0.2)
    assert by_image.by == "image" and "BY IMAGE" in by_image.describe(np.array([""] * 50))
    assert (
        "animals" not in by_image.describe(np.array([""] * 50)).rsplit(":", 1)[1]
    )  # no per-part animal counts

    paths = np.array([f"img{i}.jpg" for i in range(200)])
    write_split(tmp_path / "split.csv", paths, animals, s)
    again = read_split(tmp_path / "split.csv", paths, animals)
    assert [list(x) for x in (again.train, again.val, again.test)] == [
        list(x) for x in (s.train, s.val, s.test)
    ]
    listed = (tmp_path / "test_images.txt").read_text().split()
    assert sorted(listed) == sorted(paths[s.test])
    with pytest.raises(DatasetError, match="new run folder"):
        read_split(tmp_path / "split.csv", paths[:-1], animals[:-1])


@pytest.mark.slow
def test_evaluate_leaves_the_manifest_alone_unless_asked(synth_set, tmp_path, model_path):
    import shutil

    before = model_path.with_suffix(".manifest.json").read_bytes()
    r = CliRunner().invoke(
        main, ["model", "evaluate", str(model_path), str(synth_set), "-o", str(tmp_path / "a")]
    )
    assert r.exit_code == 0, r.output
    assert model_path.with_suffix(".manifest.json").read_bytes() == before
    assert (tmp_path / "a" / "figures.json").exists()
    r = CliRunner().invoke(
        main, ["model", "evaluate", str(model_path), str(synth_set), "-o", str(tmp_path / "b"), "--record"]
    )
    assert r.exit_code == 1 and "shipped model" in r.output
    assert model_path.with_suffix(".manifest.json").read_bytes() == before
    copy = tmp_path / "m" / model_path.name
    copy.parent.mkdir()
    shutil.copy(model_path, copy)
    shutil.copy(model_path.with_suffix(".manifest.json"), copy.with_suffix(".manifest.json"))
    r = CliRunner().invoke(
        main,
        [
            "model",
            "evaluate",
            str(copy),
            str(synth_set),
            "-o",
            str(tmp_path / "c"),
            "--record",
            "--dataset-name",
            "lab-x",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(copy.with_suffix(".manifest.json").read_text())["evaluation"][-1]["dataset"] == "lab-x"
    # only the listed images (a training run's test_images.txt)
    some = sorted(str(p.relative_to(synth_set)) for p in (synth_set / "pain").glob("*.jpg"))[:3]
    (tmp_path / "list.txt").write_text("\n".join(some) + "\n")
    r = CliRunner().invoke(
        main,
        [
            "model",
            "evaluate",
            str(model_path),
            str(synth_set),
            "-o",
            str(tmp_path / "d"),
            "--images",
            str(tmp_path / "list.txt"),
        ],
    )
    assert r.exit_code == 0, r.output
    figs = json.loads((tmp_path / "d" / "figures.json").read_text())
    assert figs["tp"] + figs["fp"] + figs["tn"] + figs["fn"] == 3


@pytest.mark.slow
def test_train_on_a_lab_folder_splits_by_animal_from_names_and_reports_the_test_part(tmp_path):
    from lab_helpers import make_lab_folder

    lab = make_lab_folder(tmp_path / "lab", 40, size=80, n_animals=8)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "model",
            "train",
            str(lab),
            "-o",
            str(out),
            "--weights",
            "none",
            "--size",
            "75",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--steps-per-epoch",
            "2",
            "--bn-recalibration-batches",
            "1",
            "--animal-from-name",
            r"^(CTC\d+)_",
            "--pain-cutoff",
            "0.9",
            "--test-fraction",
            "0.25",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "recipe finetune" in r.output and "split by animal" in r.output and "BY IMAGE" not in r.output
    record = json.loads((out / "train.json").read_text())
    assert record["split_by"] == "animal" and record["config"]["pain_cutoff"] == 0.9
    assert record["test_animals"] and not set(record["test_animals"]) & set(record["val_animals"])
    split = (out / "split.csv").read_text().splitlines()[1:]
    part_of = {}
    for line in split:
        path, animal, part = line.rsplit(",", 2)
        assert animal == Path(path).name.split("_")[0]
        part_of.setdefault(animal, set()).add(part)
    assert all(len(p) == 1 for p in part_of.values())  # no animal in two parts
    assert len((out / "test_images.txt").read_text().split("\n")) - 1 == record["n_test"] > 0
    report = (out / "test" / "report.md").read_text()
    assert "animals never seen in training" in report and "FLOAT" in report

    # without animal ids the run says "by image", never "held-out animals"
    r = CliRunner().invoke(
        main,
        [
            "model",
            "train",
            str(lab),
            "-o",
            str(tmp_path / "run2"),
            "--weights",
            "none",
            "--size",
            "75",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--steps-per-epoch",
            "1",
            "--bn-recalibration-batches",
            "0",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "BY IMAGE" in r.output and "held-out animals" not in r.output
    assert "NO animal ids" in (tmp_path / "run2" / "test" / "report.md").read_text()
