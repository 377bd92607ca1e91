"""The server's own token-signing keys (ES256), kept in `<state_dir>/keys/`.

The first start generates a key. `hpcgate-server keys rotate` adds a new current key;
older public keys stay available for verification until every token they signed has
expired (`max_access_token_ttl` after they stopped signing), then they are deleted.
Private keys are files of mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"
_META = "keys.json"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    created_at: float
    retired_at: float | None  # when it stopped signing; None for the current key

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


class ServerKeys:
    def __init__(self, state_dir: Path, max_token_ttl: float) -> None:
        self.directory = state_dir / "keys"
        self.max_token_ttl = max_token_ttl
        self._keys: dict[str, SigningKey] = {}
        self._loaded_mtime = -1.0
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        with self._locked():  # replicas sharing state_dir start at once: one key set
            if not (self.directory / _META).exists():
                self._write_meta([self._new_key_entry()])
        self.reload()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive against other processes changing the key set (flock)."""
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading ------------------------------------------------------------------------

    def reload(self, only_if_changed: bool = False) -> None:
        """(Re)read the key set, e.g. after `keys rotate` ran in another process."""
        meta_path = self.directory / _META
        mtime = meta_path.stat().st_mtime
        if only_if_changed and mtime == self._loaded_mtime:
            return
        keys = {}
        for entry in json.loads(meta_path.read_text()):
            pem = (self.directory / f"{entry['kid']}.pem").read_bytes()
            private = serialization.load_pem_private_key(pem, password=None)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            keys[entry["kid"]] = SigningKey(
                entry["kid"], private, entry["created_at"], entry.get("retired_at")
            )
        self._keys, self._loaded_mtime = keys, mtime

    @property
    def current(self) -> SigningKey:
        return next(k for k in self._keys.values() if k.retired_at is None)

    def verification_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        key = self._keys.get(kid)
        if key is None:
            self.reload(only_if_changed=True)
            key = self._keys.get(kid)
        return key.public_key if key is not None else None

    def all(self) -> list[SigningKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    # -- changing -----------------------------------------------------------------------

    def _new_key_entry(self) -> dict[str, float | str | None]:
        kid = secrets.token_hex(8)
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.directory / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return {"kid": kid, "created_at": time.time(), "retired_at": None}

    def _write_meta(self, entries: list[dict[str, float | str | None]]) -> None:
        tmp = self.directory / f".{_META}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(entries, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.directory / _META)

    def rotate(self) -> SigningKey:
        """Make a new current key; retire the old one; drop keys no token can still need."""
        with self._locked():
            self.reload(only_if_changed=True)  # another process may have rotated
            now = time.time()
            entries: list[dict[str, float | str | None]] = []
            for key in self.all():
                retired = key.retired_at if key.retired_at is not None else now
                if now - retired > self.max_token_ttl:
                    (self.directory / f"{key.kid}.pem").unlink(missing_ok=True)
                    continue
                entries.append(
                    {"kid": key.kid, "created_at": key.created_at, "retired_at": retired}
                )
            entries.append(self._new_key_entry())
            self._write_meta(entries)
        self.reload()
        return self.current
