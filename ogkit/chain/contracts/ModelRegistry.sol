// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title ModelRegistry
/// @notice Permissionless registry of ONNX models and their per-inference price in OPG.
/// @dev A model id is the keccak256 content hash of the model's ONNX bytes, computed off-chain
///      (the contract cannot see the bytes; it only refuses the zero id and duplicates). The
///      registering account becomes the model's owner for good: only it can change the price
///      or deprecate the model. Every change emits an event indexed by model id and owner, so
///      the registry's state as of any block can be replayed from logs.
contract ModelRegistry {
    struct Model {
        address owner;
        bool deprecated;
        uint256 price;
        bytes32 manifestHash;
        string name;
        string version;
        string manifestURI;
    }

    mapping(bytes32 modelId => Model) private _models;

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
    error ModelAlreadyRegistered(bytes32 modelId);
    error ModelNotFound(bytes32 modelId);
    error NotModelOwner(bytes32 modelId, address caller);
    error ModelIsDeprecated(bytes32 modelId);

    /// @notice Register a model; the caller becomes its owner.
    function registerModel(
        bytes32 modelId,
        uint256 pricePerInference,
        string calldata name,
        string calldata version,
        bytes32 manifestHash,
        string calldata manifestURI
    ) external {
        if (modelId == bytes32(0)) revert ZeroModelId();
        if (_models[modelId].owner != address(0)) revert ModelAlreadyRegistered(modelId);
        _models[modelId] = Model({
            owner: msg.sender,
            deprecated: false,
            price: pricePerInference,
            manifestHash: manifestHash,
            name: name,
            version: version,
            manifestURI: manifestURI
        });
        emit ModelRegistered(
            modelId, msg.sender, pricePerInference, name, version, manifestHash, manifestURI
        );
    }

    /// @notice Change the price per inference (owner only). Batches already committed keep
    ///         the price they were committed at.
    function setPrice(bytes32 modelId, uint256 newPrice) external {
        Model storage m = _ownedBy(modelId, msg.sender);
        if (m.deprecated) revert ModelIsDeprecated(modelId);
        uint256 old = m.price;
        m.price = newPrice;
        emit PriceChanged(modelId, msg.sender, old, newPrice);
    }

    /// @notice Deprecate a model for good (owner only): no new batch can be committed for it.
    function deprecate(bytes32 modelId) external {
        Model storage m = _ownedBy(modelId, msg.sender);
        if (m.deprecated) revert ModelIsDeprecated(modelId);
        m.deprecated = true;
        emit ModelDeprecated(modelId, msg.sender);
    }

    /// @notice A model's owner, price, deprecated flag, name, version and manifest hash.
    function getModel(bytes32 modelId)
        external
        view
        returns (
            address owner,
            uint256 price,
            bool deprecated,
            string memory name,
            string memory version,
            bytes32 manifestHash
        )
    {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert ModelNotFound(modelId);
        return (m.owner, m.price, m.deprecated, m.name, m.version, m.manifestHash);
    }

    /// @notice The manifest URI a model was registered with.
    function manifestURIOf(bytes32 modelId) external view returns (string memory) {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert ModelNotFound(modelId);
        return m.manifestURI;
    }

    /// @notice Owner, price and deprecated flag in one cheap call (zero owner: not registered).
    function pricing(bytes32 modelId)
        external
        view
        returns (address owner, uint256 price, bool deprecated)
    {
        Model storage m = _models[modelId];
        return (m.owner, m.price, m.deprecated);
    }

    /// @notice Whether a model id is registered.
    function exists(bytes32 modelId) external view returns (bool) {
        return _models[modelId].owner != address(0);
    }

    function _ownedBy(bytes32 modelId, address caller) private view returns (Model storage m) {
        m = _models[modelId];
        if (m.owner == address(0)) revert ModelNotFound(modelId);
        if (m.owner != caller) revert NotModelOwner(modelId, caller);
    }
}
