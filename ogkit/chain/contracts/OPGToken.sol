// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title OPGToken
/// @notice The OpenGradient Token (ERC-20, 18 decimals) with ERC-2612 `permit`.
/// @dev The whole fixed supply of 1,000,000,000 OPG is minted once, to the deployer; there is
///      no mint or burn function afterwards. The ERC-2612 domain is the EIP-712 domain
///      ("OpenGradient Token", "1", chainId, token address).
contract OPGToken is ERC20, ERC20Permit {
    /// @notice The fixed total supply: one billion OPG with 18 decimals.
    uint256 public constant TOTAL_SUPPLY = 1_000_000_000 * 10 ** 18;

    constructor() ERC20("OpenGradient Token", "OPG") ERC20Permit("OpenGradient Token") {
        _mint(msg.sender, TOTAL_SUPPLY);
    }
}
