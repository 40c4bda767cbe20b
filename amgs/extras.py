"""Which extra of the one ``amgs`` distribution brings which package: for errors that say what to install."""

from __future__ import annotations


def missing_extra_hint(error: ModuleNotFoundError) -> str | None:
    """What to install when a command needs a package this machine's extras left out, or None.

    One distribution serves three machines (``device``, ``server``, ``models`` extras): a Pi has no
    collector packages, a collector no inference runtime. The extras are read from the installed
    distribution's own metadata, so this follows pyproject.toml.
    """
    import re
    from importlib import metadata

    missing = (error.name or "").split(".")[0]
    if not missing or missing == "amgs":
        return None
    try:
        requirements = metadata.requires("amgs") or []
    except metadata.PackageNotFoundError:
        return None
    import_names = {"paho-mqtt": "paho", "opencv-python-headless": "cv2", "argon2-cffi": "argon2"}
    import_names |= {
        "python-multipart": "multipart",
        "tensorflow-cpu": "tensorflow",
        "scikit-image": "skimage",
    }
    provides: dict[str, set[str]] = {}  # extra -> import names (nested "amgs[x]" expanded below)
    nested: dict[str, set[str]] = {}
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9_.\-\[\]]+).*extra\s*==\s*[\"']([^\"']+)[\"']", req)
        if not m:
            continue
        dist, extra = m.group(1), m.group(2)
        if dist.startswith("amgs["):
            nested.setdefault(extra, set()).update(dist[5:-1].split(","))
            continue
        name = re.split(r"[<>=!~;\[ ]", dist)[0].lower()
        provides.setdefault(extra, set()).add(import_names.get(name, name.replace("-", "_")))
    for extra, inner in nested.items():
        for other in inner:
            provides.setdefault(extra, set()).update(provides.get(other, set()))
    extras = sorted(e for e, names in provides.items() if missing in names and e != "test")
    if not extras:
        return None
    return (
        f"this command needs the Python package {missing!r}, which is not installed on this machine; "
        f"it comes with the {' or '.join(repr(e) for e in extras)} extra: pip install 'amgs[{extras[0]}]'"
    )
