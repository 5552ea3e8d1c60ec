"""Who a key speaks for: its tenant, its role and the datasets it may sync (issue 13).

Keys come from a keys document (API_KEYS_JSON or API_KEYS_FILE), a JSON list of entries:

    [{"sha256": "<hex digest of the key>", "tenant": "acme", "role": "submit",
      "datasets": ["sales"]}, {"key": "<the key itself>", "tenant": "ops", "role": "admin"}]

The old API_KEYS (comma-separated) still works: each of its keys is `admin` of tenant `default`
and may sync any dataset. Only the keys' SHA-256 digests are kept in memory; a presented key is
hashed and compared with every digest in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from heavylift.schemas import first_problem

Role = Literal["read", "submit", "admin"]
# Each role includes the ones before it.
ROLES: tuple[Role, ...] = ("read", "submit", "admin")
DEFAULT_TENANT = "default"
ANY_DATASET = "*"
# A tenant travels as object metadata and in job data: plain names only.
TenantId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Principal(BaseModel):
    """What a request may do. `datasets` None: any dataset."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    role: Role
    datasets: frozenset[str] | None = None

    def has(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def scope(self) -> str | None:
        """The tenant whose jobs and documents it sees; None (all) for the operator."""
        return None if self.role == "admin" else self.tenant

    def may_sync(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets


OPERATOR = Principal(tenant=DEFAULT_TENANT, role="admin")


class KeyEntry(BaseModel):
    """One entry of the keys document: the key itself or (better) its SHA-256 hex digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: SecretStr | None = Field(None, min_length=8)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    tenant: TenantId
    role: Role
    # Dataset ids this key may sync; ["*"]: any; omitted: none.
    datasets: list[Annotated[str, Field(pattern=r"^(\*|[A-Za-z_][A-Za-z0-9_]{0,127})$")]] = []

    @model_validator(mode="after")
    def _one_credential(self) -> KeyEntry:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'key' and 'sha256'")
        return self

    def digest(self) -> bytes:
        if self.key is not None:
            return digest_of(self.key.get_secret_value())
        return bytes.fromhex(self.sha256 or "")

    def principal(self) -> Principal:
        any_dataset = ANY_DATASET in self.datasets
        return Principal(tenant=self.tenant, role=self.role,
                         datasets=None if any_dataset else frozenset(self.datasets))


_DOCUMENT = TypeAdapter(list[KeyEntry])


class KeysError(ValueError):
    """The keys document is wrong; one line saying where (never the keys themselves)."""


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys_document(text: str) -> list[KeyEntry]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise KeysError(f"not JSON ({error.msg} at line {error.lineno})") from None
    try:
        entries = _DOCUMENT.validate_python(raw)
    except ValidationError as error:
        field, message = first_problem(error)
        raise KeysError(f"entry {_entry_path(field)}: {message}") from None
    return entries  # [] is fine: only API_KEYS (if any) then


def _entry_path(field: str | None) -> str:
    # pydantic's loc "2.role" -> "3 (role)": entries counted from 1, as a person reads them.
    index, _, rest = (field or "").partition(".")
    number = str(int(index) + 1) if index.isdigit() else index or "?"
    return f"{number} ({rest})" if rest else number


KeyTable = tuple[tuple[bytes, Principal], ...]


def key_table(legacy_keys: Iterable[str], entries: Iterable[KeyEntry]) -> KeyTable:
    """Digest -> principal for every accepted key; a key listed twice is refused (which entry
    would it speak for?)."""
    table = [(digest_of(key), OPERATOR) for key in legacy_keys]
    table += [(entry.digest(), entry.principal()) for entry in entries]
    if len({digest for digest, _ in table}) != len(table):
        raise KeysError("a key is listed twice (API_KEYS, API_KEYS_JSON or API_KEYS_FILE)")
    return tuple(table)


def principal_for(key: str, table: KeyTable) -> Principal | None:
    """The key's principal. Every digest is compared (no early exit), in constant time."""
    given = digest_of(key)
    found: Principal | None = None
    for digest, principal in table:
        if hmac.compare_digest(given, digest):
            found = principal
    return found
