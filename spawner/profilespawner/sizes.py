"""Memory sizes: "512M", "4G", "1.5G", "1T" or integer bytes, in powers of 1024.

One parser for the profiles file, the options form and the REST API, so a size means
the same thing everywhere.
"""

import math
import re

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([KMGT]?)\s*$", re.IGNORECASE)
ALLOWED = "bytes as an integer, or a number with K, M, G or T (powers of 1024), e.g. 512M, 4G, 1.5G"


class SizeError(ValueError):
    """A value that is not a memory size."""


def parse_size(value) -> int:
    """Return the size in bytes; raise SizeError naming the value and what is allowed."""
    if isinstance(value, bool):
        raise SizeError(f"{value!r} is not a size; allowed: {ALLOWED}")
    if isinstance(value, int):
        if value < 0:
            raise SizeError(f"{value!r} is negative; allowed: {ALLOWED}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise SizeError(f"{value!r} is not a whole, non-negative number of bytes; allowed: {ALLOWED}")
        return int(value)
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number, unit = match.groups()
            scaled = float(number) * UNITS[unit.upper()]
            if math.isfinite(scaled):
                return int(round(scaled))
            raise SizeError(f"{value!r} is too large to be a size; allowed: {ALLOWED}")
    raise SizeError(f"{value!r} is not a size; allowed: {ALLOWED}")


def format_size(nbytes: int) -> str:
    """Shortest exact-ish human form: the largest unit giving a value with <= 2 decimals."""
    for unit in ("T", "G", "M", "K"):
        scaled = nbytes / UNITS[unit]
        if scaled >= 1 and abs(round(scaled, 2) * UNITS[unit] - nbytes) < UNITS[unit] / 200:
            text = f"{round(scaled, 2):.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return str(nbytes)


IEC = (("TiB", UNITS["T"]), ("GiB", UNITS["G"]), ("MiB", UNITS["M"]), ("KiB", UNITS["K"]))


def _decimals(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def format_gib(nbytes) -> str:
    """Bytes in GiB as users read them (the form's memory sliders): 2 GiB, 0.5 GiB, 21.19 GiB."""
    return f"{_decimals(float(nbytes) / UNITS['G'])} GiB"


def format_binary(nbytes) -> str:
    """Bytes for people, in the same powers of 1024 as parse_size, with IEC names: 21.19 GiB."""
    for unit, size in IEC:
        if nbytes >= size:
            return f"{_decimals(nbytes / size)} {unit}"
    return f"{int(nbytes)} B"


def counted(number, word: str) -> str:
    """1 CPU, 2 CPUs, 0.5 CPUs."""
    return f"{number:g} {word}" + ("" if number == 1 else "s")
