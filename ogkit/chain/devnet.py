"""The managed local devnet: one anvil per ogkit home, persistent, with the contracts deployed.

``Devnet(home).up()`` starts the anvil that ``npm install`` put in the repository's
``node_modules`` (or the ``anvil`` binary it is given), bound to 127.0.0.1 only, chain id
31337, detached from the calling process so that it outlives it. Its state lives in
``<home>/devnet/state.json``: anvil loads it at start, dumps it every second
(``--state-interval 1``, so a killed anvil loses at most about a second) and on a clean exit
(``down()`` sends SIGTERM). Its output goes to ``<home>/devnet/anvil.log`` (anvil runs with
``--quiet``: errors only, so the dev accounts' keys it would print stay out of the log), its
pid to ``<home>/devnet/anvil.pid``.

On first start - or when the chain lost the recorded contracts (state file deleted) or the
compiled contracts changed - ``up()`` deploys the four contracts from anvil's first default
account (a publicly known key, used for nothing but this devnet) and writes
``<home>/deployments/31337.json``. Governance bootstrap (measurement allowlist) is left to the
settlement step; :meth:`Devnet.deployer` gives it the deployer as a :class:`Signer`.

Nothing here reads the environment: the CLI passes ``home``, ``port`` and ``anvil`` from
:meth:`ogkit.settings.Settings.from_env` (``OGKIT_HOME``, ``OGKIT_DEVNET_PORT``,
``OGKIT_ANVIL``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import requests

from ogkit.chain.client import ChainClient
from ogkit.chain.deployments import (
    DeployParams,
    compiled_changed,
    deploy_to,
    deployment_is_live,
    deployment_path,
    load_deployment,
    params_from_json,
    read_deployment_record,
    require_home,
)
from ogkit.chain.rpc import open_web3
from ogkit.errors import ChainError, ConfigError
from ogkit.keys import Signer

__all__ = ["DEVNET_CHAIN_ID", "Devnet", "DevnetStatus", "anvil_command"]

logger = logging.getLogger(__name__)

DEVNET_CHAIN_ID = 31337
DEFAULT_PORT = 8545
START_TIMEOUT = 60.0
"""Seconds to wait for a starting anvil to answer (it may be loading a large state)."""
STOP_TIMEOUT = 15.0
"""Seconds to wait after SIGTERM (anvil dumps its state) before SIGKILL."""

# anvil's default accounts come from this well-known test mnemonic. The key is public; it is
# only ever used on this local devnet, and it is never logged.
_DEV_MNEMONIC = "test test test test test test test test test test test junk"
_DEV_PATH = "m/44'/60'/0'/0/0"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""anvil processes started by this Python process, to reap them once they exit."""


@dataclass
class DevnetStatus:
    """Where the devnet stands. ``deployed``: a deployment file exists and, while the devnet
    runs, its contracts have code on the chain. ``block``: the latest block while running."""

    running: bool
    url: str
    pid: int | None
    chain_id: int
    block: int | None
    state_file: Path
    deployed: bool


@cache
def _deployer_account() -> Any:
    from eth_account import Account
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic

    key = key_from_seed(seed_from_mnemonic(_DEV_MNEMONIC, ""), _DEV_PATH)
    return Account.from_key(key)


def _platform_package() -> str | None:
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    return f"anvil-{system}-{arch}" if system and arch else None


def anvil_command(anvil: str | None = None) -> list[str]:
    """The command that runs anvil: the ``anvil`` binary given (the CLI passes
    ``$OGKIT_ANVIL``), else the repository's npm install.

    The native binary of ``@foundry-rs/anvil``'s platform package is preferred over the
    ``node_modules/.bin/anvil`` wrapper script (which would run a Node.js process in front of
    it, between our signals and anvil).
    """
    if anvil:
        path = Path(anvil).expanduser()
        if not path.is_file():
            raise ChainError(
                f"the anvil binary {anvil} (OGKIT_ANVIL) is not a file; point OGKIT_ANVIL at "
                "an anvil binary or unset it"
            )
        return [str(path)]
    node_modules = _REPO_ROOT / "node_modules"
    package = _platform_package()
    if package:
        native = node_modules / "@foundry-rs" / package / "bin" / "anvil"
        if sys.platform == "win32":
            native = native.with_suffix(".exe")
        if native.is_file() and os.access(native, os.X_OK):
            return [str(native)]
    wrapper = node_modules / ".bin" / "anvil"
    if wrapper.exists():
        return [str(wrapper)]
    raise ChainError(
        f"anvil is not installed (looked in {node_modules}): run `make setup` in the ogkit "
        "repository (it runs `npm install`), or set OGKIT_ANVIL to an anvil binary"
    )


def _rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 1.0) -> Any:
    """One JSON-RPC request; None if nothing answers."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    try:
        response = requests.post(url, json=body, timeout=timeout)
        return response.json().get("result")
    except (requests.RequestException, ValueError):
        return None


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pid: int) -> bool:
    """Whether the process ``pid`` - or anything in the session it leads - still runs."""
    _reap(pid)
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _alive(pid)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class Devnet:
    """The ogkit devnet of one home folder; see the module docstring."""

    def __init__(self, home: Path, *, port: int | None = None, anvil: str | None = None) -> None:
        self.home = require_home(home, "the devnet")
        self.anvil = anvil
        """An anvil binary to run instead of the npm-installed one (``$OGKIT_ANVIL``)."""
        self.dir = self.home / "devnet"
        self.state_file = self.dir / "state.json"
        self.log_file = self.dir / "anvil.log"
        self.pid_file = self.dir / "anvil.pid"
        self.port_file = self.dir / "port"
        # Only a port nobody chose (``port``, from OGKIT_DEVNET_PORT) may move when another
        # program holds it.
        self._port_chosen = port is not None
        if port is None:
            raw = (self.port_file.read_text().strip() if self.port_file.exists() else "") or str(
                DEFAULT_PORT
            )
            try:
                port = int(raw)
            except ValueError:
                raise ConfigError(
                    f"{self.port_file} must hold a port number, got {raw!r}; delete it or set "
                    "OGKIT_DEVNET_PORT"
                ) from None
        if not 0 < port < 65536:
            raise ConfigError(f"devnet port must be in 1..65535, got {port}")
        self._set_port(port)

    def _set_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def __repr__(self) -> str:
        return f"Devnet(home={str(self.home)!r}, url={self.url!r})"

    # ----------------------------------------------------------------- process bookkeeping

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up/down of this home's devnet across processes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            yield
            return
        with open(self.dir / "lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _running_pid(self) -> int | None:
        """The pid of this home's anvil if it runs; removes a stale pid file."""
        pid = self._read_pid()
        if pid is None:
            return None
        cmd = _cmdline(pid)
        if _alive(pid) and (cmd is None or any("anvil" in part for part in cmd)):
            return pid
        logger.debug("removing stale devnet pid file %s (pid %s)", self.pid_file, pid)
        self.pid_file.unlink(missing_ok=True)
        return None

    def _port_of(self, pid: int) -> int | None:
        cmd = _cmdline(pid) or []
        for flag, value in itertools.pairwise(cmd):
            if flag in ("--port", "-p"):
                with contextlib.suppress(ValueError):
                    return int(value)
        return None

    def _chain_id(self, timeout: float = 1.0) -> int | None:
        result = _rpc(self.url, "eth_chainId", timeout=timeout)
        try:
            return int(result, 16) if isinstance(result, str) else None
        except ValueError:
            return None

    def _port_in_use(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _wait_rpc(self, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return False
            if self._chain_id() == DEVNET_CHAIN_ID:
                return True
            time.sleep(0.1)
        return False

    def _log_tail(self, offset: int, lines: int = 15) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _check_state_file(self) -> None:
        """Move a state file that is not valid JSON (anvil killed mid-dump) out of the way."""
        if not self.state_file.exists():
            return
        try:
            with open(self.state_file, "rb") as f:
                json.load(f)
            return
        except (OSError, ValueError):
            pass
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.state_file.with_name(f"state.corrupt-{stamp}.json")
        self.state_file.replace(aside)
        logger.warning(
            "devnet state %s is corrupt (anvil was killed while writing it?); moved it to %s "
            "and starting a fresh chain",
            self.state_file,
            aside,
        )

    def _start(self) -> int:
        command = [
            *anvil_command(self.anvil),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(DEVNET_CHAIN_ID),
            "--state",
            str(self.state_file),
            "--state-interval",
            "1",
            "--quiet",
        ]
        self._check_state_file()
        with open(self.log_file, "ab") as log:
            offset = log.tell()
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n--- {stamp} ogkit starts: {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        logger.info("started anvil (pid %s) on %s, state %s", proc.pid, self.url, self.state_file)
        if self._wait_rpc(START_TIMEOUT, proc):
            return proc.pid
        code = proc.poll()
        if code is None:
            self._stop(proc.pid)
        self.pid_file.unlink(missing_ok=True)
        tail = self._log_tail(offset)
        how = f"exited with code {code}" if code is not None else "did not answer in time"
        raise ChainError(
            f"anvil {how} on {self.url}; last lines of {self.log_file}:\n{tail}\n"
            "If the port is taken, set OGKIT_DEVNET_PORT; if the state is broken, "
            f"remove {self.state_file}"
        )

    def _stop(self, pid: int, timeout: float = STOP_TIMEOUT) -> None:
        group = hasattr(os, "killpg") and _getpgid(pid) == pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        alive = _group_alive if group else _alive
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            logger.warning("anvil (pid %s) did not stop in %.0f s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    # ----------------------------------------------------------------- public API

    def up(self, params: DeployParams | None = None) -> DevnetStatus:
        """Make sure the devnet runs and has the contracts; idempotent.

        Reuses an anvil started from this home that answers on the port; otherwise starts one.
        Deploys (with ``params``, else those of the previous deployment, else the defaults)
        when there is no deployment yet, when the chain lost it, or when the artefacts changed.
        """
        with self._lock():
            pid = self._running_pid()
            if pid is not None:
                port = self._port_of(pid)
                if port is not None and port != self.port:
                    raise ChainError(
                        f"the devnet of {self.home} already runs on port {port} (pid {pid}); "
                        f"use that port (OGKIT_DEVNET_PORT={port}) or stop it with "
                        "`ogkit chain down`"
                    )
                if not self._wait_rpc(START_TIMEOUT, None):
                    raise ChainError(
                        f"the devnet (pid {pid}) runs but does not answer on {self.url}; see "
                        f"{self.log_file}, then restart it with `ogkit chain down` and "
                        "`ogkit chain up`"
                    )
                logger.debug("devnet already running (pid %s) on %s", pid, self.url)
            else:
                if self._port_in_use() and not self._port_chosen:
                    taken = self.port
                    self._set_port(_free_port())
                    self.dir.mkdir(parents=True, exist_ok=True)
                    self.port_file.write_text(str(self.port))
                    logger.warning(
                        "port %d is taken by another program; the devnet of %s uses port %d "
                        "from now on (set OGKIT_DEVNET_PORT to choose)",
                        taken,
                        self.home,
                        self.port,
                    )
                if self._port_in_use():
                    raise ChainError(
                        f"port {self.port} is in use by another program (not the devnet of "
                        f"{self.home}); stop it or pick another port with OGKIT_DEVNET_PORT"
                    )
                self._start()
            self._ensure_deployment(params)
        return self.status()

    def _ensure_deployment(self, params: DeployParams | None) -> None:
        w3 = open_web3(self.url)
        deployer = self.deployer()
        accounts = [a.lower() for a in w3.eth.accounts]
        if accounts and accounts[0] != deployer.address.lower():
            raise ChainError(
                f"the anvil on {self.url} does not use the standard dev accounts; "
                "stop it with `ogkit chain down`"
            )
        try:
            record = read_deployment_record(self.home, DEVNET_CHAIN_ID)
        except ChainError as exc:
            logger.warning("%s; redeploying on the devnet", exc)
            record = None
        if record is None:
            why = "first start"
        elif not deployment_is_live(w3, record):
            why = "the chain no longer has the recorded contracts (its state was reset)"
        elif compiled_changed(record):
            why = "the compiled contracts changed since the last deployment"
        else:
            if (
                params is not None
                and record.get("params") is not None
                and params_from_json(record["params"]) != params
            ):
                logger.warning(
                    "the devnet was deployed with other parameters; they stay (reset the "
                    "devnet with Devnet.reset() to deploy with new ones)"
                )
            return
        if params is None and record is not None and record.get("params") is not None:
            params = params_from_json(record["params"])
        logger.info("deploying the ogkit contracts to the devnet: %s", why)
        deploy_to(w3, deployer, params, home=self.home)

    def down(self) -> None:
        """Stop the devnet: SIGTERM (anvil dumps its state), SIGKILL after a timeout."""
        with self._lock():
            pid = self._running_pid()
            if pid is None:
                logger.debug("devnet of %s is not running", self.home)
                self.pid_file.unlink(missing_ok=True)
                return
            self._stop(pid)
            self.pid_file.unlink(missing_ok=True)
            logger.info("stopped the devnet (pid %s)", pid)

    def reset(self) -> None:
        """Stop the devnet and delete its chain state and deployment file (a fresh chain and a
        fresh deployment at the next ``up``)."""
        self.down()
        self.state_file.unlink(missing_ok=True)
        deployment_path(self.home, DEVNET_CHAIN_ID).unlink(missing_ok=True)
        logger.info("reset the devnet of %s", self.home)

    def status(self) -> DevnetStatus:
        """Running or not, pid, latest block and whether the contracts are deployed."""
        pid = self._running_pid()
        running = pid is not None and self._chain_id() == DEVNET_CHAIN_ID
        block = None
        try:
            record = read_deployment_record(self.home, DEVNET_CHAIN_ID)
        except ChainError:
            record = None  # unreadable: up() redeploys
        deployed = record is not None
        if running:
            result = _rpc(self.url, "eth_blockNumber")
            block = int(result, 16) if isinstance(result, str) else None
            if record is not None:
                try:
                    deployed = deployment_is_live(open_web3(self.url), record)
                except ChainError:
                    deployed = False
        return DevnetStatus(
            running=running,
            url=self.url,
            pid=pid,
            chain_id=DEVNET_CHAIN_ID,
            block=block,
            state_file=self.state_file,
            deployed=deployed,
        )

    def deployer(self) -> Signer:
        """anvil's first default account, the devnet's deployer and contract owner."""
        return Signer("devnet-deployer", _deployer_account(), dev=True)

    def client(self, params: DeployParams | None = None) -> ChainClient:
        """``up()``, then a :class:`ChainClient` on the devnet (named ``"devnet"``)."""
        self.up(params)
        w3 = open_web3(self.url)
        deployment = load_deployment(self.home, DEVNET_CHAIN_ID, w3)
        if deployment is None:  # pragma: no cover - up() just wrote it
            raise ChainError(f"the devnet at {self.url} has no deployment; run `ogkit chain up`")
        record = read_deployment_record(self.home, DEVNET_CHAIN_ID) or {}
        return ChainClient(
            w3,
            deployment,
            name="devnet",
            kind="devnet",
            deployer=self.deployer(),
            first_block=int(record.get("first_block", 0)),
        )

    def fund_dev_accounts(self, addresses: list[str], *, eth: int, opg: int) -> None:
        """Top ``addresses`` up to ``eth`` wei and ``opg`` OPG base units from the deployer;
        accounts that already hold as much are left alone (idempotent)."""
        from eth_utils import to_checksum_address

        chain = self.client()
        token = chain.contract("OPGToken")
        deployer = self.deployer()
        for raw in addresses:
            address = to_checksum_address(raw)
            balance = int(chain.w3.eth.get_balance(address))
            if balance < eth:
                chain.transfer_eth(deployer, address, eth - balance)
            held = int(chain.call(token.functions.balanceOf(address)))
            if held < opg:
                chain.transact(token.functions.transfer(address, opg - held), deployer)
            logger.debug("dev account %s funded", address)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _getpgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError, AttributeError):
        return None
