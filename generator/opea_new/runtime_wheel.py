"""The runtime library as a wheel, built byte for byte the same on every machine.

opea-new-runtime is not on PyPI: opea-new carries its source and writes its
wheel into every project (`vendor/`), where `make install` and `docker build`
find it offline. The wheel is part of the root template's release (its tree
holds it), so a release tag must mean one content everywhere: entries are
sorted, dated 1980-01-01 and given fixed modes, and the metadata is generated
from `runtime/pyproject.toml` alone. That is the whole of what a build backend
would do for a pure-Python package (PEP 427 layout, PEP 566 metadata).
"""

from __future__ import annotations

import base64
import hashlib
import io
import tomllib
import zipfile
from pathlib import Path

from .paths import runtime_root

_DATE = (1980, 1, 1, 0, 0, 0)
_MODE = 0o644 << 16


def project_metadata(root: Path | None = None) -> dict:
    root = root or runtime_root()
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]


def wheel_name(root: Path | None = None) -> str:
    project = project_metadata(root)
    return f"{project['name'].replace('-', '_')}-{project['version']}-py3-none-any.whl"


def build(root: Path | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of the runtime's wheel."""
    root = root or runtime_root()
    project = project_metadata(root)
    distribution = project["name"].replace("-", "_")
    dist_info = f"{distribution}-{project['version']}.dist-info"
    package = root / "src" / "opea_new_runtime"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[path.relative_to(package.parent).as_posix()] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = _metadata(project, root).encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: opea-new\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=_DATE)
            entry.external_attr = _MODE
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, data, compresslevel=9)
    return wheel_name(root), buffer.getvalue()


def _metadata(project: dict, root: Path) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
             f"Summary: {project.get('description', '')}", f"License: {project.get('license', '')}",
             f"Requires-Python: {project.get('requires-python', '>=3.11')}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for requirement in requirements:
            marker = requirement.split(";", 1)
            condition = f"({marker[1].strip()}) and extra == '{extra}'" if len(marker) == 2 else f"extra == '{extra}'"
            lines.append(f"Requires-Dist: {marker[0].strip()}; {condition}")
    readme = root / "README.md"
    text = "\n".join(lines) + "\n"
    if readme.is_file():
        text += "Description-Content-Type: text/markdown\n\n" + readme.read_text()
    return text


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
