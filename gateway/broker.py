"""The embedded broker: Kombu's filesystem transport, made safe for concurrent processes.

Kombu creates a message file under its final name and then writes it, so a worker polling the
folder can read it half-written (an empty payload stops the worker). Here each message is
written under a name the reader ignores and renamed into place, which is atomic on POSIX.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


class AtomicFilesystemChannel(filesystem.Channel):
    # Kombu's filesystem Channel widens the base signature with **kwargs; so must we.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        token = uuid.uuid4()
        name = f"{round(monotonic() * 1000)}_{token}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"~{token}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add message to {self.data_folder_out!r}") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel
