"""Which environment variables the gateway's code reads, found in its source.

The README's Configuration table and docker-compose.yml are checked against this list, so a
setting added to the code cannot be left out of either.
"""

from __future__ import annotations

import ast
from pathlib import Path

from providers import registry

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "jobs", "providers")
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


def variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Call) and (name := _name_read_by(node)):
                    names.add(name)
    for provider in registry.ENV_PROVIDERS:
        names |= {f"{provider.upper()}_API_KEY", f"{provider.upper()}_BASE_URL"}
    return names
