"""What a device needs to reproduce the model's input: the MFCC front end and the normalization.

The model takes normalized MFCCs, `(mfcc - mean) / std` per coefficient, quantized to int8 with
the input tensor's scale and zero point. Why not a `Normalization` layer inside the model: the
int8 input of a full-integer model has one scale for the whole tensor, and raw MFCCs span very
different ranges per coefficient (c0 in the tens, the others a few units; see
`bench/results/kws_data.md`), so a per-tensor int8 input of raw MFCCs would leave the small
coefficients a handful of levels. Normalizing *before* quantizing keeps every coefficient at
full int8 resolution, and costs the device nothing: normalization and quantization fold into one
per-coefficient affine map, `q_c = clamp(round(mfcc_c * multiplier_c + offset_c))` with
`multiplier_c = 1 / (std_c * scale)` and `offset_c = zero_point - mean_c * multiplier_c`.

`write_features` ships this in the bundle: `features.json` (front end, normalization, the folded
map, labels, how the data was made), `feature_settings.h` (the same constants for C), and a
`"features"` entry in `model.json`.
"""

import json
import os

import numpy as np

FEATURES_JSON = "features.json"
FEATURES_H = "feature_settings.h"
SCHEMA = "tfdynhp.kws-features/1"


def feature_spec(info, input_tensor):
    """The JSON-serializable feature contract of a model trained on `info`'s data.

    Args:
        info: the `KWSInfo` of the training data (`load_synthetic_kws(..., return_info=True)`).
        input_tensor: the model input's `{"scale", "zero_point", "dtype", "shape"}` (from
            `model.json`'s `"input"`).

    Returns:
        A dict with `schema`, `labels`, `frontend`, `normalization`, `input_quantization` and
        `input_affine` (`multiplier`, `offset`, per coefficient), `layout`, `dataset`.
    """
    scale = float(input_tensor["scale"])
    zero_point = int(input_tensor["zero_point"])
    mean = np.asarray(info.normalization.mean, np.float64)
    std = np.asarray(info.normalization.std, np.float64)
    multiplier = 1.0 / (std * scale)
    data = info.to_dict()
    return {
        "schema": SCHEMA,
        "labels": list(info.labels),
        "frontend": info.frontend.to_dict(),
        "normalization": info.normalization.to_dict(),
        "input_quantization": {"scale": scale, "zero_point": zero_point,
                               "dtype": input_tensor.get("dtype", "int8")},
        "input_affine": {
            "multiplier": multiplier.tolist(),
            "offset": (zero_point - mean * multiplier).tolist(),
            "formula": "q = clamp(round_half_away_from_zero(mfcc * multiplier[c] + offset[c]),"
                       " -128, 127) for coefficient c",
        },
        "layout": f"{info.frontend.num_frames} frames x {info.frontend.num_coefficients} "
                  "coefficients, row-major (frame-major), one int8 per value",
        "dataset": {k: data[k] for k in ("dataset", "keywords", "difficulty", "seed", "size",
                                         "espeak_version", "split_sizes")},
    }


def quantize_features(raw_mfcc, spec):
    """What a device does with its MFCCs: the folded normalize-and-quantize map (pure).

    Args:
        raw_mfcc: raw MFCCs `(n, frames, coefficients[, 1])`.
        spec: a `feature_spec` dict.

    Returns:
        `int8` array of the same shape.
    """
    x = np.asarray(raw_mfcc, np.float64)
    shape = (1, 1, -1) + (1,) * (x.ndim - 3)
    affine = spec["input_affine"]
    y = x * np.reshape(affine["multiplier"], shape) + np.reshape(affine["offset"], shape)
    q = np.sign(y) * np.floor(np.abs(y) + 0.5)
    return np.clip(q, -128, 127).astype(np.int8)


def _c_floats(values):
    return ", ".join(f"{v:.9g}f" for v in values)


def feature_header(spec):
    """`feature_settings.h`: the front end and the folded input map as C constants."""
    fe, affine = spec["frontend"], spec["input_affine"]
    n = len(affine["multiplier"])
    lines = [
        "// Written by tfdynhp (tfdynhp.datasets.kws.deploy): the model's input features.",
        "// q[frame][c] = clamp(round(mfcc[frame][c] * kFeatureMultiplier[c] +",
        "//                     kFeatureOffset[c]), -128, 127)",
        "#ifndef TFDYNHP_FEATURE_SETTINGS_H_",
        "#define TFDYNHP_FEATURE_SETTINGS_H_",
        "",
        f"constexpr int kSampleRate = {fe['sample_rate']};",
        f"constexpr int kClipSamples = {fe['clip_samples']};",
        f"constexpr int kWindowSamples = {fe['window_samples']};  // {fe['window']} window",
        f"constexpr int kStrideSamples = {fe['stride_samples']};",
        f"constexpr int kFftLength = {fe['fft_length']};",
        f"constexpr int kNumMelBins = {fe['num_mel_bins']};",
        f"constexpr float kLowerEdgeHz = {fe['lower_edge_hz']:.9g}f;",
        f"constexpr float kUpperEdgeHz = {fe['upper_edge_hz']:.9g}f;",
        f"constexpr float kLogOffset = {fe['log_offset']:.9g}f;",
        f"constexpr int kNumFrames = {fe['num_frames']};",
        f"constexpr int kNumCoefficients = {n};",
        f"constexpr float kFeatureMean[{n}] = {{{_c_floats(spec['normalization']['mean'])}}};",
        f"constexpr float kFeatureStd[{n}] = {{{_c_floats(spec['normalization']['std'])}}};",
        f"constexpr float kFeatureMultiplier[{n}] = {{{_c_floats(affine['multiplier'])}}};",
        f"constexpr float kFeatureOffset[{n}] = {{{_c_floats(affine['offset'])}}};",
        "",
        "#endif  // TFDYNHP_FEATURE_SETTINGS_H_",
        "",
    ]
    return "\n".join(lines)


def write_features(bundle_dir, info):
    """Writes `features.json` and `feature_settings.h` into an export bundle and records them in
    its `model.json` (`"features"` and the `"preprocessing"` note).

    Args:
        bundle_dir: a folder written by `converters.export` (it holds `model.json`).
        info: the `KWSInfo` of the training data.

    Returns:
        Dict of written paths: `features_json`, `features_h`, `model_json`.

    Raises:
        FileNotFoundError: if `bundle_dir` has no `model.json`.
    """
    model_json = os.path.join(bundle_dir, "model.json")
    if not os.path.isfile(model_json):
        raise FileNotFoundError(f"{bundle_dir!r} is not an export bundle: no model.json in it.")
    with open(model_json, encoding="utf-8") as f:
        meta = json.load(f)
    spec = feature_spec(info, meta["input"])
    paths = {"features_json": os.path.join(bundle_dir, FEATURES_JSON),
             "features_h": os.path.join(bundle_dir, FEATURES_H), "model_json": model_json}
    with open(paths["features_json"], "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    with open(paths["features_h"], "w", encoding="utf-8") as f:
        f.write(feature_header(spec))
    meta["features"] = FEATURES_JSON
    meta["preprocessing"] = (
        "Input: MFCCs of 1 s of 16 kHz audio (see features.json 'frontend': MLPerf Tiny's "
        "49x10), normalized per coefficient with the training split's mean and std and "
        "quantized with the input scale: q = clamp(round(mfcc * multiplier[c] + offset[c])) "
        f"(features.json 'input_affine', {FEATURES_H})."
    )
    with open(model_json, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return paths
