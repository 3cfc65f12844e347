"""Editing ``gateway.toml`` from a command (``gateway scaffold``, ``gateway retire``), safely.

An edit keeps the operator's comments and layout (tomlkit round-trips them), is validated as
the server would read it before anything is written, and replaces the file atomically, so a
failed command leaves the file exactly as it was::

    doc = parse_config(path)                 # ConfigError naming file:line on a syntax error
    check_writable(path)                     # before any file is written
    ...edit doc...
    stage_config(path, tomlkit.dumps(doc))   # load_settings on the new text; ConfigError if bad
    write_file(path, tomlkit.dumps(doc))     # temporary file + fsync + rename, mode kept
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import ParseError
from tomlkit.items import AoT, Item, Key, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from gateway.errors import ConfigError, StoreUnavailable
from gateway.settings import Settings, load_settings
from gateway.storage.atomic import write_atomically


def parse_config(path: Path) -> TOMLDocument:
    """The config as an editable document; ``ConfigError`` naming ``file:line`` when it is not
    TOML (the server would refuse it too, so no command edits it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        # tomlkit appends " at line L col C" to its message; say it the compiler way instead.
        reason = str(exc).rsplit(" at line ", 1)[0]
        raise ConfigError([f"{path}:{exc.line}:{exc.col}: not valid TOML: {reason}"]) from None


def check_writable(path: Path) -> None:
    """``ConfigError`` when ``path`` (or its folder, where the temporary file goes) cannot be
    written: called before a command writes anything, so a read-only config stops it whole."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    if not os.access(path, os.W_OK):
        raise ConfigError(
            [
                f"{path}: the file is read-only for this user (mode {stat.filemode(mode)}, "
                f"{stat.S_IMODE(mode):o}); nothing was changed"
            ]
        )
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        folder_mode = folder.stat().st_mode
        raise ConfigError(
            [
                f"{folder}: the folder is read-only for this user (mode "
                f"{stat.filemode(folder_mode)}), so {path.name} cannot be replaced atomically; "
                "nothing was changed"
            ]
        )


def stage_config(path: Path, text: str) -> Settings:
    """Validate ``text`` as the new content of ``path``, exactly as ``gateway serve`` would
    read it (same folder, so relative paths resolve the same); ``ConfigError`` when invalid,
    with the problems named against ``path``."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(text)
        try:
            return load_settings(temp_name, os.environ)
        except ConfigError as exc:
            problems = [p.replace(temp_name, str(path)) for p in exc.problems]
            raise ConfigError(
                [*problems, f"{path}: the edit would make the config invalid; nothing was changed"]
            ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)


def write_file(path: Path, text: str) -> None:
    """Replace (or create) ``path`` atomically: readers see the old text or the new, never half
    (``gateway.storage.atomic``: temporary file, fsync, rename, the file's mode kept)."""
    try:
        write_atomically(path, text.encode("utf-8"))
    except StoreUnavailable as exc:
        raise ConfigError([f"{exc}; nothing was changed"]) from None


# -- keeping comments where they belong ---------------------------------------------------------
#
# tomlkit attaches the comments written above a table header to the end of the table before it.
# Removing that table would drop them, and appending a table after it would put them above the
# wrong header; these helpers move such a trailing block (a blank line, then comments) along.


def _last_leaf(table: Table) -> Table:
    """The table whose body the file's text ends in: the last sub-table, recursively."""
    body = table.value.body
    for key, item in reversed(body):
        if key is None:
            continue
        if isinstance(item, Table):
            return _last_leaf(item)
        if isinstance(item, AoT) and item.body:
            return _last_leaf(item.body[-1])
        break
    return table


def take_trailing_comments(table: Table) -> list[Item]:
    """Remove and return the blank line (and the comments under it) ending ``table``'s text:
    they introduce whatever follows it in the file."""
    leaf = _last_leaf(table)
    body = leaf.value.body
    start = len(body)
    while start > 0 and body[start - 1][0] is None:
        start -= 1
    trailing = [item for _, item in body[start:]]
    blank = next((i for i, item in enumerate(trailing) if _is_blank(item)), None)
    if blank is None:
        return []  # comments right under the last key belong to this table
    moved = trailing[blank:]
    del body[start + blank :]
    return moved


def put_trailing_comments(table: Table, items: list[Item]) -> None:
    body = _last_leaf(table).value.body
    if items and _is_blank(items[0]) and body and _is_blank(body[-1][1]):
        items = items[1:]  # one blank line between sections is enough
    for item in items:
        body.append((None, item))


def _is_blank(item: Item) -> bool:
    return isinstance(item, Whitespace) and "\n" in item.s


def append_table(parent: Container | Table, key: str, new: Table) -> None:
    """Add ``new`` as ``parent[key]`` after the last table already there, moving the comments
    that introduce the next section below it, with a blank line above its header."""
    # A table's text ends in its last sub-table, or in its own keys when it has none.
    source = parent if isinstance(parent, Table) else _last_table(parent)
    moved = take_trailing_comments(source) if source is not None else []
    if source is not None:
        _blank_line_after(source)
    parent[key] = new
    put_trailing_comments(new, moved)


def append_to_array(array: AoT, new: Table, comment: str) -> None:
    """Append ``new`` to an array of tables, under a blank line and ``comment``."""
    previous = array.body[-1] if array.body else None
    moved = take_trailing_comments(previous) if previous is not None else []
    if previous is not None:
        _blank_line_after(previous)
        for line in comment.splitlines():
            _last_leaf(previous).value.body.append((None, tomlkit.comment(line)))
    array.append(new)
    put_trailing_comments(new, moved)


def remove_table(parent: Table, key: str) -> None:
    """Delete ``parent[key]`` (a key or a table), keeping the comments that introduce the next
    section in the file."""
    item = parent.value.item(key)
    moved = take_trailing_comments(item) if isinstance(item, Table) else []
    del parent[key]
    if moved:
        put_trailing_comments(parent, moved)


def _last_table(container: Container) -> Table | None:
    for key, item in reversed(container.body):
        if isinstance(key, Key) and isinstance(item, Table):
            return item
    return None


def _blank_line_after(table: Table) -> None:
    body = _last_leaf(table).value.body
    if body and _is_blank(body[-1][1]):
        return
    body.append((None, tomlkit.ws("\n")))
