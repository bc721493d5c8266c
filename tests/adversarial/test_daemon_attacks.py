"""Attacks on the network's supervisor (``ogkit network down``): pid files that point at a
process it did not start. Whoever can leave a pid file behind (a stale file after a reboot,
a recycled pid, a file edited by hand or by another program) must not get ``network down``
to signal an unrelated process group; only the process ``network up`` started is stopped.

The daemons' own attacks (forged commits, swapped artefacts, floods, rebinding, corrupt
state, re-votes) are in ``tests/network/test_attacks.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ogkit.keys import KeyStore
from ogkit.network import supervisor
from ogkit.network.supervisor import network_down, network_status


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [a.decode() for a in raw.split(b"\0") if a]


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_network_down_never_signals_a_process_it_did_not_start(tmp_path: Path):
    home = tmp_path / "home"
    KeyStore(home).ensure_dev_key("verifier-1")
    pids = home / "network" / "pids"
    pids.mkdir(parents=True)
    dead_chain = f"http://127.0.0.1:{_free_port()}"
    env = {"OGKIT_HOME": str(home)}
    daemon_args = ["verifier", "run", "--key", "verifier-1", "--chain", dead_chain]

    # Unrelated processes in their own sessions (so a killpg on their pid would hit them).
    sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
    # An ogkit daemon someone started by hand: the same command line ogkit would write.
    foreign = subprocess.Popen(
        [sys.executable, "-m", "ogkit.cli", *daemon_args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # The real thing, started the way `network up` starts its processes.
        ours = supervisor._start("verifier-1", daemon_args, home, env, wait_url=False)
        assert ours.pid is not None
        time.sleep(0.5)
        foreign_cmd = _cmdline(foreign.pid)
        files = {
            # A pid file naming an unrelated program by its true command line.
            "sleeper": {"pid": sleeper.pid, "command": _cmdline(sleeper.pid), "start_ticks": 0},
            # An ogkit command line, but the pid runs something else.
            "liar": {"pid": sleeper.pid, "command": foreign_cmd},
            # The foreign daemon's true pid and command, from before its pid was reused
            # (a start time that is not its own) or from a file without one.
            "stale": {
                "pid": foreign.pid,
                "command": foreign_cmd,
                "start_ticks": supervisor._start_ticks(foreign.pid) - 1,
            },
            "old-format": {"pid": foreign.pid, "command": foreign_cmd},
            "this-process": {"pid": os.getpid(), "command": _cmdline(os.getpid())},
            "init": {"pid": 1, "command": foreign_cmd},
            "garbage": ["not", "a", "pid", "file"],
        }
        for name, doc in files.items():
            (pids / f"{name}.json").write_text(json.dumps(doc))
        (pids / "truncated.json").write_text('{"pid": 12')

        status = {p["name"]: p["running"] for p in network_status(home)["processes"]}
        assert status["verifier-1"] is True
        assert not any(status.get(n) for n in files)

        stopped = network_down(home, keep_chain=True)
        assert stopped == ["verifier-1"]
        assert supervisor._alive(ours.pid) is False
        assert sleeper.poll() is None, "network down killed an unrelated process"
        assert foreign.poll() is None, "network down killed a daemon it did not start"
        assert not list(pids.glob("*.json"))
    finally:
        _kill(sleeper)
        _kill(foreign)
        if ours_pid := locals().get("ours"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(ours_pid.pid, signal.SIGKILL)
