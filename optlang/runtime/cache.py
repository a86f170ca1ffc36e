"""Generated source on disk, keyed by a content hash, imported from the file.

Triton reads kernel source through `inspect`, so generated modules live in
real files. Writes are atomic (temp file + rename in the same directory): two
processes compiling the same problem at once both end up importing one
complete file. The directory is $OPTLANG_CACHE_DIR, else ~/.cache/optlang.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading

import optlang

_lock = threading.Lock()
_modules: dict = {}


def cache_dir() -> str:
    path = os.environ.get("OPTLANG_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "optlang")
    os.makedirs(path, exist_ok=True)
    return path


def cache_key(source: str, backend: str, extra: str = "") -> str:
    """sha256 of the generated source, optlang's version, the backend and tool versions."""
    import torch

    versions = f"optlang={optlang.__version__};torch={torch.__version__};backend={backend};{extra}"
    return hashlib.sha256((versions + "\n" + source).encode()).hexdigest()


def load(source: str, backend: str, extra: str = ""):
    """Write `source` under its hash (once) and import it; the same key gives the same module."""
    key = cache_key(source, backend, extra)
    with _lock:
        if key in _modules:
            return _modules[key]
        module_name = f"optlang_gen_{backend}_{key[:20]}"
        path = os.path.join(cache_dir(), module_name + ".py")
        if not _same_content(path, source):
            _atomic_write(path, source)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _modules[key] = module
        return module


def _same_content(path: str, source: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read() == source
    except OSError:
        return False


def _atomic_write(path: str, source: str) -> None:
    atomic_write_bytes(path, source.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache must be readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
