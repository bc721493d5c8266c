// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

/// @title NodeRegistry
/// @notice Staking, delegation, attester binding and the governed allowlist of approved
///         enclave measurements for ogkit inference nodes (role 1) and verifiers (role 2).
/// @dev Stake accounting is a per-node share pool. Everything staked on a node - the node's
///      own stake and every delegation - buys shares of that node's pool at the pool's
///      exchange rate (assets / shares). A slash only lowers the pool's assets and a reward
///      only raises them, so the node and all of its delegators lose (or gain) the same
///      fraction of their stake in O(1), without a loop over delegators. Unbonding shares stay
///      in the pool (they remain slashable, and keep sharing rewards, until withdrawn) but no
///      longer count as active stake (weight, eligibility, quorum).
///      Active stake of a node = (poolShares - unbondingShares) * poolAssets / poolShares.
///
///      Anything that weighs stake (verifier weights, governance votes and quorums) reads
///      block-number checkpoints (OpenZeppelin `Checkpoints.Trace208`) of a block strictly in
///      the past, never the live balance: stake added in the current block, or after a
///      proposal's snapshot, weighs nothing, and moving tokens to another key after voting
///      does not buy a second vote. Every change of a node's active stake pushes a checkpoint
///      of the node and of its role, so `stakeAt` and `roleStakeAt` stay consistent.
///
///      An attester key is bound to a node only with the attester's own EIP-712 signature
///      over `AttesterBinding(node, attester, measurement)` (proof of possession), so no node
///      can claim another party's enclave key.
contract NodeRegistry is Ownable, EIP712 {
    using SafeERC20 for IERC20;
    using Checkpoints for Checkpoints.Trace208;

    uint8 public constant ROLE_INFERENCE = 1;
    uint8 public constant ROLE_VERIFIER = 2;

    /// @notice Measurement kinds; 0 means "not approved". A software measurement (the dev
    ///         enclave's runtime id, no hardware behind it) is refused in production.
    uint8 public constant KIND_SOFTWARE = 1;
    uint8 public constant KIND_TDX = 2;
    uint8 public constant KIND_SGX = 3;
    uint8 public constant KIND_NITRO = 4;

    /// @notice EIP-712 type hash of the attester's proof of possession.
    bytes32 public constant ATTESTER_BINDING_TYPEHASH =
        keccak256("AttesterBinding(address node,address attester,bytes32 measurement)");

    uint256 private constant BPS = 10_000;

    struct Node {
        uint8 role;
        address attester;
        bytes32 measurement;
        uint256 poolAssets;
        uint256 poolShares;
        uint256 unbondingShares;
        /// @dev The part of `unbondingShares` that is the node's own stake: a slash sizes the
        ///      operator's stake as its own active and unbonding shares together.
        uint256 ownUnbondingShares;
    }

    /// @dev A weight history and, in one slot, its latest checkpoint: reading a weight as of a
    ///      block at or after the latest change costs one storage read.
    struct History {
        Checkpoints.Trace208 trace;
        Checkpoints.Checkpoint208 last;
    }

    struct Unbonding {
        address node;
        uint64 releaseTime;
        address holder;
        uint256 shares;
    }

    struct Proposal {
        address proposer;
        uint64 createdAt;
        uint8 kind;
        bool executed;
        uint48 snapshotBlock;
        bytes32 measurement;
        uint256 yesVotes;
        uint256 noVotes;
    }

    IERC20 public immutable token;
    uint256 public immutable minNodeStake;
    uint256 public immutable minVerifierStake;
    uint64 public immutable unbondingPeriod;
    uint64 public immutable votingDelay;
    uint16 public immutable governanceQuorumBps;
    /// @notice True on a production deployment: software measurements cannot be approved.
    bool public immutable production;

    /// @notice The InferenceSettlement contract, the only caller allowed to slash, reward and
    ///         lock withdrawals. Set once.
    address public settlement;
    /// @notice While true the owner may approve or revoke measurements directly (bootstrap).
    bool public bootstrapOpen = true;

    mapping(address node => Node) private _nodes;
    mapping(address node => mapping(address holder => uint256)) private _shares;
    /// @dev Weight history per node, one mapping per role: a verifier's weight is then one
    ///      lookup in `_stakeHistory[ROLE_VERIFIER]`, and no inference node ever weighs as one.
    mapping(uint8 role => mapping(address node => History)) private _stakeHistory;
    mapping(uint8 role => History) private _roleStakeHistory;
    mapping(address attester => address) public nodeOfAttester;
    /// @notice The kind a measurement is approved as (KIND_*), 0 when not approved.
    mapping(bytes32 measurement => uint8) public measurementKind;
    /// @notice Open withdrawal locks per node (the settlement holds one per open dispute);
    ///         while non-zero no unbonding entry of the node's pool can be withdrawn.
    mapping(address node => uint256) public withdrawLocks;
    mapping(uint256 id => Unbonding) private _unbondings;
    mapping(uint256 id => Proposal) private _proposals;
    mapping(uint256 id => mapping(address voter => bool)) public hasVoted;
    /// @notice The newest proposal executed on a measurement: an older one can no longer be.
    mapping(bytes32 measurement => uint256 proposalId) public lastExecuted;
    uint256 public unbondingCount;
    uint256 public proposalCount;

    event NodeRegistered(
        address indexed node,
        uint8 role,
        address indexed attester,
        bytes32 measurement,
        uint256 stake
    );
    event AttesterBound(address indexed node, address indexed attester, bytes32 measurement);
    event Staked(address indexed node, address indexed account, uint256 amount, uint256 shares);
    event UnbondingStarted(
        uint256 indexed unbondingId,
        address indexed node,
        address indexed account,
        uint256 amount,
        uint256 shares,
        uint64 releaseTime
    );
    event Withdrawn(
        uint256 indexed unbondingId, address indexed node, address indexed account, uint256 amount
    );
    event Slashed(
        address indexed node,
        address indexed recipient,
        uint256 amount,
        uint256 fromNode,
        uint256 remainingPoolAssets
    );
    event Rewarded(address indexed node, uint256 amount, uint256 poolAssets);
    event WithdrawalsLocked(address indexed node, uint256 locks);
    event WithdrawalsUnlocked(address indexed node, uint256 locks);
    event ProposalCreated(
        uint256 indexed proposalId,
        address indexed proposer,
        bytes32 indexed measurement,
        uint8 kind,
        uint48 snapshotBlock,
        uint64 votingEnds
    );
    event VoteCast(
        uint256 indexed proposalId, address indexed voter, bool support, uint256 weight
    );
    event ProposalExecuted(
        uint256 indexed proposalId, bytes32 indexed measurement, uint8 kind, uint256 yes, uint256 no
    );
    event MeasurementApproved(
        bytes32 indexed measurement,
        uint256 indexed proposalId,
        uint8 kind,
        uint256 blockNumber,
        uint256 timestamp
    );
    event MeasurementRevoked(
        bytes32 indexed measurement, uint256 indexed proposalId, uint256 blockNumber, uint256 timestamp
    );
    event SettlementSet(address indexed settlement);
    event BootstrapClosed();

    error InvalidParameter(string name);
    error InvalidRole(uint8 role);
    error InvalidMeasurementKind(uint8 kind);
    error SoftwareMeasurementInProduction(bytes32 measurement);
    error NodeAlreadyRegistered(address node);
    error NodeNotRegistered(address node);
    error ZeroAttester();
    error BadAttesterSignature();
    error AttesterAlreadyBound(address attester, address node);
    error ZeroAmount();
    error InsufficientStake(uint256 available, uint256 required);
    error NoStake(address account);
    error PoolDepleted(address node);
    error UnknownUnbonding(uint256 unbondingId);
    error NotUnbondingOwner(uint256 unbondingId, address caller);
    error StillUnbonding(uint256 unbondingId, uint64 releaseTime);
    error WithdrawalLocked(address node);
    error NotLocked(address node);
    error FutureLookup(uint48 blockNumber, uint256 currentBlock);
    error NotSettlement(address caller);
    error SettlementAlreadySet(address settlement);
    error BootstrapIsClosed();
    error UnknownProposal(uint256 proposalId);
    error VotingClosed(uint256 proposalId, uint64 votingEnds);
    error VotingOpen(uint256 proposalId, uint64 votingEnds);
    error AlreadyVoted(uint256 proposalId, address voter);
    error ProposalAlreadyExecuted(uint256 proposalId);
    error ProposalSuperseded(uint256 proposalId, uint256 newer);
    error ProposalExpired(uint256 proposalId, uint64 expiredAt);
    error ProposalNotPassed(uint256 proposalId, uint256 yes, uint256 no, uint256 totalStake);

    /// @param token_ the OPG token staked here.
    /// @param minNodeStake_ own stake an inference node needs to register and commit batches.
    /// @param minVerifierStake_ own stake a verifier needs to register, attest and vote.
    /// @param unbondingPeriod_ seconds between undelegate/unstake and withdraw (non-zero).
    /// @param votingDelay_ seconds a governance proposal is open for votes; it can then be
    ///        executed during the following `votingDelay_` seconds.
    /// @param governanceQuorumBps_ share of the total active stake (all nodes, at the
    ///        proposal's snapshot block) that must have voted (yes + no) for it to pass.
    /// @param production_ a production deployment: KIND_SOFTWARE measurements are refused
    ///        here, in `bootstrapMeasurement` and in governance.
    /// @param initialMeasurements measurements approved at deployment (proposal id 0).
    /// @param initialKinds the kind (1..4) of each initial measurement, same length.
    constructor(
        IERC20 token_,
        uint256 minNodeStake_,
        uint256 minVerifierStake_,
        uint64 unbondingPeriod_,
        uint64 votingDelay_,
        uint16 governanceQuorumBps_,
        bool production_,
        bytes32[] memory initialMeasurements,
        uint8[] memory initialKinds
    ) Ownable(msg.sender) EIP712("ogkit NodeRegistry", "1") {
        if (address(token_) == address(0)) revert InvalidParameter("token");
        if (minNodeStake_ == 0) revert InvalidParameter("minNodeStake");
        if (minVerifierStake_ == 0) revert InvalidParameter("minVerifierStake");
        if (unbondingPeriod_ == 0) revert InvalidParameter("unbondingPeriod");
        if (votingDelay_ == 0) revert InvalidParameter("votingDelay");
        if (governanceQuorumBps_ == 0 || governanceQuorumBps_ > BPS) {
            revert InvalidParameter("governanceQuorumBps");
        }
        if (initialMeasurements.length != initialKinds.length) {
            revert InvalidParameter("initialKinds");
        }
        token = token_;
        minNodeStake = minNodeStake_;
        minVerifierStake = minVerifierStake_;
        unbondingPeriod = unbondingPeriod_;
        votingDelay = votingDelay_;
        governanceQuorumBps = governanceQuorumBps_;
        production = production_;
        for (uint256 i = 0; i < initialMeasurements.length; ++i) {
            if (initialKinds[i] == 0) revert InvalidMeasurementKind(0);
            _setMeasurement(initialMeasurements[i], initialKinds[i], 0);
        }
    }

    // ------------------------------------------------------------------ wiring, bootstrap

    /// @notice Wire the settlement contract (owner only, once).
    function setSettlement(address settlement_) external onlyOwner {
        if (settlement != address(0)) revert SettlementAlreadySet(settlement);
        if (settlement_ == address(0)) revert InvalidParameter("settlement");
        settlement = settlement_;
        emit SettlementSet(settlement_);
    }

    /// @notice Bootstrap only: the owner approves a measurement as `kind` (KIND_*) or revokes
    ///         it (`kind` = 0) directly, until `closeBootstrap` is called; afterwards only
    ///         governance can change the allowlist. A production deployment refuses
    ///         KIND_SOFTWARE.
    function bootstrapMeasurement(bytes32 measurement, uint8 kind) external onlyOwner {
        if (!bootstrapOpen) revert BootstrapIsClosed();
        _setMeasurement(measurement, kind, 0);
    }

    /// @notice End the bootstrap phase for good (owner only).
    function closeBootstrap() external onlyOwner {
        if (!bootstrapOpen) revert BootstrapIsClosed();
        bootstrapOpen = false;
        emit BootstrapClosed();
    }

    // ------------------------------------------------------------------ EIP-712

    /// @notice The EIP-712 domain separator (name "ogkit NodeRegistry", version "1", this
    ///         chain, this contract).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The EIP-712 digest an attester signs to consent to being bound to `node`
    ///         under `measurement`: `AttesterBinding(address node,address attester,bytes32
    ///         measurement)` in this contract's domain.
    function hashAttesterBinding(address node, address attester, bytes32 measurement)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(ATTESTER_BINDING_TYPEHASH, node, attester, measurement))
        );
    }

    // ------------------------------------------------------------------ nodes and stake

    /// @notice Register the caller as a node, staking `stake` OPG (needs an allowance).
    /// @param role 1 = inference node, 2 = verifier.
    /// @param attester the node's enclave attester address (required for inference nodes;
    ///        may be zero for verifiers); an attester can be bound to one node only.
    /// @param measurement the enclave measurement the attester key is bound to (the runtime id
    ///        for the software enclave). It need not be approved yet; commits check it.
    /// @param attesterSignature the attester's EIP-712 signature over
    ///        `hashAttesterBinding(msg.sender, attester, measurement)` (65 bytes, low s);
    ///        empty when `attester` is zero.
    function registerNode(
        uint8 role,
        uint256 stake,
        address attester,
        bytes32 measurement,
        bytes calldata attesterSignature
    ) external {
        if (role != ROLE_INFERENCE && role != ROLE_VERIFIER) revert InvalidRole(role);
        Node storage n = _nodes[msg.sender];
        if (n.role != 0) revert NodeAlreadyRegistered(msg.sender);
        uint256 required = minStake(role);
        if (stake < required) revert InsufficientStake(stake, required);
        n.role = role;
        _bind(msg.sender, n, attester, measurement, attesterSignature);
        _deposit(msg.sender, msg.sender, stake);
        emit NodeRegistered(msg.sender, role, attester, measurement, stake);
    }

    /// @notice Rebind the caller's attester key and measurement (e.g. a new enclave build),
    ///         with the new attester's signature over
    ///         `hashAttesterBinding(msg.sender, attester, measurement)`. The previous attester
    ///         is released and may then be bound to another node.
    function setAttester(address attester, bytes32 measurement, bytes calldata attesterSignature)
        external
    {
        Node storage n = _registered(msg.sender);
        if (n.attester != address(0)) delete nodeOfAttester[n.attester];
        _bind(msg.sender, n, attester, measurement, attesterSignature);
    }

    /// @notice Add to the caller's own stake (needs an allowance).
    function addStake(uint256 amount) external {
        _registered(msg.sender);
        _deposit(msg.sender, msg.sender, amount);
    }

    /// @notice Delegate `amount` OPG to `node` (needs an allowance). The delegation shares
    ///         the node's rewards and its slashes, pro rata.
    function delegate(address node, uint256 amount) external {
        _registered(node);
        _deposit(node, msg.sender, amount);
    }

    /// @notice Start unbonding `amount` OPG of the caller's delegation to `node`; withdraw it
    ///         with `withdraw(unbondingId)` after `unbondingPeriod`. Unbonding stake stays
    ///         slashable until withdrawn.
    ///         A node undelegating from itself is an `unstake`.
    function undelegate(address node, uint256 amount) external returns (uint256 unbondingId) {
        return _unbond(node, msg.sender, amount);
    }

    /// @notice Start unbonding `amount` OPG of the caller's own stake. What remains must be
    ///         zero or at least the role's minimum stake.
    function unstake(uint256 amount) external returns (uint256 unbondingId) {
        return _unbond(msg.sender, msg.sender, amount);
    }

    /// @notice Withdraw an unbonding entry whose period has passed; pays its shares at the
    ///         pool's current exchange rate (less if the node was slashed meanwhile, more if
    ///         it was rewarded). Refused while the node has a withdrawal lock (an open dispute).
    function withdraw(uint256 unbondingId) external returns (uint256 amount) {
        Unbonding memory u = _unbondings[unbondingId];
        if (u.holder == address(0)) revert UnknownUnbonding(unbondingId);
        if (u.holder != msg.sender) revert NotUnbondingOwner(unbondingId, msg.sender);
        if (block.timestamp < u.releaseTime) revert StillUnbonding(unbondingId, u.releaseTime);
        if (withdrawLocks[u.node] != 0) revert WithdrawalLocked(u.node);
        delete _unbondings[unbondingId];
        Node storage n = _nodes[u.node];
        uint256 before = _weight(u.node, n);
        amount = u.shares == n.poolShares
            ? n.poolAssets
            : Math.mulDiv(u.shares, n.poolAssets, n.poolShares);
        n.poolShares -= u.shares;
        n.unbondingShares -= u.shares;
        if (u.holder == u.node) n.ownUnbondingShares -= u.shares;
        n.poolAssets -= amount;
        _sync(u.node, n, before);
        emit Withdrawn(unbondingId, u.node, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ settlement hooks

    /// @notice Take `amount` OPG (capped at the pool) from `node`'s pool - own, delegated and
    ///         unbonding stake alike, pro rata - and send it to `recipient`. Settlement only.
    /// @return slashed what was taken.
    function slash(address node, uint256 amount, address recipient)
        external
        returns (uint256 slashed, uint256 fromOwn)
    {
        _onlySettlement();
        return _slash(node, _registered(node), amount, recipient);
    }

    /// @notice Slash `node`'s pool by the share that takes `ownTarget` from the node's own
    ///         stake, active and unbonding (the whole pool when its own stake is below that):
    ///         the operator loses what it put at risk, and its delegators lose the same
    ///         fraction, however much of its own stake the operator started unbonding.
    ///         Settlement only.
    function slashOwn(address node, uint256 ownTarget, address recipient)
        external
        returns (uint256 slashed, uint256 fromOwn)
    {
        _onlySettlement();
        Node storage n = _registered(node);
        uint256 own = _ownValue(node, n);
        uint256 amount =
            own > ownTarget ? Math.mulDiv(n.poolAssets, ownTarget, own) : n.poolAssets;
        return _slash(node, n, amount, recipient);
    }

    function _slash(address node, Node storage n, uint256 amount, address recipient)
        private
        returns (uint256 slashed, uint256 fromOwn)
    {
        slashed = amount > n.poolAssets ? n.poolAssets : amount;
        uint256 before = _weight(node, n);
        uint256 ownBefore = _ownValue(node, n);
        n.poolAssets -= slashed;
        _sync(node, n, before);
        fromOwn = ownBefore - _ownValue(node, n);
        emit Slashed(node, recipient, slashed, fromOwn, n.poolAssets);
        if (slashed != 0) token.safeTransfer(recipient, slashed);
    }

    /// @notice Pay `amount` OPG of fees into `node`'s pool, pulled from the settlement (needs
    ///         an allowance). Settlement only. It raises the value of every share of the pool
    ///         - the node's own, every delegation and the unbonding shares not yet withdrawn
    ///         alike, pro rata - just as a slash lowers them all.
    /// @return accepted false (and nothing happens, no tokens move) when the node is not
    ///         registered or its pool has no shares: nobody would own the reward.
    function reward(address node, uint256 amount) external returns (bool accepted) {
        _onlySettlement();
        Node storage n = _nodes[node];
        if (n.role == 0 || n.poolShares == 0) return false;
        uint256 before = _weight(node, n);
        n.poolAssets += amount;
        _sync(node, n, before);
        emit Rewarded(node, amount, n.poolAssets);
        token.safeTransferFrom(msg.sender, address(this), amount);
        return true;
    }

    /// @notice Hold one withdrawal lock on `node` (settlement only, e.g. while a dispute
    ///         against it is open): no unbonding entry of its pool can be withdrawn until
    ///         every lock is released, so matured unbonding stake cannot escape a slash.
    function lock(address node) external {
        _onlySettlement();
        uint256 locks = withdrawLocks[node] + 1;
        withdrawLocks[node] = locks;
        emit WithdrawalsLocked(node, locks);
    }

    /// @notice Release one withdrawal lock on `node` (settlement only).
    function unlock(address node) external {
        _onlySettlement();
        uint256 locks = withdrawLocks[node];
        if (locks == 0) revert NotLocked(node);
        withdrawLocks[node] = --locks;
        emit WithdrawalsUnlocked(node, locks);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Propose approving `measurement` as `kind` (KIND_*), or revoking it (`kind` =
    ///         0). Caller: a registered node with active stake. Votes are weighed with the
    ///         stake of the block before this one (the proposal's snapshot).
    function propose(bytes32 measurement, uint8 kind) external returns (uint256 proposalId) {
        _checkKind(measurement, kind);
        Node storage n = _registered(msg.sender);
        if (_active(n) == 0) revert NoStake(msg.sender);
        proposalId = ++proposalCount;
        uint48 snapshot = SafeCast.toUint48(block.number - 1);
        _proposals[proposalId] = Proposal({
            proposer: msg.sender,
            createdAt: uint64(block.timestamp),
            kind: kind,
            executed: false,
            snapshotBlock: snapshot,
            measurement: measurement,
            yesVotes: 0,
            noVotes: 0
        });
        emit ProposalCreated(
            proposalId,
            msg.sender,
            measurement,
            kind,
            snapshot,
            uint64(block.timestamp) + votingDelay
        );
    }

    /// @notice Vote on a proposal with the caller's active stake (own + delegated) at the
    ///         proposal's snapshot block; once per node, while the proposal is open. Stake
    ///         gained after the snapshot weighs nothing.
    function vote(uint256 proposalId, bool support) external {
        Proposal storage p = _proposal(proposalId);
        uint64 ends = p.createdAt + votingDelay;
        if (block.timestamp >= ends) revert VotingClosed(proposalId, ends);
        if (hasVoted[proposalId][msg.sender]) revert AlreadyVoted(proposalId, msg.sender);
        uint256 weight = stakeAt(msg.sender, p.snapshotBlock);
        if (weight == 0) revert NoStake(msg.sender);
        hasVoted[proposalId][msg.sender] = true;
        if (support) p.yesVotes += weight;
        else p.noVotes += weight;
        emit VoteCast(proposalId, msg.sender, support, weight);
    }

    /// @notice Apply a proposal once voting has ended, if yes > no and yes + no reaches
    ///         `governanceQuorumBps` of the total active stake (inference + verifier) at the
    ///         proposal's snapshot block. Must happen within `votingDelay` seconds after
    ///         voting ends. Anyone can call.
    function execute(uint256 proposalId) external {
        Proposal storage p = _proposal(proposalId);
        if (p.executed) revert ProposalAlreadyExecuted(proposalId);
        // Proposals on one measurement apply in creation order: executing an older one after
        // a newer one (an approval after the revocation that followed it) would undo the
        // newer decision.
        uint256 newer = lastExecuted[p.measurement];
        if (newer > proposalId) revert ProposalSuperseded(proposalId, newer);
        uint64 ends = p.createdAt + votingDelay;
        if (block.timestamp < ends) revert VotingOpen(proposalId, ends);
        if (block.timestamp >= ends + votingDelay) revert ProposalExpired(proposalId, ends + votingDelay);
        uint48 snapshot = p.snapshotBlock;
        uint256 total = _lookup(_roleStakeHistory[ROLE_INFERENCE], snapshot)
            + _lookup(_roleStakeHistory[ROLE_VERIFIER], snapshot);
        uint256 yes = p.yesVotes;
        uint256 no = p.noVotes;
        if (yes <= no || (yes + no) * BPS < uint256(governanceQuorumBps) * total) {
            revert ProposalNotPassed(proposalId, yes, no, total);
        }
        p.executed = true;
        lastExecuted[p.measurement] = proposalId;
        emit ProposalExecuted(proposalId, p.measurement, p.kind, yes, no);
        _setMeasurement(p.measurement, p.kind, proposalId);
    }

    // ------------------------------------------------------------------ views: stake history

    /// @notice Weight of `node` at the end of block `blockNumber` (< block.number): its active
    ///         stake (own + delegated, not unbonding) while its own active stake was at least
    ///         its role's minimum, else 0.
    function stakeAt(address node, uint48 blockNumber) public view returns (uint256) {
        _checkPast(blockNumber);
        return _lookup(_stakeHistory[_nodes[node].role][node], blockNumber);
    }

    /// @notice Sum of the weights (`stakeAt`) of every node with `role` at the end of block
    ///         `blockNumber`, which must be in the past (< block.number).
    function roleStakeAt(uint8 role, uint48 blockNumber) public view returns (uint256) {
        _checkPast(blockNumber);
        return _lookup(_roleStakeHistory[role], blockNumber);
    }

    /// @notice A verifier's weight as of `blockNumber` (< block.number): `stakeAt`, or 0
    ///         unless `verifier` is a verifier (role 2). Own stake below `minVerifierStake` at
    ///         that block weighs 0, and so does not count in the role's total either.
    function weightAt(address verifier, uint48 blockNumber) public view returns (uint256) {
        _checkPast(blockNumber);
        return _weightAt(verifier, blockNumber);
    }

    /// @notice `weightAt(verifiers[i], blockNumber)` for each verifier, and the total active
    ///         verifier stake at `blockNumber` (`roleStakeAt(2, blockNumber)`), in one call.
    ///         Duplicates are not merged: the caller counts each verifier once.
    function verifierWeights(address[] calldata verifiers, uint48 blockNumber)
        external
        view
        returns (uint256[] memory weights, uint256 totalVerifierStake)
    {
        _checkPast(blockNumber);
        uint256 count = verifiers.length;
        weights = new uint256[](count);
        for (uint256 i = 0; i < count; ++i) {
            weights[i] = _weightAt(verifiers[i], blockNumber);
        }
        totalVerifierStake = _lookup(_roleStakeHistory[ROLE_VERIFIER], blockNumber);
    }

    // ------------------------------------------------------------------ views

    /// @notice The stake a role needs (own stake).
    function minStake(uint8 role) public view returns (uint256) {
        if (role == ROLE_INFERENCE) return minNodeStake;
        if (role == ROLE_VERIFIER) return minVerifierStake;
        revert InvalidRole(role);
    }

    /// @notice Whether `measurement` is approved now, as any kind.
    function isMeasurementApproved(bytes32 measurement) public view returns (bool) {
        return measurementKind[measurement] != 0;
    }

    /// @notice Everything known about a node; stakes are current values in OPG.
    function getNode(address node)
        external
        view
        returns (
            uint8 role,
            address attester,
            bytes32 measurement,
            uint256 ownStake,
            uint256 delegatedStake,
            uint256 unbondingStake
        )
    {
        Node storage n = _nodes[node];
        uint256 active = _active(n);
        ownStake = _value(n, _shares[node][node]);
        return (
            n.role,
            n.attester,
            n.measurement,
            ownStake,
            active - ownStake,
            _value(n, n.unbondingShares)
        );
    }

    /// @notice What settlement checks on commit, in one call: the node's role, bound attester
    ///         and measurement, its own active stake (0 while below its role's minimum: the
    ///         collateral of its open batches must fit in it) and the kind its measurement is
    ///         approved as (0: not approved).
    function commitInfo(address node)
        external
        view
        returns (
            uint8 role,
            address attester,
            bytes32 measurement,
            uint256 ownStake,
            uint8 kind
        )
    {
        Node storage n = _nodes[node];
        measurement = n.measurement;
        uint8 role_ = n.role;
        ownStake = _value(n, _shares[node][node]);
        if (role_ == 0 || ownStake < minStake(role_)) ownStake = 0;
        return (role_, n.attester, measurement, ownStake, measurementKind[measurement]);
    }

    /// @notice A verifier's CURRENT role, own stake, active stake and the current total active
    ///         verifier stake. Live values: weigh votes with `verifierWeights`, not this.
    function verifierInfo(address node)
        external
        view
        returns (uint8 role, uint256 ownStake, uint256 weight, uint256 totalVerifierStake)
    {
        Node storage n = _nodes[node];
        return (
            n.role,
            _value(n, _shares[node][node]),
            _active(n),
            _roleStakeHistory[ROLE_VERIFIER].last._value
        );
    }

    /// @notice Active stake (own + delegated, not unbonding) of a node now.
    function totalStake(address node) external view returns (uint256) {
        return _active(_nodes[node]);
    }

    /// @notice Everything a slash can take from a node: its whole pool, unbonding included.
    function slashableStake(address node) external view returns (uint256) {
        return _nodes[node].poolAssets;
    }

    /// @notice Active stake `account` holds in `node`'s pool (its own stake when account == node).
    function stakeOf(address node, address account) external view returns (uint256) {
        Node storage n = _nodes[node];
        return _value(n, _shares[node][account]);
    }

    /// @notice Shares `account` holds in `node`'s pool, and the pool's totals.
    function sharesOf(address node, address account)
        external
        view
        returns (uint256 shares, uint256 poolShares, uint256 poolAssets)
    {
        Node storage n = _nodes[node];
        return (_shares[node][account], n.poolShares, n.poolAssets);
    }

    /// @notice Sum of the active stake of every node with `role` now.
    function totalRoleStake(uint8 role) external view returns (uint256) {
        return _roleStakeHistory[role].last._value;
    }

    /// @notice Sum of the active stake of every node now.
    function totalActiveStake() external view returns (uint256) {
        return _roleStakeHistory[ROLE_INFERENCE].last._value
            + _roleStakeHistory[ROLE_VERIFIER].last._value;
    }

    /// @notice An unbonding entry and what it would pay now.
    function getUnbonding(uint256 unbondingId)
        external
        view
        returns (address node, address holder, uint64 releaseTime, uint256 shares, uint256 value)
    {
        Unbonding storage u = _unbondings[unbondingId];
        return (u.node, u.holder, u.releaseTime, u.shares, _value(_nodes[u.node], u.shares));
    }

    /// @notice A governance proposal; `kind` 0 is a revocation, 1..4 an approval as that kind.
    function getProposal(uint256 proposalId)
        external
        view
        returns (
            address proposer,
            bytes32 measurement,
            uint8 kind,
            uint64 createdAt,
            uint64 votingEnds,
            uint48 snapshotBlock,
            uint256 yesVotes,
            uint256 noVotes,
            bool executed
        )
    {
        Proposal storage p = _proposal(proposalId);
        return (
            p.proposer,
            p.measurement,
            p.kind,
            p.createdAt,
            p.createdAt + votingDelay,
            p.snapshotBlock,
            p.yesVotes,
            p.noVotes,
            p.executed
        );
    }

    // ------------------------------------------------------------------ internals

    function _onlySettlement() private view {
        if (msg.sender != settlement) revert NotSettlement(msg.sender);
    }

    function _checkPast(uint48 blockNumber) private view {
        if (blockNumber >= block.number) revert FutureLookup(blockNumber, block.number);
    }

    function _registered(address node) private view returns (Node storage n) {
        n = _nodes[node];
        if (n.role == 0) revert NodeNotRegistered(node);
    }

    function _proposal(uint256 proposalId) private view returns (Proposal storage p) {
        p = _proposals[proposalId];
        if (p.proposer == address(0)) revert UnknownProposal(proposalId);
    }

    /// @dev `weightAt` without the past-block check (callers check once): one lookup in the
    ///      verifiers' weight history (two slots when the latest checkpoint is old enough).
    function _weightAt(address verifier, uint48 blockNumber) private view returns (uint256) {
        return _lookup(_stakeHistory[ROLE_VERIFIER][verifier], blockNumber);
    }

    /// @dev Bind `attester` to `node` under `measurement`, checking the attester's EIP-712
    ///      proof of possession. A zero attester (verifiers only) takes an empty signature.
    function _bind(
        address node,
        Node storage n,
        address attester,
        bytes32 measurement,
        bytes calldata signature
    ) private {
        if (attester == address(0)) {
            if (n.role == ROLE_INFERENCE) revert ZeroAttester();
            if (signature.length != 0) revert BadAttesterSignature();
        } else {
            (address recovered, ECDSA.RecoverError err,) =
                ECDSA.tryRecover(hashAttesterBinding(node, attester, measurement), signature);
            if (err != ECDSA.RecoverError.NoError || recovered != attester) {
                revert BadAttesterSignature();
            }
            address bound = nodeOfAttester[attester];
            if (bound != address(0) && bound != node) revert AttesterAlreadyBound(attester, bound);
            nodeOfAttester[attester] = node;
        }
        n.attester = attester;
        n.measurement = measurement;
        emit AttesterBound(node, attester, measurement);
    }

    function _value(Node storage n, uint256 shares) private view returns (uint256) {
        uint256 total = n.poolShares;
        return total == 0 ? 0 : Math.mulDiv(shares, n.poolAssets, total);
    }

    /// @dev The node's own stake in its pool, active and unbonding.
    function _ownValue(address node, Node storage n) private view returns (uint256) {
        return _value(n, _shares[node][node] + n.ownUnbondingShares);
    }

    function _active(Node storage n) private view returns (uint256) {
        return _value(n, n.poolShares - n.unbondingShares);
    }

    /// @dev What a node weighs (and what is checkpointed): its active stake while its own
    ///      active stake is at least its role's minimum, else 0. Computed when stake moves, so
    ///      reading a weight later costs one checkpoint lookup.
    function _weight(address node, Node storage n) private view returns (uint256) {
        uint256 active = _active(n);
        if (active == 0) return 0;
        if (_value(n, _shares[node][node]) < minStake(n.role)) return 0;
        return active;
    }

    /// @dev The weight as of `blockNumber`: the latest checkpoint when it is at or before
    ///      the block (one storage read, the common case), else a search of the history.
    function _lookup(History storage h, uint48 blockNumber) private view returns (uint256) {
        Checkpoints.Checkpoint208 memory last = h.last;
        if (last._key <= blockNumber) return last._value;
        return h.trace.upperLookupRecent(blockNumber);
    }

    function _record(History storage h, uint48 key, uint256 value) private {
        uint208 v = SafeCast.toUint208(value);
        h.trace.push(key, v);
        h.last = Checkpoints.Checkpoint208({_key: key, _value: v});
    }

    /// @dev After any change to `node`'s pool: checkpoint its new active stake and move its
    ///      role's total by the difference, so each role's latest checkpoint stays the sum of
    ///      the latest checkpoints of its nodes. Two checkpoints in one block share a slot.
    function _sync(address node, Node storage n, uint256 before) private {
        uint256 afterward = _weight(node, n);
        if (afterward == before) return;
        uint48 key = SafeCast.toUint48(block.number);
        _record(_stakeHistory[n.role][node], key, afterward);
        History storage roleHistory = _roleStakeHistory[n.role];
        _record(roleHistory, key, uint256(roleHistory.last._value) - before + afterward);
    }

    function _deposit(address node, address holder, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        Node storage n = _nodes[node];
        uint256 shares;
        if (n.poolShares == 0) {
            shares = amount;
        } else {
            if (n.poolAssets == 0) revert PoolDepleted(node);
            shares = Math.mulDiv(amount, n.poolShares, n.poolAssets);
            if (shares == 0) revert ZeroAmount();
        }
        uint256 before = _weight(node, n);
        n.poolShares += shares;
        n.poolAssets += amount;
        _shares[node][holder] += shares;
        _sync(node, n, before);
        emit Staked(node, holder, amount, shares);
        token.safeTransferFrom(holder, address(this), amount);
    }

    function _unbond(address node, address holder, uint256 amount)
        private
        returns (uint256 unbondingId)
    {
        if (amount == 0) revert ZeroAmount();
        Node storage n = _registered(node);
        uint256 held = _shares[node][holder];
        if (held == 0) revert NoStake(holder);
        if (n.poolAssets == 0) revert PoolDepleted(node);
        uint256 shares = Math.mulDiv(amount, n.poolShares, n.poolAssets, Math.Rounding.Ceil);
        if (shares > held) revert InsufficientStake(_value(n, held), amount);
        // Shares left worth nothing go with the rest: no holder keeps dust shares, so a pool
        // is not left with a few worthless shares that fees claimed into it would inflate.
        if (_value(n, held - shares) == 0) shares = held;
        uint256 before = _weight(node, n);
        _shares[node][holder] = held - shares;
        n.unbondingShares += shares;
        if (holder == node) n.ownUnbondingShares += shares;
        _sync(node, n, before);
        if (holder == node) {
            uint256 remaining = _value(n, held - shares);
            uint256 required = minStake(n.role);
            if (remaining != 0 && remaining < required) {
                revert InsufficientStake(remaining, required);
            }
        }
        unbondingId = ++unbondingCount;
        uint64 release = uint64(block.timestamp) + unbondingPeriod;
        _unbondings[unbondingId] =
            Unbonding({node: node, releaseTime: release, holder: holder, shares: shares});
        emit UnbondingStarted(unbondingId, node, holder, amount, shares, release);
    }

    /// @dev Reject a kind outside 0..4, and KIND_SOFTWARE in production.
    function _checkKind(bytes32 measurement, uint8 kind) private view {
        if (kind > KIND_NITRO) revert InvalidMeasurementKind(kind);
        if (production && kind == KIND_SOFTWARE) revert SoftwareMeasurementInProduction(measurement);
    }

    /// @dev Approve `measurement` as `kind`, or revoke it when `kind` is 0.
    function _setMeasurement(bytes32 measurement, uint8 kind, uint256 proposalId) private {
        _checkKind(measurement, kind);
        measurementKind[measurement] = kind;
        if (kind != 0) {
            emit MeasurementApproved(measurement, proposalId, kind, block.number, block.timestamp);
        } else {
            emit MeasurementRevoked(measurement, proposalId, block.number, block.timestamp);
        }
    }
}
