"""The embedded default's files (database, secret key, broker) are readable by their owner only."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from gateway import settings as gateway_settings

# Runs in a fresh process under a permissive umask, so the modes come from the code, not the
# umask. The connection stays open while the files are looked at: SQLite removes its -wal and
# -shm files when the last connection closes.
EMBEDDED_START = """
import json, os, stat, sys
os.umask(0)
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
    cursor.execute("INSERT INTO probe VALUES (1)")
var = sys.argv[1]
modes = {}
for root, dirs, files in os.walk(var):
    for name in dirs + files:
        path = os.path.join(root, name)
        modes[os.path.relpath(path, var)] = stat.S_IMODE(os.stat(path).st_mode)
modes["."] = stat.S_IMODE(os.stat(var).st_mode)
print(json.dumps(modes))
"""


def embedded_start(var_dir: Path) -> dict[str, int]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"}
    }
    env.update(GATEWAY_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="gateway.settings")
    out = subprocess.run(
        [sys.executable, "-c", EMBEDDED_START, str(var_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    modes: dict[str, int] = json.loads(out.stdout)
    return modes


def test_embedded_default_keeps_its_files_to_their_owner(tmp_path):
    var_dir = tmp_path / "var"
    modes = embedded_start(var_dir)
    assert modes["."] == 0o700
    assert modes["secret_key"] == 0o600
    for name in ("gateway.sqlite3", "gateway.sqlite3-wal", "gateway.sqlite3-shm"):
        assert modes[name] == 0o600, name
    for name in ("broker", "static"):
        assert modes[name] == 0o700, name


def test_embedded_secret_key_survives_a_restart(tmp_path):
    var_dir = tmp_path / "var"
    embedded_start(var_dir)
    key = (var_dir / "secret_key").read_text()
    embedded_start(var_dir)
    assert (var_dir / "secret_key").read_text() == key
    assert len(key) >= 50


def test_a_new_owner_only_file_is_created_with_its_mode_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "secret_key"
    gateway_settings._create_owner_only(path, "first")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_a_second_process_creating_the_same_file_keeps_the_first_ones_content(tmp_path):
    path = tmp_path / "secret_key"
    gateway_settings._create_owner_only(path, "first")
    gateway_settings._create_owner_only(path, "second")
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]
