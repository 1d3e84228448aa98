"""Export folders: manifest round trip, every kind of damage refused before parsing, atomic replace."""

import json

import pytest

import spikeflow as sf
from spikeflow.backends.export_folder import MANIFEST, read_manifest, writing
from spikeflow.errors import BackendError, FormatError


def _export(path, payload=b"abc", meta=None):
    with writing(path, target="t", version=2, meta=meta or {"n": 1}) as tmp:
        (tmp / "a.bin").write_bytes(payload)
        (tmp / "b.json").write_text("{}")


def test_round_trip_records_sizes_hashes_and_meta(tmp_path):
    _export(tmp_path / "e")
    m = read_manifest(tmp_path / "e", target="t", max_version=2)
    assert m["version"] == 2 and m["meta"] == {"n": 1}
    assert m["files"]["a.bin"]["bytes"] == 3 and len(m["files"]["a.bin"]["sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no temporary folder left


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "a.bin").write_bytes(b"abd"), "SHA-256"),
        (lambda d: (d / "a.bin").write_bytes(b"ab"), "has 2 bytes"),
        (lambda d: (d / "a.bin").unlink(), "missing"),
        (lambda d: (d / "c.bin").write_bytes(b""), "not in the manifest"),
        (lambda d: (d / MANIFEST).unlink(), "no manifest.json"),
        (lambda d: (d / MANIFEST).write_text("{"), "not valid JSON"),
        (lambda d: (d / MANIFEST).write_bytes(b"\xff\xfe"), "not valid JSON"),
        (lambda d: (d / MANIFEST).write_text("[]"), "not a spikeflow export"),
        (lambda d: (d / MANIFEST).write_text("[" * 100000 + "]" * 100000), "not valid JSON"),
    ],
)
def test_damage_is_refused_with_a_clear_error(tmp_path, damage, message):
    _export(tmp_path / "e")
    damage(tmp_path / "e")
    with pytest.raises(FormatError, match=message):
        read_manifest(tmp_path / "e")


def test_manifest_fields_are_checked(tmp_path):
    _export(tmp_path / "e")
    m = json.loads((tmp_path / "e" / MANIFEST).read_text())
    with pytest.raises(FormatError, match="target 't', not 'x'"):
        read_manifest(tmp_path / "e", target="x")
    with pytest.raises(FormatError, match="versions 1..1"):
        read_manifest(tmp_path / "e", max_version=1)
    m["files"]["../a.bin"] = m["files"].pop("a.bin")
    (tmp_path / "e" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(FormatError, match="unsafe file"):
        read_manifest(tmp_path / "e")
    with pytest.raises(FormatError, match="no such folder"):
        read_manifest(tmp_path / "missing")


def test_failed_write_keeps_the_previous_export(tmp_path):
    _export(tmp_path / "e", payload=b"old")
    with pytest.raises(RuntimeError):
        with writing(tmp_path / "e", target="t", version=2) as tmp:
            (tmp / "a.bin").write_bytes(b"new")
            raise RuntimeError("interrupted")
    assert (tmp_path / "e" / "a.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]
    _export(tmp_path / "e", payload=b"newer")  # a complete write replaces it
    assert (tmp_path / "e" / "a.bin").read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_load_export_dispatches_on_the_manifest_target(tmp_path):
    _export(tmp_path / "e")
    with pytest.raises(BackendError, match="unknown target 't'"):
        sf.load_export(tmp_path / "e")
    with pytest.raises(FormatError, match="no such folder"):
        sf.load_export(tmp_path / "nothing")
