"""tfdynhp's own layers: `HardConcreteGate` (per channel, removed by `strip()`) and
`SelectFeatures` (the surviving input features, a GATHER once it drops some)."""

from tfdynhp.layer_types.registry import (
    PER_UNIT,
    REMOVED,
    SAME_SCALE,
    SELECT,
    CallCost,
    LayerEdit,
    register,
)
from tfdynhp.layers import HardConcreteGate, SelectFeatures

# A TFLite GATHER with its int32 indices, beside the indices themselves.
GATHER_BYTES = 420
GATE_STATE = ("log_alpha", "gate_active_count", "gate_first_moment", "gate_second_moment")


def narrow_gate(layer, in_keep, out_keep):
    if in_keep is None:
        return None
    edit = LayerEdit(layer)
    for attribute in GATE_STATE:
        edit.slice(attribute, 0, in_keep)
    return edit


def gate_cost(call):
    """Nothing at inference: `strip()` folds a gate into the kernel rows it multiplies, and its
    state is training-only (counted by `tfdynhp.costs.memory`, not as parameters)."""
    return CallCost()


# int8: not in the deployed model (`strip()` folds it into the kernels after it).
register(HardConcreteGate, role=PER_UNIT, narrow=narrow_gate, cost=gate_cost,
         quantization=REMOVED)


def narrow_selected_features(layer, in_keep, out_keep):
    if out_keep is None:
        return None
    current = list(range(layer.input_features)) if layer.indices is None else layer.indices
    return LayerEdit(layer, attributes={"indices": [int(current[i]) for i in out_keep]})


def select_features_cost(call):
    kept = int(call.output_shapes[0][-1])
    gathers = kept < call.layer.input_features
    return CallCost(int8_bytes=GATHER_BYTES + 4 * kept if gathers else 0)


# int8: GATHER moves values (same scale).
register(SelectFeatures, role=SELECT, narrow=narrow_selected_features, cost=select_features_cost,
         quantization=SAME_SCALE)
