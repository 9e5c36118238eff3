"""On-disk cache of generated features: keyed by every parameter, written atomically, resumable.

Layout under the cache directory (`cache_dir=`, else `$TFDYNHP_CACHE_DIR`, else
`~/.cache/tfdynhp`):

    synthetic-kws/<key>.npz            a finished data set (loaded only if complete)
    synthetic-kws/<key>.partial/       chunks of an unfinished generation
        params.json                    the parameters of the key (for humans)
        chunk-00000.npy ...            finished chunks of raw MFCCs

Every file is written to a unique temporary name in the same folder, flushed and fsync'ed,
then moved into place with `os.replace`, so a file with the final name is always complete. A
killed generation leaves finished chunks behind; the next call with the same parameters reuses
them and synthesizes only the rest. A finished entry that fails to load (e.g. a damaged disk)
is deleted and generated again.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile

import numpy as np

CACHE_ENV_VAR = "TFDYNHP_CACHE_DIR"
SUBDIR = "synthetic-kws"

logger = logging.getLogger("tfdynhp.datasets.kws")


def resolve_cache_dir(cache_dir=None):
    """Returns the cache root: `cache_dir`, else `$TFDYNHP_CACHE_DIR`, else `~/.cache/tfdynhp`."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    return os.environ.get(CACHE_ENV_VAR) or os.path.join(
        os.path.expanduser("~"), ".cache", "tfdynhp"
    )


def cache_key(params):
    """A hex digest of the JSON-serializable `params` (canonical: sorted keys, no spaces)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _atomic_write(path, write):
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save_npz(path, **arrays):
    """Writes an uncompressed `.npz` atomically (temporary file, fsync, `os.replace`)."""
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_save_npy(path, array):
    """Writes a `.npy` atomically."""
    _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


class Entry:
    """The cache entry of one parameter set.

    Args:
        root: the cache root (`resolve_cache_dir`).
        params: the JSON-serializable parameters that determine the data.
    """

    def __init__(self, root, params):
        self.params = params
        self.key = cache_key(params)
        self.folder = os.path.join(root, SUBDIR)
        self.path = os.path.join(self.folder, self.key + ".npz")
        self.partial = os.path.join(self.folder, self.key + ".partial")

    def load(self, names):
        """Returns the finished entry's arrays `names` as a dict, or `None` if there is none.

        A file that cannot be read or lacks a name is removed (logged) and `None` returned.
        """
        if not os.path.isfile(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                return {name: archive[name] for name in names}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            logger.warning("Cache entry %s is unreadable (%s); generating it again.", self.path, e)
            os.remove(self.path)
            return None

    def save(self, **arrays):
        """Writes the finished entry atomically, then removes the partial chunks."""
        atomic_save_npz(self.path, **arrays)
        shutil.rmtree(self.partial, ignore_errors=True)

    def _chunk_path(self, index):
        return os.path.join(self.partial, f"chunk-{index:05d}.npy")

    def start(self):
        """Prepares the partial folder (keeping finished chunks of an interrupted run)."""
        os.makedirs(self.partial, exist_ok=True)
        for name in os.listdir(self.partial):
            if name.endswith(".tmp"):  # a write cut short by an interruption
                os.remove(os.path.join(self.partial, name))
        params_path = os.path.join(self.partial, "params.json")
        if not os.path.isfile(params_path):
            text = json.dumps(self.params, sort_keys=True, indent=1).encode("utf-8")
            _atomic_write(params_path, lambda f: f.write(text))

    def load_chunk(self, index, shape):
        """Returns finished chunk `index` if it exists with `shape`, else `None`."""
        path = self._chunk_path(index)
        if not os.path.isfile(path):
            return None
        try:
            chunk = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            chunk = None
        if chunk is None or chunk.shape != tuple(shape) or chunk.dtype != np.float32:
            os.remove(path)
            return None
        return chunk

    def save_chunk(self, index, chunk):
        """Writes chunk `index` atomically."""
        atomic_save_npy(self._chunk_path(index), np.asarray(chunk, dtype=np.float32))
