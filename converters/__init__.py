"""Int8 TFLite conversion and deployment bundles (installed as `tfdynhp.converters`).

- `to_int8_tflite(model, representative_data, io_dtype="int8") -> bytes`, converted in a child
  process (`ConverterCrash` when TensorFlow's converter crashes)
- `export(model, target, out_dir, representative_data, labels=None) -> dict` for targets
  `"pi"`, `"android"` and `"mcu"`
- `evaluate(tflite_bytes, x, y, runtime="litert" | "tflm") -> dict`
- `verify_mcu(bundle_dir, tflm_dir=None, target="cortex-m4") -> FirmwareResult`: build the
  `"mcu"` bundle's firmware, run it (host, or QEMU for Cortex-M4/M3) and check it bit for bit
  against TFLite Micro's Python interpreter, with measured flash, RAM and instructions
"""

from tfdynhp.converters.arena import measure_arena_size
from tfdynhp.converters.audio_mcu import write_audio_mcu
from tfdynhp.converters.boards import BOARDS, Board, get_board
from tfdynhp.converters.export import TARGETS, export
from tfdynhp.converters.firmware import FirmwareError, FirmwareResult, verify_mcu
from tfdynhp.converters.quantize import ConverterCrash, to_int8_tflite
from tfdynhp.converters.runtimes import RUNTIMES, evaluate, run_tflite
from tfdynhp.converters.tflite_model import read_model_info

__all__ = [
    "BOARDS",
    "RUNTIMES",
    "TARGETS",
    "Board",
    "ConverterCrash",
    "FirmwareError",
    "FirmwareResult",
    "evaluate",
    "export",
    "get_board",
    "measure_arena_size",
    "read_model_info",
    "run_tflite",
    "to_int8_tflite",
    "verify_mcu",
    "write_audio_mcu",
]
