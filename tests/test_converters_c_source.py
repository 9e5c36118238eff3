"""Pure functions of tfdynhp.converters: C sources, resolver, quantization math, boards, report."""

import re

import numpy as np
import pytest

from tfdynhp import converters

c_source = converters.c_source
tflite_model = converters.tflite_model
arena = converters.arena


def _info(dtype="int8", scale=0.5, zero_point=-3, shape=(1, 4)):
    return tflite_model.TensorInfo("t", shape, dtype, scale, zero_point)


def test_c_array_source_exact():
    text = c_source.c_array_source(bytes(range(14)), var_name="g_m", header_name="m.h")
    assert '#include "m.h"' in text
    assert "alignas(16) const unsigned char g_m[] = {\n" in text
    assert (
        "    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,\n"
        "    0x0c, 0x0d,\n};"
    ) in text
    assert text.endswith("const unsigned int g_m_len = 14;\n")
    values = re.findall(r"0x([0-9a-f]{2})", text)
    assert bytes(int(v, 16) for v in values) == bytes(range(14))


def test_c_array_header():
    text = c_source.c_array_header()
    assert "#ifndef MODEL_DATA_H_" in text and "#endif  // MODEL_DATA_H_" in text
    assert "extern const unsigned char g_model_data[];" in text
    assert "extern const unsigned int g_model_data_len;" in text


def test_c_array_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"valid C identifier.*Received: var_name='1abc'"):
        c_source.c_array_source(b"\x01", var_name="1abc")
    with pytest.raises(ValueError, match="empty"):
        c_source.c_array_source(b"")
    with pytest.raises(TypeError, match="must be bytes. Received: str"):
        c_source.c_array_source("abc")


def test_op_resolver_header_registers_exactly_the_ops():
    text = c_source.op_resolver_header(["GATHER", "FULLY_CONNECTED", "GATHER", "SOFTMAX"])
    assert "constexpr int kModelOpCount = 3;" in text
    assert "using ModelOpResolver = tflite::MicroMutableOpResolver<kModelOpCount>;" in text
    assert re.findall(r"resolver\.(\w+)\(\)", text) == [
        "AddGather",
        "AddFullyConnected",
        "AddSoftmax",
    ]
    with pytest.raises(ValueError, match=r"no MicroMutableOpResolver entry for op\(s\) SIN"):
        c_source.op_resolver_header(["FULLY_CONNECTED", "SIN"])
    with pytest.raises(ValueError, match="`ops` is empty"):
        c_source.op_resolver_header([])


def test_model_settings_header():
    text = c_source.model_settings_header(
        _info(), _info(shape=(1, 3), scale=0.25, zero_point=7), 2048, [1, -2, 3, 127], 2
    )
    assert "constexpr int kTensorArenaSize = 2048;" in text
    assert "constexpr int kInputSize = 4;" in text
    assert "constexpr float kInputScale = 0.5f;" in text
    assert "constexpr int kInputZeroPoint = -3;" in text
    assert "constexpr int kNumClasses = 3;" in text
    assert "constexpr int kOutputZeroPoint = 7;" in text
    assert "constexpr int8_t kSampleInput[kInputSize] = {\n    1, -2, 3, 127,\n};" in text
    assert "constexpr int kSampleExpectedClass = 2;" in text
    with pytest.raises(ValueError, match="must have 4 elements.*Received: 3"):
        c_source.model_settings_header(_info(), _info(), 2048, [1, 2, 3], 0)
    with pytest.raises(ValueError, match="int8 or uint8 model input. Received: dtype='float32'"):
        c_source.model_settings_header(_info("float32"), _info(), 2048, [0, 0, 0, 0], 0)


def test_quantize_rounds_half_away_from_zero_and_clips():
    info = _info(scale=0.5, zero_point=-3)
    x = np.array([0.0, 0.25, -0.25, 0.75, 1.0, 100.0, -100.0], dtype=np.float32)
    # x / 0.5 = 0, 0.5, -0.5, 1.5, 2, 200, -200 -> round: 0, 1, -1, 2, 2 -> + zero point.
    np.testing.assert_array_equal(
        tflite_model.quantize(x, info), np.array([-3, -2, -4, -1, -1, 127, -128], np.int8)
    )
    u = _info(dtype="uint8", scale=0.5, zero_point=10)
    np.testing.assert_array_equal(
        tflite_model.quantize(np.array([-10.0, 1.0, 200.0]), u), np.array([0, 12, 255], np.uint8)
    )
    np.testing.assert_allclose(
        tflite_model.dequantize(np.array([-3, -1, 5], np.int8), info), [0.0, 1.0, 4.0]
    )


def test_arena_margin():
    assert arena.arena_size_with_margin(1000, 0.25) == 1264  # 1250 rounded up to 16
    assert arena.arena_size_with_margin(2400, 0.0) == 2400
    with pytest.raises(ValueError, match=r"`margin` must be >= 0. Received: margin=-0.1"):
        arena.arena_size_with_margin(1000, -0.1)


def test_boards_table_and_custom_board():
    board = converters.get_board("nano33ble")
    assert (board.flash_bytes, board.sram_bytes) == (1024 * 1024, 256 * 1024)
    custom = converters.get_board(
        {"name": "tiny", "description": "test", "flash_bytes": 64 * 1024, "sram_bytes": 8 * 1024}
    )
    assert custom.sram_bytes == 8192
    with pytest.raises(ValueError, match=r"Unknown board 'uno'. Expected one of \["):
        converters.get_board("uno")
    with pytest.raises(ValueError, match="exactly the keys name, description"):
        converters.get_board({"name": "x"})


def test_mcu_report_fit_and_markdown():
    board = converters.Board("tiny", "test board", flash_bytes=10_000, sram_bytes=2_000)
    model = _tiny_model_bytes()
    report = converters.mcu.mcu_report(model, board, measured_arena=1600, arena_bytes=2000,
                                       margin=0.25)
    assert report["flash"]["model_bytes"] == len(model)
    assert report["sram"] == {
        "arena_bytes": 2000, "budget_bytes": 2000, "fraction": 1.0, "fits": True
    }
    assert report["fits"] == (len(model) <= 10_000)
    too_small = converters.mcu.mcu_report(model, board, 1600, 2016, 0.26)
    assert too_small["sram"]["fits"] is False and too_small["fits"] is False
    md = converters.mcu.report_markdown(too_small)
    assert "does NOT fit" in md
    assert "| SRAM (tensor arena) | 2016 B (2.0 KiB) | 2.0 KiB | 100.8% | no |" in md


def _tiny_model_bytes():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    data = np.random.default_rng(0).uniform(-1, 1, (16, 4)).astype("float32")
    return converters.to_int8_tflite(model, data)
