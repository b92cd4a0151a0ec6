"""File-permission checks for the files that hold secrets or state.

A config file may name secrets files (``{file: /run/secrets/smtp}``); the bus log and
the state store hold every article and the delivery log. If other users can read them,
or the group can rewrite them, a shared host leaks or can tamper with the pipeline. The
check only warns: refusing to start would break the common single-user laptop setup
where a umask of 022 makes every file world-readable, and the operator is the one who
can decide.

Example::

    for warning in check_permissions(sensitive_paths(config_path, settings)):
        log.warning("insecure file permissions", extra=kv(path=..., mode=...))
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

WORLD_READABLE = stat.S_IROTH
GROUP_WRITABLE = stat.S_IWGRP


@dataclass(frozen=True, slots=True)
class PermissionProblem:
    """One file whose mode lets others read it or its group change it."""

    path: Path
    mode: int
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path} (mode {self.mode:04o}) is {' and '.join(self.reasons)}; run: chmod o-r,g-w {self.path}"


def permission_problems(paths: Iterable[Path]) -> list[PermissionProblem]:
    """The files among ``paths`` readable by other users or writable by their group.

    Paths that do not exist (yet) are skipped; storywatch creates its bus and store
    files as 0600 (:func:`create_private`).
    """
    problems: list[PermissionProblem] = []
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path in seen:
            continue
        seen.add(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        reasons = []
        if mode & WORLD_READABLE:
            reasons.append("readable by other users")
        if mode & GROUP_WRITABLE:
            reasons.append("writable by its group")
        if reasons:
            problems.append(PermissionProblem(path, mode, tuple(reasons)))
    return problems


def check_permissions(paths: Iterable[Path]) -> list[str]:
    """One human-readable warning per file readable by others (``mode & 0o004``) or
    group-writable (``mode & 0o020``); an empty list when all is well."""
    return [str(p) for p in permission_problems(paths)]


def secret_files(config_path: Path) -> list[Path]:
    """Files named by ``{file: PATH}`` secret references in the YAML at ``config_path``
    (relative paths are taken as the loader takes them, from the working directory)."""
    try:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    return [Path(p) for p in _file_refs(data)]


def _file_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if len(node) == 1 and "file" in node and isinstance(node["file"], str):
            yield node["file"]
            return
        for value in node.values():
            yield from _file_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _file_refs(value)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite gives its WAL and
    shared-memory files the mode of the database file)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def included_files(config_path: Path) -> list[Path]:
    """The files the config at ``config_path`` includes (resolved as the loader does)."""
    try:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    names = data.get("include") if isinstance(data, dict) else None
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        return []
    return [(Path(config_path).parent / str(n)).resolve() for n in names]


def sensitive_paths(config_path: Path, settings: Any) -> list[Path]:
    """The config file and the files it includes, their secrets files, and the local bus
    log and state store (with SQLite's WAL and shared-memory companions) that ``settings`` use."""
    paths = [Path(config_path), *secret_files(config_path)]
    for included in included_files(config_path):
        paths += [included, *secret_files(included)]
    bus = settings.resolved_bus()
    if bus.kind == "embedded":
        paths.extend(_with_sidecars(Path(bus.path)))
    store = settings.resolved_store()
    if store.kind == "sqlite":
        paths.extend(_with_sidecars(Path(store.path)))
    return paths


def _with_sidecars(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
