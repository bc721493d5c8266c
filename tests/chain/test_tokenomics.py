"""The OPG allocations: the plan's exact amounts without a chain, then the deployment into
OPGVesting wallets on a real anvil, its balances and one vesting curve under time travel."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from web3 import Web3

from ogkit.chain.bindings import OPG, load_compiled
from ogkit.chain.devnet import anvil_command
from ogkit.chain.rpc import open_web3
from ogkit.chain.tokenomics import (
    ALLOCATIONS,
    BPS,
    MONTH,
    TOTAL_SUPPLY,
    AllocationPlan,
    TokenDeployment,
    deploy_token_with_allocations,
    devnet_beneficiaries,
    mint_list,
    plan_allocations,
)
from ogkit.chain.transactions import transact
from ogkit.errors import ChainError, ConfigError, SettlementError

from .conftest import free_port

LAUNCH = 1_800_000_000
NAMES = [a.name for a in ALLOCATIONS]
M = 1_000_000 * OPG
# allocation: (amount, liquid at launch) in base units, (start - launch, duration) in seconds
EXPECTED = {
    "ecosystem": (400 * M, 40 * M, 0, 60 * MONTH),
    "foundation": (150 * M, 49_500_000 * OPG, 0, 48 * MONTH),
    "contributors": (150 * M, 0, 12 * MONTH, 36 * MONTH),
    "investors": (100 * M, 0, 12 * MONTH, 36 * MONTH),
    "staking_rewards": (100 * M, 0, 0, 96 * MONTH),
    "liquidity": (60 * M, 60 * M, 0, 0),
    "airdrop": (40 * M, 40 * M, 0, 0),
}
VESTED = {"ecosystem", "foundation", "contributors", "investors", "staking_rewards"}


def addr(i: int) -> str:
    return Web3.to_checksum_address(f"0x{i:040x}")


BENEFICIARIES = {name: addr(0x100 + i) for i, name in enumerate(NAMES)}


# --------------------------------------------------------------------------- the plan


def test_the_table_is_the_published_one() -> None:
    assert list(EXPECTED) == NAMES
    assert sum(a.share_bps for a in ALLOCATIONS) == BPS
    assert MONTH == 365.25 / 12 * 24 * 3600
    assert TOTAL_SUPPLY == 10**27


def test_plan_amounts_are_exact_and_add_up_to_the_supply() -> None:
    plan = plan_allocations(LAUNCH, BENEFICIARIES)
    assert [p.name for p in plan] == NAMES
    assert sum(p.amount for p in plan) == TOTAL_SUPPLY
    for p in plan:
        amount, liquid, delay, duration = EXPECTED[p.name]
        assert (p.amount, p.launch_amount, p.vested_amount) == (amount, liquid, amount - liquid)
        assert (p.start, p.duration, p.cliff) == (LAUNCH + delay, duration, 0)
        assert p.beneficiary == BENEFICIARIES[p.name]
    assert sum(p.launch_amount for p in plan) == 189_500_000 * OPG


def test_contributors_vest_nothing_for_a_year_then_a_36th_a_month() -> None:
    (p,) = [p for p in plan_allocations(LAUNCH, BENEFICIARIES) if p.name == "contributors"]
    cliff_end = LAUNCH + 12 * MONTH
    assert p.vested_at(LAUNCH) == p.vested_at(cliff_end - 1) == p.vested_at(cliff_end) == 0
    assert p.vested_at(cliff_end + MONTH) == p.amount // 36
    assert p.vested_at(cliff_end + 18 * MONTH) == p.amount // 2
    assert p.vested_at(p.end - 1) < p.amount == p.vested_at(p.end) == p.vested_at(p.end + 1)
    assert p.end == LAUNCH + 48 * MONTH


def test_rounding_dust_goes_to_the_vested_parts_and_the_first_allocation() -> None:
    for total in (10**27 + 9_999, 1_000_003, 7):
        plan = plan_allocations(LAUNCH, BENEFICIARIES, total=total)
        assert sum(p.amount for p in plan) == total
        for p, a in zip(plan, ALLOCATIONS, strict=True):
            assert p.launch_amount + p.vested_amount == p.amount
            assert p.launch_amount == p.amount * a.launch_bps // BPS
            if a is not ALLOCATIONS[0]:
                assert p.amount == total * a.share_bps // BPS
        floor_first = total * ALLOCATIONS[0].share_bps // BPS
        dust = total - sum(total * a.share_bps // BPS for a in ALLOCATIONS)
        assert plan[0].amount == floor_first + dust


def test_mint_list_pairs_liquid_parts_with_beneficiaries_and_the_rest_with_wallets() -> None:
    plan = plan_allocations(LAUNCH, BENEFICIARIES)
    wallets = {p.name: addr(0x200 + i) for i, p in enumerate(plan) if p.vested_amount}
    assert set(wallets) == {
        "ecosystem",
        "foundation",
        "contributors",
        "investors",
        "staking_rewards",
    }
    recipients, amounts = mint_list(plan, wallets)
    assert sum(amounts) == TOTAL_SUPPLY and 0 not in amounts
    assert list(zip(recipients, amounts, strict=True)) == [
        (BENEFICIARIES["ecosystem"], 40 * M),
        (wallets["ecosystem"], 360 * M),
        (BENEFICIARIES["foundation"], 49_500_000 * OPG),
        (wallets["foundation"], 100_500_000 * OPG),
        (wallets["contributors"], 150 * M),
        (wallets["investors"], 100 * M),
        (wallets["staking_rewards"], 100 * M),
        (BENEFICIARIES["liquidity"], 60 * M),
        (BENEFICIARIES["airdrop"], 40 * M),
    ]
    with pytest.raises(ConfigError, match="no vesting wallet for the vested part of investors"):
        mint_list(plan, {k: v for k, v in wallets.items() if k != "investors"})


def test_devnet_beneficiaries_give_everything_to_the_deployer() -> None:
    deployer = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    beneficiaries = devnet_beneficiaries(deployer)
    assert beneficiaries == dict.fromkeys(NAMES, Web3.to_checksum_address(deployer))
    plan = plan_allocations(LAUNCH, beneficiaries)
    assert sum(p.launch_amount for p in plan) == 189_500_000 * OPG


def test_every_beneficiary_problem_is_reported_at_once() -> None:
    bad = {k: v for k, v in BENEFICIARIES.items() if k not in ("airdrop", "investors")}
    bad |= {"ecosystem": "0x1234", "foundation": addr(0), "treasury": addr(1)}
    with pytest.raises(ConfigError) as info:
        plan_allocations(LAUNCH, bad)
    message = str(info.value)
    assert message.startswith("4 problem(s) with the OPG allocations")
    for part in (
        "no beneficiary for investors, airdrop",
        "unknown allocations: treasury",
        "ecosystem: beneficiary '0x1234' is not an address",
        "foundation: beneficiary is the zero address",
    ):
        assert part in message


def test_a_broken_table_is_refused() -> None:
    first, *rest = ALLOCATIONS
    broken = [replace(first, share_bps=first.share_bps + 1), *rest, rest[0]]
    with pytest.raises(ConfigError, match="more than once: foundation") as info:
        plan_allocations(LAUNCH, BENEFICIARIES, allocations=broken)
    assert "shares add up to 11501 bps, not 10000" in str(info.value)
    with pytest.raises(ConfigError, match="uint64"):
        plan_allocations(2**64 - MONTH, BENEFICIARIES)


# --------------------------------------------------------------------------- on anvil


@pytest.fixture(scope="module")
def anvil_w3() -> Iterator[Web3]:
    """A fresh anvil (10 unlocked dev accounts with 10,000 ETH each) for this module."""
    port = free_port()
    command = [*anvil_command(), "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                w3 = open_web3(f"http://127.0.0.1:{port}", timeout=1.0)
                break
            except ChainError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield w3
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def deployed(anvil_w3: Web3) -> TokenDeployment:
    w3 = anvil_w3
    deployer, *others = w3.eth.accounts
    beneficiaries = dict(zip(NAMES, others, strict=False))
    launch = int(w3.eth.get_block("latest")["timestamp"])
    return deploy_token_with_allocations(w3, deployer, beneficiaries, launch)


@pytest.fixture
def snapshot(anvil_w3: Web3) -> Iterator[None]:
    """Put anvil (state and time) back where it was before the test."""
    snap = anvil_w3.provider.make_request("evm_snapshot", [])["result"]
    yield
    assert anvil_w3.provider.make_request("evm_revert", [snap])["result"] is True


def vesting(w3: Web3, address: str) -> Any:
    return w3.eth.contract(address=address, abi=load_compiled("OPGVesting")["abi"])


def plan_of(deployed: TokenDeployment, name: str) -> AllocationPlan:
    return next(p for p in deployed.plan if p.name == name)


@pytest.mark.anvil
def test_the_whole_supply_is_minted_into_beneficiaries_and_wallets(
    anvil_w3: Web3, deployed: TokenDeployment
) -> None:
    token = deployed.token.functions
    assert token.totalSupply().call() == token.TOTAL_SUPPLY().call() == TOTAL_SUPPLY
    assert (token.name().call(), token.symbol().call(), token.decimals().call()) == (
        "OpenGradient Token",
        "OPG",
        18,
    )
    holders = {p.beneficiary for p in deployed.plan} | set(deployed.vesting_wallets.values())
    assert sum(token.balanceOf(h).call() for h in holders) == TOTAL_SUPPLY
    assert set(deployed.vesting_wallets) == VESTED
    for p in deployed.plan:
        amount, liquid, delay, duration = EXPECTED[p.name]
        assert token.balanceOf(p.beneficiary).call() == liquid
        if p.name not in deployed.vesting_wallets:
            assert liquid == amount
            continue
        wallet = vesting(anvil_w3, deployed.vesting_wallets[p.name]).functions
        assert token.balanceOf(wallet.address).call() == amount - liquid
        assert wallet.owner().call() == p.beneficiary
        assert wallet.start().call() == wallet.cliff().call() == p.start
        assert p.start == deployed.plan[0].start + delay
        assert wallet.duration().call() == duration
        assert wallet.end().call() == p.end
    assert set(deployed.gas_used) == {"OPGToken"} | {
        f"OPGVesting:{n}" for n in deployed.vesting_wallets
    }
    assert all(g > 0 for g in deployed.gas_used.values())


@pytest.mark.anvil
@pytest.mark.usefixtures("snapshot")
def test_the_launch_parts_are_liquid(anvil_w3: Web3, deployed: TokenDeployment) -> None:
    token = deployed.token.functions
    receiver = addr(0xBEEF)
    for name in ("liquidity", "ecosystem", "foundation", "airdrop"):
        p = plan_of(deployed, name)
        transact(anvil_w3, token.transfer(receiver, p.launch_amount), p.beneficiary)
        assert token.balanceOf(p.beneficiary).call() == 0
    assert token.balanceOf(receiver).call() == 189_500_000 * OPG


@pytest.mark.anvil
def test_the_contributors_curve_in_views(anvil_w3: Web3, deployed: TokenDeployment) -> None:
    p = plan_of(deployed, "contributors")
    wallet = vesting(anvil_w3, deployed.vesting_wallets["contributors"]).functions
    token = deployed.token.address
    launch = p.start - 12 * MONTH
    for t in (
        launch,
        p.start - 1,
        p.start,
        p.start + 1,
        p.start + MONTH,
        p.start + 18 * MONTH,
        p.end - 1,
        p.end,
        p.end + 10 * MONTH,
    ):
        assert wallet.vestedAmount(token, t).call() == p.vested_at(t), t
    assert wallet.vestedAmount(token, p.start + 18 * MONTH).call() == 75 * M


@pytest.mark.anvil
@pytest.mark.usefixtures("snapshot")
def test_the_contributors_release_under_time_travel(
    anvil_w3: Web3, deployed: TokenDeployment
) -> None:
    w3 = anvil_w3
    p = plan_of(deployed, "contributors")
    wallet = vesting(w3, deployed.vesting_wallets["contributors"]).functions
    token = deployed.token.functions

    def travel_to(timestamp: int) -> None:
        w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
        w3.provider.make_request("evm_mine", [])
        assert int(w3.eth.get_block("latest")["timestamp"]) == timestamp

    def release() -> int:
        """Release to the beneficiary (anyone may call it); the block's timestamp."""
        receipt = w3.eth.wait_for_transaction_receipt(
            wallet.release(deployed.token.address).transact({"from": w3.eth.accounts[9]})
        )
        assert receipt["status"] == 1
        return int(w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    travel_to(p.start - 24 * 3600)
    assert wallet.releasable(deployed.token.address).call() == 0
    release()
    assert token.balanceOf(p.beneficiary).call() == 0

    travel_to(p.start + 6 * MONTH)
    at = release()
    assert token.balanceOf(p.beneficiary).call() == p.vested_at(at) > p.amount // 6 - OPG

    travel_to(p.start + 24 * MONTH)
    at = release()
    assert token.balanceOf(p.beneficiary).call() == p.vested_at(at)
    assert abs(p.vested_at(at) - p.amount * 2 // 3) < 10 * OPG

    travel_to(p.end)
    release()
    assert token.balanceOf(p.beneficiary).call() == p.amount
    assert token.balanceOf(wallet.address).call() == 0
    assert wallet.released(deployed.token.address).call() == p.amount


@pytest.mark.anvil
def test_the_devnet_deployer_holds_the_launch_parts(anvil_w3: Web3) -> None:
    w3 = anvil_w3
    deployer = w3.eth.accounts[0]
    launch = int(w3.eth.get_block("latest")["timestamp"])
    result = deploy_token_with_allocations(w3, deployer, devnet_beneficiaries(deployer), launch)
    token = result.token.functions
    assert token.balanceOf(deployer).call() == 189_500_000 * OPG
    for name, address in result.vesting_wallets.items():
        assert vesting(w3, address).functions.owner().call() == deployer, name
    wallets = sum(token.balanceOf(a).call() for a in result.vesting_wallets.values())
    assert wallets == TOTAL_SUPPLY - 189_500_000 * OPG


@pytest.mark.anvil
@pytest.mark.parametrize(
    ("recipients", "amounts", "error"),
    [
        ([addr(1), addr(2)], [TOTAL_SUPPLY], "AllocationLengthMismatch(recipients=2, amounts=1)"),
        ([addr(1), addr(0)], [TOTAL_SUPPLY, 0], "AllocationToZeroAddress(index=1)"),
        (
            [addr(1), addr(2)],
            [TOTAL_SUPPLY, 1],
            f"AllocationSumMismatch(minted={TOTAL_SUPPLY + 1}, expected={TOTAL_SUPPLY})",
        ),
        ([], [], f"AllocationSumMismatch(minted=0, expected={TOTAL_SUPPLY})"),
    ],
)
def test_the_token_refuses_a_bad_allocation(
    anvil_w3: Web3, recipients: list[str], amounts: list[int], error: str
) -> None:
    compiled = load_compiled("OPGToken")
    factory = anvil_w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    with pytest.raises(SettlementError) as info:
        transact(anvil_w3, factory.constructor(recipients, amounts), anvil_w3.eth.accounts[0])
    assert info.value.reason == error
