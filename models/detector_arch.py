"""The face detector network: MobileNetV2 (alpha 0.35) backbone + a CenterNet-style head at stride 8.

Why this shape:
* MobileNetV2's ops (conv, depthwise conv, add, ReLU6) and the head's (1x1 conv, nearest-neighbour
  resize, add, logistic) are all on the Edge TPU's supported list and quantize to full int8. (Keras'
  ``UpSampling2D`` exports as SHAPE/TILE, which the Edge TPU does not run; ``Resizing`` exports as
  RESIZE_NEAREST_NEIGHBOR.)
* Three backbone levels (stride 8, 16, 32) are merged top-down (a small FPN) so the stride-8 grid that
  finds faces of 20-110 input pixels still sees context (a face vs. the back of a mouse).
* One sigmoid output [H, W, 5] (heat, offsets, size; see ``amgs.detect``): every channel lives in 0-1,
  so one int8 scale (1/256) represents all of them without clipping.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from amgs.detect import CHANNELS

BACKBONE_LEVELS = ("block_5_add", "block_12_add", "block_16_project_BN")  # strides 8, 16, 32
STRIDE = 8
HEAD_CHANNELS = 48
HEAT_PRIOR = 0.05


def _conv_bn(x, filters: int, name: str, kernel: int = 1):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def _sep(x, filters: int, name: str):
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_dwbn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dwrelu")(x)
    return _conv_bn(x, filters, name)


def build_detector(size: int = 320, alpha: float = 0.35) -> keras.Model:
    """Input: float (pixel - 127.5) / 127.5, size x size x 3. Output ``grid``: sigmoid [size/8, size/8, 5]."""
    if size % 32:
        raise ValueError(f"detector input size must be a multiple of 32, got {size}")
    backbone = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None
    )
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.9  # Keras' 0.99 lags the weights in short runs (docs/models.md, lessons)
    c8, c16, c32 = (backbone.get_layer(n).output for n in BACKBONE_LEVELS)
    p = _conv_bn(c32, HEAD_CHANNELS, "lat32")
    p = layers.Resizing(size // 16, size // 16, interpolation="nearest", name="up32")(p)
    p = layers.Add(name="fuse16")([p, _conv_bn(c16, HEAD_CHANNELS, "lat16")])
    p = _sep(p, HEAD_CHANNELS, "smooth16")
    p = layers.Resizing(size // 8, size // 8, interpolation="nearest", name="up16")(p)
    p = layers.Add(name="fuse8")([p, _conv_bn(c8, HEAD_CHANNELS, "lat8")])
    p = _sep(p, HEAD_CHANNELS, "smooth8a")
    p = _sep(p, HEAD_CHANNELS, "smooth8b")
    bias = [math.log(HEAT_PRIOR / (1 - HEAT_PRIOR)), 0.0, 0.0, -1.5, -1.5]
    out = layers.Conv2D(
        len(CHANNELS), 1, name="grid_logits", bias_initializer=keras.initializers.Constant(bias)
    )(p)
    out = layers.Activation("sigmoid", name="grid")(out)
    return keras.Model(backbone.input, out, name=f"amgs_face_detector_mnv2_{alpha}_{size}")
