"""Every parquet file a study writes loads in pandas and in DuckDB with its documented columns; `--json` parses."""

import fnmatch
import json
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import run_cli
from sparsity_latency.schema import TABLES

DOCS = Path(__file__).parents[1] / "docs" / "schema.md"
RUN_TABLES = ("train", "attack", "profile")
STUDY_TABLES = ("correlations", "observations", "pairs")


def _files(study: Path) -> list[tuple[str, Path]]:
    found = [(table, path) for table in RUN_TABLES for path in sorted(study.glob(f"*/{table}.parquet"))]
    return found + [(table, study / f"{table}.parquet") for table in STUDY_TABLES]


def _documented(table: str) -> list[str]:
    """Backquoted names in the table's section of docs/schema.md (patterns such as `spike_grad_*` included)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split(f"## {table}.parquet", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`([^`]+)`", section) + [f"`{c}`" for c in ("run_id", "method", "seed")]


@pytest.mark.parametrize("table", [*RUN_TABLES, *STUDY_TABLES])
def test_every_column_is_documented(table: str) -> None:
    names = _documented(table)
    common = "## Conventions for all tables" in DOCS.read_text(encoding="utf-8")
    for column in TABLES[table]:
        assert any(fnmatch.fnmatch(column, name) for name in names) or (common and column in (
            "run_id", "method", "seed")), f"{table}.{column} is not in docs/schema.md"


def test_pandas_and_duckdb_read_the_same_tables(tiny_study: Path) -> None:
    files = _files(tiny_study)
    assert len(files) == 3 * 6 + 3
    with duckdb.connect() as connection:
        for table, path in files:
            frame = pd.read_parquet(path)
            assert list(frame.columns) == list(TABLES[table])
            from_duckdb = connection.execute(f"SELECT * FROM read_parquet('{path}')").df()
            assert list(from_duckdb.columns) == list(frame.columns) and len(from_duckdb) == len(frame) > 0
        path = tiny_study / "correlations.parquet"
        query = (f"SELECT count(*) FROM '{path}' WHERE level = 'network' AND coefficient = 'spearman' "
                 "AND kind = 'within'")
        (count,), = connection.execute(query).fetchall()
    frame = pd.read_parquet(path)
    expected = frame.query("level == 'network' and coefficient == 'spearman' and kind == 'within'")
    assert count == len(expected) == 2 * 9 * 6  # two methods × 9 x × 6 y measures


def test_correlate_json_is_the_written_table(study_copy: Path) -> None:
    result = run_cli("correlate", study_copy, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"correlations", "pairs", "unmatched", "flagged"}
    table = pd.read_parquet(study_copy / "correlations.parquet")
    assert len(report["correlations"]) == len(table)
    assert report["correlations"][0]["x_measure"] == table["x_measure"].iloc[0]
    assert report["unmatched"] == [] and len(report["pairs"]) == 6
