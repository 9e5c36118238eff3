"""Tests for tfdynhp.datasets: IDX parsing, Fashion-MNIST, scikit-learn sets, .npz files."""

import gzip
import os
import struct

import numpy as np
import pytest

from tfdynhp import datasets

FASHION_DIR = datasets.DEFAULT_FASHION_MNIST_DIR
HAVE_FASHION = all(
    os.path.isfile(os.path.join(FASHION_DIR, stem + ".gz"))
    for stem in datasets.FASHION_MNIST_FILES.values()
)
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION, reason="needs `sudo apt-get install dataset-fashion-mnist`"
)


def idx_bytes(array, type_code=0x08):
    """Hand-writes an IDX file: magic 0 0 type ndim, big-endian uint32 sizes, values."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array, dtype=dtype).tobytes()


def write_tiny_fashion(directory, n_train=3, n_test=2, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.array([0, 9, 5][:n_train], dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.array([3, 1][:n_test], dtype=np.uint8),
    }
    for key, stem in datasets.FASHION_MNIST_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            with gzip.open(directory / (stem + ".gz"), "wb") as f:
                f.write(data)
        else:
            (directory / stem).write_bytes(data)
    return arrays


def test_parse_idx_hand_made_files():
    labels = np.array([7, 0, 255], dtype=np.uint8)
    data = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 0, 255])
    assert data == idx_bytes(labels)
    out = datasets.parse_idx(data)
    np.testing.assert_array_equal(out, labels)
    assert out.dtype == np.uint8
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(datasets.parse_idx(idx_bytes(images)), images)
    ints = np.array([[1, -2], [70000, 3]])
    out = datasets.parse_idx(idx_bytes(ints, type_code=0x0C))
    np.testing.assert_array_equal(out, ints)
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    floats = np.array([0.5, -1.25], dtype=np.float32)
    np.testing.assert_array_equal(datasets.parse_idx(idx_bytes(floats, type_code=0x0D)), floats)
    assert datasets.parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 0])).shape == (0,)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "at least a 4-byte magic"),
        (bytes([0, 0, 8]), "at least a 4-byte magic"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "invalid IDX magic number 0x01000801"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "invalid IDX magic number"),
        (bytes([0, 0, 8, 0]), "invalid IDX magic number"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9, 10]), "trailing bytes"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "invalid IDX magic number"),
    ],
)
def test_parse_idx_rejects_corrupt_data(data, match):
    with pytest.raises(ValueError, match=match):
        datasets.parse_idx(data, source="demo.idx")


def test_read_idx_gzip_plain_and_corrupt(tmp_path):
    labels = np.array([1, 2, 3, 4], dtype=np.uint8)
    raw = idx_bytes(labels)
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "plain"), labels)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "packed.gz"), labels)
    packed = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8) + 3))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: corrupt or truncated gzip"):
        datasets.read_idx(tmp_path / "cut.gz")
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(ValueError, match=r"short\.gz: IDX file truncated"):
        datasets.read_idx(tmp_path / "short.gz")
    with pytest.raises(FileNotFoundError):
        datasets.read_idx(tmp_path / "absent.gz")


@needs_fashion
def test_read_real_fashion_mnist_test_labels():
    y = datasets.read_idx(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz"))
    assert y.shape == (10000,) and y.dtype == np.uint8
    # Fashion-MNIST's test set is balanced: 1,000 images per class.
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)


@needs_fashion
def test_load_real_fashion_mnist():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    assert y_train.min() == 0 and y_train.max() == 9
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)


def test_load_fashion_mnist_from_path_and_env(tmp_path, monkeypatch):
    arrays = write_tiny_fashion(tmp_path)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(path=tmp_path)
    assert x_train.shape == (3, 784) and x_test.shape == (2, 784)
    np.testing.assert_allclose(x_train, arrays["x_train"].reshape(3, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_train, [0, 9, 5])
    assert y_test.dtype == np.int32
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV_VAR, str(tmp_path))
    (x_raw, _), _ = datasets.load_fashion_mnist(flatten=False, normalize=False)
    assert x_raw.shape == (3, 28, 28) and x_raw.dtype == np.uint8
    np.testing.assert_array_equal(x_raw, arrays["x_train"])
    (x_loaded, _), _ = datasets.load("Fashion_MNIST")
    assert x_loaded.shape == (3, 784)


def test_load_fashion_mnist_accepts_ungzipped_files(tmp_path):
    write_tiny_fashion(tmp_path, gz=False)
    (_, y_train), _ = datasets.load_fashion_mnist(path=tmp_path)
    np.testing.assert_array_equal(y_train, [0, 9, 5])


def test_missing_fashion_mnist_names_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_fashion_mnist()
    message = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "allow_download=True" in message
    assert datasets.FASHION_MNIST_ENV_VAR in message
    assert str(tmp_path) in message
    assert "train-images-idx3-ubyte" in message


def test_fashion_mnist_content_is_validated(tmp_path):
    write_tiny_fashion(tmp_path)
    stem = datasets.FASHION_MNIST_FILES["y_test"] + ".gz"
    with gzip.open(tmp_path / stem, "wb") as f:
        f.write(idx_bytes(np.array([3, 1, 4], dtype=np.uint8)))
    with pytest.raises(ValueError, match="expected 2 labels"):
        datasets.load_fashion_mnist(path=tmp_path)
    with gzip.open(tmp_path / stem, "wb") as f:
        f.write(idx_bytes(np.array([3, 12], dtype=np.uint8)))
    with pytest.raises(ValueError, match="classes 0-9"):
        datasets.load_fashion_mnist(path=tmp_path)
    stem = datasets.FASHION_MNIST_FILES["x_test"] + ".gz"
    with gzip.open(tmp_path / stem, "wb") as f:
        f.write(idx_bytes(np.zeros((2, 14, 14), np.uint8)))
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\)"):
        datasets.load_fashion_mnist(path=tmp_path)


@pytest.mark.parametrize(
    "name, n_features, n_classes, n_total",
    [("digits", 64, 10, 1797), ("wine", 13, 3, 178), ("breast-cancer", 30, 2, 569)],
)
def test_load_sklearn_sets(name, n_features, n_classes, n_total):
    (x_train, y_train), (x_test, y_test) = datasets.load_sklearn(name)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.shape[1] == n_features == x_test.shape[1]
    assert len(x_train) + len(x_test) == n_total
    assert len(x_test) == int(np.ceil(0.2 * n_total))
    assert set(np.unique(y_train)) == set(range(n_classes))
    # Stratified: class proportions of the splits agree within one example per class.
    train_counts = np.bincount(y_train, minlength=n_classes)
    test_counts = np.bincount(y_test, minlength=n_classes)
    expected_test = (train_counts + test_counts) * len(x_test) / n_total
    assert np.all(np.abs(test_counts - expected_test) <= 1.0)
    if name == "digits":
        assert x_train.min() == 0.0 and x_train.max() == 1.0
    else:
        np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(x_train.std(axis=0), 1.0, atol=1e-4)
    (x_again, _), _ = datasets.load(name)
    np.testing.assert_array_equal(x_again, x_train)
    (x_other, _), _ = datasets.load_sklearn(name, seed=1)
    assert not np.array_equal(x_other, x_train)


def test_load_sklearn_errors():
    with pytest.raises(ValueError, match="Unknown scikit-learn data set 'iris'"):
        datasets.load_sklearn("iris")
    with pytest.raises(ValueError, match="test_size"):
        datasets.load_sklearn("wine", test_size=1.5)
    with pytest.raises(ValueError, match=r"Unknown data set 'cifar10'.*fashion-mnist"):
        datasets.load("cifar10")
    with pytest.raises(TypeError):
        datasets.load(3)


def test_load_npz_roundtrip_and_errors(tmp_path):
    x_train, y_train = np.ones((4, 2), np.float32), np.arange(4)
    x_test, y_test = np.zeros((2, 2), np.float32), np.arange(2)
    good = tmp_path / "good.npz"
    np.savez(good, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for loaded in (datasets.load_npz(good), datasets.load(str(good)), datasets.load(good)):
        (a, b), (c, d) = loaded
        np.testing.assert_array_equal(a, x_train)
        np.testing.assert_array_equal(b, y_train)
        np.testing.assert_array_equal(c, x_test)
        np.testing.assert_array_equal(d, y_test)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=x_train, y_train=y_train, x=x_test)
    with pytest.raises(ValueError) as info:
        datasets.load_npz(partial)
    assert "missing keys ['x_test', 'y_test']" in str(info.value)
    assert "found ['x', 'x_train', 'y_train']" in str(info.value)
    mismatched = tmp_path / "mismatched.npz"
    np.savez(mismatched, x_train=x_train, y_train=y_train[:3], x_test=x_test, y_test=y_test)
    with pytest.raises(ValueError, match="same number of examples"):
        datasets.load_npz(mismatched)
    single = tmp_path / "single.npy"
    np.save(single, x_train)
    with pytest.raises(ValueError, match="single array"):
        datasets.load_npz(single)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a valid .npz"):
        datasets.load_npz(garbage)
    with pytest.raises(FileNotFoundError):
        datasets.load_npz(tmp_path / "absent.npz")
    with pytest.raises(TypeError, match="no options"):
        datasets.load(str(good), seed=1)
