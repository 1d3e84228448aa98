"""Sweep configuration files: parsed key by key; every bad key is named in the error."""

import pytest

from spikeflow.errors import DataError, FormatError
from spikeflow.scale import load_config, parse_config
from spikeflow.scale.search import GridSearch, OptunaSearch

GOOD = """
[sweep]
objective = "digits_snn"
search = "grid"
trials = 3
[sweep.objectives]
accuracy = "max"
[params.hidden]
values = [8, 16]
[params.tau]
values = [0.01, 0.02]
[options]
epochs = 1
"""


def test_good_file_parses(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.objective == "digits_snn" and cfg.search == "grid" and cfg.trials == 3
    assert cfg.params["hidden"].values == (8, 16) and cfg.options == {"epochs": 1}
    assert cfg.objectives == {"accuracy": "max"} and cfg.max_attempts == 3
    # the grid is every combination, in file order, cut to `trials`
    grid = GridSearch(cfg)
    assert [grid.propose() for _ in range(4)] == [(0, {"hidden": 8, "tau": 0.01}), (1, {"hidden": 8, "tau": 0.02}),
                                                  (2, {"hidden": 16, "tau": 0.01}), None]


def test_fingerprint_ignores_workers_only():
    base = {"sweep": {"objective": "x:y", "objectives": {"a": "max"}}, "params": {"p": {"values": [1, 2]}}}
    a = parse_config(base)
    b = parse_config({**base, "sweep": {**base["sweep"], "workers": 5}})
    c = parse_config({**base, "params": {"p": {"values": [1, 3]}}})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("sweep"), "sweep"),
    (lambda d: d["sweep"].pop("objective"), "sweep.objective"),
    (lambda d: d["sweep"].update(objective=3), "sweep.objective"),
    (lambda d: d["sweep"].update(search="random"), "sweep.search"),
    (lambda d: d["sweep"].update(trials=0), "sweep.trials"),
    (lambda d: d["sweep"].update(trials=True), "sweep.trials"),
    (lambda d: d["sweep"].update(workers=0), "sweep.workers"),
    (lambda d: d["sweep"].update(colour="red"), "sweep.colour"),
    (lambda d: d["sweep"].update(objectives={}), "sweep.objectives"),
    (lambda d: d["sweep"].update(objectives={"accuracy": "up"}), "sweep.objectives.accuracy"),
    (lambda d: d.update(params={}), "params"),
    (lambda d: d["params"].update(tau=3), "params.tau"),
    (lambda d: d["params"].update(tau={"values": []}), "params.tau.values"),
    (lambda d: d["params"].update(tau={"values": [[1]]}), "params.tau.values"),
    (lambda d: d["params"].update(tau={"low": 0.1, "high": 0.2}), "params.tau.values"),  # a range on a grid
    (lambda d: d["params"].update(tau={"values": [1], "step": 2}), "params.tau.step"),
    (lambda d: d.update(extra={}), "extra"),
])
def test_bad_values_name_the_key(edit, key):
    import tomllib

    data = tomllib.loads(GOOD)
    edit(data)
    with pytest.raises(DataError, match=f"key '{key}'"):
        parse_config(data)


@pytest.mark.parametrize("param, key", [
    ({"low": 0.2, "high": 0.1}, "params.tau.high"),
    ({"low": 0.0, "high": 0.1, "log": True}, "params.tau.low"),
    ({"low": "a", "high": 0.1}, "params.tau.low"),
    ({"high": 0.1}, "params.tau.low"),
])
def test_bad_optuna_ranges_name_the_key(param, key):
    data = {"sweep": {"objective": "x:y", "search": "optuna", "trials": 2, "objectives": {"a": "max"}}, "params": {"tau": param}}
    with pytest.raises(DataError, match=f"key '{key}'"):
        parse_config(data)


def test_optuna_needs_trials():
    with pytest.raises(DataError, match="key 'sweep.trials'"):
        parse_config({"sweep": {"objective": "x:y", "search": "optuna", "objectives": {"a": "max"}}, "params": {"p": {"values": [1]}}})


@pytest.mark.parametrize("content", [b"[sweep\nobjective = 1", b"\xff\xfe\x00", b"a = = 1"])
def test_unreadable_files_raise_format_error(tmp_path, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(FormatError, match="bad.toml"):
        load_config(path)
    with pytest.raises(FormatError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_optuna_search_is_seeded_and_restores():
    data = {"sweep": {"objective": "x:y", "search": "optuna", "trials": 5, "seed": 3, "objectives": {"a": "max", "b": "min"}},
            "params": {"x": {"low": 0.1, "high": 10.0, "log": True}, "n": {"low": 1, "high": 9, "integer": True},
                       "kind": {"values": ["p", "q"]}}}
    cfg = parse_config(data)
    first, second = OptunaSearch(cfg), OptunaSearch(cfg)
    proposals = []
    for _ in range(5):
        a, b = first.propose(), second.propose()
        assert a == b  # same seed, same answers told: same proposals
        number, params = a
        assert 0.1 <= params["x"] <= 10.0 and isinstance(params["n"], int) and params["kind"] in ("p", "q")
        metrics = {"a": -params["x"], "b": params["n"]}
        first.tell(number, metrics)
        second.tell(number, metrics)
        proposals.append(a)
    assert first.propose() is None
    # a resumed search knows the stored trials and continues the numbering
    records = [{"trial": n, "params": p, "metrics": {"a": -p["x"], "b": p["n"]}, "status": "ok"} for n, p in proposals[:3]]
    resumed = OptunaSearch(cfg)
    resumed.restore(records)
    assert len(resumed.study.trials) == 3
    assert resumed.propose()[0] == 3


@pytest.mark.parametrize("name, match", [("no_such_module_xyz:f", "cannot import"), ("digits_snn_typo", "built-in name"),
                                         ("os:sep", "not callable"), ("os:no_such_function", "cannot import")])
def test_objective_names_are_checked(name, match):
    from spikeflow.scale.worker import resolve_objective

    with pytest.raises(DataError, match=match):
        resolve_objective(name)
    assert resolve_objective("digits_snn").__name__ == "digits_snn"
