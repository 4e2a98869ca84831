"""The run directory's helpers: the one resumable-settings check, and text files in UTF-8."""

import ast
import json
import pathlib

from keras_googlenet_training import run_dir as run_dir_lib

TRAINING = pathlib.Path(__file__).resolve().parents[1] / "training"


def test_changed_settings_names_what_differs_from_the_saved_json(tmp_path):
    path = tmp_path / "config.json"
    assert run_dir_lib.changed_settings(path, {"epochs": 3}) == []  # nothing saved yet
    path.write_text(json.dumps({"epochs": 3, "seed": 0, "command": ["a"]}), encoding="utf-8")
    record = {"epochs": 4, "seed": 0, "command": ["b"], "widths": None}
    assert run_dir_lib.changed_settings(path, record, ignore={"command"}) == ["epochs"]
    path.write_text('{"epochs": 3, "se', encoding="utf-8")  # cut short by a kill
    assert run_dir_lib.changed_settings(path, {"epochs": 3}) == ["epochs"]


def test_every_text_file_opened_by_the_training_package_names_its_encoding():
    """`open()` without `encoding=` reads and writes run directories in the locale's
    encoding: a class name with an accent written on one machine would not read back on
    another."""
    unnamed = []
    for path in sorted(TRAINING.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "open"):
                continue
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            binary = isinstance(mode, ast.Constant) and "b" in str(mode.value)
            if not binary and not any(k.arg == "encoding" for k in node.keywords):
                unnamed.append(f"{path.relative_to(TRAINING.parent)}:{node.lineno}")
    assert not unnamed, unnamed


def test_overwrite_replaces_only_what_the_project_wrote():
    for name in ("model.keras", "inference.keras", "metrics.json", "curves.png", "history.csv",
                 "config.json", "labels.txt", "logs", "backup", "best.weights.h5",
                 "phase0.weights.h5", "diverged.json", ".tmp-model.keras.abc.keras",
                 "googlenet-train-error-20260101-000000-x.log"):
        assert run_dir_lib.is_owned(name), name
    for name in ("notes.txt", "model.keras.bak", "my_logs", "predictions.csv", "phase.txt"):
        assert not run_dir_lib.is_owned(name), name


def test_an_overwrite_of_a_finished_run_trains_beside_it(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    assert run_dir_lib.training_dir(str(run), overwrite=True) == str(run)  # unfinished
    (run / "metrics.json").write_text("{}")
    staging = run_dir_lib.training_dir(str(run), overwrite=True)
    assert staging == str(tmp_path / ".r.replacement")
    assert run_dir_lib.training_dir(str(run), overwrite=False) == str(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # chose, wrote nothing
