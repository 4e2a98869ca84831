"""README runs the suite with `-n 2 --dist loadgroup`, relying on tests/conftest.py's groups to
build each shared fixture (the trained run, the two-worker run, the JAX subprocess) once.
pytest 9.2 silently broke that grouping (pytest-xdist#1386): this fails when it is broken."""

import re
import subprocess
import sys
import textwrap

CONFTEST = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if "shared" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("shared"))

@pytest.fixture(scope="module")
def shared():
    return 1
"""
TESTS = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_grouped(shared, i):
    pass

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_loadgroup_keeps_a_shared_fixtures_tests_in_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_groups.py").write_text(textwrap.dedent(TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "loadgroup", "-v", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    workers = set(re.findall(r"\[(gw\d)\] .* PASSED .*test_grouped\[\d\]@shared", result.stdout))
    assert len(workers) == 1, result.stdout[-3000:]
    assert len(re.findall(r"PASSED .*test_grouped", result.stdout)) == 6
