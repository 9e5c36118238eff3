"""The quantization-aware phase of a DynHP run: once the target is met, the same `fit` goes on
fine-tuning the pruned model as its int8 simulation.

`DynHPCallback(final_phase="qat")` (or `final_phase=QATPhase(...)`) conducts the run; at the
epoch the target is met it freezes the gates and calls `QATPhase.start(model, samples)`, which

1. folds the gates into the model's own kernels (`tfdynhp.model.fold_gates`: the
   model then computes what `strip()` gives, with identity gates);
2. builds the quantization-aware graph over the model's own layers (`wrap.build(...,
   share=True)`: the kernels, biases and BatchNormalization parameters trained are the
   model's, so the optimizer and its state carry on), under the model's distribution
   strategy;
3. calibrates its ranges on `samples` (as post-training calibration would), or leaves them
   to the first training batch;
4. makes the model run it (`GatedModel.replace_forward`): the rest of the `fit`, `evaluate`
   and `predict` compute the simulated int8 model.

`tfdynhp.converters.to_int8_tflite(model)` then exports it with its ranges
(`quantized_forward`), and `tfdynhp.strip(model)` still gives the float model of the
fine-tuned weights.
"""

import numpy as np

from tfdynhp.quantization.wrap import build, calibrate, is_quantized_model
from tfdynhp.validation import check_integer, check_real

# Samples of the training data the phase calibrates its ranges on (as post-training
# calibration: `tfdynhp.datasets.shaping.representative_subset`).
CALIBRATION_SAMPLES = 500


class QATPhase:
    """Switches a gated model to quantization-aware training in the middle of its `fit`.

    Ranges are tracked by an exponential moving average (as TF-MOT does); learned ranges
    would be trainable variables the model's optimizer was not built for.

    Args:
        calibration_data: Float inputs whose min/max start the ranges. Defaults to `None`:
            the samples `DynHPCallback` passes (up to `calibration_samples` of the training
            arrays), else the first QAT training batch sets them.
        calibration_samples: How many training samples the callback takes. Defaults to 500.
        ema_decay: Decay of the ranges' moving average. Defaults to `0.99`.

    Example:

    >>> callback = DynHPCallback(target="40% params", target_epoch=6,
    ...                          final_phase=QATPhase(ema_decay=0.999))
    """

    def __init__(self, calibration_data=None, calibration_samples=CALIBRATION_SAMPLES,
                 ema_decay=0.99):
        self.calibration_data = calibration_data
        self.calibration_samples = check_integer("calibration_samples", calibration_samples, 1)
        self.ema_decay = check_real("ema_decay", ema_decay, 0.0, 1.0)
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in (0, 1). Received: {ema_decay!r}")

    def start(self, model, samples=None):
        """Folds the gates, builds the quantization-aware graph over `model`'s own layers,
        calibrates it and makes `model` run it; returns that graph.

        Args:
            model: A `tfdynhp.GatedModel` (compiled, in its `fit`, gates frozen or not).
            samples: Training inputs to calibrate on when `calibration_data` was not given
                (`None`: the first training batch sets the ranges).

        Raises:
            TypeError: For a model that is not a `GatedModel`.
            ValueError: For a layer the int8 simulation cannot share (named).
        """
        from tfdynhp.model.folding import fold_gates

        if not callable(getattr(model, "replace_forward", None)):
            raise TypeError(
                f"The QAT phase switches a tfdynhp.GatedModel; received {type(model).__name__} "
                f"'{model.name}'. Use `tfdynhp.quantize_aware(model)` for a plain model."
            )
        fold_gates(model)
        with model.distribute_strategy.scope():
            forward = build(model, ranges="ema", ema_decay=self.ema_decay, share=True,
                            name=f"{model.name}_qat")
        data = self.calibration_data if self.calibration_data is not None else samples
        if data is not None:
            calibrate(forward, np.asarray(data, "float32")[: self.calibration_samples])
        model.replace_forward(forward)
        return forward


def quantized_forward(model):
    """The quantization-aware graph a gated model runs after its QAT phase started (what its
    int8 export freezes), else `None`."""
    forward = getattr(model, "forward", None)
    return forward if forward is not None and is_quantized_model(forward) else None
