from pathlib import Path

import pandas as pd
import pytest

from sparsity_latency import runs
from sparsity_latency.config import METHOD_SETTINGS, Config, config_to_dict, with_changes
from sparsity_latency.errors import InputError
from sparsity_latency.methods import METHODS
from sparsity_latency.schema import TABLES


def test_run_id_is_stable_and_depends_on_identity_only() -> None:
    config = Config()
    assert runs.run_id(config) == runs.run_id(Config())
    assert runs.run_id(config).startswith("standard-s0-")
    assert runs.run_id(with_changes(config, {"attack.eps": [0.5]})) == runs.run_id(config)
    assert runs.run_id(with_changes(config, {"seed": 1})) != runs.run_id(config)
    assert runs.run_id(with_changes(config, {"model.membrane_bits": 4})) != runs.run_id(config)


def test_pair_key_ignores_method_only() -> None:
    standard = Config()
    adversarial = with_changes(standard, {"train.method": "pgd-at"})
    assert runs.pair_key(standard) == runs.pair_key(adversarial)
    assert runs.run_id(standard) != runs.run_id(adversarial)
    assert runs.pair_key(with_changes(standard, {"seed": 3})) != runs.pair_key(standard)
    assert runs.pair_key(with_changes(standard, {"model.membrane_bits": 4})) != runs.pair_key(standard)
    assert runs.pair_key(with_changes(standard, {"train.lr": 0.1})) != runs.pair_key(standard)


def test_identity_leaves_out_training_settings_the_method_does_not_read() -> None:
    standard = Config()
    pgd = with_changes(standard, {"train.method": "pgd-at"})
    # A standard run does not read eps: varying it in a grid shares one standard run, which every pgd-at pairs with.
    assert runs.run_id(with_changes(standard, {"train.eps": 0.1})) == runs.run_id(standard)
    assert runs.run_id(with_changes(pgd, {"train.eps": 0.1})) != runs.run_id(pgd)
    assert runs.pair_key(with_changes(pgd, {"train.eps": 0.1})) == runs.pair_key(standard)
    # pgd-at does not read the grad-reg weight; grad-reg does.
    assert runs.run_id(with_changes(pgd, {"train.grad_reg_lambda": 1.0})) == runs.run_id(pgd)
    grad_reg = with_changes(standard, {"train.method": "grad-reg"})
    assert runs.run_id(with_changes(grad_reg, {"train.grad_reg_lambda": 1.0})) != runs.run_id(grad_reg)


def test_every_method_declares_its_settings() -> None:
    assert set(METHOD_SETTINGS) == set(METHODS)
    fields = set(config_to_dict(Config())["train"])
    assert all(set(settings) <= fields for settings in METHOD_SETTINGS.values())


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    target.write_text("old")

    def failing(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        runs.write_atomic(target, failing)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_write_table_orders_columns_and_read_checks_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    frame = runs.write_table(path, [{"group": "standard", "x_measure": "a", "y_measure": "b", "n": 3,
                                     "r": 0.5}], "correlations")
    assert list(frame.columns) == list(TABLES["correlations"])
    back = runs.read_table(path, "correlations")
    assert back["r"].iloc[0] == 0.5
    assert pd.isna(back["p"].iloc[0])
    frame.drop(columns=["n"]).to_parquet(path)
    with pytest.raises(InputError, match="missing column 'n'"):
        runs.read_table(path, "correlations")
    frame.astype({"n": "float64"}).to_parquet(path)
    with pytest.raises(InputError, match="column 'n' is float64"):
        runs.read_table(path, "correlations")
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable parquet file"):
        runs.read_table(path, "correlations")


def test_corrupt_manifest_and_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{ half")
    with pytest.raises(InputError, match="corrupt run manifest"):
        runs.read_manifest(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="corrupt checkpoint"):
        runs.load_checkpoint(tmp_path / "checkpoint.pt")


def test_manifest_missing_a_key_is_refused(tmp_path: Path) -> None:
    manifest = runs.new_manifest(Config())
    del manifest["config"]
    runs.write_json(tmp_path / "run.json", manifest)
    with pytest.raises(InputError, match="'config' missing"):
        runs.read_manifest(tmp_path)
