"""The command table: which method handles a verb, and the metadata FEAT and HELP are built from.

A handler method is registered with :func:`command`; ``Server.__init__`` collects the table
from the class hierarchy into ``commands_mapping`` (aioftp's name: lower-case verb -> bound
method), so a subclass overrides a built-in command by defining a method of the same name, or
adds one with ``@command``, or edits ``self.commands_mapping`` directly as with aioftp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["CommandSpec", "collect_commands", "command"]

F = TypeVar("F", bound=Callable[..., Any])

_SPEC_ATTRIBUTE = "__trio_ftp_commands__"


@dataclass(frozen=True)
class CommandSpec:
    """What the server knows about one verb besides its handler.

    Attributes:
        verb: upper-case verb, e.g. ``"RETR"``.
        help: the HELP line (syntax and one-line purpose).
        feat: the FEAT line this command adds (RFC 2389), or ``None``.
        immediate: answered at once even while a transfer runs (ABOR, NOOP...); other
            commands wait for the running transfer and are answered in order after it.
        needs_argument: the verb is meaningless without an argument: an empty one gets
            ``501`` before the handler runs (RFC 959 §5.3.2 syntax).
        before_login: the verb may run before a login (USER, PASS, AUTH, FEAT...); every
            other verb gets ``530`` until the client is logged in.
    """

    verb: str
    help: str = ""
    feat: str | None = None
    immediate: bool = False
    needs_argument: bool = False
    before_login: bool = False


def command(
    *verbs: str,
    help: str = "",
    feat: str | None = None,
    immediate: bool = False,
    needs_argument: bool = False,
    before_login: bool = False,
) -> Callable[[F], F]:
    """Register the decorated ``Server`` method as the handler of ``verbs``.

    Put it on top of the decorator stack (it only records metadata on the final function).
    The session answers ``530`` to the verb until the client has logged in, unless
    ``before_login=True`` (then the handler runs for anyone and must check for itself
    what needs a login). A verb put straight into ``commands_mapping``, with no
    ``@command``, is refused before login too. See :class:`CommandSpec` for the other
    arguments.
    """

    def decorate(method: F) -> F:
        specs = [
            CommandSpec(
                v.upper(), help, feat if i == 0 else None, immediate, needs_argument, before_login
            )
            for i, v in enumerate(verbs)
        ]
        setattr(method, _SPEC_ATTRIBUTE, (*getattr(method, _SPEC_ATTRIBUTE, ()), *specs))
        return method

    return decorate


def collect_commands(cls: type) -> dict[str, tuple[str, CommandSpec]]:
    """Map each registered verb to ``(method name, spec)``, subclasses overriding bases."""
    table: dict[str, tuple[str, CommandSpec]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            for spec in getattr(value, _SPEC_ATTRIBUTE, ()):
                table[spec.verb] = (name, spec)
    return table
