"""Training set-up without training: recipes, weights files, the masked AU loss, BN recalibration."""

import numpy as np
import pytest

from amgs.models.train import TrainConfig, build_for_training, masked_mse, recalibrate_batch_norm


def test_masked_mse_ignores_unscored_units_by_hand():
    y_true = np.array([[1.0, np.nan, 2.0, 0.0, np.nan], [np.nan] * 5], dtype=np.float32)
    y_pred = np.array([[1.5, 9.0, 1.0, 0.0, 9.0], [1.0] * 5], dtype=np.float32)
    loss = np.asarray(masked_mse(y_true, y_pred))
    assert loss[0] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert loss[1] == 0.0  # nothing scored: no gradient, no NaN


@pytest.mark.slow
def test_head_recipe_trains_only_the_heads_and_weights_files_load(tmp_path):
    import keras

    head = build_for_training(TrainConfig(size=75, recipe="head", weights="none"))
    trainable = {v.path.split("/")[0] for v in head.trainable_variables}
    assert trainable == {"pain", "au_sigmoid"}
    full = build_for_training(TrainConfig(size=75, recipe="finetune", weights="none", bn_momentum=0.8))
    assert len(full.trainable_variables) > 100
    assert all(
        layer.momentum == 0.8 for layer in full.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    # a whole-model weights file saved at one size loads at another
    full.save_weights(tmp_path / "m.weights.h5")
    other = build_for_training(TrainConfig(size=96, weights=str(tmp_path / "m.weights.h5")))
    for a, b in zip(full.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # quantization can export at another input size than training used
    from amgs.models.package import at_size

    bigger = at_size(full, 96)
    assert bigger.input_shape == (None, 96, 96, 3) and sorted(bigger.output_names) == ["au", "pain"]
    assert all(np.array_equal(a, b) for a, b in zip(full.get_weights(), bigger.get_weights(), strict=True))
    assert at_size(full, 75) is full
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_for_training(TrainConfig(size=75, weights=str(tmp_path / "missing.h5")))
    (tmp_path / "junk.h5").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="not a whole aMGS model.*not Keras. ImageNet notop"):
        build_for_training(TrainConfig(size=75, weights=str(tmp_path / "junk.h5")))

    # precise BN: moving statistics become the average of the batch statistics, weights untouched
    bn = next(layer for layer in full.layers if isinstance(layer, keras.layers.BatchNormalization))
    before = [w.copy() for w in full.get_weights()]
    pixels = np.random.default_rng(0).integers(0, 256, (8, 75, 75, 3), dtype=np.uint8)
    assert recalibrate_batch_norm(full, pixels, batches=2, batch_size=4) == 2
    assert bn.momentum == 0.8  # restored
    assert not np.allclose(np.asarray(bn.moving_mean), 0.0)
    changed = [not np.array_equal(a, b) for a, b in zip(before, full.get_weights(), strict=True)]
    assert sum(changed) == 2 * sum(isinstance(la, keras.layers.BatchNormalization) for la in full.layers)
