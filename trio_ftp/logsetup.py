"""How the command line writes its log: plain text or JSON lines, to stderr or a file, the
same in every worker process.

JSON lines (``--log-format json``) have a stable set of fields, for log shippers:

* every line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``event``, ``message``;
  ``worker`` with ``--workers``;
* audit lines (:mod:`trio_ftp.audit`): ``event`` is the kind (``login_failed``,
  ``transfer_aborted``...), with ``session``, ``client`` and the event's fields (``user``,
  ``path``, ``target``, ``direction``, ``outcome``, ``offset``, ``bytes``, ``seconds``,
  ``mode``, ``reason``, ``failures``) when it has them;
* any other line: ``event`` is ``"log"``.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Literal

from .audit import event_fields
from .events import ServerEvent

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging", "text_format"]

LOG_FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]


def text_format(worker: int | None = None) -> str:
    """The text line: time, level, (worker,) logger, message."""
    who = "" if worker is None else f"worker {worker} "
    return f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": "log",
            "message": record.getMessage(),
        }
        if self.worker is not None:
            line["worker"] = self.worker
        event = getattr(record, "ftp_event", None)
        if isinstance(event, ServerEvent):
            line.update(event_fields(event))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(
    level: str,
    log_format: LogFormat = "text",
    log_file: str | None = None,
    worker: int | None = None,
) -> None:
    """Send the root logger's records at ``level`` and above to ``log_file`` (appended)
    or stderr, as text or JSON lines; replaces what was configured before."""
    handler: logging.Handler = (
        logging.StreamHandler() if log_file is None else logging.FileHandler(log_file, "a")
    )
    if log_format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(logging.Formatter(text_format(worker)))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)
