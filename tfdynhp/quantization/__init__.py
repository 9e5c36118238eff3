"""Int8 quantization-aware training (QAT) for Keras 3 that keeps pruned shapes.

- `quantize_aware(model, calibration_data=None)`: a copy of a plain (or stripped) model that
  simulates the int8 TFLite model (BatchNormalization folded, per-channel int8 kernels,
  per-tensor int8 activations with tracked or learned ranges, fused ReLU/ReLU6), to fine-tune
  with `fit`;
- `calibrate(qat_model, x)`: ranges from data, as post-training calibration sets them;
- `freeze(qat_model)`: the export form `tfdynhp.converters.to_int8_tflite` converts (it does
  so by itself when given a QAT model, without representative data);
- `logits_model(qat_model)`: the same model without its final softmax, to compare logits;
- `arithmetic`: the int8 arithmetic as pure NumPy functions;
- layers `ActivationQuantizer`, `QuantizedLayer`.
"""

from tfdynhp.quantization import arithmetic
from tfdynhp.quantization.export import (
    check_ranges_set,
    freeze,
    logits_model,
    quantization_table,
)
from tfdynhp.quantization.layers import ActivationQuantizer, QuantizedLayer
from tfdynhp.quantization.wrap import calibrate, is_quantized_model, quantize_aware, quantizers

__all__ = [
    "ActivationQuantizer",
    "QuantizedLayer",
    "arithmetic",
    "calibrate",
    "check_ranges_set",
    "freeze",
    "is_quantized_model",
    "logits_model",
    "quantization_table",
    "quantize_aware",
    "quantizers",
]
