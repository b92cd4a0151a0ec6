"""Typed, frozen configuration, loaded from YAML once at start and validated as a whole.

``config/storywatch.yaml`` is the entry point. It may ``include`` other files (feeds,
watched topics, channels), each contributing top-level sections. Environment variables
``STORYWATCH__SECTION__KEY=value`` override single keys (the value is read as YAML), which
is how docker-compose points every service at Kafka. Relative paths (store, bus, feed
files) are relative to the directory of the main config file.

Every problem is reported with the file it came from, the dotted key and what was
expected; :class:`ConfigError` carries all of them at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from storywatch.errors import ConfigError
from storywatch.settings.alerts import AlertSettings
from storywatch.settings.base import Problems, Secret, Section
from storywatch.settings.core import BusSettings, HttpSettings, LogSettings, StoreSettings
from storywatch.settings.enrich import EnrichSettings, WatchedTopic
from storywatch.settings.ingest import FeedSettings, IngestSettings, feed_list_problems

__all__ = ["ENV_PREFIX", "ConfigFiles", "Secret", "Settings", "default_config_path", "load_settings", "read_config"]

ENV_PREFIX = "STORYWATCH__"
DEFAULT_CONFIG = Path("config/storywatch.yaml")


class Settings(Section):
    base_dir: Path = Field(Path("."), description="directory relative paths are resolved against")
    log: LogSettings = LogSettings()
    http: HttpSettings = HttpSettings()
    bus: BusSettings = BusSettings()
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    feeds: list[FeedSettings] = Field(default_factory=list)
    enrich: EnrichSettings = EnrichSettings()
    topics: list[WatchedTopic] = Field(default_factory=list)
    alerts: AlertSettings = AlertSettings()

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        known = set(self.alerts.channels)
        problems: list[tuple[str, str]] = []
        for i, topic in enumerate(self.topics):
            for ch in topic.channels:
                if ch not in known:
                    problems.append((f"topics.{i}.channels", f"unknown channel {ch!r} (known: {sorted(known)})"))
        for key in ("default_channels", "operator_channels"):
            for ch in getattr(self.alerts, key):
                if ch not in known:
                    problems.append((f"alerts.{key}", f"unknown channel {ch!r} (known: {sorted(known)})"))
        names = [t.name for t in self.topics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(("topics", f"duplicate topic names {dupes}"))
        problems.extend(feed_list_problems(self.feeds, self.base_dir))
        for name, channel in self.alerts.channels.items():
            if channel.template is not None and not self.path(channel.template).is_dir():
                where = self.path(channel.template)
                what = "is not a directory" if where.exists() else "does not exist"
                problems.append(
                    (f"alerts.channels.{name}.template", f"template directory {where} {what} (a typo in the path?)")
                )
        if problems:
            raise Problems(problems)
        return self

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the config file's directory."""
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def resolved_bus(self) -> BusSettings:
        """The bus section with its file paths (log file, TLS files) resolved."""
        paths = {"path": self.path(self.bus.path)}
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self.bus, key)
            if value is not None:
                paths[key] = self.path(value)
        return self.bus.model_copy(update=paths)

    def resolved_store(self) -> StoreSettings:
        """The store section with its file path resolved."""
        return self.store.model_copy(update={"path": self.path(self.store.path)})

    def redacted(self) -> dict[str, Any]:
        """The whole config as plain data with every secret masked, for printing."""
        return self.model_dump(mode="json")


def default_config_path() -> Path:
    return Path(os.environ.get("STORYWATCH_CONFIG", str(DEFAULT_CONFIG)))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([(str(path), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), "", f"cannot read: {exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([(str(path), "", f"invalid YAML: {where}{problem}")]) from None
    except RecursionError:
        raise ConfigError([(str(path), "", "invalid YAML: nested too deeply")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "", f"expected a mapping of sections, got {type(data).__name__}")])
    return data


@dataclass(frozen=True)
class ConfigFiles:
    """A config's raw sections, before validation, and where each came from."""

    data: dict[str, Any]
    """The merged top-level sections (``include`` removed)."""
    origin: dict[str, str]
    """The file that defines each section."""
    files: list[Path]
    """The main file and its includes, resolved, in order."""


def read_config(path: Path) -> ConfigFiles:
    """Read the config at ``path`` and its includes without validating them (so without
    reading secrets): for commands that edit one file, such as ``feeds import``.
    Raises :class:`ConfigError` for a missing file, broken YAML or a section defined twice."""
    data, origin = _merge_includes(path)
    includes = _read_yaml(path).get("include") or []
    names = [includes] if isinstance(includes, str) else includes
    return ConfigFiles(data, origin, [path.resolve(), *((path.parent / str(n)).resolve() for n in names)])


def _merge_includes(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Read ``path`` and its ``include`` list; return the data and the file of each section."""
    data = _read_yaml(path)
    origin = {key: str(path) for key in data}
    includes = data.pop("include", []) or []
    origin.pop("include", None)
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        raise ConfigError([(str(path), "include", "expected a list of file names")])
    for name in includes:
        inc_path = (path.parent / str(name)).resolve()
        inc = _read_yaml(inc_path)
        for key, value in inc.items():
            if key == "include":
                raise ConfigError([(str(inc_path), "include", "included files cannot include others")])
            if key in data:
                raise ConfigError(
                    [(str(inc_path), key, f"section already defined in {origin[key]}; define it once")]
                )
            data[key] = value
            origin[key] = str(inc_path)
    return data, origin


def _apply_env(data: dict[str, Any], origin: dict[str, str], environ: dict[str, str]) -> None:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
        origin[".".join(parts)] = f"environment variable {name}"


def load_settings(
    path: str | Path | None = None, *, environ: dict[str, str] | None = None, secrets: bool = True
) -> Settings:
    """Load and validate the config at ``path`` (default: ``$STORYWATCH_CONFIG`` or
    ``config/storywatch.yaml``). Raises :class:`ConfigError` listing every problem.

    ``secrets=False`` is for commands that read the state and send nothing: a secret whose
    variable or file is missing loads as an empty :class:`UnsetSecret` instead of an error.
    """
    cfg_path = Path(path) if path is not None else default_config_path()
    data, origin = _merge_includes(cfg_path)
    env = dict(os.environ if environ is None else environ)
    _apply_env(data, origin, env)
    data.setdefault("base_dir", str(cfg_path.resolve().parent))
    try:
        return Settings.model_validate(data, context={"environ": env, "unset_secrets": not secrets})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, Problems):
                # A whole-config check: each problem under its own key, in the file defining it.
                for key, msg in cause.problems:
                    full = [*loc, *key.split(".")]
                    problems.append((_origin_of(full, origin, str(cfg_path)), ".".join(full), msg))
                continue
            # Tagged unions add the tag to the location; it is noise to a user.
            loc = [p for p in loc if p not in {"email", "slack", "webhook", "console", "file"} or p == loc[0]]
            key = ".".join(loc)
            file = _origin_of(loc, origin, str(cfg_path))
            msg = err.get("msg", "invalid value").removeprefix("Value error, ")
            value = err.get("input")
            # Never echo the input of a secret field: it may be the secret itself.
            if err.get("type") not in {"missing", "model_type"} and _printable(value) and not _secretish(loc, msg):
                msg += f" (got {value!r})"
            problems.append((file, key, msg))
        raise ConfigError(problems) from None


def _origin_of(loc: list[str], origin: dict[str, str], default: str) -> str:
    """Where the value at ``loc`` came from: the longest matching override, else the section's file."""
    found = default
    for n in range(len(loc), 0, -1):
        if origin.get(".".join(loc[:n])):
            found = origin[".".join(loc[:n])]
            break
    # A whole-section check (store.kind postgres needs store.dsn) may fail because of an
    # override of one of its keys: name those too.
    prefix = ".".join(loc) + "."
    inside = sorted(v for k, v in origin.items() if loc and k.startswith(prefix) and v.startswith("environment"))
    return f"{found} (with {', '.join(inside)})" if inside and not found.startswith("environment") else found


_SECRET_KEYS = {"password", "token", "webhook_url", "url", "signing_secret", "sasl_password"}


def _secretish(loc: list[str], msg: str) -> bool:
    return "secret" in msg or bool(loc and loc[-1] in _SECRET_KEYS)


def _printable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(str(value)) <= 200
