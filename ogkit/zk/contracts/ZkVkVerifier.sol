// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice ezkl's reusable Halo2 verifier (`create_evm_verifier(..., reusable=True)`, ezkl
///         23): one contract for every circuit, told the circuit by a verifying-key artefact
///         (VKA, `create_evm_vka`) passed with each proof. `verifyProof` reverts on a proof
///         it rejects and requires the VKA registered (by its keccak256) first.
interface IHalo2VerifierReusable {
    function registerVka(bytes32[] calldata vka) external returns (bytes32 digest);

    function verifyProof(bytes calldata proof, uint256[] calldata instances, bytes32[] calldata vka)
        external
        returns (bool success, bytes32 digest, int256[] memory rescaled);
}

/// @title ZkVkVerifier
/// @notice The verifier of one ZK profile (model, N, settings) on ezkl's reusable verifier. It
///         pins the reusable verifier and the profile's VKA and offers the single-circuit
///         verifier's `verifyProof(bytes, uint256[]) returns (bool)`, so ZkJudge registers it
///         as it registers a generated verifier. Used where the generated verifier exceeds
///         EIP-170's 24,576 bytes (N >= 8 for the sample model).
/// @dev    The VKA is the code of a data contract the constructor creates (code = 0x00 ‖ VKA:
///         a call to it stops at once; since EIP-6780 its code cannot go away), read with
///         EXTCODECOPY for each proof. Nothing is written after construction, and the runtime
///         code is the same for every profile: a reviewer compares it with the compiled
///         artefact, then checks what the three slots point to (`ogkit.zk.evm`).
contract ZkVkVerifier {
    /// @notice ezkl's reusable verifier every proof goes to.
    address public verifier;
    /// @notice The data contract whose code after its first byte is the VKA.
    address public vkaStore;
    /// @notice Number of 32-byte words of the VKA.
    uint96 public vkaWords;
    /// @notice keccak256 of the VKA words (the reusable verifier's registration key).
    bytes32 public vkaDigest;

    error NoVerifierCode(address verifier);
    error BadVka(uint256 words);
    error VkaStoreFailed();
    error VkaNotRegistered(bytes32 expected, bytes32 registered);
    error ProofRejected();

    /// @param verifier_ the reusable verifier (deployed once per chain).
    /// @param vka the profile's VKA as 32-byte words (ezkl's file, without its length prefix).
    constructor(address verifier_, bytes32[] memory vka) {
        if (verifier_.code.length == 0) revert NoVerifierCode(verifier_);
        // The data contract's code is 1 + 32 n bytes and must fit EIP-170 itself.
        if (vka.length == 0 || 1 + 32 * vka.length > 24_576) revert BadVka(vka.length);
        uint256 size = 1 + 32 * vka.length;
        // Creation code: PUSH2 size, DUP1, PUSH1 12, PUSH1 0, CODECOPY, PUSH1 0, RETURN
        // (12 bytes), then the runtime code 0x00 ‖ VKA.
        bytes memory init =
            abi.encodePacked(hex"61", uint16(size), hex"80600c6000396000f3", hex"00", vka);
        address store;
        assembly {
            store := create(0, add(init, 0x20), mload(init))
        }
        if (store == address(0) || store.code.length != size) revert VkaStoreFailed();
        bytes32 digest = keccak256(abi.encodePacked(vka));
        bytes32 registered = IHalo2VerifierReusable(verifier_).registerVka(vka);
        if (registered != digest) revert VkaNotRegistered(digest, registered);
        verifier = verifier_;
        vkaStore = store;
        vkaWords = uint96(vka.length);
        vkaDigest = digest;
    }

    /// @notice Whether `proof` is valid for `instances` under this profile's VKA: true, or a
    ///         revert (`ProofRejected`), as ezkl's generated verifier reverts.
    function verifyProof(bytes calldata proof, uint256[] calldata instances)
        external
        view
        returns (bool)
    {
        uint256 n = vkaWords;
        address store = vkaStore;
        bytes32[] memory vka = new bytes32[](n);
        assembly {
            extcodecopy(store, add(vka, 0x20), 1, mul(n, 0x20))
        }
        // The reusable verifier's return data is (0x01, VKA digest, rescaled instances) in
        // its own layout; only the first two words are read. It reverts on a bad proof.
        (bool ok, bytes memory ret) = verifier.staticcall(
            abi.encodeCall(IHalo2VerifierReusable.verifyProof, (proof, instances, vka))
        );
        if (!ok || ret.length < 64) revert ProofRejected();
        uint256 flag;
        bytes32 digest;
        assembly {
            flag := mload(add(ret, 0x20))
            digest := mload(add(ret, 0x40))
        }
        if (flag != 1 || digest != vkaDigest) revert ProofRejected();
        return true;
    }
}
