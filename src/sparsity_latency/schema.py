"""Columns and types of every parquet table: the contract between stages (docs/schema.md).

Every table is tidy: one row per observation, one column per variable, units in column names. A
column that does not apply to a row's layer holds NaN (e.g. `spike_sparsity` of `conv1`).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from sparsity_latency.errors import InputError
from sparsity_latency.probes import GRAD_COLUMNS

SCHEMA_VERSION = 5  # 5: run ids leave out training settings the method does not use; correlations in long form

STR, INT, FLOAT, BOOL = "string", "int64", "float64", "boolean"
NULLABLE_INT = "Int64"  # an integer column that some rows leave empty
# profile columns that measure the machine (wall-clock), not the config: the only ones a rerun may change
TIMING_COLUMNS = ("wall_ms_p50", "wall_ms_p95", "wall_ms_std", "wall_repeats", "wall_converged", "layer_ms_p50")

RUN_COLUMNS = {"run_id": STR, "method": STR, "seed": INT}

TABLES: dict[str, dict[str, str]] = {
    "train": {
        **RUN_COLUMNS, "epoch": INT, "layer": STR,
        "loss": FLOAT, "accuracy": FLOAT, "test_accuracy": FLOAT, "spike_sparsity": FLOAT,
        **dict.fromkeys(GRAD_COLUMNS, FLOAT),
    },
    "attack": {
        **RUN_COLUMNS, "attack": STR, "norm": STR, "eps": FLOAT, "variant": STR, "steps": INT, "restarts": INT,
        "layer": STR, "clean_accuracy": FLOAT, "robust_accuracy": FLOAT,
        "check": STR, "check_reference": STR, "check_bound_accuracy": FLOAT, "check_passed": BOOL,
        "spike_sparsity": FLOAT,
        **dict.fromkeys(GRAD_COLUMNS, FLOAT),
    },
    "profile": {
        **RUN_COLUMNS, "backend": STR, "batch_size": INT, "layer": STR, "threads": INT,
        "time_steps": FLOAT, "wall_ms_p50": FLOAT, "wall_ms_p95": FLOAT, "wall_ms_std": FLOAT,
        "wall_repeats": NULLABLE_INT, "wall_converged": BOOL, "layer_ms_p50": FLOAT,
        "exit_threshold": FLOAT, "decision_time_steps": FLOAT, "exit_accuracy": FLOAT, "exit_fraction": FLOAT,
        "spike_count": FLOAT, "spike_sparsity": FLOAT, "synops": FLOAT, "macs": FLOAT,
        "membrane_traffic_bits": FLOAT, "energy_pj": FLOAT, "gate_open_fraction": FLOAT,
        "weight_memory_bits": FLOAT, "other_param_memory_bits": FLOAT, "membrane_memory_bits": FLOAT,
        "model_memory_bits": FLOAT,
    },
    "correlations": {
        "level": STR, "layer": STR, "kind": STR, "group": STR, "x_measure": STR, "y_measure": STR,
        "coefficient": STR, "n": INT, "n_reference": NULLABLE_INT, "r": FLOAT, "p": FLOAT, "p_bh": FLOAT,
        "ci_low": FLOAT, "ci_high": FLOAT, "test": STR, "ci_method": STR, "note": STR,
    },
    "observations": {
        **RUN_COLUMNS, "pair_key": STR, "level": STR, "layer": STR, "measure": STR, "value": FLOAT,
    },
    "pairs": {
        **RUN_COLUMNS, "pair_key": STR, "standard_run_id": STR, "matched": BOOL,
    },
}


def to_table(rows: list[dict], table: str) -> pd.DataFrame:
    """A DataFrame with exactly the table's columns, in order and type; missing values become NaN."""
    columns = TABLES[table]
    frame = pd.DataFrame(rows).reindex(columns=list(columns))
    return frame.astype(columns)


def check_table(frame: pd.DataFrame, table: str, source: str) -> None:
    """Raise InputError if `frame` lacks a column of `table` or holds it with the wrong type."""
    for column, dtype in TABLES[table].items():
        if column not in frame.columns:
            raise InputError(f"{source}: wrong schema: missing column '{column}'")
        actual = frame[column].dtype
        ok = (pd.api.types.is_string_dtype(actual) if dtype == STR
              else pd.api.types.is_integer_dtype(actual) if dtype in (INT, NULLABLE_INT)
              else pd.api.types.is_bool_dtype(actual) if dtype == BOOL
              else pd.api.types.is_float_dtype(actual))
        if not ok:
            raise InputError(f"{source}: wrong schema: column '{column}' is {actual}, expected {dtype}")


_ARROW_KINDS = {STR: (pa.types.is_string, pa.types.is_large_string), INT: (pa.types.is_integer,),
                NULLABLE_INT: (pa.types.is_integer,), BOOL: (pa.types.is_boolean,), FLOAT: (pa.types.is_floating,)}


def check_arrow_schema(schema: pa.Schema, table: str, source: str) -> None:
    """`check_table` on a parquet file's schema, before reading any data (the same messages)."""
    for column, dtype in TABLES[table].items():
        index = schema.get_field_index(column)
        if index < 0:
            raise InputError(f"{source}: wrong schema: missing column '{column}'")
        actual = schema.field(index).type
        if not any(is_kind(actual) for is_kind in _ARROW_KINDS[dtype]):
            raise InputError(f"{source}: wrong schema: column '{column}' is {actual}, expected {dtype}")
