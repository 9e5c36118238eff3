"""Where a firmware's flash and RAM go: its GNU ld map file, attributed to parts.

`parse_map(text)` reads the "Linker script and memory map" of a `-Wl,-Map` file (the bundle's
Cortex-M builds write `build/<target>/firmware.map`) into input sections: output section,
input section, size and the object (or `archive(member)`) it came from. `breakdown(sections)`
sums them into the parts of an `mcu` bundle's firmware:

- `application`: `main.cc`, the platform start-up and I/O code (`platform/`);
- `arenas`: the tensor arenas (`g_tensor_arena`, `g_frontend_arena`: RAM only);
- `tflm runtime`: TFLM's interpreter, allocator, flatbuffer parsing, schema, error reporting;
- `kernels`: the operators' kernels (TFLM `kernels/`, the CMSIS-NN C files, the front end's
  `signal/` ops and kissfft);
- `front-end model`, `classifier model`: the `.tflite` arrays (`frontend_data.cc`,
  `model_data.cc`);
- `test vectors`: `test_vectors.cc`;
- `c library`: newlib-nano, libm, libgcc, libstdc++, semihosting (rdimon);
- `linker`: the linker's alignment fill, minus what it saved by merging identical strings
  (the map lists `.rodata.str*` input sections before merging; the output sections' sizes in
  the map are after it, and the parts add up to them).

Flash counts the sections the board's flash holds (`.vectors`, `.text`, `.rodata`,
`.ARM.exidx`, `.init_array`, and `.data`'s initial values), RAM the static ones (`.data`,
`.bss`; the stack and heap are measured in the running firmware instead). Pure text in, numbers
out: no toolchain needed.
"""

import os
import re

FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".init_array", ".data")
RAM_SECTIONS = (".data", ".bss")
PARTS = ("application", "arenas", "tflm runtime", "kernels", "front-end model", "classifier model",
         "test vectors", "c library", "linker")

_OUTPUT = re.compile(r"^(\.[\w.]+)(?:\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+))?")
_INPUT = re.compile(r"^ (\S+)(?:\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*?))?\s*$")
_CONTINUED = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*?)\s*$")
_FILL = re.compile(r"^ \*fill\*\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)")
_KERNEL_MEMBER = re.compile(r"(^|__)(kernels|signal)__|^cmsis_nn__")


def parse_map(text):
    """Input sections of a GNU ld map file's memory map.

    Returns:
        List of dicts: `output` (e.g. `.text`), `section` (e.g. `.text.main`), `size` (bytes),
        `source` (`path/x.o`, `path/lib.a(member.o)`, or `*fill*`). Where an output section's
        size (in the map) differs from the sum of its input sections (merged strings), one
        more entry with `source` `*merge*` and the (negative) difference.

    Raises:
        ValueError: If the text has no "Linker script and memory map" (not an ld map file).
    """
    marker = text.find("Linker script and memory map")
    if marker < 0:
        raise ValueError("Not a GNU ld map file (no 'Linker script and memory map' line): pass "
                         "the file written by -Wl,-Map=<file>, e.g. build/cortex-m4/firmware.map.")
    sections, output, pending, totals = [], None, None, {}
    for line in text[marker:].splitlines()[1:]:
        if not line.strip():
            continue
        if not line.startswith(" "):
            m = _OUTPUT.match(line)
            output, pending = (m.group(1) if m else None), None
            if m and m.group(2) is not None:  # long names put address and size on the next
                totals[output] = int(m.group(2), 16)  # line: debug sections, not needed here
            continue
        fill = _FILL.match(line)
        if fill:
            sections.append({"output": output, "section": "*fill*",
                             "size": int(fill.group(1), 16), "source": "*fill*"})
            pending = None
            continue
        if pending is not None:
            m = _CONTINUED.match(line)
            if m:
                sections.append({"output": output, "section": pending,
                                 "size": int(m.group(2), 16), "source": m.group(3)})
            pending = None
            continue
        m = _INPUT.match(line)
        if not m or m.group(1).startswith(("*(", "0x")) or m.group(1) in ("*", "KEEP("):
            continue
        if m.group(2) is None:
            pending = m.group(1)
        else:
            sections.append({"output": output, "section": m.group(1),
                             "size": int(m.group(3), 16), "source": m.group(4)})
    summed = {}
    for s in sections:
        summed[s["output"]] = summed.get(s["output"], 0) + s["size"]
    for name, total in totals.items():
        if name in summed and total != summed[name]:
            sections.append({"output": name, "section": "*merge*",
                             "size": total - summed[name], "source": "*merge*"})
    return sections


def part_of(source, section=""):
    """The firmware part an input section (`section` from `source`) belongs to (`PARTS`)."""
    if source in ("*fill*", "*merge*"):
        return "linker"
    if "_arena" in section and section.startswith(".bss"):
        return "arenas"
    member = re.search(r"\(([^()]+)\)$", source)
    archive = source[:member.start()] if member else source
    name = os.path.basename(member.group(1) if member else source)
    if member is None:
        stem = os.path.splitext(name)[0]
        if stem == "test_vectors":
            return "test vectors"
        if stem == "model_data":
            return "classifier model"
        if stem == "frontend_data":
            return "front-end model"
        return "application"
    if os.path.basename(archive).startswith("libtflm"):
        return "kernels" if _KERNEL_MEMBER.search(name) else "tflm runtime"
    return "c library"


def breakdown(sections):
    """Flash and static RAM of each part, from `parse_map`'s sections.

    Returns:
        Dict: `flash` and `ram` (each `{part: bytes}` over `PARTS`, plus `total`), and
        `by_source` (`{source: flash bytes}`, largest first) to look further.
    """
    flash = dict.fromkeys(PARTS, 0)
    ram = dict.fromkeys(PARTS, 0)
    by_source = {}
    for s in sections:
        part = part_of(s["source"], s["section"])
        if s["output"] in FLASH_SECTIONS:
            flash[part] += s["size"]
            by_source[s["source"]] = by_source.get(s["source"], 0) + s["size"]
        if s["output"] in RAM_SECTIONS:
            ram[part] += s["size"]
    flash["total"] = sum(flash[p] for p in PARTS)
    ram["total"] = sum(ram[p] for p in PARTS)
    return {"flash": flash, "ram": ram,
            "by_source": dict(sorted(by_source.items(), key=lambda kv: -kv[1]))}


def map_breakdown(map_path):
    """`breakdown(parse_map(...))` of a map file on disk."""
    with open(map_path, encoding="utf-8", errors="replace") as f:
        return breakdown(parse_map(f.read()))
