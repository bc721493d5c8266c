"""Deployments of the four contracts: deploying them, and the ``<home>/deployments`` files.

:func:`deploy_contracts` deploys and wires ``OPGToken``, ``ModelRegistry``,
``NodeRegistry`` and ``InferenceSettlement`` with :class:`DeployParams` and returns a
:class:`Deployment` (the web3 contract objects). :func:`deploy_to` does the same from a
:class:`~ogkit.keys.Signer` and records the result in
``<home>/deployments/<chain id>.json`` (written atomically): addresses, deployer, deployment
block and its hash, the parameters, gas used and the hashes of the compiled build
artefacts. :func:`load_deployment` binds such a record to a Web3 again;
:func:`deployment_is_live` checks that the chain still has it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound

from ogkit.chain.bindings import CONTRACT_NAMES, OPG, compiled_hashes, load_compiled
from ogkit.chain.tokenomics import deploy_token_with_allocations, devnet_beneficiaries
from ogkit.chain.transactions import forget_nonce, transact
from ogkit.errors import ChainError, ConfigError, SettlementError
from ogkit.keys import Signer

__all__ = [
    "DEPLOYMENT_FORMAT",
    "DeployParams",
    "Deployment",
    "compiled_changed",
    "deploy_contracts",
    "deploy_to",
    "deployment_is_live",
    "deployment_path",
    "load_deployment",
    "params_from_json",
    "params_to_json",
    "read_deployment_record",
    "require_home",
]

logger = logging.getLogger(__name__)

DEPLOYMENT_FORMAT = 1

_HOUR = 3600
_DAY = 24 * _HOUR


@dataclass(frozen=True)
class DeployParams:
    """Constructor parameters of the contracts; the defaults are the documented ones
    (docs/contracts.md, "Parameters and defaults", with the cheating inequality).

    Amounts are in OPG base units (``OPG`` = 10**18), periods in seconds, shares in basis
    points (10,000 = 100 %).
    """

    min_node_stake: int = 1_000 * OPG
    """Own stake an inference node needs to register and to commit batches."""
    min_verifier_stake: int = 1_000 * OPG
    """Own stake a verifier needs for its verdicts and votes to weigh anything."""
    unbonding_period: int = 7 * _DAY
    """Seconds between undelegate/unstake and withdraw; at least twice the challenge window."""
    challenge_window: int = _HOUR
    """Seconds after commit for challenges (finalise after it); also a dispute's voting time
    and the grace a node has to finalise before the requester may expire the batch."""
    quorum_bps: int = 6667
    """Share of verifier stake (at the block before the commit, or before a dispute opened)
    needed to finalise or to decide a dispute. More than half."""
    node_fee_bps: int = 1_000
    """Node fee as a share of the model payment (price x rows), escrowed on top of it."""
    verifier_fee_bps: int = 500
    """Verifier fee as a share of the model payment, escrowed on top of it."""
    challenge_bond: int = 100 * OPG
    """OPG a challenger posts; lost if the challenge is rejected (half to the requester, the
    rest to the node), back if it is voided."""
    collateral_bps: int = 100_000
    """Collateral per open batch as a multiple of its escrow (100,000 = 10x): the operator's
    own active stake must cover the sum over its open batches, and an upheld challenge takes
    it from that own stake (its pool loses the same fraction)."""
    min_slash: int = 1_000 * OPG
    """The least an upheld challenge takes from the operator's own stake, even when free."""
    challenger_reward_bps: int = 5_000
    """Share of the part slashed from the operator's (or pass-attester's) own stake paid to
    the challenger; the rest of the slash is burned."""
    verifier_slash_bps: int = 1_000
    """Share of a verifier's pool slashed for a pass verdict on a batch found fraudulent."""
    claim_max_age: int = 7 * _DAY
    """How old a claim's timestamp may be when it is committed (and at most 5 min ahead)."""
    governance_voting_delay: int = _DAY
    """Seconds a measurement proposal is open for votes (then executable for as long)."""
    governance_quorum_bps: int = 5_000
    """Turnout (yes + no) a proposal needs, as a share of the total stake at its creation."""
    production: bool = False
    """A production deployment refuses software-enclave measurements (kind 1)."""
    initial_measurements: tuple[bytes, ...] = ()
    """Measurements (bytes32, e.g. the software enclave's runtime id) approved at deploy."""
    initial_kinds: tuple[int, ...] = ()
    """Their kinds (1 software, 2 TDX, 3 SGX, 4 Nitro); empty means all software (1)."""

    def __post_init__(self) -> None:
        for name in ("governance_quorum_bps",):
            value = getattr(self, name)
            if not 0 < value <= 10_000:
                raise ConfigError(f"DeployParams.{name} must be in 1..10000, got {value}")
        if not 5_000 < self.quorum_bps <= 10_000:
            raise ConfigError(
                f"DeployParams.quorum_bps must be in 5001..10000, got {self.quorum_bps}"
            )
        for name in (
            "node_fee_bps",
            "verifier_fee_bps",
            "challenger_reward_bps",
            "verifier_slash_bps",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 10_000:
                raise ConfigError(f"DeployParams.{name} must be in 0..10000, got {value}")
        if self.collateral_bps < 10_000:
            raise ConfigError(
                f"DeployParams.collateral_bps must be at least 10000 (1x the escrow), "
                f"got {self.collateral_bps}"
            )
        if self.challenge_window <= 0 or self.claim_max_age <= 0:
            raise ConfigError("DeployParams.challenge_window and claim_max_age must be positive")
        if self.unbonding_period < 2 * self.challenge_window:
            raise ConfigError(
                f"DeployParams.unbonding_period ({self.unbonding_period} s) must be at least "
                f"twice the challenge window ({self.challenge_window} s), so that stake counted "
                "for a batch is still slashable when its dispute resolves"
            )
        if self.min_node_stake < self.min_slash:
            raise ConfigError(
                f"DeployParams.min_node_stake ({self.min_node_stake}) must be at least "
                f"min_slash ({self.min_slash}): the own stake a node commits with must cover "
                "the least an upheld challenge takes from it, or the challenger's reward could "
                "come out of its delegators' stake"
            )
        for m in self.initial_measurements:
            if len(m) != 32:
                raise ConfigError(f"initial measurement must be 32 bytes, got {len(m)}")
        if self.initial_kinds and len(self.initial_kinds) != len(self.initial_measurements):
            raise ConfigError("DeployParams.initial_kinds must match initial_measurements")
        if any(k not in (1, 2, 3, 4) for k in self.initial_kinds):
            raise ConfigError("DeployParams.initial_kinds must be 1..4")

    @property
    def kinds(self) -> list[int]:
        """The kind of each initial measurement (software unless given)."""
        return list(self.initial_kinds) or [1] * len(self.initial_measurements)


@dataclass(frozen=True)
class Deployment:
    """Addresses and web3 contract objects of one deployment of the four contracts."""

    token: Any
    model_registry: Any
    node_registry: Any
    settlement: Any
    params: DeployParams
    chain_id: int
    deployer: str
    block_number: int
    gas_used: Mapping[str, int] = field(default_factory=dict)

    @property
    def addresses(self) -> dict[str, str]:
        """Contract name -> checksum address."""
        return {
            "OPGToken": self.token.address,
            "ModelRegistry": self.model_registry.address,
            "NodeRegistry": self.node_registry.address,
            "InferenceSettlement": self.settlement.address,
        }


class BoundToChain(Protocol):
    """Anything that holds a Web3 and a deployment, such as a ``ChainClient``."""

    w3: Web3
    deployment: Deployment


# --------------------------------------------------------------------------- deploying


def _address(sender: Any) -> str:
    return to_checksum_address(getattr(sender, "address", sender))


def _deploy(w3: Web3, name: str, deployer: Any, *args: Any) -> tuple[Any, int]:
    compiled = load_compiled(name)
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    try:
        receipt = transact(w3, factory.constructor(*args), deployer)
    except SettlementError as exc:
        raise ChainError(f"deploying {name} failed: {exc.reason or exc}") from exc
    except ChainError as exc:
        raise ChainError(f"deploying {name} failed: {exc}") from exc
    if not receipt.get("contractAddress"):
        tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
        raise ChainError(f"deploying {name} failed in {tx_hash}")
    address = receipt["contractAddress"]
    logger.info("deployed %s at %s (gas %s)", name, address, receipt["gasUsed"])
    return w3.eth.contract(address=address, abi=compiled["abi"]), int(receipt["gasUsed"])


def deploy_contracts(
    w3: Web3,
    deployer: Any,
    params: DeployParams | None = None,
    *,
    beneficiaries: Mapping[str, str] | None = None,
) -> Deployment:
    """Deploy OPGToken, ModelRegistry, NodeRegistry and InferenceSettlement from ``deployer``
    and wire NodeRegistry to the settlement contract.

    ``deployer`` is any sender :func:`~ogkit.chain.transactions.transact` takes: an
    unlocked address, a :class:`~ogkit.keys.Signer` or a ``LocalAccount``. The OPG
    allocations go to ``beneficiaries`` (allocation name -> address, as
    :func:`~ogkit.chain.tokenomics.plan_allocations` takes them); without them, a devnet
    arrangement, the deployer is every beneficiary (:func:`devnet_beneficiaries`), which a
    production deployment (``params.production``) refuses. The NodeRegistry's bootstrap
    phase is left open (the deployer can still approve measurements with
    ``bootstrapMeasurement`` until it calls ``closeBootstrap``).
    """
    params = params or DeployParams()
    address = _address(deployer)
    if beneficiaries is None and params.production:
        raise ConfigError(
            "a production deployment needs its allocation beneficiaries (beneficiaries=): "
            "without them the deployer would receive the whole OPG supply"
        )
    if isinstance(deployer, str):
        deployer = address
    gas: dict[str, int] = {}
    launch = int(w3.eth.get_block("latest")["timestamp"])
    allocations = beneficiaries if beneficiaries is not None else devnet_beneficiaries(address)
    minted = deploy_token_with_allocations(w3, deployer, allocations, launch)
    token = minted.token
    gas.update(minted.gas_used)
    models, gas["ModelRegistry"] = _deploy(w3, "ModelRegistry", deployer)
    nodes, gas["NodeRegistry"] = _deploy(
        w3,
        "NodeRegistry",
        deployer,
        token.address,
        params.min_node_stake,
        params.min_verifier_stake,
        params.unbonding_period,
        params.governance_voting_delay,
        params.governance_quorum_bps,
        params.production,
        [bytes(m) for m in params.initial_measurements],
        params.kinds,
    )
    judge, gas["ZkJudge"] = _deploy(w3, "ZkJudge", deployer)
    settlement, gas["InferenceSettlement"] = _deploy(
        w3,
        "InferenceSettlement",
        deployer,
        token.address,
        models.address,
        nodes.address,
        (
            params.challenge_window,
            params.quorum_bps,
            params.node_fee_bps,
            params.verifier_fee_bps,
            params.challenge_bond,
            params.collateral_bps,
            params.min_slash,
            params.challenger_reward_bps,
            params.verifier_slash_bps,
            params.claim_max_age,
        ),
        judge.address,
    )
    receipt = transact(w3, judge.functions.setSettlement(settlement.address), deployer)
    gas["ZkJudge.setSettlement"] = int(receipt["gasUsed"])
    receipt = transact(w3, nodes.functions.setSettlement(settlement.address), deployer)
    gas["setSettlement"] = int(receipt["gasUsed"])
    return Deployment(
        token=token,
        model_registry=models,
        node_registry=nodes,
        settlement=settlement,
        params=params,
        chain_id=int(w3.eth.chain_id),
        deployer=address,
        block_number=int(receipt["blockNumber"]),
        gas_used=gas,
    )


# --------------------------------------------------------------------------- deployment files


def require_home(home: Path | str | None, what: str) -> Path:
    """``home`` as a Path; a ConfigError that says where it comes from when it is missing."""
    if home is None:
        raise ConfigError(
            f"{what} needs the ogkit home: pass home= (on the command line --home, else "
            "$OGKIT_HOME; in code ogkit.settings.Settings.from_env().home)"
        )
    return Path(home)


def deployment_path(home: Path, chain_id: int) -> Path:
    """``<home>/deployments/<chain_id>.json``."""
    return require_home(home, "the deployment file") / "deployments" / f"{chain_id}.json"


def params_to_json(params: DeployParams) -> dict[str, Any]:
    """``params`` as the JSON object of a deployment record."""
    data = asdict(params)
    data["initial_measurements"] = ["0x" + bytes(m).hex() for m in params.initial_measurements]
    data["initial_kinds"] = list(params.initial_kinds)
    return data


def params_from_json(data: Mapping[str, Any]) -> DeployParams:
    """The :class:`DeployParams` of a deployment record's ``params`` (unknown keys ignored)."""
    known = {f.name for f in fields(DeployParams)}
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs["initial_measurements"] = tuple(
        bytes.fromhex(str(m).removeprefix("0x")) for m in data.get("initial_measurements", [])
    )
    kwargs["initial_kinds"] = tuple(int(k) for k in data.get("initial_kinds", []))
    return DeployParams(**kwargs)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_deployment_record(home: Path, chain_id: int) -> dict[str, Any] | None:
    """The raw deployment file of ``chain_id`` as a dict, or None if there is none."""
    path = deployment_path(home, chain_id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ChainError(
            f"deployment file {path} is unreadable ({exc}); delete it and deploy again"
        ) from None
    if not isinstance(record, dict) or int(record.get("chain_id", -1)) != int(chain_id):
        raise ChainError(
            f"deployment file {path} is not a deployment for chain {chain_id}; "
            "delete it and deploy again"
        )
    return record


def _deployment_from_record(record: Mapping[str, Any], w3: Web3) -> Deployment:
    try:
        addresses = record["addresses"]
        contracts = {
            name: w3.eth.contract(
                address=to_checksum_address(addresses[name]), abi=load_compiled(name)["abi"]
            )
            for name in CONTRACT_NAMES
        }
        return Deployment(
            token=contracts["OPGToken"],
            model_registry=contracts["ModelRegistry"],
            node_registry=contracts["NodeRegistry"],
            settlement=contracts["InferenceSettlement"],
            params=params_from_json(record.get("params", {})),
            chain_id=int(record["chain_id"]),
            deployer=to_checksum_address(record["deployer"]),
            block_number=int(record["block_number"]),
            gas_used=dict(record.get("gas_used", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainError(
            f"deployment record for chain {record.get('chain_id')} is incomplete ({exc!r}); "
            "delete it and deploy again"
        ) from None


def load_deployment(home: Path, chain_id: int, w3: Web3) -> Deployment | None:
    """The deployment recorded in ``<home>/deployments/<chain_id>.json`` bound to ``w3``, or
    None if there is no such file. Warns when the build artefacts changed since it was
    deployed."""
    record = read_deployment_record(home, chain_id)
    if record is None:
        return None
    if compiled_changed(record):
        logger.warning(
            "the compiled contracts changed since the deployment on chain %s; the deployed "
            "contracts may not match this ogkit",
            chain_id,
        )
    return _deployment_from_record(record, w3)


def compiled_changed(record: Mapping[str, Any]) -> bool:
    """Whether the compiled build artefacts differ from those the recorded deployment was
    built from (the record's ``artifacts`` hashes)."""
    recorded = record.get("artifacts") or {}
    current = compiled_hashes()
    return any(
        (recorded.get(name) or {}).get("bytecodeSha256") != current[name]["bytecodeSha256"]
        for name in CONTRACT_NAMES
    )


def deployment_is_live(w3: Web3, record: Mapping[str, Any]) -> bool:
    """Whether the recorded contracts exist on the chain behind ``w3`` (code at every address
    and, where recorded, the same block hash at the deployment block)."""
    for address in (record.get("addresses") or {}).values():
        if len(w3.eth.get_code(to_checksum_address(address))) == 0:
            return False
    if len(record.get("addresses") or {}) != len(CONTRACT_NAMES):
        return False
    block_hash = record.get("block_hash")
    if block_hash:
        try:
            block = w3.eth.get_block(int(record["block_number"]))
        except BlockNotFound:
            return False
        if HexBytes(block["hash"]).to_0x_hex() != str(block_hash).lower():
            return False
    return True


def deploy_to(
    client_or_w3: BoundToChain | Web3,
    deployer: Signer,
    params: DeployParams | None = None,
    *,
    home: Path | None = None,
    beneficiaries: Mapping[str, str] | None = None,
) -> Deployment:
    """Deploy the four contracts from ``deployer`` (signed locally) and record them;
    ``beneficiaries`` as :func:`deploy_contracts` takes them.

    Writes ``<home>/deployments/<chain id>.json`` atomically: addresses, deployer, deployment
    block and its hash, the :class:`DeployParams`, gas used and the build artefacts' hashes.
    With a ``ChainClient``, its ``deployment`` is replaced by the new one.
    """
    home = require_home(home, "deploy_to")
    w3 = client_or_w3 if isinstance(client_or_w3, Web3) else client_or_w3.w3
    params = params or DeployParams()
    chain_id = int(w3.eth.chain_id)
    first_block = int(w3.eth.block_number) + 1
    logger.info("deploying the ogkit contracts to chain %s from %s", chain_id, deployer.address)
    # The chain may be new (a devnet whose state was lost): ask it for the nonce.
    forget_nonce(w3, chain_id, deployer.address)
    deployed = deploy_contracts(w3, deployer, params, beneficiaries=beneficiaries)
    block = w3.eth.get_block(deployed.block_number)
    record = {
        "format": DEPLOYMENT_FORMAT,
        "chain_id": chain_id,
        "deployer": deployed.deployer,
        "block_number": deployed.block_number,
        "first_block": first_block,
        "block_hash": HexBytes(block["hash"]).to_0x_hex(),
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "addresses": deployed.addresses,
        "params": params_to_json(params),
        "gas_used": dict(deployed.gas_used),
        "artifacts": compiled_hashes(),
    }
    path = deployment_path(home, chain_id)
    _write_json_atomic(path, record)
    logger.info("wrote deployment of chain %s to %s", chain_id, path)
    deployment = _deployment_from_record(record, w3)
    if not isinstance(client_or_w3, Web3):
        client_or_w3.deployment = deployment
    return deployment
