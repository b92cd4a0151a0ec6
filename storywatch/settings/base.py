"""Building blocks shared by every settings section: frozen models and secret references."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator


class Section(BaseModel):
    """A frozen settings section that rejects unknown keys (a typo is an error, not a no-op)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Secret(SecretStr):
    """A secret given in YAML as ``{env: NAME}`` or ``{file: PATH}``, never as a literal.

    Committed config files must not hold passwords or webhook URLs; the value is read
    from the environment (or a secrets file such as a Docker secret) when the config is
    loaded, and prints as ``**********``.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def resolve(value: Any, info: Any) -> Secret:
            environ = (info.context or {}).get("environ", os.environ)
            lenient = (info.context or {}).get("unset_secrets", False)
            if isinstance(value, Secret):
                return value
            if isinstance(value, str):
                raise ValueError(
                    "secrets must not be written in a config file; "
                    "give {env: VARIABLE_NAME} or {file: /path/to/secret} instead"
                )
            if not isinstance(value, dict) or len(value) != 1 or not ({"env", "file"} & value.keys()):
                raise ValueError("expected {env: VARIABLE_NAME} or {file: /path/to/secret}")
            if "env" in value:
                name = str(value["env"])
                if name not in environ:
                    if lenient:
                        return UnsetSecret(f"environment variable {name}")
                    raise ValueError(f"environment variable {name} is not set")
                return cls(environ[name])
            path = Path(str(value["file"]))
            try:
                return cls(path.read_text().strip())
            except OSError as exc:
                if lenient:
                    return UnsetSecret(f"secret file {path}")
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None

        return core_schema.with_info_plain_validator_function(
            resolve,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: "**********"),
        )


class UnsetSecret(Secret):
    """A secret whose variable or file is not there, in a config loaded to read, not send
    (``load_settings(..., secrets=False)``: ``status``, ``alerts list``, the dashboard).
    Its value is empty; ``source`` says where it would have come from."""

    def __init__(self, source: str):
        super().__init__("")
        self.source = source


class Named(Section):
    """A section with a required, non-blank ``name``."""

    name: str

    @model_validator(mode="after")
    def _name_not_blank(self) -> Named:
        if not self.name.strip():
            raise ValueError("name must not be blank")
        return self


class Problems(ValueError):
    """Several problems found by one validator, each under its own dotted key.

    Raised by whole-config checks (duplicate names, unknown channels) so that the loader
    can name each key and the file that defines it, not just the main config file.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an ``http://`` or ``https://`` URL with a host, or None if it is.

    The answer never quotes ``url``: channel URLs (webhooks) carry tokens.

    >>> http_url_problem("https://hooks.example.org/T0/B0/x"), http_url_problem("htp:/127.0.0.1/hook")
    (None, 'expected an http:// or https:// URL with a host')
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return "expected an http:// or https:// URL with a host (it does not parse as a URL)"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "expected an http:// or https:// URL with a host"
    return None
