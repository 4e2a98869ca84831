"""benchmarks/first_step.py: a tiny run end to end (the script once broke unnoticed)."""

import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "first_step.py"


def test_unknown_settings_are_named():
    done = subprocess.run([sys.executable, str(SCRIPT), "--settings", "default,fast"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--settings: unknown ['fast']" in done.stderr


@pytest.mark.slow
def test_a_tiny_run_prints_its_row():
    # "keras" (the optimizer left to Keras) is the setting that once broke; each costs a trace.
    done = subprocess.run([sys.executable, str(SCRIPT), "--settings", "keras",
                           "--steps", "1", "--input-size", "65", "--width-multiplier", "0.25"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines()
            if line.startswith("| keras ")]
    assert [row[0].strip() for row in rows] == ["keras"]
    for row in rows:
        build, first_train, train, first_eval, evaluate, ratio = map(float, row[1:])
        assert first_train > train > 0 and first_eval > evaluate > 0 and build > 0
        assert ratio > 1  # the first epoch carries the tracing
