"""The shipped model refuses what is not a mouse face and still scores fresh synthetic faces
(real LiteRT int8 inference at 299 px on the shipped file)."""

import csv
import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from amgs.cli import main
from amgs.models import DEFAULT_MODEL
from amgs.models.controls import KINDS, make_controls
from amgs.scoring import UNSCORABLE
from amgs.synth.dataset import write_dataset


def test_controls_come_out_unscorable(scorer):
    """Two of every control kind (flat 0/128, noise, patterns, no-face scenes, exposure, photos)."""
    scores = {c.name: scorer.score(c.pixels) for c in make_controls(2, seed=11)}
    assert len(scores) == 2 * len(KINDS)
    scored = sorted(name for name, s in scores.items() if s.outcome != UNSCORABLE)
    assert not scored, f"scored as if they were mouse faces: {scored}"
    assert scores["flat_000"].unscorable_reason in ("out_of_domain", "quality")


def test_domain_check_alone_rejects_photos_and_noise(scorer):
    """Without the quality gate's help: the model's own features reject real photos and noise."""
    from amgs.preprocess import prepare

    for c in make_controls(3, seed=12, kinds=("photo", "uniform_noise", "gaussian_noise", "checkerboard")):
        s = scorer.score_input(prepare(c.pixels, scorer.manifest.input))  # no pixel quality gate here
        assert s.unscorable_reason == "out_of_domain", (c.name, s.domain_distance)


def test_fresh_faces_of_unseen_animals_are_scored(scorer, tmp_path):
    root = write_dataset(tmp_path / "fresh", 24, seed=7070, size=299, n_animals=4).root
    scores = [scorer.score(f) for sub in ("pain", "no pain") for f in sorted((root / sub).iterdir())]
    unscorable = [s.domain_distance for s in scores if s.outcome == UNSCORABLE]
    assert len(unscorable) <= 1, f"fresh synthetic faces called unscorable (distances {unscorable})"
    assert all(s.domain_distance is not None for s in scores)


def test_score_csv_columns_and_summary_count_unscorable(tmp_path, synth_set):
    data = tmp_path / "data"
    (data / "faces").mkdir(parents=True)
    for f in sorted((synth_set / "pain").glob("synth_*.jpg"))[:3]:
        (data / "faces" / f.name).write_bytes(f.read_bytes())
    (data / "controls").mkdir()
    for c in make_controls(1, seed=5, kinds=("flat", "uniform_noise", "photo")):
        Image.fromarray(c.pixels).save(data / "controls" / f"{c.name}.png")
    r = CliRunner().invoke(main, ["score", str(data), "--no-progress"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {"outcome", "unscorable_reason", "model", "model_version", "synthetic", "model_sha256"} <= set(
        rows[0]
    )
    assert {row["model"] for row in rows} == {"amgs-inceptionv3-synthetic"}
    assert {row["synthetic"] for row in rows} == {"True"}
    controls = [row for row in rows if "/controls/" in row["path"]]
    assert len(controls) == 3 and all(row["outcome"] == "unscorable" for row in controls)
    assert all(row["unscorable_reason"] in ("out_of_domain", "quality") for row in controls)
    err = r.stderr
    assert err.index("SYNTHETIC") < err.index("mean aMGS"), "the warning comes before any result"
    assert "unscorable 3" in err


@pytest.mark.slow
def test_exposing_outputs_changes_nothing_the_model_computed(tmp_path):
    """Strip the shipped model's features/logits outputs, add them back: pain and au are bit-identical.
    (features_mixed5 stays: its MEAN op is part of the shipped graph; tests/test_runtime.py and the shipped
    manifest's evaluation cover it.)"""
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    from amgs.models.expose import expose_outputs, find_head

    model = flatbuffer_utils.read_model(str(DEFAULT_MODEL))
    sig = model.signatureDefs[0]
    keep = [o for o in sig.outputs if o.name not in (b"features", b"logits", "features", "logits")]
    sig.outputs = keep
    model.subgraphs[0].outputs = np.array([o.tensorIndex for o in keep], dtype=np.int32)
    stripped, exposed = tmp_path / "stripped.tflite", tmp_path / "exposed.tflite"
    flatbuffer_utils.write_model(model, str(stripped))
    assert find_head(flatbuffer_utils.read_model(str(stripped)))[0] >= 0
    assert expose_outputs(stripped, exposed) is True
    assert expose_outputs(exposed, tmp_path / "again.tflite") is False
    x = np.random.default_rng(0).integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    outs = []
    for path in (stripped, exposed):
        runner = Interpreter(model_path=str(path)).get_signature_runner()
        outs.append(runner(input_layer=x))
    assert set(outs[1]) == {"pain", "au", "features", "features_mixed5", "logits"}
    for name in ("pain", "au"):
        assert np.array_equal(outs[0][name], outs[1][name])
