"""Checks made when a ``Server`` subclass is created, so aioftp code that would misbehave here
fails loudly at import time instead of answering clients wrongly at run time.

Three things differ from aioftp in ways a subclass can trip over:

* aioftp hooks that trio_ftp never calls (``build_list_string``, ``parse_command``...): an
  override would be dead code, so defining one raises ``TypeError`` with what to do instead;
* ``get_paths`` is a coroutine here (confinement resolves symlinks off the event loop):
  a method that unpacks or indexes ``self.get_paths(...)`` without ``await`` would get a
  coroutine, not paths, so it raises ``TypeError`` naming the file and line;
* aioftp's tutorial handlers are found by name (``async def coll(self, connection, rest)``
  answers ``COLL``): :func:`legacy_verbs` finds such methods so the server registers them.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["UNUSED_AIOFTP_HOOKS", "check_server_class", "legacy_verbs"]

#: aioftp ``Server`` methods trio_ftp does not call, and what to do instead.
UNUSED_AIOFTP_HOOKS: dict[str, str] = {
    "build_list_string": (
        "LIST lines are built by trio_ftp.listing (ls -l format); override the `list` "
        "handler to send other lines"
    ),
    "build_list_mtime": "LIST dates are built by trio_ftp.listing; override the `list` handler",
    "build_mlsx_string": (
        "MLSD/MLST facts are built by trio_ftp.listing (RFC 3659); override the `mlsd` or "
        "`mlst` handler"
    ),
    "_build_mlsx_facts_from_stats": "override the `mlsd` or `mlst` handler",
    "_format_mlsx_time": "override the `mlsd` or `mlst` handler",
    "parse_command": (
        "commands are parsed by the session (trio_ftp.codec); register a verb with "
        "@trio_ftp.command, or watch commands with server.events()"
    ),
    "dispatcher": (
        "each session is a trio task (trio_ftp.session); override `greeting` for the "
        "welcome, register verbs with @trio_ftp.command, watch sessions with server.events()"
    ),
    "response_writer": "replies queued with connection.response() are written by the session",
    "write_response": "replies queued with connection.response() are written by the session",
    "write_line": "replies queued with connection.response() are written by the session",
    "_start_passive_server": (
        "passive listeners are opened by connection.data.open_passive(); configure them "
        "with Server(data_ports=..., passive_address=...)"
    ),
}

#: What aioftp's tutorials name a command handler: the verb in lower case, ``_`` after a
#: Python keyword (``pass_``).
_VERB_NAME = re.compile(r"[a-z]{3,4}_?")
_HANDLER_PARAMETERS = ["self", "connection", "rest"]


def check_server_class(cls: type) -> None:
    """Raise ``TypeError`` when ``cls`` (a ``Server`` subclass being created) overrides an
    aioftp hook that is never called here, or uses ``get_paths`` without ``await``."""
    for name, value in vars(cls).items():
        advice = UNUSED_AIOFTP_HOOKS.get(name)
        if advice is not None:
            raise TypeError(
                f"{cls.__qualname__}.{name} overrides an aioftp hook that trio_ftp never "
                f"calls: {advice}"
            )
        function = _function_of(value)
        if function is not None:
            for line in _unawaited_get_paths(function):
                raise TypeError(
                    f"{cls.__qualname__}.{name} ({line}) uses self.get_paths(...) without "
                    "await: in trio_ftp it is a coroutine (the confinement check resolves "
                    "symlinks off the event loop); write "
                    "`real_path, virtual_path = await self.get_paths(connection, path)`"
                )


def legacy_verbs(cls: type, known: set[str]) -> Iterator[tuple[str, str]]:
    """``(verb, method name)`` for each handler of ``cls`` written the way aioftp's tutorial
    writes one (a coroutine method ``async def coll(self, connection, rest)``) whose verb
    has no handler in ``known`` yet (upper-case verbs)."""
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("trio_ftp.") or klass.__module__ == "trio_ftp":
            continue
        for name, value in vars(klass).items():
            verb = name.rstrip("_").upper()
            if not _VERB_NAME.fullmatch(name) or verb in known:
                continue
            function = _function_of(value)
            if function is None or not inspect.iscoroutinefunction(function):
                continue
            parameters = list(inspect.signature(function).parameters)
            if parameters == _HANDLER_PARAMETERS:
                known.add(verb)
                yield verb, name


def _function_of(value: object) -> Callable[..., Any] | None:
    """The plain function behind a class attribute (through decorators' ``__wrapped__``)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if not inspect.isfunction(value):
        return None
    unwrapped: Callable[..., Any] = inspect.unwrap(value)
    return unwrapped


def _unawaited_get_paths(function: Callable[..., Any]) -> Iterator[str]:
    """``file:line`` of each ``get_paths(...)`` call whose result is used as paths without
    ``await``: unpacked, indexed, iterated, or thrown away. Nothing when there is no source
    (a REPL, ``exec``)."""
    try:
        lines, first = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    filename = inspect.getsourcefile(function) or "?"
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_paths"
        ):
            continue
        parent = parents.get(node)
        if _used_as_paths(node, parent):
            yield f"{filename}:{first + node.lineno - 1}"


def _used_as_paths(call: ast.Call, parent: ast.AST | None) -> bool:
    if isinstance(parent, ast.Assign):
        return any(isinstance(target, (ast.Tuple, ast.List)) for target in parent.targets)
    if isinstance(parent, ast.Subscript):
        return parent.value is call
    if isinstance(parent, (ast.For, ast.comprehension, ast.Starred)):
        return True
    return isinstance(parent, ast.Expr)  # called and dropped: the coroutine never runs
