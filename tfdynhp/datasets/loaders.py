"""Data sets for the benchmarks and tests, loaded without network access.

- `load_fashion_mnist`: reads the gzipped IDX files that Debian's `dataset-fashion-mnist`
  package installs under `/usr/share/datasets/fashion-mnist` (or the directory named by the
  `TFDYNHP_FASHION_MNIST_DIR` environment variable, or `path`); downloading through Keras is an
  explicit opt-in (`allow_download=True`).
- `parse_idx` / `read_idx`: a validating parser of the IDX format (LeCun's MNIST format).
- `load_sklearn`: scikit-learn's bundled `digits`, `wine` and `breast_cancer` sets.
- `load_npz`: a user's own `.npz` with `x_train, y_train, x_test, y_test`.
- `synthetic-kws`: keyword spotting on speech synthesized offline with espeak-ng
  (`tfdynhp.datasets.kws.load_synthetic_kws`).
- `load(name)`: dispatches on the name (or on a `.npz` path).

Every loader returns `((x_train, y_train), (x_test, y_test))` with `float32` inputs (unless
asked otherwise) and `int32` labels.
"""

import gzip
import os
import zlib

import numpy as np

FASHION_MNIST_ENV_VAR = "TFDYNHP_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# IDX type codes (third byte of the magic number) and their big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

_SKLEARN_SETS = {
    "digits": "load_digits",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
}


def parse_idx(data, source="<bytes>"):
    """Parses the bytes of an (uncompressed) IDX file into a numpy array.

    The IDX format (used by MNIST and Fashion-MNIST) is a 4-byte magic number `0 0 T D`
    (type code `T`, number of dimensions `D`), then `D` big-endian uint32 sizes, then the
    values in row-major order. Everything is validated, so a truncated or corrupt file fails
    loudly instead of yielding a wrong array.

    Args:
        data: the file's bytes (`bytes`, `bytearray` or `memoryview`).
        source: a name for the data used in error messages (e.g. the file path). Defaults to
            `"<bytes>"`.

    Returns:
        A numpy array of shape `(d_1, ..., d_D)` in native byte order (`uint8` for the
        Fashion-MNIST files).

    Raises:
        ValueError: if the magic number is invalid (non-zero first bytes, unknown type code,
            no dimensions), the header is truncated, or the number of value bytes differs from
            the product of the sizes (truncated file or trailing bytes).

    Example:

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    array([7, 8, 9], dtype=uint8)
    """
    data = memoryview(bytes(data))
    if len(data) < 4:
        raise ValueError(
            f"{source}: not an IDX file: expected at least a 4-byte magic number, received "
            f"{len(data)} bytes. Re-download or reinstall the file."
        )
    zero_a, zero_b, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero_a != 0 or zero_b != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{source}: invalid IDX magic number 0x{bytes(data[:4]).hex()}: expected "
            "0x0000TTDD with a type code TT in "
            f"{{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} and DD >= 1 dimensions "
            "(e.g. 0x00000803 for images, 0x00000801 for labels). The file is corrupt or not "
            "an (uncompressed) IDX file."
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header_size} header "
            f"bytes, received {len(data)} bytes in total."
        )
    shape = tuple(int(s) for s in np.frombuffer(data[4:header_size], dtype=">u4"))
    dtype = _IDX_DTYPES[type_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{source}: IDX file {problem}: shape {shape} of {dtype.name} needs {expected} "
            f"bytes, received {len(data)} bytes. Re-download or reinstall the file."
        )
    values = np.frombuffer(data[header_size:], dtype=dtype).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path):
    """Reads an IDX file, gzipped (detected by its magic bytes) or not.

    Args:
        path: path of the `.gz` or plain IDX file.

    Returns:
        The array, as `parse_idx` returns it.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is corrupt (bad gzip stream, truncated, invalid IDX content).

    Example:

    >>> y = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    >>> y.shape
    (10000,)
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"{path}: corrupt or truncated gzip file ({e}). Re-download or reinstall it."
            ) from e
    return parse_idx(raw, source=path)


def _find_idx_file(directory, stem):
    for name in (stem + ".gz", stem):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _missing_fashion_mnist_error(directory, missing, how):
    return FileNotFoundError(
        f"Fashion-MNIST not found: {how} directory {directory!r} lacks "
        f"{', '.join(m + '[.gz]' for m in missing)}. Fixes: install the Debian package with "
        "`sudo apt-get install dataset-fashion-mnist` (files in "
        f"{DEFAULT_FASHION_MNIST_DIR}); or set the environment variable "
        f"{FASHION_MNIST_ENV_VAR} (or pass `path=`) to a directory holding the four IDX files; "
        "or pass `allow_download=True` to download them with "
        "`keras.datasets.fashion_mnist.load_data()` (needs network access)."
    )


def _prepare_images(x, flatten, normalize):
    x = x.reshape(len(x), -1) if flatten else x
    if normalize:
        return (x.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    return x


def load_fashion_mnist(path=None, allow_download=False, flatten=True, normalize=True):
    """Loads Fashion-MNIST (60,000 training and 10,000 test images of 28x28 pixels, 10 classes).

    Reads the gzipped IDX files locally, so training and tests never need the network. The
    directory is, in order: `path`, the environment variable `TFDYNHP_FASHION_MNIST_DIR`, then
    `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist` package).

    Args:
        path: directory holding `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
            `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (ungzipped names are
            accepted too). Defaults to `None` (environment variable, then the Debian path).
        allow_download: when the files are missing, fall back to
            `keras.datasets.fashion_mnist.load_data()`, which downloads them. Defaults to
            `False`.
        flatten: return images as `(n, 784)` rather than `(n, 28, 28)`. Defaults to `True`.
        normalize: return `float32` pixels in `[0, 1]` rather than `uint8` in `[0, 255]`.
            Defaults to `True`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`; labels are `int32` in `[0, 9]`.

    Raises:
        FileNotFoundError: if a file is missing and `allow_download=False`; the message names
            `sudo apt-get install dataset-fashion-mnist`, the environment variable and
            `allow_download=True`.
        ValueError: if a file is corrupt, or the files do not describe Fashion-MNIST (image
            size, label range, mismatched counts).

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    >>> x_train.shape, x_train.dtype.name, y_test.shape
    ((60000, 784), 'float32', (10000,))
    """
    if path is not None:
        directory, how = os.fspath(path), "the `path`"
    elif os.environ.get(FASHION_MNIST_ENV_VAR):
        directory, how = os.environ[FASHION_MNIST_ENV_VAR], f"the {FASHION_MNIST_ENV_VAR}"
    else:
        directory, how = DEFAULT_FASHION_MNIST_DIR, "the default"
    files = {key: _find_idx_file(directory, stem) for key, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[key] for key, found in files.items() if found is None]
    if missing:
        if not allow_download:
            raise _missing_fashion_mnist_error(directory, missing, how)
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    else:
        arrays = {key: read_idx(file) for key, file in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise ValueError(
                f"Fashion-MNIST {split} images in {directory!r}: expected uint8 images of "
                f"shape (n, 28, 28). Received: shape {x.shape}, dtype {x.dtype}."
            )
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"Fashion-MNIST {split} labels in {directory!r}: expected {len(x)} labels (one "
                f"per image). Received: shape {y.shape}."
            )
        if len(y) and int(y.max()) > 9:
            raise ValueError(
                f"Fashion-MNIST {split} labels in {directory!r}: expected classes 0-9. "
                f"Received: a label {int(y.max())}."
            )
    return tuple(
        (
            _prepare_images(arrays[f"x_{split}"], flatten, normalize),
            arrays[f"y_{split}"].astype(np.int32),
        )
        for split in ("train", "test")
    )


def _canonical_name(name):
    if not isinstance(name, str):
        raise TypeError(f"Expected a data set name (str). Received: {name!r}")
    return name.strip().lower().replace("-", "_")


def load_sklearn(name, test_size=0.2, seed=0):
    """Loads one of scikit-learn's bundled (offline) classification data sets.

    Small sets for fast tests and examples. `digits` (8x8 images, 10 classes) is scaled to
    `[0, 1]` by dividing by 16; `wine` (13 features, 3 classes) and `breast_cancer`
    (30 features, 2 classes) are standardised with the mean and standard deviation of the
    training split only (no test-set leakage). The split is stratified.

    Args:
        name: `"digits"`, `"wine"` or `"breast_cancer"` (`"breast-cancer"` is accepted).
        test_size: the fraction of examples held out for the test split, in `(0, 1)`.
            Defaults to `0.2`.
        seed: seed of the split. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_test, y_test))` with `float32` x and `int32` y.

    Raises:
        ValueError: if the name is unknown or `test_size` is not in `(0, 1)`.
        ImportError: if scikit-learn is not installed.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_sklearn("wine")
    >>> x_train.shape, x_test.shape
    ((142, 13), (36, 13))
    """
    key = _canonical_name(name)
    if key not in _SKLEARN_SETS:
        raise ValueError(
            f"Unknown scikit-learn data set {name!r}. Expected one of "
            f"{sorted(k.replace('_', '-') for k in _SKLEARN_SETS)}."
        )
    if isinstance(test_size, bool) or not isinstance(test_size, float) or not 0 < test_size < 1:
        raise ValueError(
            f"Expected `test_size` to be a float in (0, 1). Received: test_size={test_size!r}"
        )
    try:
        from sklearn import datasets as sk_datasets
        from sklearn import model_selection
    except ImportError as e:
        raise ImportError(
            "`load_sklearn` needs scikit-learn: `pip install scikit-learn`."
        ) from e
    x, y = getattr(sk_datasets, _SKLEARN_SETS[key])(return_X_y=True)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    if key == "digits":
        x_train, x_test = x_train / 16.0, x_test / 16.0
    else:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return (
        (x_train.astype(np.float32), y_train.astype(np.int32)),
        (x_test.astype(np.float32), y_test.astype(np.int32)),
    )


def load_npz(path):
    """Loads a user's data set from a `.npz` file with `x_train, y_train, x_test, y_test`.

    Arrays are returned with their stored dtypes (the file is read with
    `allow_pickle=False`).

    Args:
        path: path of the `.npz` file (e.g. written by
            `np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)`).

    Returns:
        `((x_train, y_train), (x_test, y_test))`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if keys are missing (the message lists them and the keys found), the file
            is not a valid `.npz`, or x and y of a split differ in length.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_npz("my_data.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a valid .npz file ({e}).") from e
    if not hasattr(archive, "files"):  # np.load returned a single .npy array
        raise ValueError(
            f"{path}: expected an .npz archive with keys {list(NPZ_KEYS)}. Received a single "
            "array (.npy). Save it with `np.savez(path, x_train=..., y_train=..., x_test=..., "
            "y_test=...)`."
        )
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise ValueError(
                f"{path}: missing keys {missing}. Expected keys {list(NPZ_KEYS)}; found "
                f"{sorted(archive.files)}. Save it with `np.savez(path, x_train=..., "
                "y_train=..., x_test=..., y_test=...)`."
            )
        arrays = {k: archive[k] for k in NPZ_KEYS}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise ValueError(
                f"{path}: x_{split} and y_{split} must have the same number of examples. "
                f"Received: x_{split} of shape {x.shape}, y_{split} of shape {y.shape}."
            )
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load(name, **kwargs):
    """Loads a data set by name: `fashion-mnist`, `digits`, `wine`, `breast-cancer`,
    `synthetic-kws`, or a .npz.

    Args:
        name: the data set name (case-insensitive; `-` and `_` are interchangeable), or the
            path of a `.npz` file (see `load_npz`).
        **kwargs: passed to the loader: `load_fashion_mnist` (`path`, `allow_download`,
            `flatten`, `normalize`), `load_sklearn` (`test_size`, `seed`) or
            `tfdynhp.datasets.kws.load_synthetic_kws` (`keywords`, `difficulty`, `size`, `seed`, ...).

    Returns:
        `((x_train, y_train), (x_test, y_test))`.

    Raises:
        ValueError: if the name is unknown, or an error of the chosen loader.
        TypeError: if `name` is not a string or path, or a keyword does not apply to the
            loader.

    Example:

    >>> (x_train, y_train), _ = load("breast-cancer", seed=1)
    >>> x_train.shape
    (455, 30)
    """
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name.endswith(".npz")):
        if kwargs:
            raise TypeError(f"`load_npz` takes no options. Received: {sorted(kwargs)}")
        return load_npz(name)
    key = _canonical_name(name)
    if key == "fashion_mnist":
        return load_fashion_mnist(**kwargs)
    if key in _SKLEARN_SETS:
        return load_sklearn(key, **kwargs)
    if key == "synthetic_kws":
        from tfdynhp.datasets.kws import load_synthetic_kws

        return load_synthetic_kws(**kwargs)
    raise ValueError(
        f"Unknown data set {name!r}. Expected one of ['fashion-mnist', 'digits', 'wine', "
        "'breast-cancer', 'synthetic-kws'] or the path of a .npz file with keys x_train, y_train, x_test, y_test."
    )
