"""Which Arm CMSIS-NN C sources each TFLM CMSIS-NN kernel wrapper needs, read from a tree.

TFLM's CMSIS-NN kernel wrappers (`tensorflow/lite/micro/kernels/cmsis_nn/<op>.cc`) call Arm's
CMSIS-NN library (`arm_convolve_wrapper_s8`, ...). Building all of CMSIS-NN (113 C files) takes
minutes; a model needs a few of them. `cmsis_nn_sources(tree)` follows the calls: from the
`arm_*` functions a wrapper calls, through every function body in CMSIS-NN's sources and
headers (inline helpers included), to the C files that define them. Every preprocessor branch
is followed (DSP, MVE and plain C paths alike), so the result may hold a file more than one
core strictly needs, never fewer. The static table `kernels.CMSIS_NN_SOURCES` was produced
with it (`python -m tfdynhp.converters.kernel_deps TREE`) and `tests/test_firmware_cmsis.py`
checks the table against the tree.

Pure functions over the text of the sources; no compiler needed.
"""

import os
import re
import sys

WRAPPER_DIR = "tensorflow/lite/micro/kernels/cmsis_nn"
# Where a TFLM tree keeps CMSIS-NN: a tree exported by create_tflm_tree.py (the kit), or a git
# clone after `make third_party_downloads OPTIMIZED_KERNEL_DIR=cmsis_nn`.
CMSIS_NN_DIRS = ("third_party/cmsis_nn", "tensorflow/lite/micro/tools/make/downloads/cmsis_nn")

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')
_PREPROCESSOR = re.compile(r"^[ \t]*#[^\n]*(?:\\\n[^\n]*)*", re.MULTILINE)
_EXTERN_C = re.compile(r'\bextern\s*""\s*\{')
_CALL = re.compile(r"\b(arm_\w+)\s*\(")
_NAME_BEFORE_PAREN = re.compile(r"\b([A-Za-z_]\w*)\s*$")
# A table defined at file scope in a C file, e.g. `const uint16_t sigmoid_table_uint16[256] = {`.
_TABLE = re.compile(r"^\s*(?:static\s+)?const\s+\w+\s+(\w+)\s*\[[^\]]*\]\s*=", re.MULTILINE)
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def _clean(text):
    """The source without comments, string literals and preprocessor lines."""
    text = _COMMENT.sub(" ", text)
    text = _STRING.sub('""', text)
    text = _PREPROCESSOR.sub(" ", text)
    return _EXTERN_C.sub(" ", text)  # its closing brace is ignored at depth 0


def _matching(text, start, open_char, close_char):
    """Index just past the bracket that closes the one at `start`, or -1."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_char:
            depth += 1
        elif text[i] == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def function_bodies(text):
    """`{name: body}` of the functions defined at file scope in C source `text` (pure).

    A definition is `name(...)` followed by `{` at brace depth 0; declarations (`;`) and
    initializers are skipped.
    """
    text = _clean(text)
    bodies = {}
    i, depth = 0, 0
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        elif c == "(" and depth == 0:
            found = _NAME_BEFORE_PAREN.search(text, 0, i)
            close = _matching(text, i, "(", ")")
            if close < 0:
                break
            rest = text[close:].lstrip()
            if found and rest.startswith("{"):
                open_brace = len(text) - len(rest)
                end = _matching(text, open_brace, "{", "}")
                if end < 0:
                    break
                bodies[found.group(1)] = text[open_brace:end]
                i = end
                continue
            i = close
            continue
        i += 1
    return bodies


def called(text):
    """The `arm_*` functions called in `text` (pure)."""
    return set(_CALL.findall(_clean(text)))


def find_cmsis_nn(tree):
    """The CMSIS-NN folder of a TFLM tree (`Source/` and `Include/` in it), or `None`."""
    for sub in CMSIS_NN_DIRS:
        path = os.path.join(tree, sub)
        if os.path.isfile(os.path.join(path, "Include", "arm_nnfunctions.h")):
            return path
    return None


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def index_library(cmsis_nn_dir):
    """`(defined_in, calls)`: function or constant table -> C file defining it (relative to
    `cmsis_nn_dir`; `None` for header inline functions), and function -> the `arm_*` functions
    its body calls and the tables it reads."""
    defined_in, calls, bodies = {}, {}, {}
    for folder, _, files in sorted(os.walk(cmsis_nn_dir)):
        for name in sorted(files):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, cmsis_nn_dir).replace(os.sep, "/")
            text = _read(path)
            if name.endswith(".c"):
                for table in _TABLE.findall(_clean(text)):
                    defined_in[table] = rel
            for function, body in function_bodies(text).items():
                if not function.startswith("arm_"):
                    continue
                if name.endswith(".c") or function not in defined_in:
                    defined_in[function] = rel if name.endswith(".c") else None
                calls.setdefault(function, set()).update(called(body))
                bodies.setdefault(function, set()).update(_IDENTIFIER.findall(body))
    tables = {t for t, f in defined_in.items() if not t.startswith("arm_")}
    for function, identifiers in bodies.items():
        calls[function].update(identifiers & tables)
    return defined_in, calls


def closure(roots, defined_in, calls):
    """The C files (sorted) defining the functions reachable from `roots` (pure)."""
    seen, stack = set(), list(roots)
    while stack:
        function = stack.pop()
        if function in seen:
            continue
        seen.add(function)
        stack.extend(calls.get(function, ()))
    missing = sorted(f for f in seen if f not in defined_in)
    if missing:
        raise ValueError(f"No definition found for {', '.join(missing)} in CMSIS-NN.")
    return sorted({defined_in[f] for f in seen if defined_in[f] is not None})


def cmsis_nn_sources(tree):
    """`{wrapper stem: [CMSIS-NN C files]}` for each TFLM CMSIS-NN kernel wrapper of `tree`.

    Paths are relative to the CMSIS-NN folder (e.g. `Source/ConvolutionFunctions/...c`).

    Raises:
        ValueError: if `tree` has no CMSIS-NN kernel wrappers or no CMSIS-NN library.
    """
    wrappers = os.path.join(tree, WRAPPER_DIR)
    cmsis_nn = find_cmsis_nn(tree)
    if not os.path.isdir(wrappers) or cmsis_nn is None:
        raise ValueError(
            f"{tree!r} has no CMSIS-NN kernels ({WRAPPER_DIR}) or no CMSIS-NN library (looked "
            f"in {', '.join(CMSIS_NN_DIRS)}): run 'make -f tensorflow/lite/micro/tools/make/"
            "Makefile OPTIMIZED_KERNEL_DIR=cmsis_nn third_party_downloads' in the TFLM tree."
        )
    defined_in, calls = index_library(cmsis_nn)
    return {
        name[:-3]: closure(called(_read(os.path.join(wrappers, name))), defined_in, calls)
        for name in sorted(os.listdir(wrappers)) if name.endswith(".cc")
    }


def main(argv=None):
    """Prints the table for `kernels.CMSIS_NN_SOURCES`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m tfdynhp.converters.kernel_deps TFLM_TREE\n")
        return 2
    for stem, files in cmsis_nn_sources(argv[0]).items():
        sys.stdout.write(f"    {stem!r}: (\n")
        for f in files:
            sys.stdout.write(f"        {f!r},\n")
        sys.stdout.write("    ),\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
