"""README's Configuration table lists every environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from tests.environment import variables_read_by_the_code

README = Path(__file__).resolve().parent.parent / "README.md"


def configuration_table() -> list[tuple[str, str]]:
    """(first cell, last cell) of each row of the table under "## Configuration"."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
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
    assert variables_read_by_the_code() - documented_variables() == set()


def test_configuration_table_lists_no_variable_the_code_does_not_read():
    assert documented_variables() - variables_read_by_the_code() == set()
