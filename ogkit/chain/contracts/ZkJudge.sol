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
///         exactly a receipted row (docs/spec.md §13), and resolves a dispute on such a
///         row at once, without a vote, where the proof decides it (spec §13.5): a float
///         output beyond SLASH_FACTOR times the profile's tolerance of the proven one
///         upholds it; every output within tolerance (exact, integer outputs equal)
///         rejects it. In between (a float in the margin, or only an exact output such as
///         a label differing: a near tie the fixed-point circuit and onnxruntime may break
///         differently) `resolve` reverts `Undecidable` and the dispute stays open for the
///         vote, which re-executes the row with onnxruntime, the protocol's reference.
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

    /// @notice What a proof says of a row's receipted outputs (spec §13.5).
    enum Judgement {
        Within, // every output within tolerance (exact outputs equal): the receipt stands
        Beyond, // a float beyond SLASH_FACTOR x tolerance (or NaN/inf): the receipt is wrong
        Undecidable // neither: a float in the margin, or only an exact output differs
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
    /// @notice A proof refutes a receipted float only beyond this many times its tolerance:
    ///         the stated tolerance is the circuit's error measured on calibration rows, and
    ///         a requester who chooses inputs finds rows where the honest error exceeds it
    ///         (spec §13.5); between τ and SLASH_FACTOR·τ the row goes to the vote.
    uint256 public constant SLASH_FACTOR = 2;
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
    /// @notice The proof neither confirms nor refutes the row (output `tensor`, canonical
    ///         index: a float beyond its tolerance but within SLASH_FACTOR times it, or an
    ///         exact output that differs while no float is beyond that): the dispute stays
    ///         open for the vote.
    error Undecidable(uint256 tensor);

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
    ///         position `position` are the row's inputs in fixed point; returns what the
    ///         proof says of the receipted outputs (spec §13.5) and the canonical index of
    ///         the first output tensor that decided it (0 when `Within`).
    function checkRow(
        bytes32 modelId,
        address owner,
        RowProof calldata rp,
        Tensor[] calldata inputs,
        Tensor[] calldata outputs
    ) public returns (Judgement judgement, uint256 tensor) {
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
        return _judgeOutputs(outputs, rp.outputBytes, rp.instances, rp.position);
    }

    /// @notice Resolve an open dispute on row `rp.rowIndex` of `batchId` with a proof: the
    ///         row's receipt must be the challenged one (the dispute's leaf) and in the
    ///         committed batch root; then the dispute is upheld
    ///         when a float output is beyond SLASH_FACTOR times its tolerance of the proven
    ///         one, rejected when every output is within tolerance (exact outputs equal), and
    ///         left open for the vote (`Undecidable` revert) otherwise. Anyone may submit
    ///         (the challenger or the node): the outcome follows from the proof, not from
    ///         who sends it.
    function resolve(
        uint256 disputeId,
        bytes32 batchId,
        InferenceSettlement.Record calldata r,
        RowProof calldata rp,
        Tensor[] calldata inputs,
        Tensor[] calldata outputs
    ) external returns (bool upheld) {
        _checkDisputedRow(disputeId, batchId, rp);
        (bool included,) = settlement.verifyReceipt(
            batchId,
            r,
            rp.rowIndex,
            keccak256(rp.inputBytes),
            keccak256(rp.outputBytes),
            rp.merkleProof
        );
        if (!included) revert ReceiptNotIncluded(batchId, rp.rowIndex);
        (Judgement judgement, uint256 tensor) =
            checkRow(r.modelId, r.modelOwner, rp, inputs, outputs);
        if (judgement == Judgement.Undecidable) revert Undecidable(tensor);
        upheld = judgement == Judgement.Beyond;
        emit ResolvedByProof(disputeId, batchId, rp.rowIndex, upheld, msg.sender);
        settlement.resolveByProof(disputeId, r, upheld);
    }

    /// @dev The proof must be of the challenged leaf itself (spec §3.1), not of any leaf of
    ///      the row's index: a node whose root also holds an honest leaf for that row
    ///      cannot answer the dispute with that one.
    function _checkDisputedRow(uint256 disputeId, bytes32 batchId, RowProof calldata rp)
        private
        view
    {
        InferenceSettlement.Dispute memory d = settlement.getDispute(disputeId);
        bytes32 leaf = keccak256(
            abi.encode(rp.rowIndex, keccak256(rp.inputBytes), keccak256(rp.outputBytes))
        );
        if (d.batchId != batchId || d.rowIndex != rp.rowIndex || d.leaf != leaf) {
            revert NotTheDisputedRow(disputeId, batchId, rp.rowIndex);
        }
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

    /// @dev Every output element compared with its tolerance τ (spec §13.5): a float32
    ///      element more than SLASH_FACTOR·τ off (or NaN/infinite, beyond any) makes the row
    ///      `Beyond`; else any element more than τ off (a float in the margin, an integer
    ///      such as a label at all, its τ being 0) makes it `Undecidable`; else `Within`.
    ///      All bytes are parsed either way (as off chain).
    function _judgeOutputs(
        Tensor[] calldata ts,
        bytes calldata m,
        uint256[] calldata inst,
        uint256 j
    ) private pure returns (Judgement judgement, uint256 tensor) {
        uint256 pos = _prefix(m, ts.length);
        for (uint256 t = 0; t < ts.length; ++t) {
            Tensor calldata x = ts[t];
            uint256 level;
            (pos, level) = _tensorOff(x, m, _header(m, pos, x, t), inst, x.base + j * x.count);
            if (level == 0 || judgement == Judgement.Beyond) continue;
            if (x.dtype == 1 && level == 2) {
                (judgement, tensor) = (Judgement.Beyond, t);
            } else if (judgement == Judgement.Within) {
                (judgement, tensor) = (Judgement.Undecidable, t);
            }
        }
        if (pos != m.length) revert OutputMalformed(ts.length);
    }

    /// @dev The largest `_off` level of one output tensor's elements (its bytes at `pos`, its
    ///      proven values from instance `first`); the position after its bytes.
    function _tensorOff(
        Tensor calldata x,
        bytes calldata m,
        uint256 pos,
        uint256[] calldata inst,
        uint256 first
    ) private pure returns (uint256, uint256 level) {
        uint256 size = x.dtype == 7 ? 8 : 4;
        for (uint256 k = 0; k < x.count; ++k) {
            uint256 l = _off(x, _le(m, pos, size), inst[first + k]);
            if (l > level) level = l;
            pos += size;
        }
        return (pos, level);
    }

    /// @dev How far one receipted element (its bits `raw`) is from the proven field element:
    ///      0 within τ, 1 beyond τ but within SLASH_FACTOR·τ, 2 beyond that (NaN or
    ///      infinity: 2, beyond any tolerance).
    function _off(Tensor calldata x, uint256 raw, uint256 proven) private pure returns (uint256) {
        (bool ok, int256 v) = _fixed(raw, x.dtype, x.scale);
        if (!ok) return 2;
        int256 d = v - _fromField(proven);
        uint256 diff = uint256(d < 0 ? -d : d);
        if (diff <= x.tolerance) return 0;
        return diff <= SLASH_FACTOR * uint256(x.tolerance) ? 1 : 2;
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

    /// @dev The fixed-point value (spec §13.3) of one element: a float32 from its bits,
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
