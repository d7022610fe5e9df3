"""ccxt `Precise` arithmetic on plain ``(integer, decimals)`` pairs: the same values, no objects.

A `Precise` is ``integer * 10**-decimals`` with Python ints. Freqtrade's trade math builds one per
operand (`FtPrecise(x)` parses ``str(x)``), multiplies, adds and subtracts them (exact integer
operations, see `Precise.mul` / `add` / `sub`) and converts the result with ``float(str(p))``.
This module performs the same steps on pairs:

* `parse(x)` is ``(p.integer, p.decimals)`` of ``FtPrecise(x)``: the same text (``str(x)``) parsed
  by the same rules as `Precise.__init__`. Results for ``float`` operands are memoized by value:
  ``str()`` of a float is a function of its value, and the only two floats that compare equal
  with different texts, ``0.0`` and ``-0.0``, both parse to ``(0, 1)``. Other types (int, numpy
  scalars, str, ...) are parsed from their own ``str()`` every time, as `FtPrecise` does.
* `mul` / `add` / `sub` are `Precise.mul` / `add` / `sub` step for step (same integer, same
  decimals); callers inline them where it matters.
* `to_float(integer, decimals)` is ``float(str(Precise(integer, decimals)))``. ``str()`` writes
  the exact decimal value, and ``float()`` of it is that value correctly rounded (half to even).
  CPython's ``int / int`` and ``float(int)`` are correctly rounded (half to even) as well, with
  the sign of a result that underflows to zero kept, so they give the same double without the
  text. Where they raise ``OverflowError`` (beyond the double range, where ``float(str)`` gives
  an infinity) the text route is taken.

Division (`Precise.div`, with its 18-digit truncation) is not reproduced: only margin interest
uses it, and that is computed by the trade's own `calculate_interest`.
"""

from __future__ import annotations

from ccxt.base.precise import Precise


Pair = tuple[int, int]

POW10_LIMIT = 129
POW10: tuple[int, ...] = tuple(10**i for i in range(POW10_LIMIT))
#: Parsed floats kept at most (then the memo starts over; a miss only costs a parse).
PARSE_CACHE_SIZE = 1 << 14
_PARSED: dict[float, Pair] = {}
#: ``memo_get(x)``: the memoized `parse` of float `x`, or None (for callers that inline the hit).
memo_get = _PARSED.get


def pow10(exponent: int) -> int:
    return POW10[exponent] if exponent < POW10_LIMIT else 10**exponent


def parse_text(number: str) -> Pair:
    """``(integer, decimals)`` of ``Precise(number)`` (`Precise.__init__` without `decimals`).

    Raises ValueError for text that is not a number (``"None"``, ``"nan"``, ``"inf"``), as
    `Precise` does.
    """
    modifier = 0
    if "e" in number or "E" in number:
        number, exponent = number.lower().split("e")
        modifier = int(exponent)
    decimal_index = number.find(".")
    if decimal_index > -1:
        return int(number.replace(".", "")), len(number) - decimal_index - 1 - modifier
    return int(number), -modifier


def parse(number: object) -> Pair:
    """``(integer, decimals)`` of ``FtPrecise(number)``."""
    if type(number) is float:
        found = _PARSED.get(number)
        if found is None:
            found = parse_text(str(number))
            if len(_PARSED) >= PARSE_CACHE_SIZE:
                _PARSED.clear()
            _PARSED[number] = found
        return found
    return parse_text(number if isinstance(number, str) else str(number))


def mul(a: Pair, b: Pair) -> Pair:
    """`Precise.mul`."""
    return a[0] * b[0], a[1] + b[1]


def add(a: Pair, b: Pair) -> Pair:
    """`Precise.add`."""
    if a[1] == b[1]:
        return a[0] + b[0], a[1]
    if a[1] > b[1]:
        return b[0] * pow10(a[1] - b[1]) + a[0], a[1]
    return a[0] * pow10(b[1] - a[1]) + b[0], b[1]


def sub(a: Pair, b: Pair) -> Pair:
    """`Precise.sub`."""
    if a[1] == b[1]:
        return a[0] - b[0], a[1]
    if a[1] > b[1]:
        return a[0] - b[0] * pow10(a[1] - b[1]), a[1]
    return a[0] * pow10(b[1] - a[1]) - b[0], b[1]


def to_float(integer: int, decimals: int) -> float:
    """``float(str(Precise(integer, decimals)))`` (see the module docstring)."""
    try:
        if 0 < decimals < POW10_LIMIT:
            return integer / POW10[decimals]
        if decimals > 0:
            return integer / 10**decimals
        return float(integer * pow10(-decimals))
    except OverflowError:
        return float(str(Precise(integer, decimals)))


def clear_cache() -> None:
    """Forget the memoized parses (tests, benchmarks)."""
    _PARSED.clear()
