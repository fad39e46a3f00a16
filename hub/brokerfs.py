"""The embedded broker: kombu's filesystem transport with atomic hand-over.

Stock kombu creates a message file and then writes it, so a consumer can
read it empty (the worker then dies on a JSON error); and it moves a taken
file to the system's temp folder, which is a copy, not a rename, across file
systems. Here a message is written under a hidden name and renamed into the
queue folder, and taken by renaming it into ``processed_folder`` (same file
system, so exactly one consumer wins) before it is read and removed.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue: Any, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(time.monotonic() * 1000):015d}_{uuid.uuid4().hex}.{queue}.msg"
        # kombu's reader takes only names of the form "<stamp>.<queue>.msg"
        temp = os.path.join(self.data_folder_out, f".{name}.tmp")
        with open(temp, "wb") as fh:
            fh.write(dumps(message).encode())
        os.rename(temp, os.path.join(self.data_folder_out, name))

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except OSError:
                continue  # another consumer took it first
            with open(taken, "rb") as fh:
                payload = fh.read()
            os.remove(taken)
            return loads(payload.decode())
        raise filesystem.Empty()


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES["hubfs"] = "hub.brokerfs:Transport"
