"""Atomic publishing (`keras_googlenet.export.publish`), shared by the export, the KerasHub
preset writer, the weights cache and training run directories."""

import importlib
import os
import stat
import sys

import pytest

# By module name: `keras_googlenet.export.publish` the attribute is the function `publish`.
publish_lib = importlib.import_module("keras_googlenet.export.publish")


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_the_umask_is_read_without_changing_it(umask_027, monkeypatch):
    def refuse(_):
        raise AssertionError("os.umask changes the mask of every thread")

    monkeypatch.setattr(os, "umask", refuse)
    assert publish_lib.current_umask() == umask_027


def test_without_proc_the_umask_is_still_right(umask_027, tmp_path):
    assert publish_lib.current_umask(status=str(tmp_path / "missing")) == umask_027
    assert os.umask(umask_027) == umask_027  # and it is left as it was


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_published_files_and_directories_get_the_umask_mode(umask_027, tmp_path):
    target = tmp_path / "model.keras"
    with publish_lib.atomic_path(str(target), suffix=".keras") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # not mkstemp's 0600
    directory = tmp_path / "tmpdir"
    directory.mkdir(mode=0o700)
    publish_lib.publish(str(directory), str(tmp_path / "preset"))
    assert stat.S_IMODE((tmp_path / "preset").stat().st_mode) == 0o750


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "weights.weights.h5"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with publish_lib.atomic_path(str(target), suffix=".weights.h5") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("half")
            raise RuntimeError("the writer failed")
    assert target.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["weights.weights.h5"]
