"""Where opea-new's packaged files are: the templates folder of a source checkout or of a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def templates_root() -> Path:
    """`opea_new/_templates` inside an installed wheel; `<repo>/templates` in a source checkout."""
    for candidate in (_PACKAGE / "_templates", _PACKAGE.parents[1] / "templates"):
        if (candidate / "megaservice").is_dir():
            return candidate
    raise FileNotFoundError(f"opea-new's templates are missing (looked in {_PACKAGE / '_templates'} and "
                            f"{_PACKAGE.parents[1] / 'templates'}); reinstall opea-new")


def runtime_root() -> Path:
    """The runtime library's source (pyproject.toml + src/): `opea_new/_runtime` in a wheel, `<repo>/runtime`."""
    for candidate in (_PACKAGE / "_runtime", _PACKAGE.parents[1] / "runtime"):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise FileNotFoundError(f"opea-new's runtime library is missing (looked in {_PACKAGE / '_runtime'} and "
                            f"{_PACKAGE.parents[1] / 'runtime'}); reinstall opea-new")
