"""Command-line shells over the library functions (`googlenet-train`, `-export`, ...)."""

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Shows a default only when there is one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def drop_options(argv, with_value=(), flags=()):
    """`argv` without the options a launcher keeps for itself.

    `with_value` options take a value (`--workers 2` or `--workers=2`); `flags` take none.
    """
    rest, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in with_value:
            skip = True
        elif token in flags or any(token.startswith(f"{o}=") for o in with_value):
            continue
        else:
            rest.append(token)
    return rest
