"""ImageNet InceptionV3 weights for an offline machine: check a copied file, put it where Keras looks.

Keras fetches ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`` on first use of
``InceptionV3(weights="imagenet", include_top=False)`` and checks it against a hash written in its own
source (``keras/src/applications/inception_v3.py``). A vivarium's training box has no internet, so the lab
copies that file over from a machine that has one. :func:`import_weights` checks the copy against the
hash the *installed* Keras carries (read from that source file, never copied here by hand) and stores it
in Keras' cache (``$KERAS_HOME/models`` or ``~/.keras/models``), where ``--weights imagenet`` then finds
it with no network: Keras re-checks the same hash every time it loads it.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
_KERAS_SOURCE_MODULE = "keras.src.applications.inception_v3"


class WeightsError(ValueError):
    """A weights file is not the one Keras expects; the message says what was found and what to do."""


@dataclass(frozen=True)
class KerasHash:
    """The hash Keras checks its downloaded file against, and where it was read."""

    value: str
    algorithm: str  # "md5" or "sha256" (Keras' "auto": 64 hex digits = sha256, else md5)
    source: Path  # the installed Keras source file it came from


def _algorithm(value: str) -> str:
    return "sha256" if len(value) == 64 else "md5"


def keras_notop_hash() -> KerasHash:
    """The ``file_hash`` the installed Keras passes to ``get_file`` for :data:`NOTOP_FILE`.

    Read by parsing the installed Keras source (the call ``file_utils.get_file(NOTOP_FILE, ...,
    file_hash=...)``), so the check follows whatever Keras version is installed.
    """
    import importlib.util

    spec = importlib.util.find_spec(_KERAS_SOURCE_MODULE)
    if spec is None or spec.origin is None:
        raise WeightsError(
            f"Keras is not installed (no {_KERAS_SOURCE_MODULE}): install the models extra "
            "(pip install 'amgs[models]')"
        )
    source = Path(spec.origin)
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and first.value == NOTOP_FILE):
            continue
        for kw in node.keywords:
            if kw.arg in ("file_hash", "md5_hash") and isinstance(kw.value, ast.Constant):
                value = str(kw.value.value).lower()
                return KerasHash(value, "md5" if kw.arg == "md5_hash" else _algorithm(value), source)
    raise WeightsError(
        f"{source}: found no get_file({NOTOP_FILE!r}, file_hash=...) call to read the hash from"
    )


def file_hash(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def keras_cache_dir() -> Path:
    """Where Keras' ``get_file(..., cache_subdir="models")`` looks, by Keras' own rules: ``$KERAS_HOME``
    if set, else ``~/.keras`` (``/tmp/.keras`` when the home folder is not writable), then ``models``."""
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if os.path.exists(home) and not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(home) / "models"


def cached_notop() -> Path:
    return keras_cache_dir() / NOTOP_FILE


def check_notop(path: Path, expected: KerasHash | None = None) -> KerasHash:
    """Refuse ``path`` unless its hash is the one Keras expects for :data:`NOTOP_FILE`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    want = expected or keras_notop_hash()
    got = file_hash(path, want.algorithm)
    if got != want.value:
        size = path.stat().st_size
        raise WeightsError(
            f"{path} ({size / 1e6:.1f} MB) has {want.algorithm} {got}, but Keras expects {want.value} for "
            f"{NOTOP_FILE} (read from {want.source}). It is not InceptionV3's ImageNet notop weights, or the "
            "copy is incomplete: copy ~/.keras/models/" + NOTOP_FILE + " again from a machine where "
            '`python -c "import keras; keras.applications.InceptionV3(include_top=False)"` has run.'
        )
    return want


def matches_notop(path: Path, expected: KerasHash | None = None) -> bool:
    try:
        check_notop(path, expected)
    except WeightsError:
        return False
    return True


def import_weights(path: Path, *, expected: KerasHash | None = None, cache_dir: Path | None = None) -> Path:
    """Check ``path`` against Keras' hash and copy it into Keras' cache; returns where it now lies.

    The copy goes to a temporary name first and is renamed, so a half-copied file never sits where Keras
    looks. Importing the file already in the cache is a no-op.
    """
    check_notop(path, expected)
    target = (Path(cache_dir) if cache_dir else keras_cache_dir()) / NOTOP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.resolve() == Path(path).resolve():
        return target
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".import-", suffix=".h5")
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def imagenet_status(expected: KerasHash | None = None) -> tuple[Path, str]:
    """(cache path, one of "ok", "missing", "wrong hash") for the ImageNet notop weights."""
    path = cached_notop()
    if not path.exists():
        return path, "missing"
    return path, "ok" if matches_notop(path, expected) else "wrong hash"
