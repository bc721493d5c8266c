// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";

/// @title OPGToken
/// @notice The OpenGradient Token (ERC-20, 18 decimals) with ERC-2612 `permit` and ERC-3009
///         `transferWithAuthorization` / `receiveWithAuthorization` / `cancelAuthorization`.
/// @dev The whole fixed supply of 1,000,000,000 OPG is minted once, in the constructor, to the
///      allocation recipients it is given (beneficiaries for the parts liquid at launch,
///      `OPGVesting` wallets for the vested parts; `ogkit/chain/tokenomics.py` plans both).
///      There is no mint or burn function afterwards. The ERC-2612 domain is the EIP-712
///      domain ("OpenGradient Token", "1", chainId, token address); ERC-3009 authorisations
///      are signed in the same domain. ERC-3009 nonces are random 32-byte values, one use
///      each per authoriser (OpenZeppelin's `ERC3009`), as x402's `exact` scheme on EVM
///      signs them: a payer pays an x402 price without holding ETH, and a facilitator
///      submits the signed `TransferWithAuthorization`.
contract OPGToken is ERC20, ERC20Permit, ERC3009 {
    /// @notice The fixed total supply: one billion OPG with 18 decimals.
    uint256 public constant TOTAL_SUPPLY = 1_000_000_000 * 10 ** 18;

    /// @notice `recipients` and `amounts` have different lengths.
    error AllocationLengthMismatch(uint256 recipients, uint256 amounts);
    /// @notice `recipients[index]` is the zero address.
    error AllocationToZeroAddress(uint256 index);
    /// @notice The amounts add up to `minted` instead of `TOTAL_SUPPLY`.
    error AllocationSumMismatch(uint256 minted, uint256 expected);

    /// @notice Mint `amounts[i]` OPG base units to `recipients[i]` for every `i`.
    /// @dev A recipient may appear more than once (it then receives the sum). Reverts with
    ///      `AllocationLengthMismatch` if the arrays differ in length, `AllocationToZeroAddress`
    ///      if a recipient is the zero address and `AllocationSumMismatch` unless the amounts
    ///      add up to exactly `TOTAL_SUPPLY`.
    /// @param recipients Who receives each allocation.
    /// @param amounts The allocations in base units (10**18 per OPG), summing to `TOTAL_SUPPLY`.
    constructor(address[] memory recipients, uint256[] memory amounts)
        ERC20("OpenGradient Token", "OPG")
        ERC20Permit("OpenGradient Token")
    {
        if (recipients.length != amounts.length) {
            revert AllocationLengthMismatch(recipients.length, amounts.length);
        }
        uint256 minted;
        for (uint256 i = 0; i < recipients.length; ++i) {
            if (recipients[i] == address(0)) revert AllocationToZeroAddress(i);
            minted += amounts[i];
            _mint(recipients[i], amounts[i]);
        }
        if (minted != TOTAL_SUPPLY) revert AllocationSumMismatch(minted, TOTAL_SUPPLY);
    }
}
