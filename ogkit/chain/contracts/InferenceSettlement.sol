// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";

/// @title InferenceSettlement
/// @notice Escrow, attestation, challenge and payout of verifiable inference batches.
/// @dev A batch is one EIP-712 signed `BatchClaim` (domain name "ogkit", version "1") whose
///      `batchRoot` is the root of an OpenZeppelin StandardMerkleTree over the batch's rows.
///      Only the root is stored, so committing is O(1) in the row count. Life cycle:
///      commit (Pending) -> verifiers attest within the challenge window -> finalize after the
///      window (Finalized), or challenge within the window (Disputed) -> verifier vote ->
///      upheld (Slashed) / rejected (Pending again) / no supermajority in time (Refunded).
///      A Pending batch whose window passed without quorum can be expired (Refunded).
contract InferenceSettlement is EIP712 {
    using SafeERC20 for IERC20;

    /// @notice The EIP-712 typed-data struct an inference node's attester signs.
    struct BatchClaim {
        bytes32 batchId;
        bytes32 modelId;
        bytes32 runtimeId;
        bytes32 batchRoot;
        uint64 rowCount;
        address requester;
        uint64 timestamp;
        address attester;
    }

    enum Status {
        None,
        Pending,
        Disputed,
        Finalized,
        Slashed,
        Refunded
    }

    struct Batch {
        address requester;
        uint48 committedAt;
        uint48 commitBlock;
        address node;
        uint64 rowCount;
        Status status;
        bytes32 modelId;
        bytes32 runtimeId;
        bytes32 batchRoot;
        bytes32 artifactId;
        bytes32 claimDigest;
        uint256 price;
        uint128 yesStake;
        uint128 verifierStake;
    }

    struct Dispute {
        bytes32 batchId;
        address challenger;
        uint64 openedAt;
        uint8 outcome;
        uint128 upheldStake;
        uint128 rejectedStake;
    }

    bytes32 public constant BATCH_CLAIM_TYPEHASH = keccak256(
        "BatchClaim(bytes32 batchId,bytes32 modelId,bytes32 runtimeId,bytes32 batchRoot,"
        "uint64 rowCount,address requester,uint64 timestamp,address attester)"
    );
    uint8 public constant ROLE_INFERENCE = 1;
    uint8 public constant ROLE_VERIFIER = 2;
    /// @notice At most this many verifiers can attest pass on one batch (bounds finalize gas).
    uint256 public constant MAX_PASS_ATTESTERS = 64;
    uint8 public constant OUTCOME_OPEN = 0;
    uint8 public constant OUTCOME_UPHELD = 1;
    uint8 public constant OUTCOME_REJECTED = 2;
    uint8 public constant OUTCOME_VOIDED = 3;
    uint256 private constant BPS = 10_000;

    IERC20 public immutable token;
    ModelRegistry public immutable models;
    NodeRegistry public immutable nodes;
    uint64 public immutable challengeWindow;
    uint16 public immutable quorumBps;
    uint16 public immutable nodeFeeBps;
    uint16 public immutable verifierFeeBps;
    uint256 public immutable challengeBond;
    uint16 public immutable slashBps;
    uint16 public immutable challengerRewardBps;

    mapping(bytes32 batchId => Batch) private _batches;
    mapping(bytes32 batchId => address[]) private _passAttesters;
    mapping(bytes32 batchId => mapping(address verifier => uint256)) private _attestation;
    mapping(bytes32 batchId => uint256) public openDispute;
    mapping(uint256 disputeId => Dispute) private _disputes;
    mapping(uint256 disputeId => mapping(address verifier => bool)) public hasVotedOnDispute;
    uint256 public disputeCount;

    event BatchCommitted(
        bytes32 indexed batchId,
        bytes32 indexed modelId,
        address indexed node,
        bytes32 runtimeId,
        bytes32 batchRoot,
        uint64 rowCount,
        address requester,
        address attester,
        uint64 claimTimestamp,
        bytes32 artifactId,
        uint256 price,
        uint256 escrow,
        bytes32 claimDigest
    );
    event BatchAttested(
        bytes32 indexed batchId,
        address indexed verifier,
        bool pass,
        uint256 weight,
        uint256 yesStake,
        uint256 totalVerifierStake
    );
    event BatchFinalized(
        bytes32 indexed batchId,
        address indexed modelOwner,
        address indexed node,
        uint256 modelPayment,
        uint256 nodeFee,
        uint256 verifierFee,
        uint256 requesterRefund
    );
    event VerifierPaid(bytes32 indexed batchId, address indexed verifier, uint256 amount);
    event BatchRefunded(bytes32 indexed batchId, address indexed requester, uint256 amount);
    event ChallengeOpened(
        bytes32 indexed batchId,
        uint256 indexed disputeId,
        address indexed challenger,
        uint256 rowIndex,
        bytes32 inputHash,
        bytes32 outputHash,
        bytes32 claimedOutputHash,
        uint256 bond
    );
    event DisputeVoted(
        bytes32 indexed batchId,
        uint256 indexed disputeId,
        address indexed verifier,
        bool upheld,
        uint256 weight
    );
    event ChallengeUpheld(
        bytes32 indexed batchId,
        uint256 indexed disputeId,
        address indexed node,
        address challenger,
        uint256 slashed,
        uint256 challengerReward,
        uint256 requesterRefund
    );
    event ChallengeRejected(
        bytes32 indexed batchId,
        uint256 indexed disputeId,
        address indexed node,
        address challenger,
        uint256 bondToNode
    );
    event ChallengeVoided(
        bytes32 indexed batchId, uint256 indexed disputeId, address indexed challenger
    );

    error InvalidParameter(string name);
    error NodeNotRegistered(address node);
    error NotInferenceNode(address node);
    error InsufficientStake(uint256 available, uint256 required);
    error EmptyBatch();
    error BadSignature();
    error AttesterMismatch(address claimed, address bound);
    error RuntimeMismatch(bytes32 claimed, bytes32 bound);
    error MeasurementNotApproved(bytes32 measurement);
    error BatchAlreadyCommitted(bytes32 batchId);
    error SignatureReplayed(bytes32 digest);
    error ModelNotFound(bytes32 modelId);
    error ModelIsDeprecated(bytes32 modelId);
    error BatchNotFound(bytes32 batchId);
    error AlreadyFinalized(bytes32 batchId);
    error BatchClosed(bytes32 batchId, Status status);
    error ChallengeWindowOpen(bytes32 batchId, uint256 endsAt);
    error ChallengeWindowClosed(bytes32 batchId, uint256 endedAt);
    error NotVerifier(address account);
    error AlreadyAttested(bytes32 batchId, address verifier);
    error TooManyAttesters(bytes32 batchId);
    error QuorumNotReached(bytes32 batchId, uint256 yesStake, uint256 totalVerifierStake);
    error QuorumReached(bytes32 batchId);
    error DisputeOpen(bytes32 batchId, uint256 disputeId);
    error NoDispute(bytes32 batchId);
    error AlreadyVoted(uint256 disputeId, address verifier);
    error NoSupermajority(bytes32 batchId, uint256 disputeId);
    error RowOutOfRange(uint256 rowIndex, uint64 rowCount);
    error NoDiscrepancy();
    error InvalidProof();

    /// @param challengeWindow_ seconds after commit during which verifiers attest and anyone
    ///        may challenge; finalize is possible only after it. Also the time a dispute has
    ///        to reach a verifier supermajority before it can be voided.
    /// @param quorumBps_ share of the total active verifier stake needed to finalize (pass
    ///        attestations) and to decide a dispute (either way).
    /// @param nodeFeeBps_ node fee, as a share of the model payment, escrowed on top of it.
    /// @param verifierFeeBps_ verifier fee, as a share of the model payment, escrowed on top.
    /// @param challengeBond_ OPG a challenger posts.
    /// @param slashBps_ share of the node's slashable stake taken when a challenge is upheld.
    /// @param challengerRewardBps_ share of the slashed amount paid to the challenger; the
    ///        rest goes to the requester.
    constructor(
        IERC20 token_,
        ModelRegistry models_,
        NodeRegistry nodes_,
        uint64 challengeWindow_,
        uint16 quorumBps_,
        uint16 nodeFeeBps_,
        uint16 verifierFeeBps_,
        uint256 challengeBond_,
        uint16 slashBps_,
        uint16 challengerRewardBps_
    ) EIP712("ogkit", "1") {
        if (address(token_) == address(0)) revert InvalidParameter("token");
        if (address(models_) == address(0)) revert InvalidParameter("models");
        if (address(nodes_) == address(0)) revert InvalidParameter("nodes");
        if (challengeWindow_ == 0) revert InvalidParameter("challengeWindow");
        if (quorumBps_ == 0 || quorumBps_ > BPS) revert InvalidParameter("quorumBps");
        if (nodeFeeBps_ > BPS) revert InvalidParameter("nodeFeeBps");
        if (verifierFeeBps_ > BPS) revert InvalidParameter("verifierFeeBps");
        if (slashBps_ >= BPS) revert InvalidParameter("slashBps");
        if (challengerRewardBps_ > BPS) revert InvalidParameter("challengerRewardBps");
        token = token_;
        models = models_;
        nodes = nodes_;
        challengeWindow = challengeWindow_;
        quorumBps = quorumBps_;
        nodeFeeBps = nodeFeeBps_;
        verifierFeeBps = verifierFeeBps_;
        challengeBond = challengeBond_;
        slashBps = slashBps_;
        challengerRewardBps = challengerRewardBps_;
    }

    // ------------------------------------------------------------------ commit

    /// @notice Commit a batch signed by the calling node's attester, escrowing the requester's
    ///         payment (price x rowCount + node fee + verifier fee) via transferFrom.
    function commitBatch(BatchClaim calldata claim, bytes calldata signature, bytes32 artifactId)
        external
        returns (bytes32 digest)
    {
        return _commit(claim, signature, artifactId);
    }

    /// @notice `commitBatch`, first applying the requester's ERC-2612 permit for this contract.
    ///         A permit that fails (e.g. already used by a front-runner) is ignored; the
    ///         escrow then needs the allowance to be in place anyway.
    function commitBatchWithPermit(
        BatchClaim calldata claim,
        bytes calldata signature,
        bytes32 artifactId,
        uint256 permitValue,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 digest) {
        try IERC20Permit(address(token)).permit(
            claim.requester, address(this), permitValue, permitDeadline, v, r, s
        ) {} catch {}
        return _commit(claim, signature, artifactId);
    }

    function _commit(BatchClaim calldata claim, bytes calldata signature, bytes32 artifactId)
        private
        returns (bytes32 digest)
    {
        digest = _authorize(claim, signature);
        Batch storage b = _batches[claim.batchId];
        if (b.status != Status.None) {
            if (b.claimDigest == digest) revert SignatureReplayed(digest);
            revert BatchAlreadyCommitted(claim.batchId);
        }
        uint256 price = _priceOf(claim.modelId);
        b.requester = claim.requester;
        b.committedAt = uint48(block.timestamp);
        b.commitBlock = uint48(block.number);
        b.node = msg.sender;
        b.rowCount = claim.rowCount;
        b.status = Status.Pending;
        b.modelId = claim.modelId;
        b.runtimeId = claim.runtimeId;
        b.batchRoot = claim.batchRoot;
        b.artifactId = artifactId;
        b.claimDigest = digest;
        b.price = price;
        uint256 escrow = _escrowOf(price, claim.rowCount);
        _emitCommitted(claim, artifactId, price, escrow, digest);
        if (escrow != 0) token.safeTransferFrom(claim.requester, address(this), escrow);
    }

    /// @dev Check the caller is an eligible inference node and the claim is signed by its
    ///      bound attester for its approved measurement; returns the claim's EIP-712 digest.
    function _authorize(BatchClaim calldata claim, bytes calldata signature)
        private
        view
        returns (bytes32 digest)
    {
        (uint8 role, address attester, bytes32 measurement, uint256 ownStake, bool approved) =
            nodes.commitInfo(msg.sender);
        if (role == 0) revert NodeNotRegistered(msg.sender);
        if (role != ROLE_INFERENCE) revert NotInferenceNode(msg.sender);
        uint256 minStake = nodes.minNodeStake();
        if (ownStake < minStake) revert InsufficientStake(ownStake, minStake);
        if (claim.rowCount == 0) revert EmptyBatch();
        digest = hashClaim(claim);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != claim.attester) revert BadSignature();
        if (claim.attester != attester) revert AttesterMismatch(claim.attester, attester);
        if (claim.runtimeId != measurement) revert RuntimeMismatch(claim.runtimeId, measurement);
        if (!approved) revert MeasurementNotApproved(measurement);
    }

    /// @dev The current price of a registered, non-deprecated model.
    function _priceOf(bytes32 modelId) private view returns (uint256) {
        (address modelOwner, uint256 price, bool deprecated) = models.pricing(modelId);
        if (modelOwner == address(0)) revert ModelNotFound(modelId);
        if (deprecated) revert ModelIsDeprecated(modelId);
        return price;
    }

    function _emitCommitted(
        BatchClaim calldata claim,
        bytes32 artifactId,
        uint256 price,
        uint256 escrow,
        bytes32 digest
    ) private {
        emit BatchCommitted(
            claim.batchId,
            claim.modelId,
            msg.sender,
            claim.runtimeId,
            claim.batchRoot,
            claim.rowCount,
            claim.requester,
            claim.attester,
            claim.timestamp,
            artifactId,
            price,
            escrow,
            digest
        );
    }

    // ------------------------------------------------------------------ attest, finalize

    /// @notice A verifier's verdict on a batch, once per verifier, within the challenge
    ///         window. Its weight is its active stake (own + delegated) at attest time.
    function attest(bytes32 batchId, bool pass) external {
        Batch storage b = _open(batchId);
        uint256 endsAt = uint256(b.committedAt) + challengeWindow;
        if (block.timestamp >= endsAt) revert ChallengeWindowClosed(batchId, endsAt);
        (uint256 weight, uint256 totalVerifierStake) = _verifierWeight();
        if (_attestation[batchId][msg.sender] != 0) revert AlreadyAttested(batchId, msg.sender);
        // Stored as weight * 2 + pass so that a zero entry means "has not attested".
        _attestation[batchId][msg.sender] = (weight << 1) | (pass ? 1 : 0);
        if (pass) {
            if (_passAttesters[batchId].length >= MAX_PASS_ATTESTERS) {
                revert TooManyAttesters(batchId);
            }
            _passAttesters[batchId].push(msg.sender);
            b.yesStake += uint128(weight);
        }
        // OPG's fixed supply (1e27) fits in 128 bits: the casts cannot truncate.
        b.verifierStake = uint128(totalVerifierStake);
        emit BatchAttested(batchId, msg.sender, pass, weight, b.yesStake, totalVerifierStake);
    }

    /// @notice Settle a batch after its challenge window when pass attestations hold at least
    ///         `quorumBps` of the verifier stake recorded at the last attestation and no dispute
    ///         is open. Pays the model owner, the node and the pass verifiers (pro rata to
    ///         weight); rounding dust goes back to the requester. Anyone can call.
    function finalize(bytes32 batchId) external {
        Batch storage b = _pending(batchId);
        uint256 endsAt = uint256(b.committedAt) + challengeWindow;
        if (block.timestamp < endsAt) revert ChallengeWindowOpen(batchId, endsAt);
        if (!_quorum(b)) revert QuorumNotReached(batchId, b.yesStake, b.verifierStake);
        b.status = Status.Finalized;

        (uint256 payment, uint256 nodeFee, uint256 verifierFee) = _split(b.price, b.rowCount);
        (address modelOwner,,) = models.pricing(b.modelId);
        uint256 paid = _payVerifiers(batchId, verifierFee, b.yesStake);
        uint256 refund = verifierFee - paid;
        emit BatchFinalized(batchId, modelOwner, b.node, payment, nodeFee, paid, refund);
        if (payment != 0) token.safeTransfer(modelOwner, payment);
        if (nodeFee != 0) token.safeTransfer(b.node, nodeFee);
        if (refund != 0) token.safeTransfer(b.requester, refund);
    }

    /// @notice Refund the requester of a Pending batch whose challenge window passed without
    ///         reaching the attestation quorum. Anyone can call.
    function expire(bytes32 batchId) external {
        Batch storage b = _pending(batchId);
        uint256 endsAt = uint256(b.committedAt) + challengeWindow;
        if (block.timestamp < endsAt) revert ChallengeWindowOpen(batchId, endsAt);
        if (_quorum(b)) revert QuorumReached(batchId);
        b.status = Status.Refunded;
        _refund(batchId, b, 0);
    }

    // ------------------------------------------------------------------ challenges

    /// @notice Challenge one row of a Pending batch within its challenge window. The row's
    ///         leaf is rebuilt from (batchId, modelId, runtimeId, rowIndex, inputHash,
    ///         outputHash) and must verify against the batch root; `claimedOutputHash` is the
    ///         challenger's re-executed output hash and must differ. Posts `challengeBond` OPG.
    function challenge(
        bytes32 batchId,
        uint256 rowIndex,
        bytes32 inputHash,
        bytes32 outputHash,
        bytes32[] calldata proof,
        bytes32 claimedOutputHash
    ) external returns (uint256 disputeId) {
        Batch storage b = _pending(batchId);
        uint256 endsAt = uint256(b.committedAt) + challengeWindow;
        if (block.timestamp >= endsAt) revert ChallengeWindowClosed(batchId, endsAt);
        if (rowIndex >= b.rowCount) revert RowOutOfRange(rowIndex, b.rowCount);
        if (claimedOutputHash == outputHash) revert NoDiscrepancy();
        bytes32 leaf = receiptLeaf(batchId, b.modelId, b.runtimeId, rowIndex, inputHash, outputHash);
        if (!MerkleProof.verifyCalldata(proof, b.batchRoot, leaf)) revert InvalidProof();

        disputeId = ++disputeCount;
        _disputes[disputeId] = Dispute({
            batchId: batchId,
            challenger: msg.sender,
            openedAt: uint64(block.timestamp),
            outcome: OUTCOME_OPEN,
            upheldStake: 0,
            rejectedStake: 0
        });
        openDispute[batchId] = disputeId;
        b.status = Status.Disputed;
        emit ChallengeOpened(
            batchId,
            disputeId,
            msg.sender,
            rowIndex,
            inputHash,
            outputHash,
            claimedOutputHash,
            challengeBond
        );
        if (challengeBond != 0) token.safeTransferFrom(msg.sender, address(this), challengeBond);
    }

    /// @notice A verifier's vote on the open dispute of a batch, weighted by its active stake.
    ///         The vote that brings either side to `quorumBps` of the total active verifier
    ///         stake resolves the dispute at once.
    function resolveVote(bytes32 batchId, bool upheld) external {
        uint256 disputeId = openDispute[batchId];
        if (disputeId == 0) revert NoDispute(batchId);
        (uint256 weight,) = _verifierWeight();
        if (hasVotedOnDispute[disputeId][msg.sender]) revert AlreadyVoted(disputeId, msg.sender);
        hasVotedOnDispute[disputeId][msg.sender] = true;
        Dispute storage d = _disputes[disputeId];
        if (upheld) d.upheldStake += uint128(weight);
        else d.rejectedStake += uint128(weight);
        emit DisputeVoted(batchId, disputeId, msg.sender, upheld, weight);
        _tryResolve(batchId, disputeId, d);
    }

    /// @notice Resolve the open dispute of a batch if either side holds the supermajority of
    ///         the current total verifier stake; otherwise, once `challengeWindow` seconds have
    ///         passed since it was opened, void it (bond back to the challenger, escrow back to
    ///         the requester, batch Refunded). Anyone can call.
    function resolveChallenge(bytes32 batchId) external {
        uint256 disputeId = openDispute[batchId];
        if (disputeId == 0) revert NoDispute(batchId);
        Dispute storage d = _disputes[disputeId];
        if (_tryResolve(batchId, disputeId, d)) return;
        if (block.timestamp < uint256(d.openedAt) + challengeWindow) {
            revert NoSupermajority(batchId, disputeId);
        }
        d.outcome = OUTCOME_VOIDED;
        delete openDispute[batchId];
        Batch storage b = _batches[batchId];
        b.status = Status.Refunded;
        emit ChallengeVoided(batchId, disputeId, d.challenger);
        if (challengeBond != 0) token.safeTransfer(d.challenger, challengeBond);
        _refund(batchId, b, 0);
    }

    function _tryResolve(bytes32 batchId, uint256 disputeId, Dispute storage d)
        private
        returns (bool)
    {
        uint256 threshold = uint256(quorumBps) * nodes.totalRoleStake(ROLE_VERIFIER);
        if (d.upheldStake != 0 && uint256(d.upheldStake) * BPS >= threshold) {
            _uphold(batchId, disputeId, d);
            return true;
        }
        if (d.rejectedStake != 0 && uint256(d.rejectedStake) * BPS >= threshold) {
            _reject(batchId, disputeId, d);
            return true;
        }
        return false;
    }

    function _uphold(bytes32 batchId, uint256 disputeId, Dispute storage d) private {
        d.outcome = OUTCOME_UPHELD;
        delete openDispute[batchId];
        Batch storage b = _batches[batchId];
        b.status = Status.Slashed;
        address node = b.node;
        uint256 amount = (nodes.slashableStake(node) * slashBps) / BPS;
        uint256 slashed = nodes.slash(node, amount, address(this));
        uint256 reward = (slashed * challengerRewardBps) / BPS;
        uint256 toRequester = slashed - reward;
        emit ChallengeUpheld(
            batchId, disputeId, node, d.challenger, slashed, reward, toRequester
        );
        uint256 toChallenger = challengeBond + reward;
        if (toChallenger != 0) token.safeTransfer(d.challenger, toChallenger);
        _refund(batchId, b, toRequester);
    }

    function _reject(bytes32 batchId, uint256 disputeId, Dispute storage d) private {
        d.outcome = OUTCOME_REJECTED;
        delete openDispute[batchId];
        Batch storage b = _batches[batchId];
        b.status = Status.Pending;
        emit ChallengeRejected(batchId, disputeId, b.node, d.challenger, challengeBond);
        if (challengeBond != 0) token.safeTransfer(b.node, challengeBond);
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether `leaf` with `proof` is in the batch's Merkle tree (sorted-pair hashing).
    function verifyReceipt(bytes32 batchId, bytes32 leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _batches[batchId].batchRoot;
        if (root == bytes32(0)) return false;
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice The StandardMerkleTree leaf of one receipt row:
    ///         keccak256(bytes.concat(keccak256(abi.encode(batchId, modelId, runtimeId,
    ///         rowIndex, inputHash, outputHash)))).
    function receiptLeaf(
        bytes32 batchId,
        bytes32 modelId,
        bytes32 runtimeId,
        uint256 rowIndex,
        bytes32 inputHash,
        bytes32 outputHash
    ) public pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(abi.encode(batchId, modelId, runtimeId, rowIndex, inputHash, outputHash))
            )
        );
    }

    /// @notice The EIP-712 digest of a claim under this contract's domain.
    function hashClaim(BatchClaim calldata claim) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(BATCH_CLAIM_TYPEHASH, claim)));
    }

    /// @notice The EIP-712 domain separator (name "ogkit", version "1").
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice What a batch of `rowCount` rows of `modelId` escrows at the current price.
    function quote(bytes32 modelId, uint64 rowCount)
        external
        view
        returns (uint256 modelPayment, uint256 nodeFee, uint256 verifierFee, uint256 total)
    {
        (address owner, uint256 price,) = models.pricing(modelId);
        if (owner == address(0)) revert ModelNotFound(modelId);
        (modelPayment, nodeFee, verifierFee) = _split(price, rowCount);
        total = modelPayment + nodeFee + verifierFee;
    }

    /// @notice A stored batch.
    function getBatch(bytes32 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice A batch's status.
    function statusOf(bytes32 batchId) external view returns (Status) {
        return _batches[batchId].status;
    }

    /// @notice The verifiers that attested pass on a batch, in order.
    function passAttesters(bytes32 batchId) external view returns (address[] memory) {
        return _passAttesters[batchId];
    }

    /// @notice A verifier's attestation: whether it attested, its verdict and its weight.
    function attestationOf(bytes32 batchId, address verifier)
        external
        view
        returns (bool attested, bool pass, uint256 weight)
    {
        uint256 a = _attestation[batchId][verifier];
        return (a != 0, a & 1 == 1, a >> 1);
    }

    /// @notice A dispute.
    function getDispute(uint256 disputeId) external view returns (Dispute memory) {
        return _disputes[disputeId];
    }

    // ------------------------------------------------------------------ internals

    function _split(uint256 price, uint64 rowCount)
        private
        view
        returns (uint256 payment, uint256 nodeFee, uint256 verifierFee)
    {
        payment = price * rowCount;
        nodeFee = (payment * nodeFeeBps) / BPS;
        verifierFee = (payment * verifierFeeBps) / BPS;
    }

    /// @dev Split `fee` among the pass attesters pro rata to weight (floor); returns the sum.
    function _payVerifiers(bytes32 batchId, uint256 fee, uint256 yes)
        private
        returns (uint256 paid)
    {
        address[] storage voters = _passAttesters[batchId];
        mapping(address => uint256) storage att = _attestation[batchId];
        uint256 n = voters.length;
        for (uint256 i = 0; i < n; ++i) {
            address v = voters[i];
            uint256 share = (fee * (att[v] >> 1)) / yes;
            if (share != 0) {
                paid += share;
                emit VerifierPaid(batchId, v, share);
                token.safeTransfer(v, share);
            }
        }
    }

    function _escrowOf(uint256 price, uint64 rowCount) private view returns (uint256) {
        (uint256 payment, uint256 nodeFee, uint256 verifierFee) = _split(price, rowCount);
        return payment + nodeFee + verifierFee;
    }

    function _quorum(Batch storage b) private view returns (bool) {
        return b.yesStake != 0 && uint256(b.yesStake) * BPS >= uint256(quorumBps) * b.verifierStake;
    }

    /// @dev The calling verifier's weight and the total active verifier stake.
    function _verifierWeight() private view returns (uint256 weight, uint256 total) {
        uint8 role;
        uint256 ownStake;
        (role, ownStake, weight, total) = nodes.verifierInfo(msg.sender);
        if (role != ROLE_VERIFIER) revert NotVerifier(msg.sender);
        uint256 minStake = nodes.minVerifierStake();
        if (ownStake < minStake) revert InsufficientStake(ownStake, minStake);
    }

    function _exists(bytes32 batchId) private view returns (Batch storage b) {
        b = _batches[batchId];
        if (b.status == Status.None) revert BatchNotFound(batchId);
    }

    /// @dev A batch that can still be attested: Pending or Disputed.
    function _open(bytes32 batchId) private view returns (Batch storage b) {
        b = _exists(batchId);
        Status s = b.status;
        if (s == Status.Finalized) revert AlreadyFinalized(batchId);
        if (s != Status.Pending && s != Status.Disputed) revert BatchClosed(batchId, s);
    }

    /// @dev A Pending batch (no dispute open).
    function _pending(bytes32 batchId) private view returns (Batch storage b) {
        b = _open(batchId);
        if (b.status == Status.Disputed) revert DisputeOpen(batchId, openDispute[batchId]);
    }

    function _refund(bytes32 batchId, Batch storage b, uint256 extra) private {
        uint256 amount = _escrowOf(b.price, b.rowCount) + extra;
        emit BatchRefunded(batchId, b.requester, amount);
        if (amount != 0) token.safeTransfer(b.requester, amount);
    }
}
