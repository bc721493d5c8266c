// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @notice What settlement needs from the ModelRegistry.
interface IModelPricing {
    function pricing(bytes32 modelId, address owner)
        external
        view
        returns (bool registered, uint256 price, bool deprecated);
}

/// @notice What settlement needs from the NodeRegistry.
interface INodeStaking {
    function commitInfo(address node)
        external
        view
        returns (
            uint8 role,
            address attester,
            bytes32 measurement,
            uint256 ownStake,
            uint8 kind
        );
    function minNodeStake() external view returns (uint256);
    function unbondingPeriod() external view returns (uint64);
    function weightAt(address verifier, uint48 blockNumber) external view returns (uint256);
    function roleStakeAt(uint8 role, uint48 blockNumber) external view returns (uint256);
    function verifierWeights(address[] calldata verifiers, uint48 blockNumber)
        external
        view
        returns (uint256[] memory weights, uint256 totalVerifierStake);
    function slashableStake(address node) external view returns (uint256);
    function slash(address node, uint256 amount, address recipient)
        external
        returns (uint256 slashed, uint256 fromOwn);
    function slashOwn(address node, uint256 ownTarget, address recipient)
        external
        returns (uint256 slashed, uint256 fromOwn);
    function reward(address node, uint256 amount) external returns (bool);
    function lock(address node) external;
    function unlock(address node) external;
}

/// @title InferenceSettlement
/// @notice Requester-ordered escrow, verifier verdicts, challenges and payouts of verifiable
///         inference batches.
/// @dev Life cycle of a batch:
///      1. The requester signs an EIP-712 `JobOrder` (model, model owner, dataset commitment,
///         job, max rows, max price per row, node, deadline, nonce). The node commits the
///         batch with the order and its attester's EIP-712 `BatchClaim`; the batch id is
///         derived on chain from the order and the execution hash, the order's nonce is
///         consumed and at most the order's maximum is escrowed.
///      2. Verifiers sign EIP-712 `Verdict(batchId, claimDigest, pass)` off-chain: a verdict
///         speaks about exactly the committed claim. Weights are verifier stake at the block
///         before the commit (NodeRegistry checkpoints).
///      3. After the challenge window anyone finalises with pass verdicts holding `quorumBps`
///         of the verifier stake at that block: one call, verdicts sorted by signer, no loop
///         over on-chain state. Fees are credited (pull payments); a node's and a verifier's
///         fees go to its stake pool, so delegators share them as they share slashes.
///      4. Inside the window anyone may challenge one row (commit-reveal, so a copycat cannot
///         take a challenger's evidence). Verifiers vote with their stake at the batch snapshot.
///         Upheld: the operator's own stake loses max(minSlash, collateral) (its pool the same
///         fraction), the challenger is rewarded from that own part and the rest is burned;
///         pass verdicts of the batch become slashable; upheld voters and fail verdicts share
///         the verifier fee. Without a supermajority in time it falls back to the verdicts.
///      Storage per batch is one slot: the hash of its `Record` with the status in its low
///      byte; callers pass the record back (it is in the `BatchCommitted` event).
contract InferenceSettlement is EIP712 {
    using SafeERC20 for IERC20;

    // ------------------------------------------------------------------ types

    /// @notice What a requester signs: the only way its OPG is ever escrowed.
    struct JobOrder {
        address requester;
        bytes32 modelId;
        address modelOwner;
        bytes32 datasetId;
        bytes32 jobHash;
        uint64 maxRows;
        uint256 maxPricePerRow;
        address node;
        uint64 deadline;
        uint256 nonce;
    }

    /// @notice What an inference node's attester signs.
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

    /// @notice What is stored (as its hash) for a committed batch; every later call passes it.
    struct Record {
        address requester;
        address node;
        address modelOwner;
        uint64 rowCount;
        uint48 committedAt;
        uint48 snapshotBlock;
        bytes32 modelId;
        bytes32 runtimeId;
        bytes32 batchRoot;
        bytes32 claimDigest;
        uint256 price;
    }

    /// @notice What else a commit records (in its event only): the order's dataset commitment
    ///         and job hash, the execution hash, the claim's attester and timestamp, the
    ///         artefact id, the escrow and the order's EIP-712 digest.
    struct CommitDetails {
        bytes32 datasetId;
        bytes32 jobHash;
        bytes32 executionHash;
        address attester;
        uint64 claimTimestamp;
        bytes32 artifactId;
        uint256 escrow;
        bytes32 orderDigest;
    }

    /// @notice A pass verdict's signature in EIP-2098 compact form: r and (yParity << 255 | s).
    struct PassSignature {
        bytes32 r;
        bytes32 vs;
    }

    /// @notice A verifier's signed verdict on a batch, as passed to resolve / claim / slash.
    struct Verdict {
        address verifier;
        bool pass;
        bytes signature;
    }

    /// @notice A challenged row: its receipted leaf values, the challenger's re-executed
    ///         output hash and the salt of its commitment.
    struct RowChallenge {
        uint256 rowIndex;
        bytes32 inputHash;
        bytes32 outputHash;
        bytes32 claimedOutputHash;
        bytes32 salt;
    }

    /// @notice An ERC-2612 permit of the order's requester for this contract.
    struct Permit {
        uint256 value;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    enum Status {
        None,
        Pending,
        Disputed,
        Finalized,
        Slashed,
        Refunded
    }

    /// @dev Per batch, written only when a dispute opens or closes, or a fail verdict on it is
    ///      published (`failPublished`: then finalize checks each pass signer's).
    struct DisputeState {
        uint64 disputeId;
        uint48 reopenedAt;
        bool failPublished;
    }

    /// @dev Per node or verifier, one slot: collateral held by its open batches and fees
    ///      accrued; `used` keeps the slot non-zero so later writes stay cheap.
    struct Account {
        uint120 exposure;
        uint128 fees;
        bool used;
    }

    struct Dispute {
        bytes32 batchId;
        address challenger;
        uint48 openedAt;
        uint48 snapshotBlock;
        uint8 outcome;
        uint48 resolvedAt;
        uint96 upheldStake;
        uint96 rejectedStake;
        uint96 totalStake;
        uint256 rowIndex;
        uint256 rewardLeft;
        /// @dev The challenged receipt leaf (rowIndex, inputHash, outputHash): a root may hold
        ///      other leaves of the same row index, and only this one is in dispute.
        bytes32 leaf;
    }

    bytes32 public constant JOB_ORDER_TYPEHASH = keccak256(
        "JobOrder(address requester,bytes32 modelId,address modelOwner,bytes32 datasetId,"
        "bytes32 jobHash,uint64 maxRows,uint256 maxPricePerRow,address node,uint64 deadline,"
        "uint256 nonce)"
    );
    bytes32 public constant BATCH_CLAIM_TYPEHASH = keccak256(
        "BatchClaim(bytes32 batchId,bytes32 modelId,bytes32 runtimeId,bytes32 batchRoot,"
        "uint64 rowCount,address requester,uint64 timestamp,address attester)"
    );
    bytes32 public constant VERDICT_TYPEHASH =
        keccak256("Verdict(bytes32 batchId,bytes32 claimDigest,bool pass)");

    uint8 internal constant ROLE_INFERENCE = 1;
    uint8 internal constant ROLE_VERIFIER = 2;
    uint8 internal constant KIND_SOFTWARE = 1;
    uint8 internal constant OUTCOME_OPEN = 0;
    uint8 internal constant OUTCOME_UPHELD = 1;
    uint8 internal constant OUTCOME_REJECTED = 2;
    uint8 internal constant OUTCOME_VOIDED = 3;
    /// @notice A claim may be timestamped at most this far in the future of the commit block.
    uint64 public constant CLAIM_MAX_SKEW = 5 minutes;
    /// @notice Where slashed stake beyond a challenger's reward goes: an address no key holds.
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;
    uint256 private constant BPS = 10_000;
    bytes32 private constant STATUS_BITS = bytes32(uint256(0xff));

    IERC20 public immutable token;
    IModelPricing public immutable models;
    INodeStaking public immutable nodes;
    /// @notice Seconds after commit for challenges; finalise after it. Also a dispute's voting
    ///         time and the grace a node has to finalise before the requester may expire.
    uint64 public immutable challengeWindow;
    uint16 public immutable quorumBps;
    uint16 public immutable nodeFeeBps;
    uint16 internal immutable verifierFeeBps;
    uint256 public immutable challengeBond;
    /// @notice Collateral per batch, as a multiple (in bps) of its escrow: a node's active stake
    ///         must cover the sum over its open batches, and an upheld challenge slashes it.
    uint32 public immutable collateralBps;
    /// @notice The least an upheld challenge slashes (capped at the pool), even for a free model.
    uint256 public immutable minSlash;
    uint16 internal immutable challengerRewardBps;
    /// @notice Share of a pass-attester's pool slashed when it attested pass on an upheld fraud.
    uint16 public immutable verifierSlashBps;
    /// @notice A claim's timestamp may be at most this old at commit.
    uint64 public immutable claimMaxAge;
    /// @notice The ZkJudge that may resolve a dispute at once on a verified ZK proof of the
    ///         challenged row (zero: none).
    address public immutable zkJudge;

    /// @dev keccak256(abi.encode(record)) with its low byte replaced by the batch's Status:
    ///      one slot per batch holds what was committed and where it stands.
    mapping(bytes32 batchId => bytes32) private _commitments;
    mapping(bytes32 batchId => DisputeState) private _disputeStates;
    mapping(address requester => mapping(uint256 word => uint256)) private _nonceBitmap;
    mapping(address node => Account) private _accounts;
    mapping(address account => uint256) private _owed;
    mapping(bytes32 commitment => uint256 blockNumber) private _challengeCommits;
    mapping(uint256 disputeId => Dispute) private _disputes;
    mapping(uint256 disputeId => mapping(address verifier => uint256)) private _votes;
    mapping(uint256 disputeId => mapping(address verifier => bool)) public rewardClaimed;
    mapping(bytes32 batchId => mapping(address verifier => bool)) public attesterSlashed;
    /// @notice Whether `verifier` published a fail verdict on the batch before a dispute on it
    ///         was upheld (publishVerdict): what claimDisputeReward takes from a non-voter.
    mapping(bytes32 batchId => mapping(address verifier => bool)) public failVerdictPublished;
    uint256 public disputeCount;

    // ------------------------------------------------------------------ events

    event BatchCommitted(
        bytes32 indexed batchId,
        bytes32 indexed modelId,
        address indexed node,
        Record record,
        CommitDetails details
    );
    event VerdictPublished(
        bytes32 indexed batchId, address indexed verifier, bool pass, bytes signature
    );
    event BatchFinalized(
        bytes32 indexed batchId,
        address indexed modelOwner,
        address indexed node,
        uint256 modelPayment,
        uint256 nodeFee,
        uint256 verifierFee,
        uint256 passStake,
        uint256 totalVerifierStake
    );
    event VerifiersPaid(bytes32 indexed batchId, address[] verifiers, uint256[] amounts);
    event BatchRefunded(bytes32 indexed batchId, address indexed requester, uint256 amount);
    event ChallengeCommitted(bytes32 indexed commitment, address indexed challenger);
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
    event DisputeRewardClaimed(
        uint256 indexed disputeId, address indexed verifier, uint256 amount
    );
    event DisputeRewardSwept(uint256 indexed disputeId, address indexed requester, uint256 amount);
    event PassAttesterSlashed(
        bytes32 indexed batchId, address indexed verifier, address indexed challenger, uint256 amount
    );
    event Withdrawn(address indexed account, uint256 amount);
    event NodeFeesPaid(address indexed node, uint256 amount, bool intoPool);

    // ------------------------------------------------------------------ errors

    error InvalidParameter(string name);
    error BadOrderSignature();
    error OrderExpired(uint64 deadline);
    error NodeNotAllowed(address node, address allowed);
    error NonceUsed(address requester, uint256 nonce);
    error OrderMismatch(string field);
    error TooManyRows(uint64 rowCount, uint64 maxRows);
    error PriceAboveOrder(uint256 price, uint256 maxPricePerRow);
    error BatchIdMismatch(bytes32 claimed, bytes32 derived);
    error ClaimTimestampOutOfRange(uint64 timestamp, uint256 earliest, uint256 latest);
    error InsufficientCollateral(uint256 activeStake, uint256 required);
    error NodeNotRegistered(address node);
    error NotInferenceNode(address node);
    error InsufficientStake(uint256 available, uint256 required);
    error EmptyBatch();
    error BadSignature();
    error AttesterMismatch(address claimed, address bound);
    error RuntimeMismatch(bytes32 claimed, bytes32 bound);
    error MeasurementNotApproved(bytes32 measurement);
    error BatchAlreadyCommitted(bytes32 batchId);
    error ModelNotFound(bytes32 modelId, address owner);
    error ModelIsDeprecated(bytes32 modelId, address owner);
    error BatchNotFound(bytes32 batchId);
    error RecordMismatch(bytes32 batchId);
    error WrongStatus(bytes32 batchId, Status status);
    error ChallengeWindowOpen(bytes32 batchId, uint256 endsAt);
    error ChallengeWindowClosed(bytes32 batchId, uint256 endedAt);
    error FinalizeGraceOpen(bytes32 batchId, uint256 endsAt);
    error VerdictsNotSorted(address verifier);
    error VerdictNotPass(address verifier);
    error WrongVerdict(address verifier);
    error FailVerdictNotPublished(address verifier);
    error BadVerdictSignature(address verifier);
    error QuorumNotReached(bytes32 batchId, uint256 passStake, uint256 totalVerifierStake);
    error NotVerifier(address account);
    error UnknownDispute(uint256 disputeId);
    error DisputeClosed(uint256 disputeId);
    error VotingOpen(uint256 disputeId, uint256 endsAt);
    error VotingClosed(uint256 disputeId, uint256 endedAt);
    error AlreadyVoted(uint256 disputeId, address verifier);
    error NotUpheld(uint256 disputeId);
    error AlreadyClaimed(uint256 disputeId, address verifier);
    error ClaimPeriodOver(uint256 disputeId, uint256 endedAt);
    error ClaimPeriodOpen(uint256 disputeId, uint256 endsAt);
    error NothingToClaim(address account);
    error AlreadySlashed(bytes32 batchId, address verifier);
    error ChallengeNotCommitted();
    error RowOutOfRange(uint256 rowIndex, uint64 rowCount);
    error NoDiscrepancy();
    error InvalidProof();

    // ------------------------------------------------------------------ construction

    struct Params {
        uint64 challengeWindow;
        uint16 quorumBps;
        uint16 nodeFeeBps;
        uint16 verifierFeeBps;
        uint256 challengeBond;
        uint32 collateralBps;
        uint256 minSlash;
        uint16 challengerRewardBps;
        uint16 verifierSlashBps;
        uint64 claimMaxAge;
    }

    /// @param p the game's parameters; see docs/contracts.md for their meaning and defaults.
    ///        The NodeRegistry's unbonding period must be at least twice the challenge window,
    ///        so that stake counted for a batch is still slashable when its dispute resolves.
    constructor(
        IERC20 token_,
        IModelPricing models_,
        INodeStaking nodes_,
        Params memory p,
        address zkJudge_
    ) EIP712("ogkit", "1") {
        if (address(token_) == address(0)) revert InvalidParameter("token");
        if (address(models_) == address(0)) revert InvalidParameter("models");
        if (address(nodes_) == address(0)) revert InvalidParameter("nodes");
        if (p.challengeWindow == 0) revert InvalidParameter("challengeWindow");
        if (p.quorumBps <= BPS / 2 || p.quorumBps > BPS) revert InvalidParameter("quorumBps");
        if (p.nodeFeeBps > BPS) revert InvalidParameter("nodeFeeBps");
        if (p.verifierFeeBps > BPS) revert InvalidParameter("verifierFeeBps");
        if (p.collateralBps < BPS) revert InvalidParameter("collateralBps");
        if (p.challengerRewardBps > BPS) revert InvalidParameter("challengerRewardBps");
        if (p.verifierSlashBps > BPS) revert InvalidParameter("verifierSlashBps");
        if (p.claimMaxAge == 0) revert InvalidParameter("claimMaxAge");
        if (nodes_.unbondingPeriod() < 2 * uint256(p.challengeWindow)) {
            revert InvalidParameter("unbondingPeriod");
        }
        token = token_;
        models = models_;
        nodes = nodes_;
        challengeWindow = p.challengeWindow;
        quorumBps = p.quorumBps;
        nodeFeeBps = p.nodeFeeBps;
        verifierFeeBps = p.verifierFeeBps;
        challengeBond = p.challengeBond;
        collateralBps = p.collateralBps;
        minSlash = p.minSlash;
        challengerRewardBps = p.challengerRewardBps;
        verifierSlashBps = p.verifierSlashBps;
        claimMaxAge = p.claimMaxAge;
        zkJudge = zkJudge_;
        // Fees paid into stake pools are pulled by the registry (NodeRegistry.reward).
        token_.forceApprove(address(nodes_), type(uint256).max);
    }

    // ------------------------------------------------------------------ commit

    /// @notice Commit a batch: the requester's signed order, the caller's attester-signed claim
    ///         and the execution hash the batch id is derived from. Escrows the requester's
    ///         payment (price x rows + node fee + verifier fee) via transferFrom.
    function commitBatch(
        JobOrder calldata order,
        bytes calldata orderSignature,
        BatchClaim calldata claim,
        bytes calldata claimSignature,
        bytes32 executionHash,
        bytes32 artifactId
    ) external returns (bytes32 batchId) {
        return _commit(order, orderSignature, claim, claimSignature, executionHash, artifactId);
    }

    /// @notice `commitBatch`, first applying the requester's ERC-2612 permit for this contract.
    ///         The allowance it grants is spent only through orders the requester signed; a
    ///         permit that fails (e.g. already applied by a front-runner) is ignored.
    function commitBatchWithPermit(
        JobOrder calldata order,
        bytes calldata orderSignature,
        BatchClaim calldata claim,
        bytes calldata claimSignature,
        bytes32 executionHash,
        bytes32 artifactId,
        Permit calldata permit
    ) external returns (bytes32 batchId) {
        try IERC20Permit(address(token)).permit(
            order.requester, address(this), permit.value, permit.deadline, permit.v, permit.r, permit.s
        ) {} catch {}
        return _commit(order, orderSignature, claim, claimSignature, executionHash, artifactId);
    }

    function _commit(
        JobOrder calldata order,
        bytes calldata orderSignature,
        BatchClaim calldata claim,
        bytes calldata claimSignature,
        bytes32 executionHash,
        bytes32 artifactId
    ) private returns (bytes32 batchId) {
        CommitDetails memory details;
        details.orderDigest = _checkOrder(order, orderSignature);
        (Record memory rec, uint256 ownStake) = _checkClaim(claim, claimSignature);
        batchId = _bindToOrder(order, claim, executionHash);
        if (_commitments[batchId] != bytes32(0)) revert BatchAlreadyCommitted(batchId);
        rec.requester = order.requester;
        rec.modelOwner = order.modelOwner;
        rec.price = _price(order);
        uint256 escrow = _escrowOf(rec.price, rec.rowCount);
        Account storage account = _accounts[msg.sender];
        uint256 required = uint256(account.exposure) + _collateral(escrow);
        if (ownStake < required) revert InsufficientCollateral(ownStake, required);
        account.exposure = uint120(required);
        account.used = true;
        _commitments[batchId] = _seal(keccak256(abi.encode(rec)), Status.Pending);
        details.datasetId = order.datasetId;
        details.jobHash = order.jobHash;
        details.executionHash = executionHash;
        details.attester = claim.attester;
        details.claimTimestamp = claim.timestamp;
        details.artifactId = artifactId;
        details.escrow = escrow;
        emit BatchCommitted(batchId, rec.modelId, msg.sender, rec, details);
        if (escrow != 0) token.safeTransferFrom(order.requester, address(this), escrow);
    }

    /// @dev The claim speaks for the order: same requester and model, rows within the order,
    ///      and its batch id is the one derived from the order and the execution hash.
    function _bindToOrder(JobOrder calldata order, BatchClaim calldata claim, bytes32 executionHash)
        private
        view
        returns (bytes32 batchId)
    {
        if (claim.requester != order.requester) revert OrderMismatch("requester");
        if (claim.modelId != order.modelId) revert OrderMismatch("modelId");
        if (claim.rowCount > order.maxRows) revert TooManyRows(claim.rowCount, order.maxRows);
        batchId = deriveBatchId(
            order.modelId, order.datasetId, order.requester, order.jobHash, executionHash
        );
        if (claim.batchId != batchId) revert BatchIdMismatch(claim.batchId, batchId);
    }

    /// @dev The order is signed by its requester, not expired, names the caller (or any node),
    ///      and its nonce is unused; consumes the nonce. Returns the order's EIP-712 digest.
    function _checkOrder(JobOrder calldata order, bytes calldata signature)
        private
        returns (bytes32 digest)
    {
        digest = hashOrder(order);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != order.requester) {
            revert BadOrderSignature();
        }
        if (block.timestamp > order.deadline) revert OrderExpired(order.deadline);
        if (order.node != address(0) && order.node != msg.sender) {
            revert NodeNotAllowed(msg.sender, order.node);
        }
        uint256 word = order.nonce >> 8;
        uint256 bit = 1 << (order.nonce & 0xff);
        uint256 used = _nonceBitmap[order.requester][word];
        if (used & bit != 0) revert NonceUsed(order.requester, order.nonce);
        _nonceBitmap[order.requester][word] = used | bit;
    }

    /// @dev The caller is an eligible inference node and the claim is signed by its bound
    ///      attester for its approved measurement, timestamped near now. Returns the record's
    ///      claim-side fields and the node's active stake.
    function _checkClaim(BatchClaim calldata claim, bytes calldata signature)
        private
        view
        returns (Record memory rec, uint256 activeStake)
    {
        (uint8 role, address attester, bytes32 measurement, uint256 active, uint8 kind) =
            nodes.commitInfo(msg.sender);
        if (role == 0) revert NodeNotRegistered(msg.sender);
        if (role != ROLE_INFERENCE) revert NotInferenceNode(msg.sender);
        // 0: the node's own active stake is below the minimum.
        if (active == 0) revert InsufficientStake(0, nodes.minNodeStake());
        if (claim.rowCount == 0) revert EmptyBatch();
        bytes32 digest = hashClaim(claim);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != claim.attester) revert BadSignature();
        if (claim.attester != attester) revert AttesterMismatch(claim.attester, attester);
        if (kind == 0) revert MeasurementNotApproved(measurement);
        // A software enclave's measurement is its runtime id. A hardware attester's binding
        // names its TEE measurement; the evidence in the artefact binds the key to it and
        // the runtime id the claim names (verified off-chain, docs/tee.md).
        if (kind == KIND_SOFTWARE && claim.runtimeId != measurement) {
            revert RuntimeMismatch(claim.runtimeId, measurement);
        }
        _checkTimestamp(claim.timestamp);
        activeStake = active;
        rec.node = msg.sender;
        rec.rowCount = claim.rowCount;
        rec.committedAt = uint48(block.timestamp);
        rec.snapshotBlock = uint48(block.number - 1);
        rec.modelId = claim.modelId;
        rec.runtimeId = claim.runtimeId;
        rec.batchRoot = claim.batchRoot;
        rec.claimDigest = digest;
    }

    function _checkTimestamp(uint64 timestamp) private view {
        uint256 earliest = block.timestamp > claimMaxAge ? block.timestamp - claimMaxAge : 0;
        uint256 latest = block.timestamp + CLAIM_MAX_SKEW;
        if (timestamp < earliest || timestamp > latest) {
            revert ClaimTimestampOutOfRange(timestamp, earliest, latest);
        }
    }

    /// @dev The registered, live price of the order's model registration, within the order.
    function _price(JobOrder calldata order) private view returns (uint256 price) {
        bool registered;
        bool deprecated;
        (registered, price, deprecated) = models.pricing(order.modelId, order.modelOwner);
        if (!registered) revert ModelNotFound(order.modelId, order.modelOwner);
        if (deprecated) revert ModelIsDeprecated(order.modelId, order.modelOwner);
        if (price > order.maxPricePerRow) revert PriceAboveOrder(price, order.maxPricePerRow);
    }

    // ------------------------------------------------------------------ verdicts, finalize

    /// @notice Publish a signed verdict as an event, so finalisers and auditors can find it on
    ///         chain. Checks the signature against the committed claim. A fail verdict
    ///         published before the batch is Slashed is also noted (`failVerdictPublished`):
    ///         a verifier that did not vote claims its share of an upheld dispute's verifier
    ///         fee with it; one signed or published after the decision proves nothing.
    function publishVerdict(bytes32 batchId, Record calldata r, bool pass, bytes calldata signature)
        external
    {
        bytes32 stored = _record(batchId, r);
        bytes32 digest = hashVerdict(batchId, r.claimDigest, pass);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert BadVerdictSignature(signer);
        emit VerdictPublished(batchId, signer, pass, signature);
        if (!pass && Status(uint8(uint256(stored & STATUS_BITS))) != Status.Slashed) {
            failVerdictPublished[batchId][signer] = true;
            _disputeStates[batchId].failPublished = true;
        }
    }

    /// @notice Settle a Pending batch after its challenge window with pass verdicts holding
    ///         at least `quorumBps` of the verifier stake at the batch's snapshot block. The
    ///         verdicts are EIP-2098 compact signatures of `Verdict(batchId, claimDigest, true)`
    ///         whose signers, recovered, must be strictly ascending (one per verifier). Credits
    ///         the model owner, the node and each verifier in proportion to its weight;
    ///         rounding dust goes to the model owner. Anyone can call.
    function finalize(bytes32 batchId, Record calldata r, PassSignature[] calldata passes)
        external
    {
        bytes32 stored = _pending(batchId, r);
        (uint256 endsAt, bool disputed) = _windowEnd(batchId, r);
        if (block.timestamp < endsAt) revert ChallengeWindowOpen(batchId, endsAt);
        address[] memory signers = _passSigners(hashVerdict(batchId, r.claimDigest, true), passes);
        if (_disputeStates[batchId].failPublished) {
            // A verifier that published a fail verdict on the batch is not paid for a pass
            // too: signing both ways, it would be paid whichever way the batch went.
            for (uint256 i = 0; i < signers.length; ++i) {
                if (failVerdictPublished[batchId][signers[i]]) revert WrongVerdict(signers[i]);
            }
        }
        (uint256[] memory weights, uint256 total) =
            nodes.verifierWeights(signers, r.snapshotBlock);
        uint256 yes;
        for (uint256 i = 0; i < weights.length; ++i) {
            yes += weights[i];
        }
        if (yes == 0 || yes * BPS < uint256(quorumBps) * total) {
            revert QuorumNotReached(batchId, yes, total);
        }
        _commitments[batchId] = _seal(stored, Status.Finalized);
        if (disputed) nodes.unlock(r.node);
        _payOut(batchId, r, signers, weights, yes, total);
    }

    /// @dev Credit a finalised batch's model owner, node and pass verifiers.
    function _payOut(
        bytes32 batchId,
        Record calldata r,
        address[] memory signers,
        uint256[] memory weights,
        uint256 yes,
        uint256 total
    ) private {
        (uint256 payment, uint256 nodeFee, uint256 verifierFee) = _split(r.price, r.rowCount);
        uint256[] memory shares = new uint256[](weights.length);
        uint256 paid;
        for (uint256 i = 0; i < weights.length; ++i) {
            uint256 share = (verifierFee * weights[i]) / yes;
            if (share != 0) {
                paid += share;
                shares[i] = share;
                _credit(signers[i], share);
            }
        }
        _owed[r.modelOwner] += payment + (verifierFee - paid);
        Account storage account = _accounts[r.node];
        account.exposure -= uint120(_collateral(payment + nodeFee + verifierFee));
        account.fees += uint128(nodeFee);
        emit BatchFinalized(batchId, r.modelOwner, r.node, payment, nodeFee, paid, yes, total);
        emit VerifiersPaid(batchId, signers, shares);
    }

    /// @dev The signers of `digest`, each signature canonical, strictly ascending.
    function _passSigners(bytes32 digest, PassSignature[] calldata passes)
        private
        pure
        returns (address[] memory signers)
    {
        uint256 n = passes.length;
        signers = new address[](n);
        address previous = address(0);
        for (uint256 i = 0; i < n; ++i) {
            (address signer, ECDSA.RecoverError err,) =
                ECDSA.tryRecover(digest, passes[i].r, passes[i].vs);
            if (err != ECDSA.RecoverError.NoError) revert BadVerdictSignature(signer);
            if (signer <= previous) revert VerdictsNotSorted(signer);
            signers[i] = signer;
            previous = signer;
        }
    }

    /// @notice Refund the requester of a Pending batch nobody finalised within a grace of
    ///         `challengeWindow` after its window (or after its last dispute closed). Anyone.
    function expire(bytes32 batchId, Record calldata r) external {
        _pending(batchId, r);
        (uint256 endsAt, bool disputed) = _windowEnd(batchId, r);
        endsAt += challengeWindow;
        if (block.timestamp < endsAt) revert FinalizeGraceOpen(batchId, endsAt);
        _refund(batchId, r, disputed);
    }

    /// @dev Refunded: the escrow back to the requester, the batch's collateral (and the
    ///      node's withdrawal lock, if `locked`) released.
    function _refund(bytes32 batchId, Record calldata r, bool locked) private {
        _setStatus(batchId, Status.Refunded);
        if (locked) nodes.unlock(r.node);
        uint256 escrow = _escrowOf(r.price, r.rowCount);
        _accounts[r.node].exposure -= uint120(_collateral(escrow));
        emit BatchRefunded(batchId, r.requester, escrow);
        _pay(r.requester, escrow);
    }

    // ------------------------------------------------------------------ challenges

    /// @notice First half of a challenge: commit to keccak256(abi.encode(challenger, batchId,
    ///         rowIndex, claimedOutputHash, salt)). The reveal (`challenge`) must come in a
    ///         later block, so nobody can copy a challenge seen in the mempool.
    function commitChallenge(bytes32 commitment) external {
        if (_challengeCommits[commitment] == 0) _challengeCommits[commitment] = block.number;
        emit ChallengeCommitted(commitment, msg.sender);
    }

    /// @notice The commitment `commitChallenge` expects.
    function challengeCommitment(
        address challenger,
        bytes32 batchId,
        uint256 rowIndex,
        bytes32 claimedOutputHash,
        bytes32 salt
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(challenger, batchId, rowIndex, claimedOutputHash, salt));
    }

    /// @notice Challenge one row of a Pending batch inside its window: the leaf rebuilt from
    ///         (rowIndex, inputHash, outputHash) must be in the root committed under
    ///         `batchId` (whose record names the model and runtime the row is judged by)
    ///         and `claimedOutputHash` (the re-executed output hash) must differ.
    ///         Needs an earlier `commitChallenge` by the caller; posts `challengeBond`.
    function challenge(
        bytes32 batchId,
        Record calldata r,
        RowChallenge calldata c,
        bytes32[] calldata proof
    ) external returns (uint256 disputeId) {
        bytes32 stored = _pending(batchId, r);
        (uint256 endsAt, bool disputed) = _windowEnd(batchId, r);
        if (block.timestamp >= endsAt) revert ChallengeWindowClosed(batchId, endsAt);
        _checkEvidence(batchId, r, c, proof);

        disputeId = ++disputeCount;
        // Votes are weighed at the batch's snapshot, like its verdicts: stake moved in after
        // the commit (say, between a challenge's commitment and its reveal) weighs nothing.
        uint48 snap = r.snapshotBlock;
        Dispute storage d = _disputes[disputeId];
        d.batchId = batchId;
        d.challenger = msg.sender;
        d.openedAt = uint48(block.timestamp);
        d.snapshotBlock = snap;
        d.totalStake = uint96(nodes.roleStakeAt(ROLE_VERIFIER, snap));
        d.rowIndex = c.rowIndex;
        d.leaf = receiptLeaf(c.rowIndex, c.inputHash, c.outputHash); // the challenged leaf
        _commitments[batchId] = _seal(stored, Status.Disputed);
        _disputeStates[batchId].disputeId = uint64(disputeId);
        // One lock per disputed batch, held until the batch is final (see `_reopen`).
        if (!disputed) nodes.lock(r.node);
        emit ChallengeOpened(
            batchId,
            disputeId,
            msg.sender,
            c.rowIndex,
            c.inputHash,
            c.outputHash,
            c.claimedOutputHash,
            challengeBond
        );
        if (challengeBond != 0) token.safeTransferFrom(msg.sender, address(this), challengeBond);
    }

    function _checkEvidence(
        bytes32 batchId,
        Record calldata r,
        RowChallenge calldata c,
        bytes32[] calldata proof
    ) private view {
        uint256 committedIn = _challengeCommits[
            challengeCommitment(msg.sender, batchId, c.rowIndex, c.claimedOutputHash, c.salt)
        ];
        if (committedIn == 0 || committedIn >= block.number) revert ChallengeNotCommitted();
        if (c.rowIndex >= r.rowCount) revert RowOutOfRange(c.rowIndex, r.rowCount);
        if (c.claimedOutputHash == c.outputHash) revert NoDiscrepancy();
        bytes32 leaf = receiptLeaf(c.rowIndex, c.inputHash, c.outputHash);
        if (!MerkleProof.verifyCalldata(proof, r.batchRoot, leaf)) revert InvalidProof();
    }

    /// @notice A verifier's vote on an open dispute, weighted by its stake at the batch's
    ///         snapshot (the block before the commit). The vote that brings either side to
    ///         `quorumBps` of the verifier stake at that block resolves the dispute at once.
    function voteDispute(uint256 disputeId, Record calldata r, bool upheld) external {
        Dispute storage d = _openDispute(disputeId);
        _record(d.batchId, r);
        uint256 endsAt = uint256(d.openedAt) + challengeWindow;
        if (block.timestamp >= endsAt) revert VotingClosed(disputeId, endsAt);
        uint256 weight = nodes.weightAt(msg.sender, d.snapshotBlock);
        if (weight == 0) revert NotVerifier(msg.sender);
        if (_votes[disputeId][msg.sender] != 0) revert AlreadyVoted(disputeId, msg.sender);
        _votes[disputeId][msg.sender] = (weight << 1) | (upheld ? 1 : 0);
        // OPG's fixed supply (1e27) fits in 96 bits: the casts cannot truncate.
        if (upheld) d.upheldStake += uint96(weight);
        else d.rejectedStake += uint96(weight);
        emit DisputeVoted(d.batchId, disputeId, msg.sender, upheld, weight);
        uint256 threshold = uint256(quorumBps) * d.totalStake;
        if (uint256(d.upheldStake) * BPS >= threshold) _uphold(disputeId, d, r);
        else if (uint256(d.rejectedStake) * BPS >= threshold) _reject(disputeId, d, r);
    }

    /// @notice Close a dispute whose voting time passed without a supermajority by falling back
    ///         to the batch's signed verdicts (weights at the batch's snapshot): fail verdicts
    ///         holding the quorum uphold it, pass verdicts holding it reject it, otherwise it is
    ///         voided, a window later (bond back, batch Refunded). Verdicts sorted by
    ///         verifier. Anyone.
    function resolveChallenge(uint256 disputeId, Record calldata r, Verdict[] calldata verdicts)
        external
    {
        Dispute storage d = _openDispute(disputeId);
        bytes32 batchId = d.batchId;
        _record(batchId, r);
        uint256 endsAt = uint256(d.openedAt) + challengeWindow;
        if (block.timestamp < endsAt) revert VotingOpen(disputeId, endsAt);
        (uint256[] memory weights, uint256 total) = _weigh(batchId, r, verdicts, false);
        uint256 pass;
        uint256 fail;
        for (uint256 i = 0; i < weights.length; ++i) {
            if (verdicts[i].pass) pass += weights[i];
            else fail += weights[i];
        }
        uint256 threshold = uint256(quorumBps) * total;
        if (fail != 0 && fail * BPS >= threshold) {
            // The fail verdicts that decide it are on chain before the decision, as if
            // published (claimDisputeReward takes them from verifiers that did not vote).
            for (uint256 i = 0; i < verdicts.length; ++i) {
                if (!verdicts[i].pass) failVerdictPublished[batchId][verdicts[i].verifier] = true;
            }
            _uphold(disputeId, d, r);
        } else if (pass != 0 && pass * BPS >= threshold) {
            _reject(disputeId, d, r);
        } else {
            // The caller picks the verdicts it presents, so nothing decisive may only mean
            // that it left them out: a void waits one more window, in which anyone holding
            // decisive verdicts can still present them. A void ends the batch as `expire`
            // would (nobody presented the pass quorum it needs to finalise): reopening it
            // let any key, the node's or the requester's, void-loop it for free, holding the
            // escrow and the node's withdrawal lock for ever.
            endsAt += challengeWindow;
            if (block.timestamp < endsAt) revert VotingOpen(disputeId, endsAt);
            d.outcome = OUTCOME_VOIDED;
            d.resolvedAt = uint48(block.timestamp);
            emit ChallengeVoided(batchId, disputeId, d.challenger);
            _pay(d.challenger, challengeBond);
            _refund(batchId, r, true);
        }
    }

    /// @notice Resolve an open dispute at once: only `zkJudge`, after it checked `r` against
    ///         the dispute's batch and verified a ZK proof of the challenged row and its
    ///         binding to the receipt (ZkJudge.resolve).
    function resolveByProof(uint256 disputeId, Record calldata r, bool upheld) external {
        if (msg.sender != zkJudge) revert InvalidProof();
        Dispute storage d = _openDispute(disputeId);
        if (upheld) _uphold(disputeId, d, r);
        else _reject(disputeId, d, r);
    }

    function _uphold(uint256 disputeId, Dispute storage d, Record calldata r) private {
        bytes32 batchId = d.batchId;
        d.outcome = OUTCOME_UPHELD;
        d.resolvedAt = uint48(block.timestamp);
        _setStatus(batchId, Status.Slashed);
        nodes.unlock(r.node);
        (uint256 payment, uint256 nodeFee, uint256 verifierFee) = _split(r.price, r.rowCount);
        uint256 collateral = _collateral(payment + nodeFee + verifierFee);
        _accounts[r.node].exposure -= uint120(collateral);
        uint256 target = collateral > minSlash ? collateral : minSlash;
        (uint256 slashed, uint256 fromOwn) = nodes.slashOwn(r.node, target, address(this));
        // The operator's own stake (active or unbonding) loses `target`, or all of it when it
        // holds less (its other batches' disputes took it: exposure reserves collateral, not
        // the minSlash floor); the challenger's reward is a share of what the own stake lost,
        // never of its delegators', and the rest of the slash is burned: no key the operator
        // holds (requester, challenger) can turn its delegators' stake into its own, and
        // unstaking after the commit does not cancel the reward. The verifier fee goes to the
        // verifiers who proved right (claimDisputeReward); the rest of the escrow back to the
        // requester.
        uint256 reward = ((target < fromOwn ? target : fromOwn) * challengerRewardBps) / BPS;
        d.rewardLeft = verifierFee;
        uint256 toRequester = payment + nodeFee;
        emit ChallengeUpheld(batchId, disputeId, r.node, d.challenger, slashed, reward, toRequester);
        emit BatchRefunded(batchId, r.requester, toRequester);
        _pay(d.challenger, challengeBond + reward);
        _burn(slashed - reward);
        _pay(r.requester, toRequester);
    }

    /// @dev A rejected bond pays both parties the dispute held up: half to the requester (its
    ///      escrow waits another window), the rest to the node. A challenger key the node or
    ///      the requester holds loses half of it, so a loop of such challenges, each reopening
    ///      the window, is no free hold on the other party's escrow or stake.
    function _reject(uint256 disputeId, Dispute storage d, Record calldata r) private {
        d.outcome = OUTCOME_REJECTED;
        d.resolvedAt = uint48(block.timestamp);
        _reopen(d.batchId);
        uint256 half = challengeBond / 2;
        emit ChallengeRejected(d.batchId, disputeId, r.node, d.challenger, challengeBond - half);
        _pay(r.node, challengeBond - half);
        _pay(r.requester, half);
    }

    /// @dev Pending again, with a fresh challenge window from now (a dispute, the node's own
    ///      included, cannot run out the window of other challengers). The node's withdrawal
    ///      lock stays until the batch is final, so stake the batch counted on cannot leave
    ///      in that window; finalize and expire release it.
    function _reopen(bytes32 batchId) private {
        _setStatus(batchId, Status.Pending);
        _disputeStates[batchId].reopenedAt = uint48(block.timestamp);
    }

    /// @dev When the batch's challenge window ends: `challengeWindow` after the commit, or
    ///      after its last dispute closed; and whether it was ever disputed (then its node
    ///      holds a withdrawal lock for it).
    function _windowEnd(bytes32 batchId, Record calldata r)
        private
        view
        returns (uint256 endsAt, bool disputed)
    {
        uint256 from = _disputeStates[batchId].reopenedAt;
        disputed = from != 0;
        if (!disputed) from = r.committedAt;
        endsAt = from + challengeWindow;
    }

    /// @notice After an upheld dispute, a verifier that voted upheld, or that presents its signed
    ///         fail verdict on the batch, claims verifierFee x its weight / the verifier stake at
    ///         the batch's snapshot (into its stake pool). Open for `challengeWindow` after
    ///         resolution.
    function claimDisputeReward(uint256 disputeId, Record calldata r, Verdict calldata failVerdict)
        external
        returns (uint256 amount)
    {
        Dispute storage d = _upheld(disputeId);
        _record(d.batchId, r);
        uint256 endsAt = uint256(d.resolvedAt) + challengeWindow;
        if (block.timestamp >= endsAt) revert ClaimPeriodOver(disputeId, endsAt);
        address verifier = failVerdict.verifier;
        uint256 vote = _votes[disputeId][verifier];
        if (vote != 0 && vote & 1 == 0) revert WrongVerdict(verifier); // it voted rejected
        if (vote == 0) {
            // It did not vote upheld: its signed fail verdict on the batch is the evidence, if
            // it was published before the decision (signed after it, it proves nothing: a
            // verifier that signed pass and stayed away could otherwise take a share).
            if (failVerdict.pass) revert WrongVerdict(verifier);
            _checkVerdict(d.batchId, r.claimDigest, failVerdict);
        }
        if (rewardClaimed[disputeId][verifier]) revert AlreadyClaimed(disputeId, verifier);
        rewardClaimed[disputeId][verifier] = true;
        uint256 weight = nodes.weightAt(verifier, d.snapshotBlock);
        if (weight == 0) revert NotVerifier(verifier);
        if (vote == 0 && !failVerdictPublished[d.batchId][verifier]) {
            revert FailVerdictNotPublished(verifier);
        }
        (,, uint256 verifierFee) = _split(r.price, r.rowCount);
        // Shares of the stake at the snapshot sum to at most the fee; the cap is a safeguard.
        amount = (verifierFee * weight) / d.totalStake;
        if (amount > d.rewardLeft) amount = d.rewardLeft;
        d.rewardLeft -= amount;
        _credit(verifier, amount);
        emit DisputeRewardClaimed(disputeId, verifier, amount);
    }

    /// @notice After the claim period of an upheld dispute, send what verifiers did not claim
    ///         to the requester, so nothing stays in the contract. Anyone.
    function sweepDisputeReward(uint256 disputeId, Record calldata r) external {
        Dispute storage d = _upheld(disputeId);
        _record(d.batchId, r);
        uint256 endsAt = uint256(d.resolvedAt) + challengeWindow;
        if (block.timestamp < endsAt) revert ClaimPeriodOpen(disputeId, endsAt);
        uint256 left = d.rewardLeft;
        if (left == 0) revert NothingToClaim(r.requester);
        d.rewardLeft = 0;
        emit DisputeRewardSwept(disputeId, r.requester, left);
        _pay(r.requester, left);
    }

    /// @notice Slash a verifier that signed a pass verdict on a batch whose fraud was upheld:
    ///         `verifierSlashBps` of its pool is burned. Once per verifier and batch, anyone.
    function slashPassAttester(uint256 disputeId, Record calldata r, Verdict calldata passVerdict)
        external
        returns (uint256 slashed)
    {
        Dispute storage d = _upheld(disputeId);
        bytes32 batchId = d.batchId;
        _record(batchId, r);
        address verifier = passVerdict.verifier;
        if (!passVerdict.pass) revert VerdictNotPass(verifier);
        _checkVerdict(batchId, r.claimDigest, passVerdict);
        if (attesterSlashed[batchId][verifier]) revert AlreadySlashed(batchId, verifier);
        attesterSlashed[batchId][verifier] = true;
        uint256 amount = (nodes.slashableStake(verifier) * verifierSlashBps) / BPS;
        (slashed,) = nodes.slash(verifier, amount, address(this));
        // All of it is burned, none paid to the challenger: the challenger may be the forger
        // itself (a key of its own challenging its own fraud once the verifiers' samples
        // missed it), and a share of every pass-attester's slash would pay it more than its
        // own node lost.
        emit PassAttesterSlashed(batchId, verifier, d.challenger, slashed);
        _burn(slashed);
    }

    // ------------------------------------------------------------------ payouts

    /// @notice Withdraw what the caller is owed (model payments).
    function withdraw() external returns (uint256 amount) {
        amount = _owed[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        _owed[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        _pay(msg.sender, amount);
    }

    /// @notice Pay a node's (or verifier's) accrued fees into its stake pool, where its
    ///         delegators share them pro rata; to the node's address if its pool is empty.
    ///         Anyone can call, so delegators need not wait for the operator.
    function claimNodeFees(address node) external returns (uint256 amount) {
        Account storage account = _accounts[node];
        amount = account.fees;
        if (amount == 0) revert NothingToClaim(node);
        account.fees = 0;
        bool intoPool = nodes.reward(node, amount);
        emit NodeFeesPaid(node, amount, intoPool);
        if (!intoPool) _pay(node, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether a receipt row is in a committed batch: the leaf is computed from its
    ///         fields (an internal node of the tree cannot pass), the row must be in range,
    ///         and the root is the one committed under `batchId` (`r` must be its record, so
    ///         the batch's model, runtime and requester are the record's, never the caller's).
    ///         A receipt counts only when `included` and `status` is Finalized; a Slashed
    ///         batch's rows are reported with their status.
    function verifyReceipt(
        bytes32 batchId,
        Record calldata r,
        uint256 rowIndex,
        bytes32 inputHash,
        bytes32 outputHash,
        bytes32[] calldata proof
    ) external view returns (bool included, Status status) {
        bytes32 stored = _commitments[batchId];
        status = Status(uint8(uint256(stored & STATUS_BITS)));
        if (status == Status.None) return (false, status);
        if (stored & ~STATUS_BITS != keccak256(abi.encode(r)) & ~STATUS_BITS) {
            return (false, status);
        }
        if (rowIndex >= r.rowCount) return (false, status);
        bytes32 leaf = receiptLeaf(rowIndex, inputHash, outputHash);
        included = MerkleProof.verifyCalldata(proof, r.batchRoot, leaf);
    }

    /// @notice The leaf of one receipt row (spec §3.1): keccak256(abi.encode(rowIndex,
    ///         inputHash, outputHash)), one hash of 96 bytes. An internal node hashes 64
    ///         bytes, so no node passes as a leaf short of a keccak256 collision. The leaf
    ///         names no batch: it counts only under the record committed for `batchId`,
    ///         whose root, model and runtime the node's signed claim set.
    function receiptLeaf(uint256 rowIndex, bytes32 inputHash, bytes32 outputHash)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(rowIndex, inputHash, outputHash));
    }

    /// @notice keccak256(abi.encode(modelId, datasetId, requester, chainId, this contract,
    ///         jobHash, executionHash)): the batch id an order and an execution hash give.
    function deriveBatchId(
        bytes32 modelId,
        bytes32 datasetId,
        address requester,
        bytes32 jobHash,
        bytes32 executionHash
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                modelId, datasetId, requester, block.chainid, address(this), jobHash, executionHash
            )
        );
    }

    /// @notice The EIP-712 digest of a job order.
    function hashOrder(JobOrder calldata order) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(JOB_ORDER_TYPEHASH, order)));
    }

    /// @notice The EIP-712 digest of a claim under this contract's domain.
    function hashClaim(BatchClaim calldata claim) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(BATCH_CLAIM_TYPEHASH, claim)));
    }

    /// @notice The EIP-712 digest of a verdict.
    function hashVerdict(bytes32 batchId, bytes32 claimDigest, bool pass)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(VERDICT_TYPEHASH, batchId, claimDigest, pass)));
    }

    /// @notice A batch's status.
    function statusOf(bytes32 batchId) external view returns (Status) {
        return Status(uint8(uint256(_commitments[batchId] & STATUS_BITS)));
    }

    /// @notice A batch's state: status, open (or last) dispute id, when a dispute last closed.
    function stateOf(bytes32 batchId)
        external
        view
        returns (Status status, uint256 disputeId, uint256 reopenedAt)
    {
        DisputeState storage d = _disputeStates[batchId];
        return (
            Status(uint8(uint256(_commitments[batchId] & STATUS_BITS))), d.disputeId, d.reopenedAt
        );
    }

    /// @notice The stored commitment of a batch: keccak256(abi.encode(record)) with its low
    ///         byte cleared (the contract keeps the status there); zero if unknown.
    function commitmentOf(bytes32 batchId) external view returns (bytes32) {
        return _commitments[batchId] & ~STATUS_BITS;
    }

    /// @notice Collateral (in OPG) a node's open batches hold against its active stake.
    function exposure(address node) external view returns (uint256) {
        return _accounts[node].exposure;
    }

    /// @notice Whether a requester's order nonce has been used.
    function nonceUsed(address requester, uint256 nonce) external view returns (bool) {
        return _nonceBitmap[requester][nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    /// @notice Model payments `account` can withdraw.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @notice Fees accrued to a node or verifier, not yet paid into its pool.
    function nodeFees(address node) external view returns (uint256) {
        return _accounts[node].fees;
    }

    /// @notice A dispute.
    function getDispute(uint256 disputeId) external view returns (Dispute memory) {
        return _disputes[disputeId];
    }

    /// @notice A verifier's vote on a dispute: whether it voted, which way, with what weight.
    function voteOf(uint256 disputeId, address verifier)
        external
        view
        returns (bool voted, bool upheld, uint256 weight)
    {
        uint256 v = _votes[disputeId][verifier];
        return (v != 0, v & 1 == 1, v >> 1);
    }

    // ------------------------------------------------------------------ internals

    /// @dev The batch's stored word, after checking `r` is its record.
    function _record(bytes32 batchId, Record calldata r) private view returns (bytes32 stored) {
        stored = _commitments[batchId];
        if (stored == bytes32(0)) revert BatchNotFound(batchId);
        if (stored & ~STATUS_BITS != keccak256(abi.encode(r)) & ~STATUS_BITS) {
            revert RecordMismatch(batchId);
        }
    }

    /// @dev `_record`, and the batch must be Pending.
    function _pending(bytes32 batchId, Record calldata r) private view returns (bytes32 stored) {
        stored = _record(batchId, r);
        Status status = Status(uint8(uint256(stored & STATUS_BITS)));
        if (status != Status.Pending) revert WrongStatus(batchId, status);
    }

    function _seal(bytes32 stored, Status status) private pure returns (bytes32) {
        return (stored & ~STATUS_BITS) | bytes32(uint256(status));
    }

    function _setStatus(bytes32 batchId, Status status) private {
        _commitments[batchId] = _seal(_commitments[batchId], status);
    }

    /// @dev Slashed stake that nobody may receive goes to BURN_ADDRESS (OPG has no burn).
    function _burn(uint256 amount) private {
        _pay(BURN_ADDRESS, amount);
    }

    function _pay(address to, uint256 amount) private {
        if (amount != 0) token.safeTransfer(to, amount);
    }

    function _credit(address account, uint256 amount) private {
        Account storage a = _accounts[account];
        a.fees += uint128(amount);
        a.used = true;
    }

    /// @dev Check each verdict's signature over the committed claim (pass only, if
    ///      `passOnly`), signers strictly ascending; their weights at the batch's snapshot.
    function _weigh(bytes32 batchId, Record calldata r, Verdict[] calldata verdicts, bool passOnly)
        private
        view
        returns (uint256[] memory weights, uint256 total)
    {
        uint256 n = verdicts.length;
        address[] memory signers = new address[](n);
        address previous = address(0);
        for (uint256 i = 0; i < n; ++i) {
            Verdict calldata v = verdicts[i];
            if (v.verifier <= previous) revert VerdictsNotSorted(v.verifier);
            if (passOnly && !v.pass) revert VerdictNotPass(v.verifier);
            _checkVerdict(batchId, r.claimDigest, v);
            signers[i] = v.verifier;
            previous = v.verifier;
        }
        (weights, total) = nodes.verifierWeights(signers, r.snapshotBlock);
    }

    function _checkVerdict(bytes32 batchId, bytes32 claimDigest, Verdict calldata v)
        private
        view
    {
        bytes32 digest = hashVerdict(batchId, claimDigest, v.pass);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, v.signature);
        if (err != ECDSA.RecoverError.NoError || signer != v.verifier) {
            revert BadVerdictSignature(v.verifier);
        }
    }

    function _openDispute(uint256 disputeId) private view returns (Dispute storage d) {
        d = _disputes[disputeId];
        if (d.challenger == address(0)) revert UnknownDispute(disputeId);
        if (d.outcome != OUTCOME_OPEN) revert DisputeClosed(disputeId);
    }

    function _upheld(uint256 disputeId) private view returns (Dispute storage d) {
        d = _disputes[disputeId];
        if (d.challenger == address(0)) revert UnknownDispute(disputeId);
        if (d.outcome != OUTCOME_UPHELD) revert NotUpheld(disputeId);
    }

    function _split(uint256 price, uint64 rowCount)
        private
        view
        returns (uint256 payment, uint256 nodeFee, uint256 verifierFee)
    {
        payment = price * rowCount;
        nodeFee = (payment * nodeFeeBps) / BPS;
        verifierFee = (payment * verifierFeeBps) / BPS;
    }

    function _escrowOf(uint256 price, uint64 rowCount) private view returns (uint256) {
        (uint256 payment, uint256 nodeFee, uint256 verifierFee) = _split(price, rowCount);
        return payment + nodeFee + verifierFee;
    }

    function _collateral(uint256 escrow) private view returns (uint256) {
        return (escrow * collateralBps) / BPS;
    }
}
