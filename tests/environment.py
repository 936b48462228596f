"""Which environment variables the code reads, found in its source.

Two programs read the environment: the gateway (``gateway/``, ``jobs/``, ``providers/``), whose
settings the README's Configuration table and docker-compose.yml are checked against, and the
client (``client/gateway_client``, a distribution of its own), whose variables belong to whoever
runs the client and are checked against the README's Client section instead. So a setting added
to either cannot be left out of its documentation.
"""

from __future__ import annotations

import ast
from pathlib import Path

from providers import registry

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "jobs", "providers")  # the gateway's code
CLIENT_PACKAGE = ROOT / "client" / "gateway_client"
READERS = {"env_str", "env_int", "env_bool", "env_float", "env_list", "env_choice", "env_url"}


def _name_read_by(call: ast.Call) -> str | None:
    """The variable a call reads, if it is a reader, ``os.environ.get`` or ``os.getenv``."""
    function = call.func
    if isinstance(function, ast.Name) and function.id in READERS:
        pass
    elif isinstance(function, ast.Attribute) and function.attr in {"get", "getenv"}:
        owner = ast.unparse(function.value)
        if owner not in {"os.environ", "os"}:
            return None
    else:
        return None
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def _variables_read_under(folder: Path) -> set[str]:
    names: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and (name := _name_read_by(node)):
                names.add(name)
    return names


def variables_read_by_the_client() -> set[str]:
    return _variables_read_under(CLIENT_PACKAGE)


def variables_read_by_the_gateway() -> set[str]:
    """The gateway's settings."""
    names: set[str] = set()
    for package in PACKAGES:
        names |= _variables_read_under(ROOT / package)
    for provider in registry.ENV_PROVIDERS:
        names |= {f"{provider.upper()}_API_KEY", f"{provider.upper()}_BASE_URL"}
    return names
