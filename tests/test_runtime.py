import json
import shutil

import numpy as np
import pytest

from amgs.manifest import ManifestError, read_manifest
from amgs.preprocess import prepare
from amgs.runtime import Model, RuntimeUnavailable, available_backends


def copy_model(model_path, tmp_path):
    dst = tmp_path / model_path.name
    shutil.copy(model_path, dst)
    shutil.copy(model_path.with_suffix(".manifest.json"), dst.with_suffix(".manifest.json"))
    return dst


def edit_manifest(path, fn):
    mpath = path.with_suffix(".manifest.json")
    data = json.loads(mpath.read_text())
    fn(data)
    mpath.write_text(json.dumps(data))


def test_shipped_model_is_full_int8_inception_299(model_path):
    m = Model(model_path)
    assert m.backend == "litert" and m.accelerator == "cpu"
    assert m.input.shape == (1, 299, 299, 3) and m.input.dtype in ("uint8", "int8")
    assert m.manifest.quantization == "full_int8" and m.manifest.architecture == "InceptionV3"
    assert m.manifest.synthetic is True
    assert set(m.outputs) == {"pain", "au", "features", "features_mixed5", "logits"}
    assert m.manifest.domain_check is not None and m.manifest.calibration is not None
    assert model_path.stat().st_size > 15e6  # a real InceptionV3, not a toy


def test_real_inference_gives_probabilities(scorer, synth_set):
    s = scorer.score(next((synth_set / "pain").iterdir()))
    assert 0 <= s.p_pain <= 1 and s.label in ("pain", "no pain") and s.inference_ms > 0
    assert s.au is not None and all(0 <= v <= 2 for v in s.au.values())


@pytest.mark.skipif("tensorflow" not in available_backends(), reason="tensorflow not installed")
def test_backends_agree(model_path, synth_set):
    img = next((synth_set / "no pain").iterdir())
    a = Model(model_path, backend="litert")
    b = Model(model_path, backend="tensorflow")
    x = prepare(img, a.manifest.input)
    oa, ob = a.run(x), b.run(x)
    for k in oa:
        np.testing.assert_allclose(oa[k], ob[k], atol=0.05)


def test_wrong_sha_is_refused(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
    with open(p, "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(ManifestError, match="sha256"):
        Model(p)


def test_wrong_shape_and_dtype_are_refused(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
    edit_manifest(p, lambda d: d["input"].update(height=224, width=224))
    with pytest.raises(ManifestError, match="input tensor"):
        Model(p)
    p = copy_model(model_path, tmp_path / "b") if (tmp_path / "b").mkdir() is None else None
    edit_manifest(p, lambda d: d["outputs"][0].update(dtype="float32"))
    with pytest.raises(ManifestError, match="output"):
        Model(p)


def test_bad_manifests_are_refused(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
    edit_manifest(
        p,
        lambda d: next(o for o in d["outputs"] if o["kind"] == "softmax").update(labels=["pain", "no pain"]),
    )
    with pytest.raises(ManifestError, match="labels"):
        read_manifest(p.with_suffix(".manifest.json"))
    edit_manifest(p, lambda d: d.update(unknown_key=1))
    with pytest.raises(ManifestError, match="unknown_key"):
        read_manifest(p.with_suffix(".manifest.json"))
    p.with_suffix(".manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest"):
        Model(p)


def test_edgetpu_requested_but_absent_says_what_is_missing(model_path, tmp_path):
    with pytest.raises(RuntimeUnavailable, match="not compiled for the Edge TPU"):
        Model(model_path, accelerator="edgetpu")
    p = copy_model(model_path, tmp_path)
    edit_manifest(p, lambda d: d.update(edgetpu_compiled=True))
    with pytest.raises(RuntimeUnavailable, match="libedgetpu"):
        Model(p, accelerator="edgetpu")
    # auto falls back to the CPU
    assert Model(p, accelerator="auto").accelerator == "cpu"


def test_unknown_backend_package_missing_is_clear(model_path):
    if "tflite_runtime" in available_backends():
        pytest.skip("tflite_runtime is installed here")
    with pytest.raises(RuntimeUnavailable, match="tflite_runtime"):
        Model(model_path, backend="tflite_runtime")
