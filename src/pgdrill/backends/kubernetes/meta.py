"""Names and ownership metadata shared by every manifest builder (``manifests.py``): the labels
every pgdrill object carries, DNS-1123 names, ``Meta`` and the object skeleton.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Every object pgdrill creates carries both labels; cleanup selects on them (plus UIDs).
LABEL_RUN_ID = "pgdrill.io/run-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "pgdrill"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def dns_label(text: str, max_length: int = 63) -> str:
    """``text`` as a DNS-1123 label (lower case, ``-`` for anything else), for names from run ids."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    cleaned = cleaned[:max_length].rstrip("-")
    if not cleaned:
        raise ValueError(f"cannot make a Kubernetes name out of {text!r}")
    return cleaned


def check_name(name: str, what: str = "name", max_length: int = 63) -> str:
    if len(name) > max_length or not _DNS_LABEL.match(name):
        raise ValueError(f"{what} {name!r} is not a valid Kubernetes name "
                         f"(lower-case letters, digits and '-', at most {max_length} characters)")
    return name


@dataclass(frozen=True)
class Meta:
    """Name, namespace and the ownership labels every pgdrill object carries."""

    name: str
    namespace: str | None
    run_id: str
    extra_labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.namespace is not None:
            check_name(self.namespace, "namespace")
        if len(self.run_id) > 63 or not _LABEL_VALUE.match(self.run_id) or not self.run_id:
            raise ValueError(f"run id {self.run_id!r} cannot be a label value (use letters, digits, '-', '_', '.')")

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_RUN_ID: self.run_id, LABEL_MANAGED_BY: MANAGED_BY, **dict(self.extra_labels)}

    def to_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace is not None:
            meta["namespace"] = self.namespace
        meta["labels"] = self.labels
        return meta


def obj(api_version: str, kind: str, meta: Meta, **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": meta.to_dict(), **body}
