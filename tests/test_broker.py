"""The embedded broker delivers whole messages between processes."""

from __future__ import annotations

import os
from pathlib import Path

from kombu import Connection


def test_embedded_broker_writes_messages_atomically_and_delivers_them(tmp_path: Path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
    }
    with Connection(
        transport="gateway.broker:AtomicFilesystemTransport", transport_options=options
    ) as connection:
        queue = connection.SimpleQueue("jobs")
        for n in range(50):
            queue.put({"n": n})
        names = os.listdir(folder)
        assert len(names) == 50
        assert all(name.endswith(".jobs.msg") for name in names), "no partial file is left"
        received = []
        for _ in range(50):
            message = queue.get(timeout=1)
            received.append(message.payload["n"])
            message.ack()
        queue.close()
    assert sorted(received) == list(range(50))
