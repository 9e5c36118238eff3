"""Which TensorFlow Lite Micro sources a model needs, and the `model.mk` that lists them.

A firmware build compiles the TFLM core (interpreter, allocator, flatbuffer parsing) plus, for
each operator of the model, the reference kernel that `MicroMutableOpResolver::Add<Op>()`
registers: the file defining `Register_<OP>()` and its `<name>_common.cc` companion, all in
`tensorflow/lite/micro/kernels/`. Compiling those few kernels instead of all ~117 is what keeps
a cold build to a couple of minutes. The table follows the layout of upstream TFLM: linking a
firmware that registers all its operators with exactly these sources succeeded against the
TFLM tree of `../shared/tflm-kit` (commit 90b983c, 2026-08-20), and `tests/test_firmware.py`
checks each entry against the tree's `micro_mutable_op_resolver.h` and kernel files.

Two kernel sets (`KERNEL_SETS`): `"reference"`, TFLM's portable kernels, and `"cmsis-nn"`, Arm's
CMSIS-NN kernels for Cortex-M (what TFLM's own Cortex-M builds use, `OPTIMIZED_KERNEL_DIR=
cmsis_nn`): every reference kernel with a `kernels/cmsis_nn/<name>.cc` wrapper is replaced by
it, and the CMSIS-NN C sources that wrapper calls (`CMSIS_NN_SOURCES`, produced by
`kernel_deps.cmsis_nn_sources`) are compiled with it; a model compiles only the wrappers and
CMSIS-NN files of its own operators. `int8_registrations` picks TFLM's int8-only kernel
variants (`Register_CONV_2D_INT8()`, ...) for operators whose every instance is int8: with
CMSIS-NN they leave the int16/int4 code out of the firmware; with reference kernels they are
aliases of the generic ones.
"""

from tfdynhp.converters import c_source, tflite_model

KERNEL_DIR = "tensorflow/lite/micro/kernels"
CMSIS_NN_KERNEL_DIR = f"{KERNEL_DIR}/cmsis_nn"
KERNEL_SETS = ("reference", "cmsis-nn")
# The kernel set each firmware target gets when none is asked for.
DEFAULT_KERNELS = {"host": "reference", "cortex-m4": "cmsis-nn", "cortex-m3": "cmsis-nn"}

# TFLite builtin operator -> kernel sources (stems in KERNEL_DIR); same keys as
# `c_source.TFLM_OPS`.
KERNEL_SOURCES = {
    "ABS": ("elementwise",),
    "ADD": ("add", "add_common"),
    "ADD_N": ("add_n",),
    "ARG_MAX": ("arg_min_max",),
    "ARG_MIN": ("arg_min_max",),
    "AVERAGE_POOL_2D": ("pooling", "pooling_common"),
    "BATCH_MATMUL": ("batch_matmul", "batch_matmul_common"),
    "BATCH_TO_SPACE_ND": ("batch_to_space_nd",),
    "CAST": ("cast",),
    "CONCATENATION": ("concatenation",),
    "CONV_2D": ("conv", "conv_common"),
    "CUMSUM": ("cumsum",),
    "DEPTHWISE_CONV_2D": ("depthwise_conv", "depthwise_conv_common"),
    "DEPTH_TO_SPACE": ("depth_to_space",),
    "DEQUANTIZE": ("dequantize", "dequantize_common"),
    "DIV": ("div",),
    "ELU": ("elu",),
    "EQUAL": ("comparisons",),
    "EXP": ("exp",),
    "EXPAND_DIMS": ("expand_dims",),
    "FILL": ("fill",),
    "FULLY_CONNECTED": ("fully_connected", "fully_connected_common"),
    "GATHER": ("gather",),
    "GATHER_ND": ("gather_nd",),
    "GREATER": ("comparisons",),
    "GREATER_EQUAL": ("comparisons",),
    "HARD_SWISH": ("hard_swish", "hard_swish_common"),
    "L2_NORMALIZATION": ("l2norm",),
    "LEAKY_RELU": ("leaky_relu", "leaky_relu_common"),
    "LESS": ("comparisons",),
    "LESS_EQUAL": ("comparisons",),
    "LOGISTIC": ("logistic", "logistic_common"),
    "MAXIMUM": ("maximum_minimum",),
    "MAX_POOL_2D": ("pooling", "pooling_common"),
    "MEAN": ("reduce", "reduce_common"),
    "MINIMUM": ("maximum_minimum",),
    "MUL": ("mul", "mul_common"),
    "NEG": ("neg",),
    "NOT_EQUAL": ("comparisons",),
    "PACK": ("pack",),
    "PAD": ("pad", "pad_common"),
    "PADV2": ("pad", "pad_common"),
    "PRELU": ("prelu", "prelu_common"),
    "QUANTIZE": ("quantize", "quantize_common"),
    "REDUCE_MAX": ("reduce", "reduce_common"),
    "RELU": ("activations", "activations_common"),
    "RELU6": ("activations", "activations_common"),
    "RESHAPE": ("reshape", "reshape_common"),
    "RESIZE_BILINEAR": ("resize_bilinear",),
    "RESIZE_NEAREST_NEIGHBOR": ("resize_nearest_neighbor",),
    "RSQRT": ("elementwise",),
    "SHAPE": ("shape",),
    "SOFTMAX": ("softmax", "softmax_common"),
    "SPACE_TO_BATCH_ND": ("space_to_batch_nd",),
    "SPACE_TO_DEPTH": ("space_to_depth",),
    "SPLIT": ("split",),
    "SPLIT_V": ("split_v",),
    "SQRT": ("elementwise",),
    "SQUARE": ("elementwise",),
    "SQUEEZE": ("squeeze",),
    "STRIDED_SLICE": ("strided_slice", "strided_slice_common"),
    "SUB": ("sub", "sub_common"),
    "SUM": ("reduce", "reduce_common"),
    "SVDF": ("svdf", "svdf_common"),
    "TANH": ("tanh",),
    "TRANSPOSE": ("transpose", "transpose_common"),
    "TRANSPOSE_CONV": ("transpose_conv",),
    "UNPACK": ("unpack",),
    "ZEROS_LIKE": ("zeros_like",),
}


# TFLM's audio front-end ("signal" library) operators, custom ops: the sources of each (paths
# relative to the tree). rfft.cc registers float, int16 and int32 variants, hence all three.
_SIGNAL = "signal/micro/kernels"
_SIGNAL_SRC = "signal/src"
SIGNAL_SOURCES = {
    "CUSTOM:SignalWindow": (f"{_SIGNAL}/window.cc", f"{_SIGNAL_SRC}/window.cc"),
    "CUSTOM:SignalFftAutoScale": (
        f"{_SIGNAL}/fft_auto_scale_kernel.cc", f"{_SIGNAL}/fft_auto_scale_common.cc",
        f"{_SIGNAL_SRC}/fft_auto_scale.cc", f"{_SIGNAL_SRC}/max_abs.cc", f"{_SIGNAL_SRC}/msb_32.cc",
    ),
    "CUSTOM:SignalRfft": (
        f"{_SIGNAL}/rfft.cc", f"{_SIGNAL_SRC}/rfft_float.cc", f"{_SIGNAL_SRC}/rfft_int16.cc",
        f"{_SIGNAL_SRC}/rfft_int32.cc", f"{_SIGNAL_SRC}/kiss_fft_wrappers/kiss_fft_float.cc",
        f"{_SIGNAL_SRC}/kiss_fft_wrappers/kiss_fft_int16.cc",
        f"{_SIGNAL_SRC}/kiss_fft_wrappers/kiss_fft_int32.cc",
    ),
    "CUSTOM:SignalEnergy": (f"{_SIGNAL}/energy.cc", f"{_SIGNAL_SRC}/energy.cc"),
    "CUSTOM:SignalFilterBank": (f"{_SIGNAL}/filter_bank.cc", f"{_SIGNAL_SRC}/filter_bank.cc"),
    "CUSTOM:SignalFilterBankSquareRoot": (
        f"{_SIGNAL}/filter_bank_square_root.cc", f"{_SIGNAL}/filter_bank_square_root_common.cc",
        f"{_SIGNAL_SRC}/filter_bank_square_root.cc", f"{_SIGNAL_SRC}/square_root_32.cc",
        f"{_SIGNAL_SRC}/square_root_64.cc", f"{_SIGNAL_SRC}/msb_32.cc",
        f"{_SIGNAL_SRC}/msb_64.cc",
    ),
    "CUSTOM:SignalFilterBankSpectralSubtraction": (
        f"{_SIGNAL}/filter_bank_spectral_subtraction.cc",
        f"{_SIGNAL_SRC}/filter_bank_spectral_subtraction.cc",
    ),
    "CUSTOM:SignalPCAN": (f"{_SIGNAL}/pcan.cc", f"{_SIGNAL_SRC}/pcan_argc_fixed.cc",
                          f"{_SIGNAL_SRC}/msb_32.cc"),
    "CUSTOM:SignalFilterBankLog": (f"{_SIGNAL}/filter_bank_log.cc",
                                   f"{_SIGNAL_SRC}/filter_bank_log.cc", f"{_SIGNAL_SRC}/log.cc",
                                   f"{_SIGNAL_SRC}/msb_32.cc"),
}

# Operators TFLM's CMSIS-NN build runs with a wrapper: kernels/cmsis_nn/<stem>.cc replaces
# kernels/<stem>.cc (the first source of KERNEL_SOURCES[op]).
CMSIS_NN_KERNELS = {
    "ADD": "add",
    "AVERAGE_POOL_2D": "pooling",
    "BATCH_MATMUL": "batch_matmul",
    "CONV_2D": "conv",
    "DEPTHWISE_CONV_2D": "depthwise_conv",
    "FULLY_CONNECTED": "fully_connected",
    "MAXIMUM": "maximum_minimum",
    "MAX_POOL_2D": "pooling",
    "MINIMUM": "maximum_minimum",
    "MUL": "mul",
    "PAD": "pad",
    "PADV2": "pad",
    "SOFTMAX": "softmax",
    "SVDF": "svdf",
    "TRANSPOSE": "transpose",
    "TRANSPOSE_CONV": "transpose_conv",
}

# CMSIS-NN C sources each wrapper calls (paths relative to the CMSIS-NN folder), following
# every preprocessor branch: `python -m tfdynhp.converters.kernel_deps <TFLM tree>` on the tree
# of ../shared/tflm-kit (CMSIS-NN 4ab83cc, the commit TFLM 90b983c pins).
CMSIS_NN_SOURCES = {
    'add': (
        'Source/BasicMathFunctions/arm_elementwise_add_s16.c',
        'Source/BasicMathFunctions/arm_elementwise_add_s8.c',
    ),
    'batch_matmul': (
        'Source/FullyConnectedFunctions/arm_batch_matmul_s16.c',
        'Source/FullyConnectedFunctions/arm_batch_matmul_s8.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c',
        'Source/FullyConnectedFunctions/arm_vector_sum_s8.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s16_s16.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c',
    ),
    'conv': (
        'Source/ConvolutionFunctions/arm_convolve_1_x_n_s4.c',
        'Source/ConvolutionFunctions/arm_convolve_1_x_n_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_1x1_s4.c',
        'Source/ConvolutionFunctions/arm_convolve_1x1_s4_fast.c',
        'Source/ConvolutionFunctions/arm_convolve_1x1_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_1x1_s8_fast.c',
        'Source/ConvolutionFunctions/arm_convolve_even_s4.c',
        'Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s16.c',
        'Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s4.c',
        'Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_s16.c',
        'Source/ConvolutionFunctions/arm_convolve_s4.c',
        'Source/ConvolutionFunctions/arm_convolve_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_wrapper_s16.c',
        'Source/ConvolutionFunctions/arm_convolve_wrapper_s4.c',
        'Source/ConvolutionFunctions/arm_convolve_wrapper_s8.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s16.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s4_s16.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c',
        'Source/NNSupportFunctions/arm_nn_mat_mul_core_1x_s4.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_interleaved_t_even_s4.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s16.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s4.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c',
        'Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c',
        'Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c',
    ),
    'depthwise_conv': (
        'Source/ConvolutionFunctions/arm_convolve_1_x_n_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_1x1_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_1x1_s8_fast.c',
        'Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_wrapper_s8.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_3x3_s8.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s4.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_s16.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_s4.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_s4_opt.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_s8.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_s8_opt.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_wrapper_s4.c',
        'Source/ConvolutionFunctions/arm_depthwise_conv_wrapper_s8.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c',
        'Source/NNSupportFunctions/arm_nn_depthwise_conv_nt_t_s4.c',
        'Source/NNSupportFunctions/arm_nn_depthwise_conv_nt_t_s8.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c',
        'Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c',
        'Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c',
        'Source/TransposeFunctions/arm_transpose_s8.c',
    ),
    'fully_connected': (
        'Source/ConvolutionFunctions/arm_convolve_1x1_s8_fast.c',
        'Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s16.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_per_channel_s8.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_s16.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_s4.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_s8.c',
        'Source/FullyConnectedFunctions/arm_fully_connected_wrapper_s8.c',
        'Source/FullyConnectedFunctions/arm_vector_sum_s8.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_per_ch_s8.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s16.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s4.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c',
        'Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c',
    ),
    'maximum_minimum': (
        'Source/BasicMathFunctions/arm_maximum_s8.c',
        'Source/BasicMathFunctions/arm_minimum_s8.c',
    ),
    'mul': (
        'Source/BasicMathFunctions/arm_elementwise_mul_s16.c',
        'Source/BasicMathFunctions/arm_elementwise_mul_s8.c',
    ),
    'pad': (
        'Source/PadFunctions/arm_pad_s8.c',
    ),
    'pooling': (
        'Source/PoolingFunctions/arm_avgpool_get_buffer_sizes_s16.c',
        'Source/PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c',
        'Source/PoolingFunctions/arm_avgpool_s16.c',
        'Source/PoolingFunctions/arm_avgpool_s8.c',
        'Source/PoolingFunctions/arm_max_pool_s16.c',
        'Source/PoolingFunctions/arm_max_pool_s8.c',
    ),
    'softmax': (
        'Source/SoftmaxFunctions/arm_nn_softmax_common_s8.c',
        'Source/SoftmaxFunctions/arm_softmax_s16.c',
        'Source/SoftmaxFunctions/arm_softmax_s8.c',
        'Source/SoftmaxFunctions/arm_softmax_s8_s16.c',
    ),
    'svdf': (
        'Source/FullyConnectedFunctions/arm_vector_sum_s8.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_svdf_s8.c',
        'Source/SVDFunctions/arm_svdf_get_buffer_sizes_s8.c',
        'Source/SVDFunctions/arm_svdf_s8.c',
        'Source/SVDFunctions/arm_svdf_state_s16_s8.c',
    ),
    'transpose': (
        'Source/ConvolutionFunctions/arm_depthwise_conv_wrapper_s8.c',
        'Source/TransposeFunctions/arm_transpose_s8.c',
    ),
    'transpose_conv': (
        'Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c',
        'Source/ConvolutionFunctions/arm_convolve_s8.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c',
        'Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c',
        'Source/ConvolutionFunctions/arm_transpose_conv_get_buffer_sizes_s8.c',
        'Source/ConvolutionFunctions/arm_transpose_conv_s8.c',
        'Source/ConvolutionFunctions/arm_transpose_conv_wrapper_s8.c',
        'Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c',
        'Source/NNSupportFunctions/arm_nn_transpose_conv_row_s8_s32.c',
        'Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c',
        'Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c',
    ),
    'unidirectional_sequence_lstm': (
        'Source/ActivationFunctions/arm_nn_activation_s16.c',
        'Source/BasicMathFunctions/arm_elementwise_mul_acc_s16.c',
        'Source/BasicMathFunctions/arm_elementwise_mul_s16.c',
        'Source/BasicMathFunctions/arm_elementwise_mul_s16_batch_offset.c',
        'Source/BasicMathFunctions/arm_elementwise_mul_s16_s8.c',
        'Source/FullyConnectedFunctions/arm_vector_sum_s8.c',
        'Source/FullyConnectedFunctions/arm_vector_sum_s8_s64.c',
        'Source/LSTMFunctions/arm_lstm_unidirectional_s16.c',
        'Source/LSTMFunctions/arm_lstm_unidirectional_s8.c',
        'Source/NNSupportFunctions/arm_nn_lstm_calculate_gate_s16.c',
        'Source/NNSupportFunctions/arm_nn_lstm_calculate_gate_s8_s16.c',
        'Source/NNSupportFunctions/arm_nn_lstm_step_s16.c',
        'Source/NNSupportFunctions/arm_nn_lstm_step_s8.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mul_result_acc_s16.c',
        'Source/NNSupportFunctions/arm_nn_vec_mat_mul_result_acc_s8_s16.c',
        'Source/NNSupportFunctions/arm_nntables.c',
    ),
}

# int8-only registrations (TFLM's kernels/*.h): CMSIS-NN builds register only the int8 code
# path; reference builds alias them to the generic registration.
INT8_REGISTRATIONS = {
    "ADD": "Register_ADD_INT8",
    "AVERAGE_POOL_2D": "Register_AVERAGE_POOL_2D_INT8",
    "BATCH_MATMUL": "Register_BATCH_MATMUL_INT8",
    "CONV_2D": "Register_CONV_2D_INT8",
    "DEPTHWISE_CONV_2D": "Register_DEPTHWISE_CONV_2D_INT8",
    "FULLY_CONNECTED": "Register_FULLY_CONNECTED_INT8",
    "MAXIMUM": "Register_MAXIMUM_INT8",
    "MAX_POOL_2D": "Register_MAX_POOL_2D_INT8",
    "MINIMUM": "Register_MINIMUM_INT8",
    "MUL": "Register_MUL_INT8",
    "PAD": "Register_PAD_INT8",
    "SOFTMAX": "Register_SOFTMAX_INT8",
    "TRANSPOSE": "Register_TRANSPOSE_INT8",
    "TRANSPOSE_CONV": "Register_TRANSPOSE_CONV_INT8",
}


# The audio front end's FFT registers float, int16 and int32 code; a model whose FFTs all take
# one type registers only that variant (the others' kissfft code then stays out of flash).
RFFT_REGISTRATIONS = {"int16": "tflm_signal::Register_RFFT_INT16",
                      "int32": "tflm_signal::Register_RFFT_INT32",
                      "float32": "tflm_signal::Register_RFFT_FLOAT"}


def check_kernels(kernels, target=None):
    """Returns the canonical name of a kernel set (`"reference"` or `"cmsis-nn"`).

    Args:
        kernels: `"reference"`, `"cmsis-nn"` (also spelled `"cmsis_nn"`, TFLM's
            `OPTIMIZED_KERNEL_DIR`), or `None` for the target's default (`DEFAULT_KERNELS`).
        target: The firmware target, needed when `kernels` is `None`; `"host"` refuses
            CMSIS-NN (it has no x86 code paths worth measuring; TFLM refuses it too).

    Raises:
        ValueError: For an unknown kernel set, or CMSIS-NN for the host.
    """
    if kernels is None:
        if target not in DEFAULT_KERNELS:
            raise ValueError(
                f"No default kernel set for target {target!r}: expected one of "
                f"{tuple(DEFAULT_KERNELS)}, or pass `kernels=` explicitly."
            )
        return DEFAULT_KERNELS[target]
    name = str(kernels).strip().lower().replace("_", "-")
    if name not in KERNEL_SETS:
        raise ValueError(
            f"Unknown kernel set {kernels!r}. Expected one of {KERNEL_SETS} (TFLM's portable "
            "reference kernels, or Arm's CMSIS-NN kernels for Cortex-M)."
        )
    if name == "cmsis-nn" and target == "host":
        raise ValueError(
            "CMSIS-NN kernels are for the Cortex-M targets (they have no x86 code paths); "
            "build the host firmware with kernels='reference'."
        )
    return name


def kernel_sources(ops, kernels="reference"):
    """Returns the TFLM kernel sources (paths relative to the tree) the operators need.

    Args:
        ops: TFLite builtin operator names, e.g. `("FULLY_CONNECTED", "SOFTMAX")`.
        kernels: `"reference"` or `"cmsis-nn"`: with CMSIS-NN, `kernels/<stem>.cc` of every
            operator in `CMSIS_NN_KERNELS` is replaced by `kernels/cmsis_nn/<stem>.cc`.
            Defaults to `"reference"`.

    Returns:
        Sorted, de-duplicated paths such as `"tensorflow/lite/micro/kernels/softmax.cc"`.

    Raises:
        ValueError: If an operator has no TFLM reference kernel, or an unknown kernel set.
    """
    kernels = check_kernels(kernels)
    c_source.check_tflm_ops(ops)  # same keys as KERNEL_SOURCES and SIGNAL_SOURCES
    stems = {stem for op in ops if op in KERNEL_SOURCES for stem in KERNEL_SOURCES[op]}
    paths = {f"{KERNEL_DIR}/{stem}.cc" for stem in stems}
    paths.update(path for op in ops for path in SIGNAL_SOURCES.get(op, ()))
    if kernels == "cmsis-nn":
        for op in ops:
            if op in CMSIS_NN_KERNELS:
                stem = CMSIS_NN_KERNELS[op]
                paths.discard(f"{KERNEL_DIR}/{stem}.cc")
                paths.add(f"{CMSIS_NN_KERNEL_DIR}/{stem}.cc")
    return sorted(paths)


def cmsis_nn_sources(ops):
    """The CMSIS-NN C sources the operators' wrappers need (relative to the CMSIS-NN folder).

    Args:
        ops: TFLite builtin operator names.

    Returns:
        Sorted, de-duplicated paths such as `"Source/SoftmaxFunctions/arm_softmax_s8.c"`;
        empty if no operator has a CMSIS-NN wrapper.
    """
    stems = {CMSIS_NN_KERNELS[op] for op in ops if op in CMSIS_NN_KERNELS}
    return sorted({path for stem in stems for path in CMSIS_NN_SOURCES[stem]})


def int8_registrations(*tflite_models):
    """`{op: "Register_<OP>_INT8"}` for the operators whose every instance is int8 (pure).

    Also the front end's FFT: `"tflm_signal::Register_RFFT_INT16"` when every `SignalRfft` takes
    int16.

    An instance is int8 when its non-constant tensors (activations) are all int8 and its
    constant tensors (weights, bias, shapes) are int8 or int32: what TFLM's int8-only kernel
    variants accept. A full-int8 model (`to_int8_tflite`) gets them for all its operators in
    `INT8_REGISTRATIONS`; a model with a float, int16 or int4 instance of an operator keeps
    the generic registration for that operator.

    Args:
        *tflite_models: The `.tflite` model(s) one op resolver serves (e.g. a front end and a
            classifier): an operator qualifies if its instances in all of them are int8.
    """
    usable, fft_types = {}, set()
    instances = [i for m in tflite_models for i in tflite_model.op_tensor_types(m)]
    for op, tensors in instances:
        if op == "CUSTOM:SignalRfft":
            fft_types.add(tensors[0][0])
        if op not in INT8_REGISTRATIONS:
            continue
        ok = all(dtype == "int8" or (constant and dtype == "int32")
                 for dtype, constant in tensors)
        usable[op] = usable.get(op, True) and ok
    found = {op: INT8_REGISTRATIONS[op] for op, ok in usable.items() if ok}
    if len(fft_types) == 1 and next(iter(fft_types)) in RFFT_REGISTRATIONS:
        found["CUSTOM:SignalRfft"] = RFFT_REGISTRATIONS[next(iter(fft_types))]
    return found


def _make_list(name, paths):
    if not paths:
        return f"{name} :=\n"
    lines = " \\\n  ".join(paths)
    return f"{name} := \\\n  {lines}\n"


def model_makefile(ops):
    """Returns `model.mk`: the model's operators and the kernel sources they need.

    Both kernel sets are listed; the Makefile's `KERNELS` picks one: `MODEL_KERNEL_SRCS`
    (reference), `MODEL_CMSIS_NN_KERNEL_SRCS` and `MODEL_CMSIS_NN_SRCS` (the CMSIS-NN C files,
    relative to the CMSIS-NN folder).

    Args:
        ops: TFLite builtin operator names of the model.

    Raises:
        ValueError: If an operator has no TFLM reference kernel.
    """
    return (
        "# Generated by tfdynhp.converters. What this model needs from TensorFlow Lite Micro\n"
        "# (read by the Makefile): its operators and their kernel sources, for the reference\n"
        "# kernels and for CMSIS-NN (wrappers + the CMSIS-NN C files they call).\n"
        f"MODEL_OPS := {' '.join(ops)}\n"
        + _make_list("MODEL_KERNEL_SRCS", kernel_sources(ops))
        + _make_list("MODEL_CMSIS_NN_KERNEL_SRCS", kernel_sources(ops, "cmsis-nn"))
        + _make_list("MODEL_CMSIS_NN_SRCS", cmsis_nn_sources(ops))
    )
