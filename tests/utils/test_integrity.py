"""cnnzoo/utils/integrity.py: SHA-256 sidecars written, read and checked on real files."""

import hashlib
import subprocess

import pytest

from cnnzoo.errors import IntegrityError
from cnnzoo.utils import integrity


def test_a_sidecar_records_the_digest_in_sha256sum_format(tmp_path):
    path = tmp_path / "stage1.weights.h5"
    path.write_bytes(b"\x89HDF" + bytes(range(256)) * 50)
    digest = integrity.write_sidecar(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert integrity.sidecar_path(path).read_text() == f"{digest}  stage1.weights.h5\n"
    assert integrity.verify(path, "checkpoint") == digest
    check = subprocess.run(["sha256sum", "-c", integrity.sidecar_path(path).name], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0, check.stderr  # the standard tool agrees


def test_one_flipped_byte_is_reported_by_name(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"stage": 2, "epoch": 7}')
    integrity.write_sidecar(path)
    data = bytearray(path.read_bytes())
    data[9] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"run state `.*state\.json` is damaged") as caught:
        integrity.verify(path, "run state")
    assert isinstance(caught.value, ValueError)
    assert not integrity.is_intact(path)


def test_a_file_without_a_sidecar_is_trusted_unless_one_is_required(tmp_path):
    path = tmp_path / "old.weights.h5"
    path.write_bytes(b"written by an older cnnzoo")
    assert integrity.verify(path) is None and integrity.is_intact(path)
    with pytest.raises(IntegrityError, match="has no readable checksum `old.weights.h5.sha256`"):
        integrity.verify(path, "checkpoint", required=True)
    assert not integrity.is_intact(tmp_path / "missing.h5")


def test_a_directory_digest_covers_names_and_bytes(tmp_path):
    saved = tmp_path / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"graph")
    (saved / "variables" / "variables.data").write_bytes(b"weights")
    digest = integrity.write_sidecar(saved)
    (saved / "variables" / "variables.data").write_bytes(b"weightz")
    assert integrity.sha256_file(saved) != digest and not integrity.is_intact(saved)


def test_atomic_save_checked_commits_the_sidecar_with_the_file_and_a_failed_save_leaves_neither(tmp_path):
    path = tmp_path / "run" / "features.npz"
    integrity.atomic_save_checked(path, lambda tmp: open(tmp, "wb").write(b"features" * 100))
    assert integrity.verify(path, "feature cache", required=True) == hashlib.sha256(b"features" * 100).hexdigest()

    def fails(tmp):
        open(tmp, "wb").write(b"half")
        raise RuntimeError("killed mid-write")

    other = tmp_path / "run" / "other.npz"
    with pytest.raises(RuntimeError):
        integrity.atomic_save_checked(other, fails)
    assert sorted(p.name for p in other.parent.iterdir()) == ["features.npz", "features.npz.sha256"]
    path.write_bytes(b"Features" * 100)  # one bit
    with pytest.raises(IntegrityError, match="rerun it"):
        integrity.verify(path, "feature cache", fix="rerun it")
    integrity.remove_with_sidecar(path)
    assert list(path.parent.iterdir()) == []
