"""``ogkit network up | down | status``: the whole network on localhost, one command.

``up`` starts the devnet (anvil), sets up the settlement game on it for dev keys (the
sample model published and registered, the inference node staked with its enclave key
bound, three verifiers staked, a requester funded with its allowance), then starts, each
as its own process in its own process group:

- the x402 facilitator (``ogkit facilitator serve``),
- the inference node on a Dask LocalCluster (``ogkit node serve``),
- three verifier daemons (``ogkit verifier run``).

Everything is under ``<home>/network/``: ``logs/<name>.log``, ``pids/<name>.json`` (pid,
command, URL), ``network.json`` (the URLs a client needs). ``down`` stops every process
group it started (SIGTERM, then SIGKILL after a timeout) and the devnet; ``status`` reads
the pid files, the daemons' state files and the node's ``/health``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ogkit.errors import ConfigError, OgkitError

__all__ = ["NetworkPlan", "ProcessStatus", "network_down", "network_status", "network_up"]

log = logging.getLogger(__name__)

OPG = 10**18
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class NetworkPlan:
    """What ``network up`` starts. Key names are dev keys in the home (created if absent)."""

    model: str = "tab@1.0.0"
    verifiers: int = 3
    node_workers: int = 1
    sample_rate: float = 0.05
    poll: float = 1.0
    node_key: str = "node"
    attester_key: str = "enclave"
    owner_key: str = "owner"
    requester_key: str = "requester"
    facilitator_key: str = "facilitator"
    data_roots: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # the processes' environment

    def verifier_keys(self) -> list[str]:
        return [f"verifier-{i}" for i in range(1, self.verifiers + 1)]


@dataclass
class ProcessStatus:
    name: str
    pid: int | None
    running: bool
    url: str | None = None
    log: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _dirs(home: Path) -> tuple[Path, Path, Path]:
    root = Path(home) / "network"
    return root, root / "logs", root / "pids"


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(doc), indent=2, sort_keys=True))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22); None
    without ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _ours(pid: int, command: list[str], ticks: int | None = None) -> bool:
    """Whether ``pid`` is still the process we started: it runs an ``ogkit`` command, the
    one in its pid file, as the leader of its own process group, and (where ``/proc``
    tells) it started when the pid file says. A recycled pid, or a pid file pointing at
    any other process, is not ours: nothing else is ever signalled."""
    if pid <= 1 or pid == os.getpid() or command[1:3] != ["-m", "ogkit.cli"]:
        return False
    if not _alive(pid):
        return False
    try:
        if os.getpgid(pid) != pid:
            return False  # every process we start leads its own session and group
    except ProcessLookupError:
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): the pid file and the group are all there is
    if [a.decode(errors="replace") for a in raw.split(b"\0") if a] != command:
        return False
    return ticks is not None and _start_ticks(pid) == ticks


def _pid_doc(doc: Any) -> tuple[int, list[str], int | None]:
    """The pid, command and start time of a pid file's document (ValueError if malformed)."""
    if not isinstance(doc, dict):
        raise ValueError("not a pid file")
    pid, command, ticks = doc.get("pid"), doc.get("command"), doc.get("start_ticks")
    if isinstance(pid, bool) or not isinstance(pid, int) or not isinstance(command, list):
        raise ValueError("no pid or command")
    if not all(isinstance(a, str) for a in command):
        raise ValueError("a malformed command")
    if ticks is not None and (isinstance(ticks, bool) or not isinstance(ticks, int)):
        raise ValueError("a malformed start time")
    return pid, command, ticks


def child_environment(
    parent: Mapping[str, str], extra: Mapping[str, str], args: Sequence[str]
) -> dict[str, str]:
    """The environment of one role's process: this process's and ``extra``, without any
    private key given as ``OGKIT_KEY_<NAME>`` but the ones the role's own command line
    names (``--key``, ``--attester-key``): a verifier never holds the node's key, nor the
    node a verifier's."""
    from ogkit.keys import key_env_var

    own = {
        key_env_var(args[i + 1])
        for i, a in enumerate(args[:-1])
        if a in ("--key", "--attester-key")
    }
    merged = {**parent, **extra, "PYTHONUNBUFFERED": "1"}
    return {
        k: v
        for k, v in merged.items()
        if not k.startswith("OGKIT_KEY_") or k == "OGKIT_KEY_PASSWORD" or k in own
    }


def _start(
    name: str,
    args: list[str],
    home: Path,
    env: Mapping[str, str],
    wait_url: bool,
    address: str | None = None,
) -> ProcessStatus:
    """Start ``ogkit ARGS`` in its own session; with ``wait_url`` wait for its ready line."""
    _, logs, pids = _dirs(home)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    pid_path = pids / f"{name}.json"
    if pid_path.exists():
        try:
            old = json.loads(pid_path.read_text())
            if _ours(*_pid_doc(old)):
                return ProcessStatus(name, int(old["pid"]), True, old.get("url"), str(log_path))
        except (OSError, ValueError):
            log.warning("replacing unreadable pid file %s", pid_path)
    command = [sys.executable, "-m", "ogkit.cli", *args]
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            command,
            env=child_environment(os.environ, env, args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    ticks = _start_ticks(proc.pid)
    doc: dict[str, Any] = {
        "pid": proc.pid,
        "command": command,
        "started": time.time(),
        "start_ticks": ticks,
    }
    if address:
        doc["address"] = address
    _write_json(pid_path, doc)
    url = None
    if wait_url:
        deadline = time.monotonic() + READY_TIMEOUT
        while url is None:
            with open(log_path, "rb") as handle:
                handle.seek(offset)
                found = _LISTENING.search(handle.read().decode(errors="replace"))
            if found:
                url = found.group(1)
            elif proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else "did not get ready in time"
                _stop_pid(proc.pid, command, ticks)
                pid_path.unlink(missing_ok=True)
                raise OgkitError(
                    f"{name} {why}; see {log_path} (then `ogkit network down` and up again)"
                )
            else:
                time.sleep(0.2)
        doc["url"] = url
        _write_json(pid_path, doc)
    log.info("started %s (pid %d)%s", name, proc.pid, f" on {url}" if url else "")
    return ProcessStatus(name, proc.pid, True, url, str(log_path))


def _stop_pid(
    pid: int, command: list[str], ticks: int | None, timeout: float = STOP_TIMEOUT
) -> bool:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``timeout``; True if it ran.
    A pid that is not the process we started (see :func:`_ours`) is left alone."""
    if not _ours(pid, command, ticks):
        if _alive(pid):
            log.warning("pid %d is not a process ogkit started (pid reused?): left alone", pid)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _group_alive(pid):
            return True
        time.sleep(0.1)
    log.warning("process group %d did not stop on SIGTERM; killing it", pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of the group leader still count for killpg: look at the leader itself.
    return _alive(pgid) or _group_has_members(pgid)


def _group_has_members(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.exists():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def network_up(
    home: Path,
    plan: NetworkPlan,
    *,
    devnet_port: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start the network of ``home`` (idempotent: what already runs is kept). Returns what
    ``network.json`` holds: the chain, node and facilitator URLs and the processes.
    ``on_step`` is told each step as it is done (the CLI prints them)."""

    def step(text: str) -> None:
        log.info("network up: %s", text)
        if on_step is not None:
            on_step(text)

    from ogkit.chain.devnet import Devnet
    from ogkit.hub import Hub
    from ogkit.jobs.steps import ensure_published
    from ogkit.keys import KeyStore
    from ogkit.load import load_model
    from ogkit.samples import data_dir, sample_model_path
    from ogkit.settle import prepare_dev_settlement

    if plan.verifiers < 1:
        raise ConfigError("a network needs at least one verifier")
    root, _, _ = _dirs(home)
    devnet = Devnet(home, port=devnet_port)
    devnet.up()
    chain = devnet.client()
    step(f"devnet on {devnet.url}")
    keys = KeyStore(home)
    names = [plan.node_key, plan.attester_key, plan.owner_key, plan.requester_key,
             plan.facilitator_key, *plan.verifier_keys()]  # fmt: skip
    signers = {n: keys.ensure_dev_key(n) for n in names}
    devnet.fund_dev_accounts([s.address for s in signers.values()], eth=10**20, opg=1_000_000 * OPG)
    hub = Hub(home=home)
    name, _, version = plan.model.partition("@")
    if name == "tab" and version in ("", "1.0.0"):
        ensure_published(
            hub, sample_model_path("tabular"), name="tab", version="1.0.0", price=1000,
            signer=signers[plan.owner_key],
        )  # fmt: skip
    manifest = hub.manifest(plan.model)
    prepare_dev_settlement(
        chain,
        deployer=devnet.deployer(),
        manifest=manifest,
        runtime_id=load_model(plan.model, hub=hub).runtime_id,
        owner=signers[plan.owner_key],
        node=signers[plan.node_key],
        attester=signers[plan.attester_key],
        requester=signers[plan.requester_key],
        verifiers=[signers[v] for v in plan.verifier_keys()],
        verifier_stakes=tuple((2_000 + 1_000 * i) * OPG for i in range(plan.verifiers)),
    )
    step(f"{plan.model} registered; node, {plan.verifiers} verifiers staked; requester funded")
    env = {**plan.env, "OGKIT_HOME": str(home), "OGKIT_DEVNET_PORT": str(devnet.port)}
    processes = []
    facilitator = _start(
        "facilitator",
        ["facilitator", "serve", "--key", plan.facilitator_key, "--port", "0"],
        home,
        env,
        wait_url=True,
    )
    processes.append(facilitator)
    step(f"facilitator on {facilitator.url}")
    roots = [*plan.data_roots, str(data_dir())]
    node_args = ["node", "serve", "--key", plan.node_key, "--attester-key", plan.attester_key,
                 "--model", plan.model, "--port", "0", "--workers", str(plan.node_workers),
                 "--facilitator", str(facilitator.url)]  # fmt: skip
    for r in roots:
        node_args += ["--data-root", r]
    processes.append(_start("node", node_args, home, env, wait_url=True))
    step(f"inference node on {processes[-1].url}")
    for v in plan.verifier_keys():
        args = ["verifier", "run", "--key", v, "--sample-rate", str(plan.sample_rate),
                "--poll", str(plan.poll)]  # fmt: skip
        processes.append(_start(v, args, home, env, wait_url=False, address=signers[v].address))
        step(f"{v} daemon (pid {processes[-1].pid})")
    doc = {
        "schema": "ogkit.network.v1",
        "chain": devnet.url,
        "chain_id": chain.chain_id,
        "settlement": chain.contract("InferenceSettlement").address,
        "node": processes[1].url,
        "facilitator": facilitator.url,
        "model": plan.model,
        "keys": {n: s.address for n, s in signers.items()},
        "processes": [p.to_dict() for p in processes],
    }
    _write_json(root / "network.json", doc)
    return doc


def network_down(
    home: Path, *, keep_chain: bool = False, devnet_port: int | None = None
) -> list[str]:
    """Stop every process ``network up`` started for ``home`` (daemons first, then the node
    and the facilitator), then the devnet unless ``keep_chain``. Returns what was stopped."""
    from ogkit.chain.devnet import Devnet

    root, _, pids = _dirs(home)
    order = sorted(
        pids.glob("*.json") if pids.exists() else [],
        key=lambda p: (p.stem in ("node", "facilitator"), p.stem == "facilitator", p.stem),
    )
    stopped = []
    for path in order:
        try:
            pid, command, ticks = _pid_doc(json.loads(path.read_text()))
        except (OSError, ValueError):
            log.warning("ignoring unreadable pid file %s", path)
            path.unlink(missing_ok=True)
            continue
        if _stop_pid(pid, command, ticks):
            stopped.append(path.stem)
        path.unlink(missing_ok=True)
    if not keep_chain:
        devnet = Devnet(home, port=devnet_port)
        if devnet.status().running:
            devnet.down()
            stopped.append("devnet")
    (root / "network.json").unlink(missing_ok=True)
    return stopped


def network_status(home: Path, *, devnet_port: int | None = None) -> dict[str, Any]:
    """Each process of the network (running, pid, URL, log), each daemon's progress (last
    block, batches verified and failed, votes, last error, seconds since its last poll),
    the node's ``/health`` and the devnet."""
    from ogkit.chain.devnet import Devnet
    from ogkit.network.cursor import load_state

    root, _, pids = _dirs(home)
    devnet = Devnet(home, port=devnet_port).status()
    processes = []
    names: dict[str, str] = {}
    for path in sorted(pids.glob("*.json")) if pids.exists() else []:
        try:
            doc = json.loads(path.read_text())
            pid, command, ticks = _pid_doc(doc)
        except (OSError, ValueError):
            continue
        if doc.get("address"):
            names[str(doc["address"]).lower()] = path.stem
        running = _ours(pid, command, ticks)
        status = ProcessStatus(path.stem, pid, running, doc.get("url"),
                               str(root / "logs" / f"{path.stem}.log"))  # fmt: skip
        if path.stem == "node" and running and status.url:
            status.detail["health"] = _health(status.url)
        processes.append(status)
    daemons = []
    for role in ("verifier", "challenger"):
        for path in sorted((root / role).glob("*.json")) if (root / role).exists() else []:
            try:
                state = load_state(path)
            except OgkitError as exc:
                daemons.append({"role": role, "file": str(path), "last_error": str(exc)})
                continue
            if state is None:
                continue
            d = state.to_dict()
            daemons.append(
                {
                    "role": role,
                    "name": names.get(state.address.lower(), ""),
                    "address": state.address,
                    "running": state.pid is not None and _alive(state.pid),
                    "next_block": state.next_block,
                    "last_block": state.last_block,
                    "batches_verified": state.batches_verified,
                    "batches_failed": state.batches_failed,
                    "challenges": state.challenges,
                    "votes": state.votes,
                    "done": len(d["done"]),
                    "last_error": state.last_error,
                    "seconds_since_poll": round(time.time() - state.updated_at, 1),
                }
            )
    return {
        "schema": "ogkit.network.status.v1",
        "devnet": {"running": devnet.running, "url": devnet.url, "block": devnet.block},
        "processes": [p.to_dict() for p in processes],
        "daemons": daemons,
    }


def _health(url: str) -> Any:
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=2.0)
        return response.json() if response.status_code == 200 else f"HTTP {response.status_code}"
    except (httpx.HTTPError, ValueError) as exc:
        return f"unreachable: {exc}"
