"""Check an int8 `.tflite` against what was expected of it: its per-op quantization parameters,
and its outputs against a quantization-aware model's simulated int8 outputs.

- `op_quantization(tflite_bytes)`: for each operator in execution order, its output's scale and
  zero point and the per-channel scales and shape of its weights (if any);
- `compare_with_simulation(tflite_bytes, simulated, x, runtime)`: runs `x` in LiteRT or TFLite
  Micro and measures, in quantization steps of the output tensor, how far the int8 outputs are
  from `simulated` (e.g. `qat_model.predict(x)`);
- `rescaling_ignored(tflite_bytes)`: the ops whose output scale differs from their input's
  although TFLite Micro's kernel ignores the output scale (RELU6): LiteRT and TFLite Micro
  compute different things there.
"""

import dataclasses

import numpy as np
from tfdynhp.converters import runtimes, tflite_model


@dataclasses.dataclass(frozen=True)
class OpQuantization:
    """Quantization of one operator of a `.tflite` model.

    Attributes:
        op: Builtin operator name, e.g. `"CONV_2D"`.
        output_scale: Scale of its (first) output, `0.0` if not quantized.
        output_zero_point: Zero point of its output.
        output_shape: Shape of its output.
        weight_scales: Per-channel scales of its second input when that is a constant (the
            kernel of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), else `None`.
        weight_shape: Shape of that constant, else `None`.
    """

    op: str
    output_scale: float
    output_zero_point: int
    output_shape: tuple
    weight_scales: tuple | None
    weight_shape: tuple | None


# TFLite Micro kernels that clamp int8 values on their input's grid and ignore the output
# tensor's scale and zero point (activations_common.cc: RELU6's `six` is quantized with the
# input's parameters).
IGNORE_OUTPUT_SCALE = ("RELU6",)


def _params(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or not len(q.scale):
        return (), ()
    return tuple(float(s) for s in q.scale), tuple(int(z) for z in q.zeroPoint)


def op_quantization(tflite_bytes):
    """Per-operator quantization of the main subgraph, in execution order.

    Args:
        tflite_bytes: The `.tflite` model.

    Returns:
        A list of `OpQuantization`.

    Raises:
        ValueError: If the bytes are not a valid TFLite model.
    """
    tflite_bytes = tflite_model.check_tflite_bytes(tflite_bytes)
    schema = tflite_model._schema()
    model = tflite_model._unpack(tflite_bytes)
    names = tflite_model._enum_names(schema.BuiltinOperator)
    subgraph = model.subgraphs[0]
    tensors = subgraph.tensors
    result = []
    for op in subgraph.operators:
        out = tensors[op.outputs[0]]
        scales, zero_points = _params(out)
        weight_scales = weight_shape = None
        inputs = list(op.inputs)
        if len(inputs) > 1 and inputs[1] >= 0:
            weight = tensors[inputs[1]]
            if model.buffers[weight.buffer].data is not None:
                weight_scales = _params(weight)[0] or None
                weight_shape = tuple(int(d) for d in weight.shape)
        result.append(
            OpQuantization(
                op=tflite_model._op_name(model.operatorCodes[op.opcodeIndex], names),
                output_scale=scales[0] if scales else 0.0,
                output_zero_point=zero_points[0] if zero_points else 0,
                output_shape=tuple(int(d) for d in out.shape),
                weight_scales=weight_scales,
                weight_shape=weight_shape,
            )
        )
    return result


def rescaling_ignored(tflite_bytes):
    """Ops of `IGNORE_OUTPUT_SCALE` whose output is quantized differently from their input.

    Returns:
        A list of `(op name, operator index, (input scale, zero point), (output scale, zero
        point))`, empty when LiteRT and TFLite Micro agree on every such op.
    """
    tflite_bytes = tflite_model.check_tflite_bytes(tflite_bytes)
    schema = tflite_model._schema()
    model = tflite_model._unpack(tflite_bytes)
    names = tflite_model._enum_names(schema.BuiltinOperator)
    tensors = model.subgraphs[0].tensors
    found = []
    for index, op in enumerate(model.subgraphs[0].operators):
        name = tflite_model._op_name(model.operatorCodes[op.opcodeIndex], names)
        if name not in IGNORE_OUTPUT_SCALE:
            continue
        (in_scales, in_zeros), (out_scales, out_zeros) = (
            _params(tensors[op.inputs[0]]), _params(tensors[op.outputs[0]]))
        if not in_scales or not out_scales:
            continue  # a float op: rejected elsewhere
        source, result = (in_scales[0], in_zeros[0]), (out_scales[0], out_zeros[0])
        if source[1] != result[1] or abs(source[0] - result[0]) > 1e-6 * max(source[0],
                                                                             result[0]):
            found.append((name, index, source, result))
    return found


def compare_with_simulation(tflite_bytes, simulated, x, runtime="litert", arena_size=None):
    """Compares an int8 model's outputs with simulated int8 outputs, in quantization steps.

    `simulated` (e.g. a quantization-aware model's `predict(x)`) is mapped to the output
    tensor's int8 grid with the model's own scale and zero point; the runtime's raw int8
    outputs are then compared with it.

    Args:
        tflite_bytes: The int8 `.tflite` model (one input, one output).
        simulated: Float array `(num_samples,) + output_shape[1:]`.
        x: Float inputs `(num_samples,) + input_shape[1:]`.
        runtime: `"litert"` or `"tflm"`. Defaults to `"litert"`.
        arena_size: TFLite Micro arena size in bytes (TFLM only).

    Returns:
        Dict with `runtime`, `num_samples`, `argmax_agreement` (fraction of samples whose
        argmax over the outputs agrees), `within_one_step` and `exact` (fractions of output
        values at most 1 step, and 0 steps, away), `max_steps`, `mean_abs_steps`.

    Raises:
        ValueError: If `simulated` does not have one row per sample of the output's shape.
    """
    outputs, _ = runtimes.run_tflite(tflite_bytes, x, runtime, arena_size=arena_size)
    info = tflite_model.read_model_info(tflite_bytes).outputs[0]
    simulated = np.asarray(simulated, dtype=np.float32)
    if simulated.shape != outputs.shape:
        raise ValueError(
            f"`simulated` must have shape {outputs.shape} (one output per sample of `x`). "
            f"Received: shape={simulated.shape}."
        )
    expected = tflite_model.quantize(simulated, info).astype(np.int32)
    steps = np.abs(outputs.astype(np.int32) - expected)
    flat_out = outputs.reshape(len(outputs), -1)
    flat_sim = expected.reshape(len(expected), -1)
    return {
        "runtime": runtime,
        "num_samples": len(outputs),
        "argmax_agreement": float(np.mean(np.argmax(flat_out, 1) == np.argmax(flat_sim, 1))),
        "within_one_step": float(np.mean(steps <= 1)),
        "exact": float(np.mean(steps == 0)),
        "max_steps": int(steps.max()),
        "mean_abs_steps": float(steps.mean()),
    }


__all__ = [
    "IGNORE_OUTPUT_SCALE",
    "OpQuantization",
    "compare_with_simulation",
    "op_quantization",
    "rescaling_ignored",
]
