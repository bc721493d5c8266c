"""TDX quotes from inside a trust domain through Linux configfs-tsm
(``/sys/kernel/config/tsm/report``, Linux ≥ 6.7; ABI in the kernel's
Documentation/ABI/testing/configfs-tsm-report).

One report is one directory: ``mkdir $root/$name`` makes the kernel create its
attributes; write up to 64 bytes of report data to ``inblob``; read ``outblob`` (the
quote, produced by the provider named in ``provider``, ``tdx_guest`` for TDX); read
``generation`` before and after, since it counts every write to the entry and a change
means another writer raced this one; ``rmdir`` the entry.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ogkit.tee.claims import EnclaveUnavailable, EvidenceError

__all__ = ["TSM_REPORT_ROOT", "TsmReport"]

TSM_REPORT_ROOT = "/sys/kernel/config/tsm/report"
log = logging.getLogger(__name__)


class TsmReport:
    """Quotes over 64 bytes of report data from one configfs-tsm root."""

    def __init__(
        self, root: str | os.PathLike[str] = TSM_REPORT_ROOT, *, provider: str = "tdx_guest"
    ):
        self.root = Path(root)
        self.provider = provider

    # The two directory operations are methods so a test can stand in for the kernel,
    # which creates (and removes) an entry's attribute files itself.
    def _make_entry(self, path: Path) -> None:
        os.mkdir(path)

    def _remove_entry(self, path: Path) -> None:
        os.rmdir(path)

    def quote(self, report_data: bytes) -> bytes:
        """A quote whose report data is ``report_data`` (exactly 64 bytes)."""
        if len(report_data) != 64:
            raise EvidenceError("tee-evidence-malformed", "TDX report data is exactly 64 bytes")
        if not self.root.is_dir():
            raise EnclaveUnavailable(
                f"no configfs-tsm report interface at {self.root}: the tdx attester runs only "
                "inside an Intel TDX trust domain (Linux >= 6.7, configfs mounted)"
            )
        entry = self.root / f"ogkit-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self._make_entry(entry)
        except OSError as exc:
            raise EnclaveUnavailable(f"cannot create a TSM report at {entry}: {exc}") from None
        try:
            provider = (entry / "provider").read_text().strip()
            if provider != self.provider:
                raise EnclaveUnavailable(
                    f"the TSM provider is {provider!r}, not {self.provider!r}: not a TDX guest"
                )
            (entry / "inblob").write_bytes(bytes(report_data))
            before = (entry / "generation").read_text().strip()
            quote = (entry / "outblob").read_bytes()
            after = (entry / "generation").read_text().strip()
            if before != after:
                raise EvidenceError(
                    "tee-evidence-malformed",
                    f"the TSM report {entry.name} was rewritten while it was read "
                    f"(generation {before} -> {after}); try again",
                )
            if not quote:
                raise EvidenceError("tee-evidence-malformed", "the TSM returned an empty quote")
            return quote
        except OSError as exc:
            raise EnclaveUnavailable(f"the TSM report at {entry} failed: {exc}") from None
        finally:
            try:
                self._remove_entry(entry)
            except OSError as exc:
                log.warning("could not remove the TSM report entry %s: %s", entry, exc)
