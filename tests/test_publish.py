"""Atomic publishing (`keras_googlenet.publish`), shared by the export, the KerasHub
preset writer, the weights cache and training run directories."""

import os
import stat
import sys

import pytest

from keras_googlenet import publish as publish_lib


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


def _stage_replacement(tmp_path):
    """An old export dir (one artefact of ours, the user's note and folder) and the
    finished replacement staged beside it."""
    target, staging = tmp_path / "exports", tmp_path / ".exports.export-x"
    (target / "mine").mkdir(parents=True)
    (target / "mine" / "data.txt").write_text("keep me")
    (target / "notes.txt").write_text("mine too")
    (target / "m_fp32.tflite").write_text("old model")
    staging.mkdir()
    (staging / "m_fp32.tflite").write_text("new model")
    return target, staging


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_replace_owned_swaps_in_the_new_files_and_keeps_the_users(tmp_path):
    target, staging = _stage_replacement(tmp_path)
    os.chmod(target, 0o750)
    publish_lib.replace_owned(str(staging), str(target), owned={"m_fp32.tflite"}.__contains__)
    assert (target / "m_fp32.tflite").read_text() == "new model"
    assert (target / "notes.txt").read_text() == "mine too"
    assert (target / "mine" / "data.txt").read_text() == "keep me"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750  # the user's permissions stay
    assert sorted(os.listdir(tmp_path)) == ["exports"]  # no staging, no backup left


def test_a_failed_swap_gives_the_users_files_back(tmp_path):
    """A real failure: a mount point cannot be renamed (EBUSY), after the user's files were
    moved into the replacement. They go back; the old artefact stays; the stage holds only
    ours, and `discard_stage` removes it."""
    target, staging = _stage_replacement(tmp_path)
    old = {name: os.stat(target / name).st_ino for name in os.listdir(target)}
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    import subprocess

    if subprocess.run(["mount", "--bind", str(target), str(target)]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        with pytest.raises(OSError):
            publish_lib.replace_owned(str(staging), str(target),
                                      owned={"m_fp32.tflite"}.__contains__)
        assert {name: os.stat(target / name).st_ino for name in os.listdir(target)} == old
        assert (target / "m_fp32.tflite").read_text() == "old model"
        assert os.listdir(staging) == ["m_fp32.tflite"]
        assert publish_lib.discard_stage(str(staging), {"m_fp32.tflite"})
        assert not staging.exists()
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_discard_stage_never_deletes_what_it_did_not_create(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "ours.onnx").write_text("x")
    (stage / "users.txt").write_text("keep me")
    assert not publish_lib.discard_stage(str(stage), {"ours.onnx"})
    assert os.listdir(stage) == ["users.txt"]


def test_concurrent_swaps_of_one_directory_keep_everything(tmp_path):
    """Two exports of different names into one directory at once: each swap moves the
    other's files along (they are not its own), and the lock keeps the swaps apart."""
    import threading

    target = tmp_path / "exports"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    errors = []

    def export(name, rounds=40):
        try:
            for i in range(rounds):
                stage = tmp_path / f".exports.export-{name}-{i}"
                stage.mkdir()
                (stage / f"{name}.onnx").write_text(str(i))
                publish_lib.replace_owned(str(stage), str(target),
                                          owned={f"{name}.onnx"}.__contains__)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=export, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(os.listdir(target)) == ["a.onnx", "b.onnx", "notes.txt"]
    assert (target / "a.onnx").read_text() == (target / "b.onnx").read_text() == "39"
    assert sorted(os.listdir(tmp_path)) == ["exports"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX symlinks")
def test_replace_owned_never_swaps_through_a_symlinked_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "notes.txt").write_text("mine", encoding="utf-8")
    link, staging = tmp_path / "link", tmp_path / "staging"
    link.symlink_to(real)
    staging.mkdir()
    with pytest.raises(ValueError, match="`target`.*symbolic link"):
        publish_lib.replace_owned(str(staging), str(link), owned=lambda name: True)
    assert link.is_symlink() and (real / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_remove_path_removes_a_symlink_to_a_directory_not_what_it_points_to(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(kept, target_is_directory=True)
    publish_lib.remove_path(str(link))
    assert not os.path.lexists(link)
    assert (kept / "file.txt").read_text() == "mine"


def test_publishing_over_a_symlinked_directory_replaces_the_link_and_leaves_nothing_behind(
        tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file.txt").write_text("mine")
    target = tmp_path / "preset"
    target.symlink_to(kept, target_is_directory=True)
    new = tmp_path / "new"
    new.mkdir()
    (new / "config.json").write_text("{}")
    publish_lib.publish(str(new), str(target))
    assert not target.is_symlink() and (target / "config.json").exists()
    assert (kept / "file.txt").read_text() == "mine"  # what the link pointed to is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "preset"]  # no .old- link
