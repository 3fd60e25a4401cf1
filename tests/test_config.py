import re
from pathlib import Path

import pytest

from sparsity_latency.config import (
    Config,
    check_study,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    with_changes,
)
from sparsity_latency.errors import InputError


def test_defaults_round_trip_through_plain_data() -> None:
    config = Config()
    assert config_from_dict(config_to_dict(config)) == config


def test_load_applies_overrides_and_names_study_after_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text("[train]\nepochs = 4\n[model]\nchannels = [2, 3]\n")
    config = load_config(path, ["train.lr=0.01", "model.membrane_bits=4", 'train.method="pgd-at"'])
    assert config.train.epochs == 4
    assert config.train.lr == 0.01
    assert config.model.membrane_bits == 4.0
    assert config.model.channels == (2, 3)
    assert config.train.method == "pgd-at"
    assert config.study.name == "exp"


def test_override_value_parsing() -> None:
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=pgd-at") == ("a.b", "pgd-at")  # bare word read as a string


def test_variants_lay_dotted_and_nested_keys_over_base() -> None:
    config = with_changes(Config(), {"model": {"membrane_bits": 2}, "train.epochs": 5})
    assert config.model.membrane_bits == 2.0
    assert config.train.epochs == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[data]\nname = 'nope'\n", "unknown dataset 'nope'"),
        ("[train]\nmethod = 'magic'\n", "unknown training method 'magic'"),
        ("[attack]\neps = [0.1, -0.1]\n", "'attack.eps' must all be >= 0"),
        ("[attack]\neps = [0.1, 2.0]\n", "each must be <= 1"),
        ("[attack]\nattacks = ['pgd', 'pgd']\n", "lists an attack twice"),
        ("[attack]\nattacks = ['pgd-l2']\nl2_eps = []\n", "attack 'pgd-l2' needs budgets"),
        ("[attack]\nattacks = ['fgsm', 'cw']\n", "unknown attack 'cw'"),
        ("[attack]\nflip_budgets = [10.5]\n", "must be an integer"),
        ("[attack]\nswap_surrogate = 'sigmoid'\n", "unknown surrogate 'sigmoid'"),
        ("[attack]\ncheck_eps = 0\n", "check_eps' must be in (0, 1]"),
        ("[attack]\ncheck_tolerance = 1\n", "check_tolerance' must be in [0, 1)"),
        ("[attack]\nrestarts = 0\n", "'attack.restarts' must be > 0"),
        ("[attack]\nrestarts = 3\n", "'attack.check_restarts' (3) must be more than attack.restarts (3)"),
        ("[attack]\ncheck_steps_factor = 1\n", "'attack.check_steps_factor' must be >= 2"),
        ("[attack]\neps = []\nattacks = ['event-flip']\n", "the gradient-masking checks run PGD at it"),
        ("[attack]\nattacks = ['surrogate-swap']\nswap_surrogate = 'triangle'\n", "is plain PGD"),
        ("[attack]\nattacks = ['event-flip']\n[data]\nframe_clip = 2.5\n", "whole number of events"),
        ("[train]\ntrades_beta = -1\n", "'train.trades_beta' must be >= 0"),
        ("[train]\ngrad_reg_h = 0\n", "'train.grad_reg_h' must be > 0"),
        ("[train]\neps = 3\n", "must be <= 1"),
        ("[train]\nlr = nan\n", "must be a finite number"),
        ("[train]\nepochs = 'three'\n", "must be an integer"),
        ("[train]\nepoch = 3\n", "unknown config key 'train.epoch'"),
        ("[model]\nmembrane_bits = 1\n", "membrane_bits"),
        ("[model]\nsurrogate = 'sigmoid'\n", "unknown surrogate"),
        ("train = 3\n", "must be a table"),
        ("seed = -1\n", "seeds must be >= 0"),
        ("[study]\nseeds = [0, 0]\n", "lists a seed twice"),
        ("[study]\nname = '..'\n", "plain folder name"),
        ("[profile]\nbatch_sizes = [8, 8]\n", "lists a batch size twice"),
        ("[model]\nchannels = [4, 0]\n", "must all be > 0"),
        ("[model]\nname = 'vgg9'\nchannels = [4, 8]\n", "vgg9 has 8 conv layers"),
        ("[model]\nneuron = 'snntorch'\n", "full precision"),
        ("[model]\nneuron = 'snntorch'\nmembrane_bits = 32\n", "no 'triangle' surrogate"),
        ("[model]\nneuron = 'snntorch'\nmembrane_bits = 32\nsurrogate = 'atan'\n", "detach_reset = false"),
        ("[model]\nweight_bits = 3\n", "weight_bits"),
        ("[model]\nname = 'mlp'\ngating = true\n", "no convolution layers"),
        ("[model]\ngating = true\n", "the event engine cannot run this network: it does not run channel-gated"),
        ("[data]\nname = 'synthetic-digits+frames'\n", "it runs single-modality networks"),
        ("[profile]\nbackends = ['dense', 'sparse']\n", "unknown backend 'sparse'"),
        ("[profile]\nmax_repeats = 5\n", "'profile.max_repeats' (5) must be >= profile.repeats (15)"),
        ("[profile]\nexit_thresholds = [0.5, 1.5]\n", "exit_thresholds' must lie in [0, 1]"),
        ("[model]\ngating = 'yes'\n", "true or false"),
        ("[model]\nquant_grad = 'magic'\n", "unknown quantizer gradient"),
        ("[model]\nmembrane_bits = 16\n", "at most 8"),
        ("[model]\nthreshold = 0.5\n", "whole number of grid levels"),
    ],
)
def test_bad_values_raise_input_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 2")
    with pytest.raises(InputError, match="malformed TOML"):
        load_config(broken)


def test_study_must_evaluate_what_it_correlates() -> None:
    check_study(Config())
    with pytest.raises(InputError, match="correlate.eps"):
        check_study(with_changes(Config(), {"correlate.eps": 0.5}))
    # an event-flip budget is read from attack.flip_budgets
    flips = {"attack.attacks": ["event-flip"], "attack.flip_budgets": [25], "correlate.attack": "event-flip"}
    check_study(with_changes(Config(), {**flips, "correlate.eps": 25}))
    with pytest.raises(InputError, match="one of attack.flip_budgets"):
        check_study(with_changes(Config(), {**flips, "correlate.eps": 0.03}))
    with pytest.raises(InputError, match="correlate.attack"):
        check_study(with_changes(Config(), {"attack.attacks": ["fgsm"]}))


def test_every_experiment_config_loads_and_its_study_checks() -> None:
    experiments = sorted((Path(__file__).parents[1] / "experiments").glob("*.toml"))
    assert len(experiments) >= 3
    for path in experiments:
        check_study(load_config(path))
