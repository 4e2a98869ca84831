"""Argument checks shared by the training configs and pipelines: each raises a
`ValueError` that names the argument, what is allowed, and what was received."""

from __future__ import annotations

import numbers


def fail(arg, allowed, value):
    raise ValueError(f"`{arg}` must be {allowed}; received {arg}={value!r}.")


def positive_int(arg, value, optional=False):
    """`value` as an int; raises unless it is a positive int (or None, if `optional`)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(arg, "a positive int" + (" or None" if optional else ""), value)
    return int(value)
