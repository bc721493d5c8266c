"""``ogkit governance propose | vote | execute | show | list``: stake-weighted governance of
which enclave measurements the chain accepts (NodeRegistry proposals).

A registered node with active stake proposes approving a measurement as a kind (or
revoking it); stakers vote with their stake at the block before the proposal during the
voting delay; once voting has ended, anyone executes a proposal that passed (more yes than
no, and a turnout of at least the governance quorum of all active stake at the snapshot)
within one more voting delay. docs/contracts.md, "Measurement allowlist and governance".
"""

from __future__ import annotations

import argparse
from typing import Any

from ogkit.cli.common import (
    MEASUREMENT_KINDS as KINDS,
)
from ogkit.cli.common import (
    add_command,
    chain_option,
    logged,
    opg_text,
    parse_measurement,
    print_json,
)
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]

_KIND_NAMES = {0: "revoke", **{v: k for k, v in KINDS.items()}}


def _proposal_doc(chain: Any, proposal_id: int) -> dict[str, Any]:
    registry = chain.contract("NodeRegistry")
    count = int(chain.call(registry.functions.proposalCount()))
    if not 1 <= proposal_id <= count:
        raise ConfigError(
            f"no governance proposal {proposal_id} on {chain.name} (there are {count}): "
            "list them with `ogkit governance list`"
        )
    (proposer, measurement, kind, created, ends, snapshot, yes, no, executed) = chain.call(
        registry.functions.getProposal(proposal_id)
    )
    now = chain.block_timestamp()
    delay = int(ends) - int(created)
    if executed:
        state = "executed"
    elif now < ends:
        state = "voting"
    elif now >= int(ends) + delay:
        state = "expired"
    else:
        total = sum(
            int(chain.call(registry.functions.roleStakeAt(role, int(snapshot)))) for role in (1, 2)
        )
        quorum = int(chain.call(registry.functions.governanceQuorumBps()))
        turnout = (int(yes) + int(no)) * 10_000 >= quorum * total
        state = "executable" if yes > no and turnout else "rejected"
    return {
        "proposal": proposal_id,
        "proposer": proposer,
        "measurement": "0x" + bytes(measurement).hex(),
        "action": _KIND_NAMES.get(int(kind), str(kind)),
        "snapshot_block": int(snapshot),
        "voting_ends": int(ends),
        "execute_by": int(ends) + delay,
        "yes": int(yes),
        "no": int(no),
        "executed": bool(executed),
        "state": state,
    }


def _print_proposal(doc: dict[str, Any]) -> None:
    print(
        f"proposal {doc['proposal']}: {doc['action']} {doc['measurement']} ({doc['state']}); "
        f"yes {opg_text(doc['yes'])}, no {opg_text(doc['no'])}; voting ends at "
        f"{doc['voting_ends']}, execute by {doc['execute_by']}"
    )


def _governance(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore

    chain = connect_from_settings(settings, args.chain)
    registry = chain.contract("NodeRegistry")
    if args.command == "list":
        count = int(chain.call(registry.functions.proposalCount()))
        docs = [_proposal_doc(chain, i) for i in range(1, count + 1)]
        if args.json:
            print_json({"schema": "ogkit.governance.list.v1", "proposals": docs})
        elif not docs:
            print(f"no governance proposals on {chain.name}")
        else:
            for doc in docs:
                _print_proposal(doc)
        return 0
    if args.command == "propose":
        signer = KeyStore(settings.home).load(args.key)
        measurement = parse_measurement(args.measurement)
        kind = 0 if args.revoke else KINDS[args.kind]
        receipt = chain.transact(
            registry.functions.propose(bytes.fromhex(measurement[2:]), kind), signer
        )
        created = logged(registry, "ProposalCreated", receipt)
        proposal_id = int(created[0]["args"]["proposalId"])
    else:
        proposal_id = args.proposal
        _proposal_doc(chain, proposal_id)  # a clear error for an unknown id
        if args.command == "vote":
            signer = KeyStore(settings.home).load(args.key)
            chain.transact(registry.functions.vote(proposal_id, args.support == "yes"), signer)
        elif args.command == "execute":
            signer = KeyStore(settings.home).load(args.key)
            chain.transact(registry.functions.execute(proposal_id), signer)
    doc = _proposal_doc(chain, proposal_id)
    if args.json:
        print_json({"schema": "ogkit.governance.proposal.v1", "chain": chain.name, **doc})
    else:
        _print_proposal(doc)
    return 0


def register(groups) -> None:
    gov = groups.add_parser(
        "governance", help="stake-weighted governance of enclave measurements"
    ).add_subparsers(dest="command", required=True)
    p = add_command(gov, "propose", _governance, "propose approving (or revoking) a measurement")
    p.add_argument("measurement", help="the 32-byte measurement (runtime id)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--kind", choices=sorted(KINDS), help="approve it as this kind")
    which.add_argument("--revoke", action="store_true", help="revoke it instead")
    p.add_argument("--key", required=True, help="a registered node with active stake")
    chain_option(p)
    p = add_command(gov, "vote", _governance, "vote on a proposal with your stake")
    p.add_argument("proposal", type=int)
    p.add_argument("support", choices=["yes", "no"])
    p.add_argument("--key", required=True)
    chain_option(p)
    p = add_command(gov, "execute", _governance, "apply a proposal that passed")
    p.add_argument("proposal", type=int)
    p.add_argument("--key", required=True, help="any funded key (pays the gas)")
    chain_option(p)
    p = add_command(gov, "show", _governance, "a proposal's votes and state")
    p.add_argument("proposal", type=int)
    chain_option(p)
    p = add_command(gov, "list", _governance, "every proposal and its state")
    chain_option(p)
