// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {VestingWallet} from "@openzeppelin/contracts/finance/VestingWallet.sol";
import {VestingWalletCliff} from "@openzeppelin/contracts/finance/VestingWalletCliff.sol";

/// @title OPGVesting
/// @notice A vesting wallet for one OPG allocation: OpenZeppelin's `VestingWalletCliff`, made
///         deployable. Tokens (or ETH) sent to it vest linearly from `start` to
///         `start + duration`; nothing vests before `start + cliff`, after which the amount
///         vested since `start` becomes releasable at once. Anyone may call `release(token)`;
///         the tokens always go to the beneficiary (the wallet's owner, which it may transfer).
/// @dev ogkit's tokenomics (`ogkit/chain/tokenomics.py`) reads "12-month cliff, then linear
///      over 36 months" as "nothing for 12 months, then linear over the next 36": it deploys
///      `start = launch + 12 months`, `duration = 36 months` and `cliff = 0`, so no part of
///      the allocation is released in one jump. A month there is 365.25 / 12 days
///      (2,629,800 seconds). A non-zero `cliff` gives OpenZeppelin's reading instead (the
///      part vested over `[start, start + cliff)` released in one step at the cliff).
contract OPGVesting is VestingWalletCliff {
    /// @notice A vesting wallet owned by `beneficiary`.
    /// @param beneficiary Who receives the released tokens (the wallet's `owner`).
    /// @param start Unix time (seconds) at which linear vesting begins.
    /// @param duration Seconds from `start` until everything is vested.
    /// @param cliff Seconds after `start` before anything is releasable; at most `duration`
    ///        (else `InvalidCliffDuration`).
    constructor(address beneficiary, uint64 start, uint64 duration, uint64 cliff)
        VestingWallet(beneficiary, start, duration)
        VestingWalletCliff(cliff)
    {}
}
