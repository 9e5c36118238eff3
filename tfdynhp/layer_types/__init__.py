"""One entry per Keras layer type: its channel role and surgery edit, its cost, its kernels,
its LRP rule, whether `gate()` splits its activation, and its gradient-variance tap.

Built-in layers are registered by the modules below through `register`, the same call a user
makes for a custom layer:

>>> tfdynhp.layer_types.register(MyDense, role="mixing",
...     narrow=tfdynhp.layer_types.narrow_kernel_layer("kernel", "units"),
...     cost=tfdynhp.layer_types.dense_cost,
...     kernels=(tfdynhp.layer_types.KernelView("kernel", out_axis=-1, in_axis=-2),))
"""

from tfdynhp.layer_types import (  # noqa: F401  (register the built-ins)
    applications,
    attention,
    elementwise,
    kernel_layers,
    method_layers,
    normalization,
    operations,
    sequence_layers,
)
from tfdynhp.layer_types.kernel_layers import (
    conv_cost,
    dense_cost,
    kernel_layer_cost,
    narrow_kernel_layer,
)
from tfdynhp.layer_types.registry import (
    BARRIER,
    CONCAT,
    FLATTEN,
    MERGE,
    MIXING,
    PASS,
    PER_UNIT,
    ROLES,
    SELECT,
    CallCost,
    KernelView,
    LayerCall,
    LayerEdit,
    LayerType,
    Role,
    cost_of,
    edit_for,
    kernels_of,
    lookup,
    register,
    registered_names,
    role_of,
)

__all__ = [
    "BARRIER",
    "CONCAT",
    "FLATTEN",
    "MERGE",
    "MIXING",
    "PASS",
    "PER_UNIT",
    "ROLES",
    "SELECT",
    "CallCost",
    "KernelView",
    "LayerCall",
    "LayerEdit",
    "LayerType",
    "Role",
    "conv_cost",
    "cost_of",
    "dense_cost",
    "edit_for",
    "kernel_layer_cost",
    "kernels_of",
    "lookup",
    "narrow_kernel_layer",
    "register",
    "registered_names",
    "role_of",
]
