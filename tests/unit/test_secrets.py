"""SecretBox: Fernet encryption of secrets at rest, and where its key comes from."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from storage.secrets import ENV_KEY, KEY_FILE, SecretBox, SecretError, load_key


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.mark.parametrize("plain", ["dmray-secret-pw", "ünïcødé 🚀 pässwörd", " ", "x" * 5000,
                                   "-----BEGIN PRIVATE KEY-----\nMII...\n"])
def test_round_trip(box: SecretBox, plain: str) -> None:
    token = box.encrypt(plain)
    assert isinstance(token, str)
    assert box.decrypt(token) == plain


def test_ciphertext_hides_the_plaintext(box: SecretBox) -> None:
    plain = "hunter2-hunter2"
    token = box.encrypt(plain)
    assert token != plain
    assert plain not in token
    assert box.encrypt(plain) != token  # random IV: equal secrets don't look equal


def test_empty_stays_empty(box: SecretBox) -> None:
    assert box.encrypt("") == ""
    assert box.decrypt("") == ""


def test_wrong_key_is_a_secret_error(box: SecretBox) -> None:
    token = box.encrypt("pw")
    with pytest.raises(SecretError, match="wrong secret key"):
        SecretBox(Fernet.generate_key()).decrypt(token)


def test_tampered_token_is_a_secret_error(box: SecretBox) -> None:
    token = box.encrypt("pw")
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SecretError):
        box.decrypt(flipped)
    with pytest.raises(SecretError):
        box.decrypt("not a token at all")


@pytest.mark.parametrize("key", [b"", b"short", b"not base64 !!!!", b"A" * 44,
                                 Fernet.generate_key()[:-4]])
def test_invalid_key_is_a_secret_error(key: bytes) -> None:
    with pytest.raises(SecretError, match=ENV_KEY):
        SecretBox(key)


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"  # created on first use
    box = SecretBox.for_data_dir(data_dir)
    path = data_dir / KEY_FILE
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_bytes()
    Fernet(key)  # a valid Fernet key

    token = box.encrypt("pw")
    assert load_key(data_dir) == key.strip()
    again = SecretBox.for_data_dir(data_dir)
    assert again.decrypt(token) == "pw"
    assert path.read_bytes() == key  # not rewritten
    assert sorted(p.name for p in data_dir.iterdir()) == [KEY_FILE]


def test_existing_key_file_is_used(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    (tmp_path / KEY_FILE).write_bytes(key + b"\n")  # trailing newline from an editor
    token = SecretBox(key).encrypt("pw")
    assert SecretBox.for_data_dir(tmp_path).decrypt(token) == "pw"


def test_env_key_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_key = Fernet.generate_key()
    (tmp_path / KEY_FILE).write_bytes(file_key)
    env_key = Fernet.generate_key()
    monkeypatch.setenv(ENV_KEY, env_key.decode())
    assert load_key(tmp_path) == env_key
    token = SecretBox.for_data_dir(tmp_path).encrypt("pw")
    assert SecretBox(env_key).decrypt(token) == "pw"
    with pytest.raises(SecretError):
        SecretBox(file_key).decrypt(token)


def test_env_key_means_no_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, Fernet.generate_key().decode())
    SecretBox.for_data_dir(tmp_path / "d")
    assert not (tmp_path / "d" / KEY_FILE).exists()


def test_invalid_env_key_is_a_secret_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "definitely-not-a-fernet-key")
    with pytest.raises(SecretError, match=ENV_KEY):
        SecretBox.for_data_dir(tmp_path)


def test_two_data_dirs_get_different_keys(tmp_path: Path) -> None:
    a = SecretBox.for_data_dir(tmp_path / "a")
    b = SecretBox.for_data_dir(tmp_path / "b")
    with pytest.raises(SecretError):
        b.decrypt(a.encrypt("pw"))


def _first_use(data_dir: Path, barrier: threading.Barrier, keys: list[bytes]) -> None:
    barrier.wait()
    keys.append(load_key(data_dir))


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    """Concurrent first use of a data dir: everyone gets the same, complete key."""
    for trial in range(30):
        data_dir = tmp_path / str(trial)
        barrier = threading.Barrier(8)
        keys: list[bytes] = []
        threads = [threading.Thread(target=_first_use, args=(data_dir, barrier, keys))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(keys) == 8
        assert set(keys) == {(data_dir / KEY_FILE).read_bytes()}, trial
        Fernet(keys[0])
        assert [p.name for p in data_dir.iterdir()] == [KEY_FILE]  # no temp files left
