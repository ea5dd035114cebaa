"""Click parameter types with ranges, shared by the commands: bad values are refused by click itself.

Each type fails with click's own ``BadParameter``, which ``sentinel.cli`` prints as one
``error:`` line. Pure Python: no torch, no mlx.
"""

from __future__ import annotations

import ipaddress
import math
import re

import click

# Longest context any command accepts: far beyond every supported model, small enough that
# planning it stays instant (the planner walks prefill chunks of 2048 tokens).
from sentinel.config import MAX_CONTEXT  # noqa: E402 (the bound the runtime checks too)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (which compare False against any bound)."""

    name = "float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class IntList(click.ParamType):
    """Comma-separated integers, each within [min, max], at least one."""

    name = "ints"

    def __init__(self, min: int = 1, max: int = MAX_CONTEXT):
        self.min, self.max = min, max

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        try:
            out = [int(p) for p in parts]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers.", param, ctx)
        if not out:
            self.fail("give at least one integer.", param, ctx)
        bad = [v for v in out if not self.min <= v <= self.max]
        if bad:
            self.fail(f"{bad[0]} is not in the range {self.min}<=x<={self.max}.", param, ctx)
        return out


_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


class Host(click.ParamType):
    """An IP address or a syntactically valid host name (all-numeric names must be real IPv4)."""

    name = "host"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        try:
            return str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            pass
        if len(text) > 253 or not _HOSTNAME.match(text) or re.fullmatch(r"[\d.]+", text):
            self.fail(f"{value!r} is not an IP address or a host name.", param, ctx)
        return text


PORT = click.IntRange(1, 65535)
POSITIVE = click.IntRange(min=1)
