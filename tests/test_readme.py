"""README's Configuration table lists every environment variable the gateway reads, and its
Client section every one the client reads."""

from __future__ import annotations

import re
from pathlib import Path

from tests.environment import variables_read_by_the_client, variables_read_by_the_gateway

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def configuration_table() -> list[tuple[str, str]]:
    """(first cell, last cell) of each row of the table under "## Configuration"."""
    rows = [line for line in section("Configuration").splitlines() if line.startswith("| `")]
    return [(row.split("|")[1], row.split("|")[-2]) for row in rows]


def documented_variables() -> set[str]:
    names: set[str] = set()
    for variables, meaning in configuration_table():
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", variables):
            if name.startswith("NAME_"):  # one row for every provider: "for NAME in `OPENAI`, ..."
                names |= {f"{p}{name[4:]}" for p in re.findall(r"`([A-Z]+)`", meaning)}
            else:
                names.add(name)
    return names


def test_configuration_table_lists_every_variable_the_code_reads():
    assert variables_read_by_the_gateway() - documented_variables() == set()


def test_configuration_table_lists_no_variable_the_code_does_not_read():
    assert documented_variables() - variables_read_by_the_gateway() == set()


def test_client_section_names_every_variable_the_client_reads():
    read = variables_read_by_the_client()
    assert {"GATEWAY_URL", "GATEWAY_API_KEY"} <= read  # the scan reaches the client's code
    assert read - set(re.findall(r"`([A-Z][A-Z0-9_]*)`", section("Client"))) == set()


def test_the_clients_variables_are_not_the_gateways_settings():
    assert variables_read_by_the_client() & documented_variables() == set()
