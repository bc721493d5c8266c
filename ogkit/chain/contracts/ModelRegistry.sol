// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title ModelRegistry
/// @notice Permissionless registry of ONNX models and their per-inference price in OPG, keyed
///         by (model id, owner) and authenticated by the owner's EIP-712 signature.
/// @dev A model id is the keccak256 content hash of the model's ONNX bytes, computed off-chain.
///      Content hashes are public, so a registration is keyed by `(modelId, owner)`: anyone can
///      register the same bytes under their own key, but nobody can register a model under
///      another account or be paid for another owner's registration. A job order names the
///      owner it pays (the owner who signed the hub manifest). A registration is the owner's
///      EIP-712 `ModelRegistration` signature (domain "ogkit ModelRegistry", version "1"), so
///      any account may submit it for the owner. Every change emits an event indexed by model
///      id and owner, so the registry's state at any block can be replayed from logs.
contract ModelRegistry is EIP712 {
    /// @dev `registered`, `deprecated` and `price` share one slot: a commit reads it once.
    struct Model {
        bool registered;
        bool deprecated;
        uint240 price;
        bytes32 manifestHash;
        string name;
        string version;
        string manifestURI;
    }

    bytes32 public constant MODEL_REGISTRATION_TYPEHASH = keccak256(
        "ModelRegistration(bytes32 modelId,address owner,uint256 price,bytes32 manifestHash,"
        "uint64 deadline)"
    );

    mapping(bytes32 modelKey => Model) private _models;

    event ModelRegistered(
        bytes32 indexed modelId,
        address indexed owner,
        uint256 price,
        string name,
        string version,
        bytes32 manifestHash,
        string manifestURI
    );
    event PriceChanged(
        bytes32 indexed modelId, address indexed owner, uint256 oldPrice, uint256 newPrice
    );
    event ModelDeprecated(bytes32 indexed modelId, address indexed owner);

    error ZeroModelId();
    error ZeroOwner();
    error PriceTooLarge(uint256 price);
    error RegistrationExpired(uint64 deadline);
    error BadOwnerSignature();
    error ModelAlreadyRegistered(bytes32 modelId, address owner);
    error ModelNotFound(bytes32 modelId, address owner);
    error ModelIsDeprecated(bytes32 modelId, address owner);

    constructor() EIP712("ogkit ModelRegistry", "1") {}

    /// @notice What `registerModel` takes; the owner signs (modelId, owner, price,
    ///         manifestHash, deadline) as an EIP-712 `ModelRegistration`.
    struct Registration {
        bytes32 modelId;
        address owner;
        uint256 price;
        bytes32 manifestHash;
        uint64 deadline;
        string name;
        string version;
        string manifestURI;
    }

    /// @notice Register `reg.modelId` for `reg.owner` with the owner's EIP-712
    ///         `ModelRegistration` signature. Any account may submit it; the registration
    ///         belongs to the owner.
    function registerModel(Registration calldata reg, bytes calldata ownerSignature) external {
        if (reg.modelId == bytes32(0)) revert ZeroModelId();
        if (reg.owner == address(0)) revert ZeroOwner();
        if (block.timestamp > reg.deadline) revert RegistrationExpired(reg.deadline);
        if (reg.price > type(uint240).max) revert PriceTooLarge(reg.price);
        bytes32 digest =
            hashRegistration(reg.modelId, reg.owner, reg.price, reg.manifestHash, reg.deadline);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, ownerSignature);
        if (err != ECDSA.RecoverError.NoError || signer != reg.owner) revert BadOwnerSignature();
        Model storage m = _models[modelKey(reg.modelId, reg.owner)];
        if (m.registered) revert ModelAlreadyRegistered(reg.modelId, reg.owner);
        m.registered = true;
        m.price = uint240(reg.price);
        m.manifestHash = reg.manifestHash;
        m.name = reg.name;
        m.version = reg.version;
        m.manifestURI = reg.manifestURI;
        emit ModelRegistered(
            reg.modelId, reg.owner, reg.price, reg.name, reg.version, reg.manifestHash, reg.manifestURI
        );
    }

    /// @notice Change the caller's price per inference for `modelId`. Orders cap the price a
    ///         requester pays (`maxPricePerRow`); committed batches keep their price.
    function setPrice(bytes32 modelId, uint256 newPrice) external {
        Model storage m = _live(modelId, msg.sender);
        if (newPrice > type(uint240).max) revert PriceTooLarge(newPrice);
        uint256 old = m.price;
        m.price = uint240(newPrice);
        emit PriceChanged(modelId, msg.sender, old, newPrice);
    }

    /// @notice Deprecate the caller's registration of `modelId` for good.
    function deprecate(bytes32 modelId) external {
        Model storage m = _live(modelId, msg.sender);
        m.deprecated = true;
        emit ModelDeprecated(modelId, msg.sender);
    }

    /// @notice The storage key of a registration: keccak256(abi.encode(modelId, owner)).
    function modelKey(bytes32 modelId, address owner) public pure returns (bytes32) {
        return keccak256(abi.encode(modelId, owner));
    }

    /// @notice The EIP-712 digest an owner signs to register a model.
    function hashRegistration(
        bytes32 modelId,
        address owner,
        uint256 price,
        bytes32 manifestHash,
        uint64 deadline
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(MODEL_REGISTRATION_TYPEHASH, modelId, owner, price, manifestHash, deadline)
            )
        );
    }

    /// @notice The EIP-712 domain separator (name "ogkit ModelRegistry", version "1").
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice A registration's price, deprecated flag, name, version and manifest hash.
    function getModel(bytes32 modelId, address owner)
        external
        view
        returns (
            uint256 price,
            bool deprecated,
            string memory name,
            string memory version,
            bytes32 manifestHash
        )
    {
        Model storage m = _models[modelKey(modelId, owner)];
        if (!m.registered) revert ModelNotFound(modelId, owner);
        return (m.price, m.deprecated, m.name, m.version, m.manifestHash);
    }

    /// @notice The manifest URI a registration was made with.
    function manifestURIOf(bytes32 modelId, address owner) external view returns (string memory) {
        Model storage m = _models[modelKey(modelId, owner)];
        if (!m.registered) revert ModelNotFound(modelId, owner);
        return m.manifestURI;
    }

    /// @notice Registered flag, price and deprecated flag in one cheap call.
    function pricing(bytes32 modelId, address owner)
        external
        view
        returns (bool registered, uint256 price, bool deprecated)
    {
        Model storage m = _models[modelKey(modelId, owner)];
        return (m.registered, m.price, m.deprecated);
    }

    /// @notice Whether `owner` registered `modelId`.
    function exists(bytes32 modelId, address owner) external view returns (bool) {
        return _models[modelKey(modelId, owner)].registered;
    }

    function _live(bytes32 modelId, address owner) private view returns (Model storage m) {
        m = _models[modelKey(modelId, owner)];
        if (!m.registered) revert ModelNotFound(modelId, owner);
        if (m.deprecated) revert ModelIsDeprecated(modelId, owner);
    }
}
