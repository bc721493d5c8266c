"""The node's ledger of x402 payments: each (payer, nonce) is served at most once.

The token already refuses a used EIP-3009 nonce, but a node must also never serve twice
for one payment, and must serve once a payment somebody else submitted first (an
authorization is a bearer instrument: whoever sees the ``X-PAYMENT`` header may send it to
the chain; the money still goes only to the payee). So before settling, the node *claims*
the (payer, nonce) in this SQLite table (an atomic insert: concurrent identical payments
lose here, before any chain work); a refusal that consumed nothing releases it; a
settlement, or a front-run one the facilitator reports, is recorded with its transaction
and the call is then served. Rows outlive restarts (``<home>/node/payments.sqlite``);
claims a crashed process left unfinished are dropped at start-up.

A payment that was settled but never answered (the run failed, or the process died
between the settlement and the answer: the row says ``settled``, or ``unserved``) stays
the payer's: the same payment sent again :meth:`resumes <PaymentLedger.resume>` it, served
once with the recorded transaction and charged nothing more. A payment that was served
keeps the content id of the answer it was served with (the answer's bytes are in the
node's store before the row says ``served``): the same payment and request sent again get
that answer again, byte for byte, and nothing is run or charged (:meth:`answer_of`), so a
payer whose connection or node died between the answer and its arrival still gets what it
paid for. Every state change is one SQLite statement in autocommit (WAL,
``synchronous=FULL``): a ``kill -9`` leaves the table at one of these states, never
between two.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["PaymentLedger"]


class PaymentLedger:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS payments (payer TEXT NOT NULL, nonce TEXT NOT NULL, "
            "value TEXT NOT NULL, state TEXT NOT NULL, tx TEXT, at REAL NOT NULL, "
            "PRIMARY KEY (payer, nonce))"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(payments)")}
        if "answer" not in columns:  # a ledger written before answers were kept
            self._db.execute("ALTER TABLE payments ADD COLUMN answer TEXT")
        # A claim left by a process that died while settling: forget it. The chain says
        # whether that settlement happened (a retry then finds the nonce used by a
        # transaction that paid this node, and is served once).
        self._db.execute("DELETE FROM payments WHERE state = 'claimed'")
        # Settled and never answered: the process died while running the call.
        self._db.execute("UPDATE payments SET state = 'unserved' WHERE state = 'settled'")

    def claim(self, payer: str, nonce: str, value: int) -> bool:
        """True if this (payer, nonce) was never claimed; the caller then owns it."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO payments (payer, nonce, value, state, tx, at) "
                "VALUES (?, ?, ?, 'claimed', NULL, ?)",
                (payer.lower(), nonce.lower(), str(value), time.time()),
            )
            return cur.rowcount == 1

    def resume(self, payer: str, nonce: str, value: int) -> str | None:
        """The transaction of a payment that was settled but never served, now owned by
        the caller (its row says ``settled`` again); None if there is none to resume."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE payments SET state = 'settled', at = ? WHERE payer = ? AND nonce = ? "
                "AND value = ? AND state = 'unserved' AND tx IS NOT NULL",
                (time.time(), payer.lower(), nonce.lower(), str(value)),
            )
            if cur.rowcount != 1:
                return None
            row = self._db.execute(
                "SELECT tx FROM payments WHERE payer = ? AND nonce = ?",
                (payer.lower(), nonce.lower()),
            ).fetchone()
        return str(row[0])

    def release(self, payer: str, nonce: str) -> None:
        """Forget a claim whose payment was refused before anything was charged."""
        with self._lock:
            self._db.execute(
                "DELETE FROM payments WHERE payer = ? AND nonce = ? AND state = 'claimed'",
                (payer.lower(), nonce.lower()),
            )

    def record(self, payer: str, nonce: str, state: str, tx: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE payments SET state = ?, tx = COALESCE(?, tx), at = ? "
                "WHERE payer = ? AND nonce = ?",
                (state, tx, time.time(), payer.lower(), nonce.lower()),
            )

    def served(self, payer: str, nonce: str, answer: str) -> None:
        """The call was answered with the stored answer ``answer`` (a content id)."""
        with self._lock:
            self._db.execute(
                "UPDATE payments SET state = 'served', answer = ?, at = ? "
                "WHERE payer = ? AND nonce = ?",
                (answer, time.time(), payer.lower(), nonce.lower()),
            )

    def answer_of(self, payer: str, nonce: str) -> tuple[str, str] | None:
        """(transaction, answer id) of a payment that was served with a stored answer."""
        with self._lock:
            row = self._db.execute(
                "SELECT tx, answer FROM payments WHERE payer = ? AND nonce = ? "
                "AND state = 'served' AND tx IS NOT NULL AND answer IS NOT NULL",
                (payer.lower(), nonce.lower()),
            ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def state(self, payer: str, nonce: str) -> tuple[str, str | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state, tx FROM payments WHERE payer = ? AND nonce = ?",
                (payer.lower(), nonce.lower()),
            ).fetchone()
        return (row[0], row[1]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
