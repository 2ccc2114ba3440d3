"""SecretBox: Fernet encryption of secrets at rest, and where its key comes from."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from storage.secrets import (
    ENV_KEY,
    ENV_KEY_FILE,
    LEGACY_KEY_FILE,
    SecretBox,
    SecretError,
    key_file_for,
    load_key,
    read_keys,
    write_keys,
)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


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


def test_key_file_is_made_0600_outside_the_data_dir_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    box = SecretBox.for_data_dir(data_dir)
    path = key_file_for(data_dir)
    assert path.is_file() and tmp_path / "config" / "dmray" / "keys" in path.parents
    assert not data_dir.exists()  # nothing written beside the event log
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_bytes()
    Fernet(key.strip())  # a valid Fernet key

    token = box.encrypt("pw")
    assert load_key(data_dir) == key.strip()
    again = SecretBox.for_data_dir(data_dir)
    assert again.decrypt(token) == "pw"
    assert path.read_bytes() == key  # not rewritten


def test_a_key_file_an_earlier_version_left_in_the_data_dir_is_used(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    (tmp_path / LEGACY_KEY_FILE).write_bytes(key + b"\n")  # trailing newline from an editor
    token = SecretBox(key).encrypt("pw")
    assert key_file_for(tmp_path) == tmp_path / LEGACY_KEY_FILE
    assert SecretBox.for_data_dir(tmp_path).decrypt(token) == "pw"


def test_a_named_key_file_wins_over_the_default(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    named = tmp_path / "keys" / "dmray.key"
    assert key_file_for(tmp_path / "d", named) == named
    monkeypatch.setenv(ENV_KEY_FILE, str(named))
    assert key_file_for(tmp_path / "d") == named
    SecretBox.for_data_dir(tmp_path / "d")
    assert named.is_file()


def test_env_key_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_key = Fernet.generate_key()
    (tmp_path / LEGACY_KEY_FILE).write_bytes(file_key)
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
    assert not key_file_for(tmp_path / "d").exists()


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


def test_several_keys_the_first_encrypts_every_one_decrypts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    old_token = SecretBox(old).encrypt("pw")
    both = SecretBox([new, old])
    assert both.decrypt(old_token) == "pw"
    rotated = both.rotate(old_token)
    assert SecretBox(new).decrypt(rotated) == "pw"
    with pytest.raises(SecretError):
        SecretBox(old).decrypt(rotated)
    assert both.rotate("") == ""
    monkeypatch.setenv(ENV_KEY, f"{new.decode()}, {old.decode()}")
    assert SecretBox.for_data_dir(tmp_path).decrypt(old_token) == "pw"


def test_a_box_reads_its_key_file_again_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    box = SecretBox.for_file(path)
    old_token = box.encrypt("pw")
    [old] = read_keys(path)
    new = Fernet.generate_key()
    write_keys(path, [new, old])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    new_token = SecretBox.for_file(path).encrypt("pw2")
    assert box.decrypt(new_token) == "pw2"  # read the file again
    box.reload()
    assert SecretBox(new).decrypt(box.encrypt("x")) == "x"  # encrypts with the new key
    write_keys(path, [new])
    box.reload()
    with pytest.raises(SecretError):
        box.decrypt(old_token)
    write_keys(path, [])
    with pytest.raises(SecretError, match="holds no key"):
        SecretBox.for_file(path)


def _first_use(path: Path, barrier: threading.Barrier, keys: list[bytes]) -> None:
    barrier.wait()
    keys.append(read_keys(path)[0])


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    """Concurrent first use of a key file: everyone gets the same, complete key."""
    for trial in range(30):
        folder = tmp_path / str(trial)
        path = folder / "secret.key"
        barrier = threading.Barrier(8)
        keys: list[bytes] = []
        threads = [threading.Thread(target=_first_use, args=(path, barrier, keys))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(keys) == 8
        assert set(keys) == {path.read_bytes().strip()}, trial
        Fernet(keys[0])
        assert [p.name for p in folder.iterdir()] == ["secret.key"]  # no temp files left
