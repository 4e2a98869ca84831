"""Argument checks shared by the library and `keras_googlenet_training`: each raises a
`ValueError` naming the argument, what it allows and the value it received."""

import math
import numbers

__all__ = ["activation", "fail", "fraction", "one_of", "positive_int", "positive_number", "rate",
           "size_pair"]


def fail(arg, allowed, value):
    """Raise ``ValueError("`arg` must be <allowed>; received arg=<value>.")``."""
    raise ValueError(f"`{arg}` must be {allowed}; received {arg}={value!r}.")


def one_of(arg, value, allowed):
    """`value`; `ValueError` listing `allowed` unless it is one of them."""
    if value not in tuple(allowed):  # a tuple compares by ==: an unhashable value is refused
        fail(arg, f"one of {allowed}", value)
    return value


def _is_number(value):
    # bool is an int to Python, but `dropout=True` is a mistake, never a rate.
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def positive_int(arg, value, optional=False):
    """`value` as an int; `ValueError` unless it is an int >= 1 (or None, if `optional`)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(arg, "a positive int" + (" or None" if optional else ""), value)
    return int(value)


def positive_number(arg, value, optional=False):
    """`value` as a float; `ValueError` unless it is a finite number > 0 (None if `optional`)."""
    if optional and value is None:
        return None
    if not _is_number(value) or value <= 0:
        fail(arg, "a positive number" + (" or None" if optional else ""), value)
    return float(value)


def rate(arg, value):
    """`value` as a float; `ValueError` unless it is in [0, 1) (a dropout rate, a momentum)."""
    if not _is_number(value) or not 0 <= value < 1:
        fail(arg, "a rate in [0, 1)", value)
    return float(value)


def fraction(arg, value, include_one=True):
    """`value` as a float; `ValueError` unless it is in (0, 1], or (0, 1) without
    `include_one` (a share kept, such as a crop, or held out, such as a validation split)."""
    if not _is_number(value) or not (0 < value <= 1 if include_one else 0 < value < 1):
        fail(arg, f"a number in (0, 1{']' if include_one else ')'}", value)
    return float(value)


def size_pair(arg, value, minimum=1):
    """`value` as (height, width), or None; `ValueError` unless it is None, two ints >=
    `minimum` or one (a square)."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
            isinstance(side, int) and not isinstance(side, bool) and side >= minimum
            for side in pair):
        fail(arg, f"(height, width) of ints >= {minimum}, one such int or None", value)
    return tuple(pair)


def activation(arg, value):
    """`value`; `ValueError` unless it is None or a Keras activation (name or function)."""
    import keras

    try:
        keras.activations.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`{arg}` must be None, 'softmax' or another Keras activation; "
                         f"received {arg}={value!r}.") from error
    return value
