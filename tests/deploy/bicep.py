"""Just enough Bicep reading for the cross-checks: object-valued ``var`` blocks and single-line
``key: value`` properties of this repository's own modules (checkov's parser lives in another virtualenv)."""

from __future__ import annotations

import re
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"
MODULES = INFRA / "modules"


def text(name: str) -> str:
    """``main.bicep`` or a module's file name (``function-app.bicep``)."""
    path = INFRA / name if (INFRA / name).exists() else MODULES / name
    return path.read_text()


def object_var(source: str, name: str) -> dict[str, str]:
    """The ``key: value`` lines of ``var <name> = {...}`` (or ``= cond ? {} : {...}``), values as written."""
    match = re.search(rf"^var {re.escape(name)} = [^\n]*\{{\n(.*?)^\}}", source, re.M | re.S)
    assert match, f"no object var {name!r}"
    entries: dict[str, str] = {}
    for line in match.group(1).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        key, _, value = stripped.partition(":")
        entries[key.strip()] = value.strip()
    return entries


def string_value(value: str) -> str:
    """A Bicep single-quoted string literal's content."""
    assert value.startswith("'") and value.endswith("'"), value
    return value[1:-1]


def interpolate(template: str, values: dict[str, str]) -> str:
    """Replace ``${expr}`` by ``values[expr]``; every expression must be known."""

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        assert expression in values, f"unknown Bicep expression {expression!r} in {template!r}"
        return values[expression]

    return re.sub(r"\$\{([^}]*)\}", replace, template)


def resource_types(source: str) -> list[str]:
    """``Type@apiVersion`` of every resource declared (not ``existing``) in ``source``."""
    return re.findall(r"^resource \w+ '([^']+)' = ", source, re.M)
