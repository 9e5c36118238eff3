"""Contract between `export(..., "android", ...)` and android_demo's Kotlin code.

CI cannot build the app (Google Maven is unreachable), so this test reads MainActivity.kt as
text: every asset it opens and every JSON key it reads (with the getter's type) must exist in
what the exporter writes, and the input/output dtypes must be ones the Kotlin code handles.
"""

import json
import pathlib
import re

import keras
import numpy as np
import pytest

from tfdynhp import converters

DEMO = pathlib.Path(__file__).resolve().parents[1] / "android_demo"
KT = DEMO / "app/src/main/java/dev/tfdynhp/demo/MainActivity.kt"

_GETTER_TYPES = {
    "getJSONObject": dict,
    "getJSONArray": list,
    "getString": str,
    "getDouble": (int, float),
    "getInt": int,
}


def _kotlin_source():
    return KT.read_text(encoding="utf-8")


def _constants(src):
    return dict(re.findall(r'const val (\w+) = "([^"]+)"', src))


def _json_reads(src):
    """Returns [(asset_file, path_tuple, getter, key)] for every JSON getter in the source."""
    consts = _constants(src)
    roots = {}  # variable -> (asset file, path)
    for var, const in re.findall(r"val (\w+) = JSONObject\(readAsset\((\w+)\)\)", src):
        roots[var] = (consts[const], ())
    for var, parent, key in re.findall(r'val (\w+) = (\w+)\.getJSONObject\("(\w+)"\)', src):
        asset, path = roots[parent]
        roots[var] = (asset, path + (key,))
    reads = []
    for receiver, getter, key in re.findall(r'(\w+)\.(get\w+)\("(\w+)"\)', src):
        assert receiver in roots, f"JSON getter on unknown variable {receiver!r} in {KT.name}"
        asset, path = roots[receiver]
        reads.append((asset, path, getter, key))
    return reads


def _export(tmp_path, io_dtype):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(4)]
    )
    x = np.random.default_rng(0).uniform(0, 1, (40, 12)).astype("float32")
    paths = converters.export(
        model, "android", tmp_path, x, labels=["a", "b", "c", "d"], io_dtype=io_dtype
    )
    return pathlib.Path(paths["assets_dir"])


def test_kotlin_source_parses_into_reads():
    reads = _json_reads(_kotlin_source())
    keys = {(asset, path, key) for asset, path, _, key in reads}
    # Guard against the parser silently finding nothing.
    assert ("model.json", ("input",), "scale") in keys
    assert ("model.json", ("input",), "zero_point") in keys
    assert ("sample.json", (), "input") in keys


@pytest.mark.parametrize("io_dtype", ["int8", "uint8"])
def test_exported_assets_satisfy_kotlin_reads(tmp_path, io_dtype):
    assets = _export(tmp_path, io_dtype)
    src = _kotlin_source()
    docs = {}
    for asset, path, getter, key in _json_reads(src):
        doc = docs.setdefault(asset, json.loads((assets / asset).read_text()))
        for part in path:
            doc = doc[part]
        assert key in doc, f"{KT.name} reads {asset}:{'.'.join(path + (key,))}, not exported"
        value = doc[key]
        assert isinstance(value, _GETTER_TYPES[getter]), (asset, path, key, type(value))
        if key.endswith("_file"):
            assert (assets / value).is_file(), f"{key}={value!r} names a missing asset"

    # Asset names the Kotlin code hard-codes exist.
    for name in _constants(src).values():
        assert (assets / name).is_file(), name

    meta = json.loads((assets / "model.json").read_text())
    sample = json.loads((assets / "sample.json").read_text())
    # The Kotlin quantizer has a branch for the exported input dtype, and it writes one byte
    # per element (writeInt8) and reads one byte per output (readInt8).
    handled = set(re.findall(r'"(u?int8)" ->', src))
    assert meta["input"]["dtype"] == io_dtype and io_dtype in handled
    assert meta["output"]["dtype"] in {"int8", "uint8"}
    assert "writeInt8(" in src and "readInt8()" in src
    assert meta["input"]["shape"] == [1, 12]
    assert len(sample["input"]) == int(np.prod(meta["input"]["shape"]))
    assert 0 <= sample["expected_class"] < meta["num_classes"] == 4
    assert isinstance(meta["input"]["scale"], float) and meta["input"]["scale"] > 0


def test_kotlin_quantizer_formula_matches_python():
    src = _kotlin_source()
    # Same rounding (half away from zero) and zero-point addition as tflite_model.quantize.
    assert "sign(v) * floor(abs(v) + 0.5) + zeroPoint" in src
    info = converters.tflite_model.TensorInfo("x", (1, 3), "int8", 0.5, -3)
    np.testing.assert_array_equal(
        converters.tflite_model.quantize(np.array([0.25, -0.25, 0.75]), info), [-2, -4, -1]
    )


def test_gradle_project_wiring():
    settings = (DEMO / "settings.gradle.kts").read_text()
    app = (DEMO / "app/build.gradle.kts").read_text()
    manifest = (DEMO / "app/src/main/AndroidManifest.xml").read_text()
    layout = (DEMO / "app/src/main/res/layout/activity_main.xml").read_text()
    src = _kotlin_source()
    assert "google()" in settings and 'include(":app")' in settings
    assert re.search(r'implementation\("com\.google\.ai\.edge\.litert:litert:[\d.]+"\)', app)
    namespace = re.search(r'namespace = "([\w.]+)"', app).group(1)
    assert f"package {namespace}" in src
    assert 'android:name=".MainActivity"' in manifest and "class MainActivity" in src
    for view_id in re.findall(r"R\.id\.(\w+)", src):
        assert f'android:id="@+id/{view_id}"' in layout
    assert "R.layout.activity_main" in src
    # The exporter's asset folder is the one Gradle packages by default.
    assert converters.android.ASSETS_SUBDIR == str(pathlib.Path("app/src/main/assets"))
