"""Keys: encrypted eth-account v3 keystores, or a private key from the environment.

A key is found by name. ``OGKIT_KEY_<NAME>`` (upper-case, ``-`` as ``_``) holding a
hex private key wins; otherwise ``<home>/keys/<name>.json`` is decrypted with the
password given, or ``OGKIT_KEY_PASSWORD``. Dev keys (for the demo and tests) are
keystores encrypted with an empty password and a cheap KDF, and say so in the file.
A private key never leaves :class:`Signer`: not in ``repr``, logs or errors.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ogkit.errors import ConfigError, KeyStoreError, SignatureError
from ogkit.settings import ogkit_home

__all__ = ["KeyInfo", "KeyStore", "Signer", "key_env_var", "parse_signature", "recover_typed_data"]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEV_PASSWORD = ""  # dev keys are for local demos only; documented as unprotected


class Signer:
    """A named account that signs EIP-712 typed data; the key stays inside."""

    def __init__(self, name: str, account: LocalAccount, *, dev: bool = False) -> None:
        self.name = name
        self._account = account
        self.dev = dev

    @property
    def address(self) -> str:
        return self._account.address

    def sign_typed_data(self, typed_data: dict[str, Any]) -> str:
        """Sign a full EIP-712 message (``types``, ``primaryType``, ``domain``, ``message``)."""
        signable = encode_typed_data(full_message=typed_data)
        return "0x" + self._account.sign_message(signable).signature.hex().removeprefix("0x")

    def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)

    @property
    def local_account(self) -> LocalAccount:
        """The eth-account object, for web3 middleware that signs transactions."""
        return self._account

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, address={self.address}, dev={self.dev})"


# secp256k1's group order; OpenZeppelin's ECDSA accepts s only in the lower half.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def parse_signature(signature: Any) -> bytes:
    """The 65 bytes ``r ‖ s ‖ v`` of a signature that OpenZeppelin's ``ECDSA.recover`` would
    accept: exactly 65 bytes, ``0 < r < n``, ``0 < s <= n/2`` (low s, EIP-2), ``v`` in
    {27, 28}. Anything else raises :class:`SignatureError`, whatever eth-account allows."""
    if isinstance(signature, str):
        text = signature.removeprefix("0x")
        if len(text) != 130:
            raise SignatureError(
                f"signature must be 65 bytes (0x + 130 hex digits), got {len(text)} digits"
            )
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise SignatureError("signature is not hexadecimal") from None
    elif isinstance(signature, bytes | bytearray):
        raw = bytes(signature)
    else:
        raise SignatureError(f"signature must be hex text or bytes, not {type(signature).__name__}")
    if len(raw) != 65:
        raise SignatureError(f"signature must be 65 bytes, got {len(raw)}")
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if not 0 < r < SECP256K1_N:
        raise SignatureError("signature r is out of range")
    if not 0 < s <= SECP256K1_N // 2:
        raise SignatureError("signature s is not in the lower half of the curve order (high-s)")
    if v not in (27, 28):
        raise SignatureError(f"signature v must be 27 or 28, got {v}")
    return raw


def recover_typed_data(typed_data: dict[str, Any], signature: Any) -> str:
    """The address that signed ``typed_data``, accepting exactly what OpenZeppelin's ECDSA
    accepts (:func:`parse_signature`); raises :class:`SignatureError` otherwise."""
    raw = parse_signature(signature)
    try:
        signable = encode_typed_data(full_message=typed_data)
        return Account.recover_message(signable, signature=raw)
    except SignatureError:
        raise
    except Exception as exc:  # eth-keys raises its own types for points not on the curve
        raise SignatureError(f"signature does not recover a key: {exc}") from None


@dataclass(frozen=True)
class KeyInfo:
    name: str
    address: str
    dev: bool
    source: str  # "keystore" or "env"


def key_env_var(name: str) -> str:
    """The environment variable that may hold key ``name`` directly: ``OGKIT_KEY_<NAME>``."""
    return "OGKIT_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


class KeyStore:
    """Named keys under ``<home>/keys``."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else ogkit_home()
        self.folder = self.home / "keys"

    def _path(self, name: str) -> Path:
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"key name {name!r} is not valid: use letters, digits, '.', '_' or '-' "
                "(at most 64 characters)"
            )
        return self.folder / f"{name}.json"

    @staticmethod
    def _env_var(name: str) -> str:
        return key_env_var(name)

    def create(self, name: str, password: str | None = None, *, dev: bool = False) -> KeyInfo:
        """Create a new random key ``name``; refuses to overwrite an existing one."""
        path = self._path(name)
        if path.exists():
            raise KeyStoreError(f"key {name!r} already exists at {path}; pick another name")
        if dev:
            password = DEV_PASSWORD
        elif password is None:
            password = os.environ.get("OGKIT_KEY_PASSWORD")
            if not password:
                raise KeyStoreError(
                    f"no password for new key {name!r}: set OGKIT_KEY_PASSWORD, "
                    "or create a dev key with dev=True (--dev)"
                )
        account = Account.create()
        # Dev keys use a cheap KDF so demos and tests start fast; real keys keep scrypt.
        kdf = {"kdf": "pbkdf2", "iterations": 1024} if dev else {}
        keystore = Account.encrypt(account.key, password, **kdf)
        keystore["ogkit"] = {"name": name, "dev": dev}
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(keystore, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        log.info("created %skey %s (%s)", "dev " if dev else "", name, account.address)
        return KeyInfo(name, account.address, dev, "keystore")

    def ensure_dev_key(self, name: str) -> Signer:
        """Load dev key ``name``, creating it first if needed (demo and tests)."""
        if not self._path(name).exists() and self._env_var(name) not in os.environ:
            self.create(name, dev=True)
        return self.load(name)

    def load(self, name: str, password: str | None = None) -> Signer:
        """Load key ``name`` from ``OGKIT_KEY_<NAME>`` or its keystore file."""
        env_var = self._env_var(name)
        if raw := os.environ.get(env_var):
            try:
                return Signer(name, Account.from_key(raw.strip()))
            except Exception:
                # Never chain the original exception: it may quote the key.
                raise KeyStoreError(
                    f"{env_var} does not hold a valid hex private key; fix or unset it"
                ) from None
        path = self._path(name)
        if not path.exists():
            raise KeyStoreError(
                f"no key named {name!r} (looked for {env_var} and {path}); "
                f"create one with `ogkit keys new {name}`"
            )
        try:
            keystore = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise KeyStoreError(f"keystore {path} is unreadable: {exc}") from None
        dev = bool(keystore.get("ogkit", {}).get("dev"))
        if dev:
            password = DEV_PASSWORD
        elif password is None:
            password = os.environ.get("OGKIT_KEY_PASSWORD")
            if password is None:
                raise KeyStoreError(
                    f"key {name!r} is encrypted: set OGKIT_KEY_PASSWORD or pass a password"
                )
        try:
            private_key = Account.decrypt(keystore, password)
        except ValueError:
            raise KeyStoreError(
                f"wrong password for key {name!r} ({path}); check OGKIT_KEY_PASSWORD"
            ) from None
        return Signer(name, Account.from_key(private_key), dev=dev)

    def list(self) -> list[KeyInfo]:
        """Every key in the keystore folder, addresses only."""
        infos = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                keystore = json.loads(path.read_text())
                address = to_checksum_address("0x" + keystore["address"].removeprefix("0x"))
            except (OSError, json.JSONDecodeError, KeyError):
                log.warning("skipping unreadable keystore %s", path)
                continue
            meta = keystore.get("ogkit", {})
            infos.append(KeyInfo(path.stem, address, bool(meta.get("dev")), "keystore"))
        return infos
