"""The dataset package: datasets written by earlier releases read and resume; its layering."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pandas as pd
import pytest

from avatar_nb.dataset import (
    KEYFRAMES_DIR,
    RUNS_DIR,
    consolidate,
    finished_runs,
    load_results,
    read_runs,
    write_result,
)

from .test_dataset import _plain, synthetic_timeline

DATA = Path(__file__).parent / "data"
OLD = DATA / "dataset_9e8a057"
# what tests/data/make_dataset_9e8a057.py wrote: run id -> (keyframes, seed, expression count)
OLD_RUNS = {
    "run0": (24, 100, 10),
    "run1": (30, 101, 12),
    "run2": (36, 102, 10),
    "run4": (28, 104, 10),
}


def _expected(run_id: str) -> pd.DataFrame:
    n, seed, expression = OLD_RUNS[run_id]
    return synthetic_timeline(n, seed=seed, n_expression=expression).to_pandas()


def _assert_old_dataset(root: Path) -> None:
    results = load_results(root)
    runs = results.runs
    assert list(runs["run_id"]) == ["run0", "run1", "run2", "run3", "run4"]
    assert list(runs["status"]) == ["ok", "ok", "ok", "failed", "ok"]
    by_id = runs.set_index("run_id")
    assert by_id.loc["run3", "error"] == "ValueError: boom"
    assert by_id.loc["run4", "latency_p50"] == 0.12  # the later attempt wins
    assert by_id.loc["run1", "grid"] == '{"chunk_ms": 40}'
    assert list(runs["chunk_ms"]) == [20.0, 40.0, 60.0, 80.0, 100.0]
    assert results.info == {"clips": ["a", "b"], "grid": {"chunk_ms": [20, 40]}, "seed": 7}
    assert finished_runs(root) == set(OLD_RUNS)
    pd.testing.assert_frame_equal(read_runs(root), runs)
    table = results.keyframes()
    assert sorted(set(table["run_id"].astype(str))) == sorted(OLD_RUNS)
    for run_id in OLD_RUNS:
        back = results.keyframes(runs=[run_id]).drop(columns="run_id")
        back = back.dropna(axis=1, how="all")  # the columns of the other layout
        pd.testing.assert_frame_equal(_plain(back), _plain(_expected(run_id)), check_exact=True)
        assert len(table[table["run_id"] == run_id]) == OLD_RUNS[run_id][0]
    joined = results.keyframes(
        columns=["latency"], filters=[("frame", "<", 2)], with_runs=["chunk_ms"]
    )
    assert set(joined["chunk_ms"]) == {20.0, 40.0, 60.0, 100.0}
    streamed = sum(len(part) for part in results.iter_keyframes(columns=["frame"]))
    assert streamed == sum(n for n, _, _ in OLD_RUNS.values())


def test_a_dataset_written_by_9e8a057_reads(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(OLD, root)
    _assert_old_dataset(root)


def test_a_dataset_written_by_9e8a057_resumes_and_consolidates(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(OLD, root)
    # a resume: the failed run written again, then the end of the sweep
    write_result(
        root,
        {"run": 3, "run_id": "run3", "status": "ok", "chunk_ms": 80.0, "latency_p50": 0.1},
        synthetic_timeline(32, seed=103, n_expression=10),
    )
    assert finished_runs(root) == {*OLD_RUNS, "run3"}
    consolidate(root)
    OLD_RUNS_AFTER = {**OLD_RUNS, "run3": (32, 103, 10)}
    plain = pd.read_parquet(root / KEYFRAMES_DIR, columns=["run_id", "frame"])
    counts = plain.groupby("run_id", observed=True).size().to_dict()
    assert counts == {run_id: n for run_id, (n, _, _) in OLD_RUNS_AFTER.items()}
    results = load_results(root)
    assert list(results.runs["status"]) == ["ok"] * 5
    back = results.keyframes(runs=["run3"]).drop(columns="run_id").dropna(axis=1, how="all")
    expected = synthetic_timeline(32, seed=103, n_expression=10).to_pandas()
    pd.testing.assert_frame_equal(_plain(back), _plain(expected), check_exact=True)
    for run_id in OLD_RUNS:
        back = results.keyframes(runs=[run_id]).drop(columns="run_id").dropna(axis=1, how="all")
        pd.testing.assert_frame_equal(_plain(back), _plain(_expected(run_id)), check_exact=True)
    assert (root / "runs.parquet").exists() and (root / RUNS_DIR).is_dir()


def test_a_dataset_written_by_9e8a057_reads_with_dask(tmp_path):
    pytest.importorskip("dask.dataframe")
    results = load_results(OLD, engine="dask")
    counts = results.keyframes(columns=["frame"]).groupby("run_id")["frame"].count().compute()
    assert counts.to_dict() == {run_id: n for run_id, (n, _, _) in OLD_RUNS.items()}


# ----------------------------------------------------------------------------- layering

# the layers that run sweeps and batches: the dataset sits below them
ABOVE = {"batch", "sweeps", "scaleout", "cli", "pipeline", "experiments"}


def _package_modules() -> dict[str, ast.Module]:
    import avatar_nb.dataset

    folder = Path(avatar_nb.dataset.__file__).parent
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in folder.glob("*.py")}


def _imported(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) of every import in ``tree``, anywhere in it (in
    functions and under TYPE_CHECKING too), as ``avatar_nb.x`` paths for relative ones."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level == 0:
                found.append((node.module or "", names))
                continue
            base = ["avatar_nb", "dataset"][: 3 - node.level]  # a module of avatar_nb.dataset
            target = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None:  # from . import x / from .. import x
                found += [(f"{target}.{name}", []) for name in names]
            else:
                found.append((target, names))
    return found


def test_the_dataset_package_imports_nothing_above_it():
    # what the check sees: an import inside a function, relative to a module of the package
    inside = ast.parse("def f():\n    from ..batch import Writer\n    import avatar_nb.sweeps")
    assert _imported(inside) == [("avatar_nb.batch", ["Writer"]), ("avatar_nb.sweeps", [])]
    modules = _package_modules()
    assert {"layout", "writer", "pipe", "catalog", "consolidation", "readers"} <= set(modules)
    for name, tree in modules.items():
        for module, _ in _imported(tree):
            parts = module.split(".")
            if parts[0] == "avatar_nb" and len(parts) > 1:
                assert parts[1] not in ABOVE, f"avatar_nb.dataset.{name} imports {module}"


def test_the_dataset_modules_share_no_private_names():
    for name, tree in _package_modules().items():
        for module, names in _imported(tree):
            if module.startswith("avatar_nb."):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"avatar_nb.dataset.{name} takes {private} from {module}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                assert node.value.id in {"self", "cls"}, (
                    f"avatar_nb.dataset.{name} reads {node.value.id}.{node.attr}"
                )


def test_no_dataset_module_is_over_800_lines():
    import avatar_nb.dataset

    folder = Path(avatar_nb.dataset.__file__).parent
    for path in folder.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 800, path.name
