"""Microcontroller boards the MCU report can check a model against.

Flash and SRAM are the datasheet totals of the named board's MCU. Only the model and the
tensor arena are counted against them (see `mcu.py`); the TFLM runtime, the kernels, the stack
and the application need the rest.
"""

import dataclasses

KIB = 1024


@dataclasses.dataclass(frozen=True)
class Board:
    """One target board.

    Attributes:
        name: Key in `BOARDS`.
        description: Board and MCU.
        flash_bytes: On-chip flash in bytes.
        sram_bytes: On-chip SRAM in bytes.
    """

    name: str
    description: str
    flash_bytes: int
    sram_bytes: int


BOARDS = {
    b.name: b
    for b in (
        Board("nano33ble", "Arduino Nano 33 BLE Sense (nRF52840, Cortex-M4F)", 1024 * KIB, 256 * KIB),
        Board("pico", "Raspberry Pi Pico (RP2040, Cortex-M0+)", 2048 * KIB, 264 * KIB),
        Board("stm32f746-disco", "STM32F746G-DISCO (STM32F746, Cortex-M7)", 1024 * KIB, 320 * KIB),
        Board("stm32l476-nucleo", "NUCLEO-L476RG (STM32L476, Cortex-M4F)", 1024 * KIB, 128 * KIB),
        Board("esp32s3", "ESP32-S3 (internal SRAM; 8 MB external flash module)", 8192 * KIB, 512 * KIB),
    )
}

DEFAULT_BOARD = "nano33ble"


def get_board(identifier):
    """Returns a `Board` from its name, a dict of `Board` fields, or a `Board`.

    Args:
        identifier: A key of `BOARDS`, a dict with `name`, `description`, `flash_bytes` and
            `sram_bytes`, or a `Board`.

    Raises:
        ValueError: If the name is unknown or the dict has missing/invalid fields.
    """
    if isinstance(identifier, Board):
        return identifier
    if isinstance(identifier, dict):
        try:
            board = Board(**identifier)
        except TypeError as e:
            raise ValueError(
                "A custom board dict needs exactly the keys name, description, flash_bytes, "
                f"sram_bytes. Received: {sorted(identifier)}"
            ) from e
        if board.flash_bytes <= 0 or board.sram_bytes <= 0:
            raise ValueError(
                "`flash_bytes` and `sram_bytes` must be positive. "
                f"Received: flash_bytes={board.flash_bytes}, sram_bytes={board.sram_bytes}"
            )
        return board
    if identifier in BOARDS:
        return BOARDS[identifier]
    raise ValueError(
        f"Unknown board {identifier!r}. Expected one of {sorted(BOARDS)} or a dict with "
        "name, description, flash_bytes and sram_bytes."
    )
