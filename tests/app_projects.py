"""Small Flower app projects written by a test: a package and its pyproject."""

from __future__ import annotations

from pathlib import Path


def write_app_project(
    folder: Path, package: str, client_code: str, server_code: str, config: str = ""
) -> Path:
    """`folder/pyproject.toml` naming `package.server_app:app` and
    `package.client_app:app`, with `config` as its `[tool.flwr.app.config]`
    lines; returns `folder`."""
    code = folder / package
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "client_app.py").write_text(client_code)
    (code / "server_app.py").write_text(server_code)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{package}"\nversion = "1.0.0"\n'
        '[tool.flwr.app]\npublisher = "me"\n'
        "[tool.flwr.app.components]\n"
        f'serverapp = "{package}.server_app:app"\n'
        f'clientapp = "{package}.client_app:app"\n'
        + (f"[tool.flwr.app.config]\n{config}" if config else "")
    )
    return folder
