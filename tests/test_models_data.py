"""Data loading for training goes through amgs.preprocess, and a split never leaks an animal."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amgs.datasets import DatasetError
from amgs.manifest import InputSpec
from amgs.models.data import load_arrays, split_by_animal
from amgs.preprocess import load_pixels, prepare


def test_split_never_puts_an_animal_on_both_sides():
    animals = np.array([f"m{i % 7}" for i in range(70)])
    train, val = split_by_animal(animals, 0.3, seed=1)
    assert set(animals[train]).isdisjoint(animals[val])
    assert len(train) + len(val) == 70 and set(train) | set(val) == set(range(70))
    assert 0.2 <= len(val) / 70 <= 0.45


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", ""]), min_size=2, max_size=60),
    st.floats(0.05, 0.6),
    st.integers(0, 1000),
)
def test_split_property_no_leak(animals, fraction, seed):
    animals = np.array(animals)
    if len(set(a or f"img{i}" for i, a in enumerate(animals))) < 2:
        with pytest.raises(DatasetError, match="one animal"):
            split_by_animal(animals, fraction, seed)
        return
    train, val = split_by_animal(animals, fraction, seed)
    known = animals != ""
    assert set(animals[train][known[train]]).isdisjoint(animals[val][known[val]])
    assert len(train) > 0 and len(val) > 0
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(animals)))


def test_split_refuses_a_single_animal():
    with pytest.raises(DatasetError, match="one animal"):
        split_by_animal(np.array(["m1"] * 10), 0.2)


def test_arrays_are_the_device_pixels_bit_for_bit(synth_set, tmp_path):
    data = load_arrays(synth_set, 96, cache_dir=tmp_path)
    assert data.pixels.shape == (24, 96, 96, 3) and data.pixels.dtype == np.uint8
    assert set(data.labels.tolist()) == {0, 1} and data.has_au and all(data.animals)
    spec = InputSpec(height=96, width=96, dtype="uint8", quantization=(2 / 255, 128))
    for i in (0, 7):
        path = synth_set / data.paths[i]
        assert np.array_equal(data.pixels[i], load_pixels(path, (96, 96)).pixels)
        assert np.array_equal(prepare(path, spec)[0], prepare(data.pixels[i], spec)[0])
    # human MGS = mean over units and raters, from au_scores.csv
    assert np.all((data.mgs >= 0) & (data.mgs <= 2))
    # the cache returns the same arrays
    again = load_arrays(synth_set, 96, cache_dir=tmp_path)
    assert np.array_equal(again.pixels, data.pixels) and list(again.paths) == list(data.paths)


def test_corrupt_image_is_skipped_and_named(synth_set, tmp_path, caplog):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(synth_set, root)
    victim = next((root / "pain").iterdir())
    victim.write_bytes(b"not a jpeg")
    data = load_arrays(root, 75)
    assert len(data) == 23
    assert victim.name in caplog.text


def test_no_labels_is_a_clear_error(tmp_path):
    (tmp_path / "misc").mkdir()
    with pytest.raises(DatasetError, match="no labelled images"):
        load_arrays(tmp_path, 75)


def test_face_boxes_crop_training_images(synth_set, tmp_path):
    """Images with a face box (boxes.json, numbers as strings) are cropped by the one preprocessing path."""
    import json

    from PIL import Image

    root = tmp_path / "framed"
    (root / "frames").mkdir(parents=True)
    faces = sorted((synth_set / "pain").iterdir())[:2] + sorted((synth_set / "no pain").iterdir())[:2]
    rows, boxes = ["filename,label"], {}
    for i, face in enumerate(faces):
        frame = Image.new("RGB", (400, 300), (90, 90, 90))
        frame.paste(Image.open(face), (30 + 20 * i, 40))
        name = f"frames/f{i}.png"
        frame.save(root / name)
        rows.append(f"{name},{1 if 'pain' == face.parent.name else 0}")
        boxes[name] = [
            {"AnimalNumber": "1", "Boundingbox": {"x": str(30 + 20 * i), "y": "40", "w": "160", "h": "160"}}
        ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "boxes.json").write_text(json.dumps(boxes))
    data = load_arrays(root, 80)
    assert data.labels.tolist() == [1, 1, 0, 0]
    for i, rel in enumerate(data.paths):
        j = int(rel[-5])
        expected = load_pixels(root / rel, (80, 80), (30 + 20 * j, 40, 160, 160)).pixels
        assert np.array_equal(data.pixels[i], expected)
        # the crop is the face, not the grey frame: same pixels as the face file itself, up to JPEG/PNG
        assert (
            np.abs(data.pixels[i].astype(int) - load_pixels(faces[j], (80, 80)).pixels.astype(int)).mean() < 3
        )
