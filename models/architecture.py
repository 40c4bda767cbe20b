"""The aMGS network: Keras InceptionV3 backbone, a pain / no-pain softmax, and optional 5 AU heads.

Needs TensorFlow/Keras (the ``models`` extra); the device never imports this module.
"""

from __future__ import annotations

from typing import Any

PAIN_OUTPUT = "pain"
AU_OUTPUT = "au"


def build_model(
    size: int = 299,
    *,
    weights: str | None = None,
    au_heads: bool = True,
    dropout: float = 0.2,
    freeze_backbone: bool = False,
) -> Any:
    """InceptionV3 (``weights``: None for random init, "imagenet", or a local weights file) + heads.

    Outputs are named so the TFLite signature and the manifest use the same names:
    ``pain`` = softmax over ("no pain", "pain"), ``au`` = five action units on 0-2 (sigmoid x 2).
    """
    import keras

    backbone = keras.applications.InceptionV3(
        include_top=False,
        weights=weights,
        input_shape=(size, size, 3),
        pooling="avg",
    )
    backbone.trainable = not freeze_backbone
    features = backbone.output
    if dropout:
        features = keras.layers.Dropout(dropout)(features)
    outputs = {PAIN_OUTPUT: keras.layers.Dense(2, activation="softmax", name=PAIN_OUTPUT)(features)}
    if au_heads:
        au = keras.layers.Dense(5, activation="sigmoid", name="au_sigmoid")(features)
        outputs[AU_OUTPUT] = keras.layers.Rescaling(2.0, name=AU_OUTPUT)(au)
    return keras.Model(backbone.input, outputs, name="amgs_inception_v3")
