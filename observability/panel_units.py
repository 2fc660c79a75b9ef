"""Values formatted the way Grafana formats the units the dashboards use (`s`, `bytes`, `reqps`, ...)."""

from __future__ import annotations

import math

_IEC = ("B", "KiB", "MiB", "GiB", "TiB")
_SI = ("", "K", "M", "G")


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "s":
        return _seconds(value)
    if unit == "bytes":
        return _scaled(value, 1024, _IEC, " ")
    if unit == "percentunit":
        return f"{_number(value * 100)}%"
    suffix = {"reqps": " req/s", "ops": " ops/s"}.get(unit, "")
    return _scaled(value, 1000, _SI, "") + suffix


def _seconds(value: float) -> str:
    magnitude = abs(value)
    if magnitude == 0:
        return "0 s"
    if magnitude < 1e-3:
        return f"{_number(value * 1e6)} µs"
    if magnitude < 1:
        return f"{_number(value * 1e3)} ms"
    if magnitude < 60:
        return f"{_number(value)} s"
    return f"{_number(value / 60)} min"


def _scaled(value: float, base: int, names: tuple[str, ...], space: str) -> str:
    index = 0
    while abs(value) >= base and index < len(names) - 1:
        value /= base
        index += 1
    name = names[index]
    return f"{_number(value)}{space if name else ''}{name}"


def _number(value: float) -> str:
    """Up to three significant digits, no trailing zeros: 0.25, 12.5, 250, 1234."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"
