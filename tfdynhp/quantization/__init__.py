"""Int8 quantization-aware training (QAT) for Keras 3 that keeps pruned shapes.

- `quantize_aware(model, calibration_data=None)`: a copy of a plain (or stripped) model that
  simulates the int8 TFLite model (BatchNormalization folded, per-channel int8 kernels,
  per-tensor int8 activations with tracked or learned ranges, fused ReLU/ReLU6), to fine-tune
  with `fit`;
- `calibrate(qat_model, x)`: ranges from data, as post-training calibration sets them;
- `freeze(qat_model)`: the export form `tfdynhp.converters.to_int8_tflite` converts (it does
  so by itself when given a QAT model, without representative data);
- `logits_model(qat_model)`: the same model without its final softmax, to compare logits;
- `QATPhase`: the quantization-aware phase of a DynHP run (`DynHPCallback(final_phase="qat")`
  prunes to the target, then fine-tunes the same model quantization-aware in the same `fit`);
  `quantized_forward(model)`: the graph a gated model runs in that phase;
- `arithmetic`: the int8 arithmetic as pure NumPy functions;
- layers `ActivationQuantizer`, `QuantizedLayer`.

What each layer becomes is read from its layer type (`tfdynhp.layer_types`, `Quantization`).
"""

from tfdynhp.quantization import arithmetic
from tfdynhp.quantization.export import (
    check_ranges_set,
    freeze,
    logits_model,
    quantization_table,
)
from tfdynhp.quantization.layers import ActivationQuantizer, QuantizedLayer
from tfdynhp.quantization.phase import QATPhase, quantized_forward
from tfdynhp.quantization.wrap import calibrate, is_quantized_model, quantize_aware, quantizers

__all__ = [
    "ActivationQuantizer",
    "QATPhase",
    "QuantizedLayer",
    "arithmetic",
    "calibrate",
    "check_ranges_set",
    "freeze",
    "is_quantized_model",
    "logits_model",
    "quantization_table",
    "quantize_aware",
    "quantized_forward",
    "quantizers",
]
