"""Built-in command handlers, one mixin class per topic; ``Server`` inherits them all.

Handlers have aioftp's signature ``async def verb(self, connection, rest) -> bool | None``:
they queue replies with ``connection.response`` and return ``False`` only to end the session.
Errors they raise become replies in the session (``trio_ftp.errors.reply_for``).
"""

from .auth import AuthCommands
from .datachannel import DataChannelCommands
from .files import FileCommands
from .hash import HashCommands
from .info import InfoCommands
from .navigation import NavigationCommands
from .site import SiteCommands
from .tls import TLSCommands
from .transfer import TransferCommands

__all__ = [
    "AuthCommands",
    "DataChannelCommands",
    "FileCommands",
    "HashCommands",
    "InfoCommands",
    "NavigationCommands",
    "SiteCommands",
    "TLSCommands",
    "TransferCommands",
]
