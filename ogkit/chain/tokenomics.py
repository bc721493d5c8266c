"""The OPG allocations: the tokenomics table as data, the mint plan, and the deployment that
mints the whole supply at once into beneficiaries and OpenZeppelin vesting wallets.

:data:`ALLOCATIONS` is OpenGradient's published OPG tokenomics table. :func:`plan_allocations`
turns it into exact amounts for a launch time and one beneficiary per allocation: the part
liquid at launch goes to the beneficiary itself, the rest to an ``OPGVesting`` wallet
(OpenZeppelin's ``VestingWalletCliff``) owned by the beneficiary.
:func:`deploy_token_with_allocations` deploys those wallets, then ``OPGToken``, whose
constructor mints every planned amount; there is no minting afterwards.

How the table's words become numbers:

* A month is 365.25 / 12 days, :data:`MONTH` = 2,629,800 seconds (12 months are one mean
  Julian year; 96 months are 8 such years).
* "12-month cliff, then linear over 36 months" means nothing vests for 12 months, then the
  allocation vests linearly (1/36 a month) over the following 36. The wallet is deployed with
  ``start = launch + 12 months``, ``duration = 36 months`` and its own ``cliff = 0``: there is
  no jump at the end of the cliff. (OpenZeppelin's reading of a cliff, ``start = launch``,
  ``duration = 48 months``, ``cliff = 12 months``, would release a quarter at once after
  12 months; ogkit does not use it.)
* "10% at launch, the rest linear over 60 months": 10% to the beneficiary, 90% to a wallet
  with ``start = launch``, ``duration = 60 months``.

Amounts are exact integers that add up to :data:`TOTAL_SUPPLY`: an allocation is
``total * share_bps // 10_000``, its liquid part ``amount * launch_bps // 10_000``, and its
vested part the rest of it. Rounding dust therefore stays inside each allocation's vested
part, and the dust of the shares goes to the first allocation (Ecosystem)'s vested part.
With the real table and supply there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth_utils import is_address, to_checksum_address

from ogkit.chain.bindings import OPG, load_compiled
from ogkit.chain.transactions import transact
from ogkit.errors import ChainError, ConfigError, SettlementError

if TYPE_CHECKING:
    from web3 import Web3

__all__ = [
    "ALLOCATIONS",
    "BPS",
    "MONTH",
    "TOTAL_SUPPLY",
    "Allocation",
    "AllocationPlan",
    "TokenDeployment",
    "deploy_token_with_allocations",
    "devnet_beneficiaries",
    "mint_list",
    "plan_allocations",
]

TOTAL_SUPPLY = 1_000_000_000 * OPG
"""``OPGToken.TOTAL_SUPPLY``: one billion OPG in base units."""
BPS = 10_000
"""Basis points in a whole."""
MONTH = 2_629_800
"""One month in seconds: 365.25 / 12 days."""
_UINT64 = 2**64


@dataclass(frozen=True)
class Allocation:
    """One row of the tokenomics table."""

    name: str
    """Key of the allocation in ``beneficiaries`` and in the results."""
    share_bps: int
    """Share of the total supply, in basis points."""
    launch_bps: int
    """Part of the allocation liquid at launch, in basis points of the allocation."""
    cliff: int
    """Seconds after launch during which nothing of the rest vests."""
    duration: int
    """Seconds of linear vesting of the rest, from the end of the cliff."""


ALLOCATIONS: tuple[Allocation, ...] = (
    Allocation("ecosystem", 4_000, 1_000, 0, 60 * MONTH),
    Allocation("foundation", 1_500, 3_300, 0, 48 * MONTH),
    Allocation("contributors", 1_500, 0, 12 * MONTH, 36 * MONTH),
    Allocation("investors", 1_000, 0, 12 * MONTH, 36 * MONTH),
    Allocation("staking_rewards", 1_000, 0, 0, 96 * MONTH),
    Allocation("liquidity", 600, BPS, 0, 0),
    Allocation("airdrop", 400, BPS, 0, 0),
)
"""The OPG allocations, in the order of the published table."""


@dataclass(frozen=True)
class AllocationPlan:
    """What one allocation mints: ``launch_amount`` to ``beneficiary`` and ``vested_amount``
    to an ``OPGVesting(beneficiary, start, duration, cliff)`` wallet (none when it is 0)."""

    name: str
    beneficiary: str
    amount: int
    """The whole allocation in base units: ``launch_amount + vested_amount``."""
    launch_amount: int
    vested_amount: int
    start: int
    """Unix time at which linear vesting begins: launch plus the allocation's cliff."""
    duration: int
    """Seconds from ``start`` until the wallet holds nothing unvested."""
    cliff: int = 0
    """The wallet's own cliff, seconds after ``start``; 0 for every row of the table."""

    @property
    def end(self) -> int:
        """Unix time from which the whole vested part is releasable."""
        return self.start + self.duration

    def vested_at(self, timestamp: int) -> int:
        """Base units of the vested part vested at ``timestamp``, as the wallet computes it."""
        if timestamp < self.start + self.cliff:
            return 0
        if timestamp >= self.end:
            return self.vested_amount
        return self.vested_amount * (timestamp - self.start) // self.duration


@dataclass(frozen=True)
class TokenDeployment:
    """The result of :func:`deploy_token_with_allocations`."""

    token: Any
    """The ``OPGToken`` web3 contract."""
    vesting_wallets: dict[str, str]
    """``OPGVesting`` address by allocation name (only allocations with a vested part)."""
    plan: tuple[AllocationPlan, ...]
    gas_used: dict[str, int] = field(default_factory=dict)
    """Gas of each deployment: ``"OPGVesting:<allocation>"`` and ``"OPGToken"``."""


# --------------------------------------------------------------------------- planning


def _table_problems(allocations: Sequence[Allocation]) -> list[str]:
    problems = []
    names = [a.name for a in allocations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"allocation names appear more than once: {', '.join(duplicates)}")
    total_bps = sum(a.share_bps for a in allocations)
    if total_bps != BPS:
        problems.append(f"shares add up to {total_bps} bps, not {BPS}")
    for a in allocations:
        if not 0 < a.share_bps <= BPS:
            problems.append(f"{a.name}: share_bps {a.share_bps} is not in 1..{BPS}")
        if not 0 <= a.launch_bps <= BPS:
            problems.append(f"{a.name}: launch_bps {a.launch_bps} is not in 0..{BPS}")
        if a.cliff < 0 or a.duration < 0:
            problems.append(f"{a.name}: cliff and duration must not be negative")
        if a.launch_bps == BPS and (a.cliff or a.duration):
            problems.append(f"{a.name}: all of it is liquid at launch, yet it has a schedule")
    return problems


def _beneficiary_problems(
    allocations: Sequence[Allocation], beneficiaries: Mapping[str, str]
) -> list[str]:
    names = [a.name for a in allocations]
    problems = []
    missing = [n for n in names if n not in beneficiaries]
    if missing:
        problems.append(f"no beneficiary for {', '.join(missing)}")
    unknown = sorted(set(beneficiaries) - set(names))
    if unknown:
        problems.append(f"beneficiaries for unknown allocations: {', '.join(unknown)}")
    for name in names:
        address = beneficiaries.get(name)
        if address is None:
            continue
        if not isinstance(address, str) or not is_address(address):
            problems.append(f"{name}: beneficiary {address!r} is not an address")
        elif int(address, 16) == 0:
            problems.append(f"{name}: beneficiary is the zero address")
    return problems


def plan_allocations(
    launch: int,
    beneficiaries: Mapping[str, str],
    *,
    allocations: Sequence[Allocation] = ALLOCATIONS,
    total: int = TOTAL_SUPPLY,
) -> list[AllocationPlan]:
    """Exact amounts and vesting schedules of every allocation for a launch at Unix time
    ``launch``, one :class:`AllocationPlan` per allocation in table order; their ``amount``
    add up to ``total`` exactly (see the module docstring for where rounding dust goes).

    ``beneficiaries`` maps every allocation name to an address. All problems with it, the
    table or ``launch`` are reported together in one :class:`~ogkit.errors.ConfigError`.
    """
    problems = _table_problems(allocations) + _beneficiary_problems(allocations, beneficiaries)
    if total <= 0:
        problems.append(f"total {total} is not positive")
    latest_end = launch + max((a.cliff + a.duration for a in allocations), default=0)
    if launch < 0 or latest_end >= _UINT64:
        problems.append(f"launch {launch} does not leave every schedule within uint64 seconds")
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) with the OPG allocations: " + "; ".join(problems)
        )
    amounts = [total * a.share_bps // BPS for a in allocations]
    amounts[0] += total - sum(amounts)
    plan = []
    for a, amount in zip(allocations, amounts, strict=True):
        launch_amount = amount * a.launch_bps // BPS
        plan.append(
            AllocationPlan(
                name=a.name,
                beneficiary=to_checksum_address(beneficiaries[a.name]),
                amount=amount,
                launch_amount=launch_amount,
                vested_amount=amount - launch_amount,
                start=launch + a.cliff,
                duration=a.duration,
            )
        )
    return plan


def mint_list(
    plan: Iterable[AllocationPlan], vesting_wallets: Mapping[str, str]
) -> tuple[list[str], list[int]]:
    """The ``OPGToken`` constructor arguments ``(recipients, amounts)`` for ``plan``: per
    allocation in order, its liquid part to the beneficiary and its vested part to its wallet
    in ``vesting_wallets``; zero parts are left out."""
    recipients: list[str] = []
    amounts: list[int] = []
    for p in plan:
        if p.launch_amount:
            recipients.append(p.beneficiary)
            amounts.append(p.launch_amount)
        if p.vested_amount:
            if p.name not in vesting_wallets:
                raise ConfigError(f"no vesting wallet for the vested part of {p.name}")
            recipients.append(to_checksum_address(vesting_wallets[p.name]))
            amounts.append(p.vested_amount)
    return recipients, amounts


def devnet_beneficiaries(deployer: Any) -> dict[str, str]:
    """Every allocation to ``deployer`` (an address, :class:`~ogkit.keys.Signer` or
    ``LocalAccount``): on a devnet it then holds the liquid parts, 189,500,000 OPG, to fund
    test accounts with, and owns every vesting wallet."""
    address = to_checksum_address(getattr(deployer, "address", deployer))
    return {a.name: address for a in ALLOCATIONS}


# --------------------------------------------------------------------------- deploying


def _deploy(
    w3: Web3, compiled: Mapping[str, Any], label: str, deployer: Any, *args: Any
) -> tuple[Any, int]:
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    try:
        receipt = transact(w3, factory.constructor(*args), deployer)
    except SettlementError as exc:
        raise ChainError(f"deploying {label} failed: {exc.reason or exc}") from exc
    except ChainError as exc:
        raise ChainError(f"deploying {label} failed: {exc}") from exc
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError(f"deploying {label} failed: the receipt has no contract address")
    return w3.eth.contract(address=address, abi=compiled["abi"]), int(receipt["gasUsed"])


def deploy_token_with_allocations(
    w3: Web3,
    deployer: Any,
    beneficiaries: Mapping[str, str],
    launch: int,
    *,
    compiled: Callable[[str], Mapping[str, Any]] = load_compiled,
) -> TokenDeployment:
    """Deploy one ``OPGVesting`` wallet per allocation with a vested part, then ``OPGToken``
    minting the plan of :func:`plan_allocations` ``(launch, beneficiaries)``, all from
    ``deployer`` (any sender :func:`~ogkit.chain.transactions.transact` takes).

    ``compiled`` gives the build artefact of a contract by name (default
    :func:`~ogkit.chain.bindings.load_compiled`). The deployer pays the gas and receives
    nothing unless it is a beneficiary (:func:`devnet_beneficiaries`). A failed deployment
    raises :class:`~ogkit.errors.ChainError` naming it; wallets already deployed stay behind.
    """
    plan = plan_allocations(launch, beneficiaries)
    if isinstance(deployer, str):
        deployer = to_checksum_address(deployer)
    vesting = compiled("OPGVesting")
    wallets: dict[str, str] = {}
    gas: dict[str, int] = {}
    for p in plan:
        if not p.vested_amount:
            continue
        label = f"OPGVesting:{p.name}"
        wallet, gas[label] = _deploy(
            w3, vesting, label, deployer, p.beneficiary, p.start, p.duration, p.cliff
        )
        wallets[p.name] = wallet.address
    recipients, amounts = mint_list(plan, wallets)
    token, gas["OPGToken"] = _deploy(
        w3, compiled("OPGToken"), "OPGToken", deployer, recipients, amounts
    )
    return TokenDeployment(token=token, vesting_wallets=wallets, plan=tuple(plan), gas_used=gas)
