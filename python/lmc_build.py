"""PEP 517 build backend for the lmc package (pure Python, no
dependencies): a wheel is the lmc/ directory plus its metadata, and an
sdist is this directory. Kept in-tree so installing needs no network.

The wheel also records where this checkout builds liblmc (../build, or
$LMC_BUILD_DIR) as the last place lmc looks for the library."""
import base64
import hashlib
import io
import os
import tarfile
import zipfile

NAME, VERSION = "lmc", "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
METADATA = (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
            "Summary: Python bindings for lmc (ctypes over liblmc)\n"
            "Requires-Python: >=3.8\n")
WHEEL = ("Wheel-Version: 1.0\nGenerator: lmc_build\nRoot-Is-Purelib: true\n"
         "Tag: py3-none-any\n")


def _package_files():
    root = os.path.join(HERE, NAME)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                full = os.path.join(dirpath, f)
                yield full, os.path.relpath(full, HERE).replace(os.sep, "/")


def _build_hint():
    build = os.environ.get("LMC_BUILD_DIR") or os.path.join(os.path.dirname(HERE), "build")
    path = os.path.abspath(os.path.join(os.path.dirname(HERE), build)
                           if not os.path.isabs(build) else build)
    return f'# Written by lmc_build at wheel build time.\nBUILD_DIR = {path!r}\n'


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    entries = [(arc, open(full, "rb").read()) for full, arc in _package_files()]
    entries.append((f"{NAME}/_build_hint.py", _build_hint().encode()))
    entries.append((f"{DIST_INFO}/METADATA", METADATA.encode()))
    entries.append((f"{DIST_INFO}/WHEEL", WHEEL.encode()))
    record = [_record_line(a, d) for a, d in entries] + [f"{DIST_INFO}/RECORD,,"]
    entries.append((f"{DIST_INFO}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in entries:
            z.writestr(arc, data)
    return name


def build_sdist(sdist_directory, config_settings=None):
    name = f"{NAME}-{VERSION}"
    path = os.path.join(sdist_directory, f"{name}.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        for f in ("pyproject.toml", "lmc_build.py"):
            t.add(os.path.join(HERE, f), f"{name}/{f}")
        for full, arc in _package_files():
            t.add(full, f"{name}/{arc}")
        info = tarfile.TarInfo(f"{name}/PKG-INFO")
        data = METADATA.encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return os.path.basename(path)


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []
