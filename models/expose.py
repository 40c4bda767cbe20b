"""Expose a converted model's features and pain logits as extra named outputs, without retraining.

The in-domain check (:mod:`amgs.domain`) reads features of the very int8 network that scores, and
temperature scaling needs the logits (the uint8 softmax saturates at 255/256). Outputs added:

- ``features``: the pooled penultimate features (input of the ``pain`` FULLY_CONNECTED), 2048 values;
- ``logits``: the ``pain`` FULLY_CONNECTED's output, before the softmax;
- ``features_mixed5``: the channel means of InceptionV3's ``mixed5`` block (17x17x768 -> 768), made by one
  MEAN op appended to the graph (the same op, axes and quantization as the network's own global average
  pool). Measured in docs/models.md: mid-level features tell faces from non-faces far better than the
  penultimate ones, which collapse and saturate on inputs unlike the training set.

Weights and the existing outputs are unchanged bit for bit; the appended MEAN reads a map the network
computes anyway. Needs TensorFlow (its flatbuffer schema), like the rest of the model tooling.
"""

from __future__ import annotations

from pathlib import Path

FEATURES_OUTPUT = "features"
LOGITS_OUTPUT = "logits"
MID_LAYER = "mixed5"
MID_OUTPUT = f"features_{MID_LAYER}"
OUTPUTS = (FEATURES_OUTPUT, LOGITS_OUTPUT, MID_OUTPUT)


class ExposeError(ValueError):
    """The graph is not shaped as an aMGS model (pain softmax fed by one fully connected layer)."""


def _producers(subgraph) -> dict[int, object]:
    return {int(t): op for op in subgraph.operators for t in op.outputs}


def _op_name(model, op) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def find_head(model, pain_name: str = "pain") -> tuple[int, int]:
    """(features tensor, logits tensor) of the ``pain`` head: walk back QUANTIZE? <- SOFTMAX <- FULLY_CONNECTED."""
    if not model.signatureDefs:
        raise ExposeError("the model has no serving signature: re-convert it with `amgs model quantize`")
    sig = model.signatureDefs[0]
    outputs = {o.name.decode() if isinstance(o.name, bytes) else o.name: o.tensorIndex for o in sig.outputs}
    if pain_name not in outputs:
        raise ExposeError(f"the model's signature has no {pain_name!r} output (it has {sorted(outputs)})")
    subgraph = model.subgraphs[sig.subgraphIndex]
    producers = _producers(subgraph)
    tensor = outputs[pain_name]
    for _ in range(4):  # QUANTIZE / DEQUANTIZE wrappers, then SOFTMAX, then the dense layer
        op = producers.get(int(tensor))
        if op is None:
            break
        name = _op_name(model, op)
        if name == "FULLY_CONNECTED":
            return int(op.inputs[0]), int(op.outputs[0])
        if name not in ("QUANTIZE", "DEQUANTIZE", "SOFTMAX"):
            break
        tensor = op.inputs[0]
    raise ExposeError(
        f"no FULLY_CONNECTED layer feeds the {pain_name!r} softmax: this is not an aMGS head "
        "(build the model with amgs.models.architecture)"
    )


def _pool_layer(model, subgraph, layer: str) -> int:
    """Append MEAN(layer's output map over height and width) to the graph; return the new tensor's index."""
    import copy

    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema

    def name_of(t) -> str:
        return t.name.decode() if isinstance(t.name, bytes) else str(t.name)

    maps = [
        i
        for i, t in enumerate(subgraph.tensors)
        if f"/{layer}" in name_of(t) and name_of(t).endswith("concat") and len(t.shape) == 4
    ]
    pools = [op for op in subgraph.operators if _op_name(model, op) == "MEAN"]
    if len(maps) != 1 or not pools:
        raise ExposeError(
            f"no single {layer!r} block output and global average pool in the graph ({len(maps)} candidates): "
            "not a Keras InceptionV3 converted by `amgs model quantize`"
        )
    src, gap = subgraph.tensors[maps[0]], pools[-1]
    out = schema.TensorT()
    out.name = f"amgs/{MID_OUTPUT}/Mean".encode()
    out.shape = np.array([src.shape[0], src.shape[-1]], dtype=np.int32)
    out.type = src.type
    out.buffer = 0
    out.quantization = copy.deepcopy(src.quantization)  # a mean of int8 values fits the input's scale
    subgraph.tensors.append(out)
    op = schema.OperatorT()
    op.opcodeIndex = gap.opcodeIndex
    op.inputs = np.array([maps[0], gap.inputs[1]], dtype=np.int32)  # the pool's own axes constant (1, 2)
    op.outputs = np.array([len(subgraph.tensors) - 1], dtype=np.int32)
    op.builtinOptionsType = gap.builtinOptionsType
    op.builtinOptions = copy.deepcopy(gap.builtinOptions)
    subgraph.operators.append(op)
    return len(subgraph.tensors) - 1


def expose_outputs(src: Path, dst: Path) -> bool:
    """Write ``dst`` = ``src`` plus the :data:`OUTPUTS` it lacks; False (and a plain copy) if it has them all."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    sig = model.signatureDefs[0] if model.signatureDefs else None
    names = {(o.name.decode() if isinstance(o.name, bytes) else o.name) for o in (sig.outputs if sig else [])}
    if set(OUTPUTS) <= names:
        Path(dst).write_bytes(Path(src).read_bytes())
        return False
    features, logits = find_head(model)
    subgraph = model.subgraphs[sig.subgraphIndex]
    current = [int(t) for t in subgraph.outputs]
    mid = _pool_layer(model, subgraph, MID_LAYER) if MID_OUTPUT not in names else -1
    for name, index in ((FEATURES_OUTPUT, features), (LOGITS_OUTPUT, logits), (MID_OUTPUT, mid)):
        if name in names:
            continue
        if index not in current:
            current.append(index)
        entry = schema.TensorMapT()
        entry.name = name
        entry.tensorIndex = index
        sig.outputs.append(entry)
    subgraph.outputs = np.array(current, dtype=np.int32)
    tmp = Path(str(dst) + ".tmp")
    flatbuffer_utils.write_model(model, str(tmp))
    tmp.replace(dst)
    return True
