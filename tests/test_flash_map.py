"""`converters.flash_map`: a firmware's flash and RAM per part, from its GNU ld map file."""

import pytest
from tfdynhp.converters import flash_map

LIB = "/cache/cortex-m4-1/cmsis_nn-2/libtflm-3.a"
# The shape of arm-none-eabi-ld's map: discarded sections first (ignored), then the memory
# map; long input-section names put address, size and source on the next line; the
# output section's size is after string merging.
MAP = f"""Archive member included to satisfy reference by file (symbol)

Discarded input sections

 .text          0x00000000       0x40 build/cortex-m4/obj/main.o

Memory Configuration

Linker script and memory map

LOAD build/cortex-m4/obj/main.o

.vectors        0x00000000       0xc0
 *(.vectors)
 .vectors       0x00000000       0xc0 build/cortex-m4/obj/platform/cortex_m.o
                0x00000000                vector_table

.text           0x000000c0      0x140
 *(.text .text.*)
 .text.startup.main
                0x000000c0       0x80 build/cortex-m4/obj/main.o
                0x000000c0                main
 .text._ZN6tflite16MicroInterpreter6InvokeEv
                0x00000140       0x60 {LIB}(tensorflow__lite__micro__micro_interpreter.o)
 *fill*         0x000001a0        0x2
 .text.arm_convolve_s8
                0x000001a2       0x40 {LIB}(cmsis_nn__Source__ConvolutionFunctions__arm_convolve_s8.o)
 .text.Eval     0x000001e2       0x1e {LIB}(tensorflow__lite__micro__kernels__cmsis_nn__conv.o)

.rodata         0x00000200      0x100
 *(.rodata .rodata.*)
 .rodata.g_model_data
                0x00000260       0x64 build/cortex-m4/obj/model_data.o
 .rodata.g_frontend_data
                0x000002c4       0x20 build/cortex-m4/obj/frontend_data.o
 .rodata.kTestClips
                0x000002e4       0x40 build/cortex-m4/obj/test_vectors.o
 .rodata.str1.4
                0x00000324       0x20 {LIB}(tensorflow__lite__micro__micro_allocator.o)
 .rodata.str1.4
                0x00000344       0x10 build/cortex-m4/obj/main.o
 .rodata.kFft   0x00000354       0x14 {LIB}(signal__src__kiss_fft_wrappers__kiss_fft_int16.o)
 .rodata        0x00000368       0x10 /usr/lib/arm-none-eabi/lib/libc_nano.a(lib_a-nano-vfprintf.o)

.data           0x20000000        0x8 load address 0x0000037c
 .data.impure   0x20000000        0x8 /usr/lib/arm-none-eabi/lib/libc_nano.a(lib_a-impure.o)

.bss            0x20000008      0x130 load address 0x00000384
 .bss._ZN12_GLOBAL__N_114g_tensor_arenaE
                0x20000008      0x100 build/cortex-m4/obj/main.o
 .bss.resolver  0x20000108       0x20 build/cortex-m4/obj/main.o
 .bss.state     0x20000128       0x10 {LIB}(tensorflow__lite__micro__micro_log.o)

.debug_info     0x00000000     0x1000
 .debug_info    0x00000000     0x1000 build/cortex-m4/obj/main.o
"""


def test_every_input_section_lands_in_its_part():
    sections = flash_map.parse_map(MAP)
    assert {"output": ".text", "section": ".text.startup.main", "size": 0x80,
            "source": "build/cortex-m4/obj/main.o"} in sections
    # Discarded sections are not counted; the strings merged away (0x118 listed, 0x100 in the
    # output section) are the linker's (negative) part.
    assert sum(s["size"] for s in sections if s["output"] == ".rodata") == 0x100
    parts = flash_map.breakdown(sections)
    flash, ram = parts["flash"], parts["ram"]
    assert flash["application"] == 0xc0 + 0x80 + 0x10
    assert flash["tflm runtime"] == 0x60 + 0x20
    assert flash["kernels"] == 0x40 + 0x1e + 0x14  # CMSIS-NN, TFLM kernels, signal/kissfft
    assert flash["classifier model"] == 0x64 and flash["front-end model"] == 0x20
    assert flash["test vectors"] == 0x40
    assert flash["c library"] == 0x10 + 0x8  # .data's initial values are in flash too
    assert flash["linker"] == 0x2 - 0x18
    assert flash["total"] == 0xc0 + 0x140 + 0x100 + 0x8  # = size's text + data
    assert ram["arenas"] == 0x100 and ram["application"] == 0x20
    assert ram["total"] == 0x8 + 0x130  # data + bss; .debug_* counted nowhere
    assert next(iter(parts["by_source"])) == "build/cortex-m4/obj/platform/cortex_m.o"


def test_not_a_map_file_is_refused():
    with pytest.raises(ValueError, match="Not a GNU ld map file"):
        flash_map.parse_map("   text\t   data\t    bss\n 1234 5 6 firmware.elf\n")
