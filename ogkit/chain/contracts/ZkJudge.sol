// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InferenceSettlement} from "./InferenceSettlement.sol";

/// @notice The EZKL-generated Halo2 verifier of one ZK profile (generated per verifying key by
///         `ogkit zk setup --evm`, compiled with the pinned solc-js, never committed: its
///         constants come from the key ceremony).
interface IHalo2Verifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances)
        external
        returns (bool);
}

/// @title ZkJudge
/// @notice Maps a model's ZK profile to its Halo2 verifier, checks that a proof speaks about
///         exactly a receipted row (docs/spec.md §11), and resolves a dispute on such a
///         row at once, without a vote: the proven outputs beyond the profile's tolerance of
///         the receipted ones uphold it, within tolerance reject it.
/// @dev    Profiles are keyed like model registrations, by (model id, owner): the owner
///         registers, the governor approves after re-deriving the verifying key and the
///         verifier's code from the model, the settings and the SRS (`ogkit zk setup
///         --check`). Only approved profiles judge.
contract ZkJudge {
    /// @notice One tensor of a row, in canonical (name-sorted) order: its canonical header
    ///         (spec §2), dtype code (1 float32, 6 int32, 7 int64), element count, fixed-point
    ///         scale, the index of its row-0 values among the instances, and (outputs) the
    ///         tolerance in fixed-point units.
    struct Tensor {
        bytes header;
        uint8 dtype;
        uint32 count;
        uint8 scale;
        uint32 base;
        uint64 tolerance;
    }

    struct Profile {
        address verifier;
        uint32 chunk;
        uint32 instanceCount;
        bool approved;
        bytes32 keysId;
        bytes32 layoutHash;
    }

    /// @notice A proof of the chunk holding a row, with the row's receipt.
    struct RowProof {
        uint256 rowIndex;
        uint256 position;
        bytes inputBytes;
        bytes outputBytes;
        bytes32[] merkleProof;
        bytes proof;
        uint256[] instances;
    }

    /// @notice BN254 scalar field modulus.
    uint256 public constant FIELD =
        0x30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001;
    /// @notice The largest fixed-point scale a tensor may have (as ogkit's binding).
    uint8 public constant MAX_SCALE = 64;
    bytes16 private constant DOMAIN_TAG = "ogkit.tensors.v1";

    address public immutable governor;
    InferenceSettlement public settlement;
    mapping(bytes32 modelId => mapping(address owner => Profile)) private _profiles;

    event ProfileRegistered(
        bytes32 indexed modelId,
        address indexed owner,
        address verifier,
        uint32 chunk,
        bytes32 keysId,
        bytes32 layoutHash
    );
    event ProfileApproved(bytes32 indexed modelId, address indexed owner, bytes32 keysId);
    event ResolvedByProof(
        uint256 indexed disputeId,
        bytes32 indexed batchId,
        uint256 rowIndex,
        bool upheld,
        address submitter
    );

    error NotGovernor(address caller);
    error SettlementAlreadySet();
    error NoVerifierCode(address verifier);
    error BadLayout(string why);
    error ProfileNotApproved(bytes32 modelId, address owner);
    error KeysMismatch(bytes32 registered, bytes32 given);
    error LayoutMismatch();
    error PositionOutOfChunk(uint256 position, uint32 chunk);
    error InstanceCount(uint256 given, uint32 expected);
    error InputNotBound(uint256 tensor);
    error OutputMalformed(uint256 tensor);
    error ProofRejected();
    error ReceiptNotIncluded(bytes32 batchId, uint256 rowIndex);
    error NotTheDisputedRow(uint256 disputeId, bytes32 batchId, uint256 rowIndex);

    constructor() {
        governor = msg.sender;
    }

    /// @notice Once, by the governor: the settlement this judge resolves disputes of.
    function setSettlement(InferenceSettlement settlement_) external {
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        if (address(settlement) != address(0)) revert SettlementAlreadySet();
        settlement = settlement_;
    }

    // ------------------------------------------------------------------ registry

    /// @notice The caller registers (or replaces, unapproved) the ZK profile of its model.
    function registerProfile(
        bytes32 modelId,
        address verifier,
        uint32 chunk,
        bytes32 keysId,
        Tensor[] calldata inputs,
        Tensor[] calldata outputs
    ) external {
        if (verifier.code.length == 0) revert NoVerifierCode(verifier);
        if (chunk == 0) revert BadLayout("chunk");
        if (inputs.length == 0 || outputs.length == 0) revert BadLayout("tensors");
        uint256 total;
        for (uint256 i = 0; i < inputs.length; ++i) total += _checkTensor(inputs[i]);
        for (uint256 i = 0; i < outputs.length; ++i) total += _checkTensor(outputs[i]);
        total *= chunk;
        if (total > type(uint32).max) revert BadLayout("count");
        bytes32 layoutHash = keccak256(abi.encode(inputs, outputs));
        _profiles[modelId][msg.sender] =
            Profile(verifier, chunk, uint32(total), false, keysId, layoutHash);
        emit ProfileRegistered(modelId, msg.sender, verifier, chunk, keysId, layoutHash);
    }

    /// @notice The governor approves the profile registered with exactly the keys, layout
    ///         (scales, instance positions and tolerances) and verifier it reviewed: an owner
    ///         that re-registers between the review and the approval (a huge tolerance, a
    ///         verifier that accepts anything) makes the approval revert.
    function approveProfile(
        bytes32 modelId,
        address owner,
        bytes32 keysId,
        bytes32 layoutHash,
        address verifier
    ) external {
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        Profile storage p = _profiles[modelId][owner];
        if (p.keysId != keysId || p.verifier == address(0)) revert KeysMismatch(p.keysId, keysId);
        if (p.layoutHash != layoutHash || p.verifier != verifier) revert LayoutMismatch();
        p.approved = true;
        emit ProfileApproved(modelId, owner, keysId);
    }

    function profileOf(bytes32 modelId, address owner) external view returns (Profile memory) {
        return _profiles[modelId][owner];
    }

    // ------------------------------------------------------------------ checks

    /// @notice Check a proof against a row's receipted bytes under the model's approved
    ///         profile: reverts unless the proof verifies and its public inputs for chunk
    ///         position `position` are the row's inputs in fixed point; returns whether the
    ///         receipted outputs are within tolerance of the proven outputs.
    function checkRow(
        bytes32 modelId,
        address owner,
        RowProof calldata rp,
        Tensor[] calldata inputs,
        Tensor[] calldata outputs
    ) public returns (bool within) {
        Profile memory p = _profiles[modelId][owner];
        if (!p.approved) revert ProfileNotApproved(modelId, owner);
        if (keccak256(abi.encode(inputs, outputs)) != p.layoutHash) revert LayoutMismatch();
        if (rp.position >= p.chunk) revert PositionOutOfChunk(rp.position, p.chunk);
        if (rp.instances.length != p.instanceCount) {
            revert InstanceCount(rp.instances.length, p.instanceCount);
        }
        _bindInputs(inputs, rp.inputBytes, rp.instances, rp.position);
        try IHalo2Verifier(p.verifier).verifyProof(rp.proof, rp.instances) returns (bool ok) {
            if (!ok) revert ProofRejected();
        } catch {
            revert ProofRejected();
        }
        within = _withinTolerance(outputs, rp.outputBytes, rp.instances, rp.position);
    }

    /// @notice Resolve an open dispute on row `rp.rowIndex` of `batchId` with a proof: the
    ///         row's receipt must be in the committed batch root; then the dispute is upheld
    ///         when the receipted outputs are beyond tolerance of the proven ones, else
    ///         rejected. Anyone may submit (the challenger or the node): the outcome follows
    ///         from the proof, not from who sends it.
    function resolve(
        uint256 disputeId,
        bytes32 batchId,
        InferenceSettlement.Record calldata r,
        RowProof calldata rp,
        Tensor[] calldata inputs,
        Tensor[] calldata outputs
    ) external returns (bool upheld) {
        InferenceSettlement.Dispute memory d = settlement.getDispute(disputeId);
        if (d.batchId != batchId || d.rowIndex != rp.rowIndex) {
            revert NotTheDisputedRow(disputeId, batchId, rp.rowIndex);
        }
        (bool included,) = settlement.verifyReceipt(
            batchId,
            r,
            rp.rowIndex,
            keccak256(rp.inputBytes),
            keccak256(rp.outputBytes),
            rp.merkleProof
        );
        if (!included) revert ReceiptNotIncluded(batchId, rp.rowIndex);
        upheld = !checkRow(r.modelId, r.modelOwner, rp, inputs, outputs);
        emit ResolvedByProof(disputeId, batchId, rp.rowIndex, upheld, msg.sender);
        settlement.resolveByProof(disputeId, r, upheld);
    }

    /// @notice The fixed-point value of one element's little-endian bits `raw` (what
    ///         `checkRow` compares), and its field element; `ok` false for NaN or infinity.
    function fixedPoint(uint256 raw, uint8 dtype, uint8 scale)
        external
        pure
        returns (bool ok, int256 value, uint256 field)
    {
        if (scale > MAX_SCALE || (dtype != 1 && dtype != 6 && dtype != 7)) {
            revert BadLayout("tensor");
        }
        (ok, value) = _fixed(raw, dtype, scale);
        if (ok) field = _toField(value);
    }

    // ------------------------------------------------------------------ binding

    /// @dev A tensor the binding can read: float32, int32 or int64, at least one element,
    ///      a scale of at most 64 (every fixed-point value then stays below 2^192, far
    ///      inside the field, so no negative and positive value meet modulo it).
    function _checkTensor(Tensor calldata x) private pure returns (uint256) {
        if (x.dtype != 1 && x.dtype != 6 && x.dtype != 7) revert BadLayout("dtype");
        if (x.scale > MAX_SCALE) revert BadLayout("scale");
        if (x.count == 0) revert BadLayout("count");
        return x.count;
    }

    function _bindInputs(
        Tensor[] calldata ts,
        bytes calldata m,
        uint256[] calldata inst,
        uint256 j
    ) private pure {
        uint256 pos = _prefix(m, ts.length);
        for (uint256 t = 0; t < ts.length; ++t) {
            Tensor calldata x = ts[t];
            pos = _header(m, pos, x, t);
            uint256 size = x.dtype == 7 ? 8 : 4;
            uint256 first = uint256(x.base) + j * x.count;
            for (uint256 k = 0; k < x.count; ++k) {
                (bool ok, int256 v) = _fixed(_le(m, pos, size), x.dtype, x.scale);
                if (!ok || inst[first + k] != _toField(v)) revert InputNotBound(t);
                pos += size;
            }
        }
        if (pos != m.length) revert InputNotBound(ts.length);
    }

    function _withinTolerance(
        Tensor[] calldata ts,
        bytes calldata m,
        uint256[] calldata inst,
        uint256 j
    ) private pure returns (bool within) {
        within = true;
        uint256 pos = _prefix(m, ts.length);
        for (uint256 t = 0; t < ts.length; ++t) {
            Tensor calldata x = ts[t];
            pos = _header(m, pos, x, t);
            uint256 size = x.dtype == 7 ? 8 : 4;
            uint256 first = uint256(x.base) + j * x.count;
            for (uint256 k = 0; k < x.count; ++k) {
                (bool ok, int256 v) = _fixed(_le(m, pos, size), x.dtype, x.scale);
                pos += size;
                if (!ok) {
                    within = false; // NaN or infinity is beyond any tolerance
                    continue; // (the rest of the bytes are still checked, as off chain)
                }
                int256 d = v - _fromField(inst[first + k]);
                if (d < 0) d = -d;
                if (uint256(d) > x.tolerance) within = false;
            }
        }
        if (pos != m.length) revert OutputMalformed(ts.length);
    }

    function _prefix(bytes calldata m, uint256 count) private pure returns (uint256) {
        if (m.length < 20 || bytes16(m[0:16]) != DOMAIN_TAG || uint32(bytes4(m[16:20])) != count)
        {
            revert InputNotBound(type(uint256).max);
        }
        return 20;
    }

    function _header(bytes calldata m, uint256 pos, Tensor calldata x, uint256 t)
        private
        pure
        returns (uint256)
    {
        uint256 end = pos + x.header.length;
        if (end > m.length || keccak256(m[pos:end]) != keccak256(x.header)) {
            revert InputNotBound(t);
        }
        if (end + uint256(x.count) * (x.dtype == 7 ? 8 : 4) > m.length) revert InputNotBound(t);
        return end;
    }

    /// @dev Little-endian unsigned integer of `n` bytes at `pos`.
    function _le(bytes calldata m, uint256 pos, uint256 n) private pure returns (uint256 v) {
        for (uint256 i = 0; i < n; ++i) {
            v |= uint256(uint8(m[pos + i])) << (8 * i);
        }
    }

    /// @dev The fixed-point value (spec §11) of one element: a float32 from its bits,
    ///      round(x * 2^scale) half away from zero; an int32/int64 times 2^scale.
    function _fixed(uint256 raw, uint8 dtype, uint8 scale) private pure returns (bool, int256) {
        if (dtype == 7) return (true, int256(int64(uint64(raw))) << scale);
        if (dtype == 6) return (true, int256(int32(uint32(raw))) << scale);
        uint256 exponent = (raw >> 23) & 0xff;
        if (exponent == 0xff) return (false, 0);
        uint256 mantissa = raw & 0x7fffff;
        int256 shift;
        if (exponent == 0) {
            shift = -149 + int256(uint256(scale));
        } else {
            mantissa |= 1 << 23;
            shift = int256(exponent) - 150 + int256(uint256(scale));
        }
        uint256 magnitude;
        if (shift >= 0) {
            magnitude = mantissa << uint256(shift);
        } else {
            uint256 k = uint256(-shift);
            magnitude = k > 255 ? 0 : (mantissa + (1 << (k - 1))) >> k;
        }
        int256 v = int256(magnitude);
        return (true, raw >> 31 == 1 ? -v : v);
    }

    function _toField(int256 v) private pure returns (uint256) {
        return v >= 0 ? uint256(v) : FIELD - uint256(-v);
    }

    function _fromField(uint256 f) private pure returns (int256) {
        return f > FIELD / 2 ? -int256(FIELD - f) : int256(f);
    }
}
