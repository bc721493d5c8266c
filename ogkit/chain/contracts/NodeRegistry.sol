// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title NodeRegistry
/// @notice Staking, delegation, attester binding and the governed allowlist of approved
///         enclave measurements for ogkit inference nodes (role 1) and verifiers (role 2).
/// @dev Stake accounting is a per-node share pool. Everything staked on a node - the node's
///      own stake and every delegation - buys shares of that node's pool at the pool's
///      exchange rate (assets / shares). A slash only lowers the pool's assets, so the node
///      and all of its delegators lose the same fraction of their stake in O(1), without a
///      loop over delegators. Unbonding shares stay in the pool (they remain slashable until
///      withdrawn) but no longer count as active stake (weight, eligibility, quorum).
///      Active stake of a node = (poolShares - unbondingShares) * poolAssets / poolShares.
contract NodeRegistry is Ownable {
    using SafeERC20 for IERC20;

    uint8 public constant ROLE_INFERENCE = 1;
    uint8 public constant ROLE_VERIFIER = 2;
    uint256 private constant BPS = 10_000;

    struct Node {
        uint8 role;
        address attester;
        bytes32 measurement;
        uint256 poolAssets;
        uint256 poolShares;
        uint256 unbondingShares;
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
        bool approve;
        bool executed;
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

    /// @notice The InferenceSettlement contract, the only caller allowed to slash. Set once.
    address public settlement;
    /// @notice While true the owner may approve or revoke measurements directly (bootstrap).
    bool public bootstrapOpen = true;

    mapping(address node => Node) private _nodes;
    mapping(address node => mapping(address holder => uint256)) private _shares;
    mapping(address attester => address) public nodeOfAttester;
    mapping(uint8 role => uint256) private _roleStake;
    mapping(bytes32 measurement => bool) public isMeasurementApproved;
    mapping(uint256 id => Unbonding) private _unbondings;
    mapping(uint256 id => Proposal) private _proposals;
    mapping(uint256 id => mapping(address voter => bool)) public hasVoted;
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
    event ProposalCreated(
        uint256 indexed proposalId,
        address indexed proposer,
        bytes32 indexed measurement,
        bool approve,
        uint64 votingEnds
    );
    event VoteCast(
        uint256 indexed proposalId, address indexed voter, bool support, uint256 weight
    );
    event ProposalExecuted(
        uint256 indexed proposalId, bytes32 indexed measurement, bool approve, uint256 yes, uint256 no
    );
    event MeasurementApproved(
        bytes32 indexed measurement, uint256 indexed proposalId, uint256 blockNumber, uint256 timestamp
    );
    event MeasurementRevoked(
        bytes32 indexed measurement, uint256 indexed proposalId, uint256 blockNumber, uint256 timestamp
    );
    event SettlementSet(address indexed settlement);
    event BootstrapClosed();

    error InvalidParameter(string name);
    error InvalidRole(uint8 role);
    error NodeAlreadyRegistered(address node);
    error NodeNotRegistered(address node);
    error ZeroAttester();
    error AttesterAlreadyBound(address attester, address node);
    error ZeroAmount();
    error InsufficientStake(uint256 available, uint256 required);
    error NoStake(address account);
    error PoolDepleted(address node);
    error UnknownUnbonding(uint256 unbondingId);
    error NotUnbondingOwner(uint256 unbondingId, address caller);
    error StillUnbonding(uint256 unbondingId, uint64 releaseTime);
    error NotSettlement(address caller);
    error SettlementAlreadySet(address settlement);
    error BootstrapIsClosed();
    error UnknownProposal(uint256 proposalId);
    error VotingClosed(uint256 proposalId, uint64 votingEnds);
    error VotingOpen(uint256 proposalId, uint64 votingEnds);
    error AlreadyVoted(uint256 proposalId, address voter);
    error ProposalAlreadyExecuted(uint256 proposalId);
    error ProposalExpired(uint256 proposalId, uint64 expiredAt);
    error ProposalNotPassed(uint256 proposalId, uint256 yes, uint256 no, uint256 totalStake);

    /// @param token_ the OPG token staked here.
    /// @param minNodeStake_ own stake an inference node needs to register and commit batches.
    /// @param minVerifierStake_ own stake a verifier needs to register, attest and vote.
    /// @param unbondingPeriod_ seconds between undelegate/unstake and withdraw.
    /// @param votingDelay_ seconds a governance proposal is open for votes; it can then be
    ///        executed during the following `votingDelay_` seconds.
    /// @param governanceQuorumBps_ share of the total active stake (all nodes) that must have
    ///        voted (yes + no) for a proposal to pass.
    /// @param initialMeasurements measurements approved at deployment (proposal id 0).
    constructor(
        IERC20 token_,
        uint256 minNodeStake_,
        uint256 minVerifierStake_,
        uint64 unbondingPeriod_,
        uint64 votingDelay_,
        uint16 governanceQuorumBps_,
        bytes32[] memory initialMeasurements
    ) Ownable(msg.sender) {
        if (address(token_) == address(0)) revert InvalidParameter("token");
        if (minNodeStake_ == 0) revert InvalidParameter("minNodeStake");
        if (minVerifierStake_ == 0) revert InvalidParameter("minVerifierStake");
        if (votingDelay_ == 0) revert InvalidParameter("votingDelay");
        if (governanceQuorumBps_ == 0 || governanceQuorumBps_ > BPS) {
            revert InvalidParameter("governanceQuorumBps");
        }
        token = token_;
        minNodeStake = minNodeStake_;
        minVerifierStake = minVerifierStake_;
        unbondingPeriod = unbondingPeriod_;
        votingDelay = votingDelay_;
        governanceQuorumBps = governanceQuorumBps_;
        for (uint256 i = 0; i < initialMeasurements.length; ++i) {
            _setMeasurement(initialMeasurements[i], true, 0);
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

    /// @notice Bootstrap only: the owner approves or revokes a measurement directly, until
    ///         `closeBootstrap` is called; afterwards only governance can change the allowlist.
    function bootstrapMeasurement(bytes32 measurement, bool approve) external onlyOwner {
        if (!bootstrapOpen) revert BootstrapIsClosed();
        _setMeasurement(measurement, approve, 0);
    }

    /// @notice End the bootstrap phase for good (owner only).
    function closeBootstrap() external onlyOwner {
        if (!bootstrapOpen) revert BootstrapIsClosed();
        bootstrapOpen = false;
        emit BootstrapClosed();
    }

    // ------------------------------------------------------------------ nodes and stake

    /// @notice Register the caller as a node, staking `stake` OPG (needs an allowance).
    /// @param role 1 = inference node, 2 = verifier.
    /// @param attester the node's enclave attester address (required for inference nodes;
    ///        may be zero for verifiers); an attester can be bound to one node only.
    /// @param measurement the enclave measurement the attester key is bound to (the runtime id
    ///        for the software enclave). It need not be approved yet; commits check it.
    function registerNode(uint8 role, uint256 stake, address attester, bytes32 measurement)
        external
    {
        if (role != ROLE_INFERENCE && role != ROLE_VERIFIER) revert InvalidRole(role);
        Node storage n = _nodes[msg.sender];
        if (n.role != 0) revert NodeAlreadyRegistered(msg.sender);
        uint256 required = minStake(role);
        if (stake < required) revert InsufficientStake(stake, required);
        n.role = role;
        _bind(msg.sender, n, attester, measurement);
        _deposit(msg.sender, msg.sender, stake);
        emit NodeRegistered(msg.sender, role, attester, measurement, stake);
    }

    /// @notice Rebind the caller's attester key and measurement (e.g. a new enclave build).
    function setAttester(address attester, bytes32 measurement) external {
        Node storage n = _registered(msg.sender);
        if (n.attester != address(0)) delete nodeOfAttester[n.attester];
        _bind(msg.sender, n, attester, measurement);
    }

    /// @notice Add to the caller's own stake (needs an allowance).
    function addStake(uint256 amount) external {
        _registered(msg.sender);
        _deposit(msg.sender, msg.sender, amount);
    }

    /// @notice Delegate `amount` OPG to `node` (needs an allowance). The delegation shares
    ///         the node's rewards of weight and its slashes, pro rata.
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
    ///         pool's current exchange rate (less if the node was slashed meanwhile).
    function withdraw(uint256 unbondingId) external returns (uint256 amount) {
        Unbonding memory u = _unbondings[unbondingId];
        if (u.holder == address(0)) revert UnknownUnbonding(unbondingId);
        if (u.holder != msg.sender) revert NotUnbondingOwner(unbondingId, msg.sender);
        if (block.timestamp < u.releaseTime) revert StillUnbonding(unbondingId, u.releaseTime);
        delete _unbondings[unbondingId];
        Node storage n = _nodes[u.node];
        uint256 before = _active(n);
        amount = u.shares == n.poolShares
            ? n.poolAssets
            : Math.mulDiv(u.shares, n.poolAssets, n.poolShares);
        n.poolShares -= u.shares;
        n.unbondingShares -= u.shares;
        n.poolAssets -= amount;
        _syncRoleStake(n, before);
        emit Withdrawn(unbondingId, u.node, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Take `amount` OPG (capped at the pool) from `node`'s pool - own, delegated and
    ///         unbonding stake alike, pro rata - and send it to `recipient`. Settlement only.
    function slash(address node, uint256 amount, address recipient)
        external
        returns (uint256 slashed)
    {
        if (msg.sender != settlement) revert NotSettlement(msg.sender);
        Node storage n = _registered(node);
        slashed = amount > n.poolAssets ? n.poolAssets : amount;
        uint256 before = _active(n);
        uint256 ownBefore = _value(n, _shares[node][node]);
        n.poolAssets -= slashed;
        _syncRoleStake(n, before);
        emit Slashed(node, recipient, slashed, ownBefore - _value(n, _shares[node][node]), n.poolAssets);
        if (slashed != 0) token.safeTransfer(recipient, slashed);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Propose approving (`approve` = true) or revoking a measurement. Caller: a
    ///         registered node with active stake.
    function propose(bytes32 measurement, bool approve) external returns (uint256 proposalId) {
        Node storage n = _registered(msg.sender);
        if (_active(n) == 0) revert NoStake(msg.sender);
        proposalId = ++proposalCount;
        _proposals[proposalId] = Proposal({
            proposer: msg.sender,
            createdAt: uint64(block.timestamp),
            approve: approve,
            executed: false,
            measurement: measurement,
            yesVotes: 0,
            noVotes: 0
        });
        emit ProposalCreated(
            proposalId, msg.sender, measurement, approve, uint64(block.timestamp) + votingDelay
        );
    }

    /// @notice Vote on a proposal with the caller's active stake (own + delegated) at vote
    ///         time; once per node, while the proposal is open.
    function vote(uint256 proposalId, bool support) external {
        Proposal storage p = _proposal(proposalId);
        uint64 ends = p.createdAt + votingDelay;
        if (block.timestamp >= ends) revert VotingClosed(proposalId, ends);
        if (hasVoted[proposalId][msg.sender]) revert AlreadyVoted(proposalId, msg.sender);
        uint256 weight = _active(_nodes[msg.sender]);
        if (weight == 0) revert NoStake(msg.sender);
        hasVoted[proposalId][msg.sender] = true;
        if (support) p.yesVotes += weight;
        else p.noVotes += weight;
        emit VoteCast(proposalId, msg.sender, support, weight);
    }

    /// @notice Apply a proposal once voting has ended, if yes > no and yes + no reaches
    ///         `governanceQuorumBps` of the total active stake at execution time. Must happen
    ///         within `votingDelay` seconds after voting ends. Anyone can call.
    function execute(uint256 proposalId) external {
        Proposal storage p = _proposal(proposalId);
        if (p.executed) revert ProposalAlreadyExecuted(proposalId);
        uint64 ends = p.createdAt + votingDelay;
        if (block.timestamp < ends) revert VotingOpen(proposalId, ends);
        if (block.timestamp >= ends + votingDelay) revert ProposalExpired(proposalId, ends + votingDelay);
        uint256 total = totalActiveStake();
        uint256 turnout = p.yesVotes + p.noVotes;
        if (p.yesVotes <= p.noVotes || turnout * BPS < uint256(governanceQuorumBps) * total) {
            revert ProposalNotPassed(proposalId, p.yesVotes, p.noVotes, total);
        }
        p.executed = true;
        emit ProposalExecuted(proposalId, p.measurement, p.approve, p.yesVotes, p.noVotes);
        _setMeasurement(p.measurement, p.approve, proposalId);
    }

    // ------------------------------------------------------------------ views

    /// @notice The stake a role needs (own stake).
    function minStake(uint8 role) public view returns (uint256) {
        if (role == ROLE_INFERENCE) return minNodeStake;
        if (role == ROLE_VERIFIER) return minVerifierStake;
        revert InvalidRole(role);
    }

    /// @notice Everything known about a node; stakes are active values in OPG.
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

    /// @notice What settlement checks on commit, in one call.
    function commitInfo(address node)
        external
        view
        returns (
            uint8 role,
            address attester,
            bytes32 measurement,
            uint256 ownStake,
            bool measurementApproved
        )
    {
        Node storage n = _nodes[node];
        return (
            n.role,
            n.attester,
            n.measurement,
            _value(n, _shares[node][node]),
            isMeasurementApproved[n.measurement]
        );
    }

    /// @notice What settlement checks for a verifier, in one call: role, own stake, weight
    ///         (active own + delegated stake) and the total active verifier stake.
    function verifierInfo(address node)
        external
        view
        returns (uint8 role, uint256 ownStake, uint256 weight, uint256 totalVerifierStake)
    {
        Node storage n = _nodes[node];
        return (
            n.role, _value(n, _shares[node][node]), _active(n), _roleStake[ROLE_VERIFIER]
        );
    }

    /// @notice Active stake (own + delegated, not unbonding) of a node: its voting weight.
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

    /// @notice Sum of the active stake of every node with `role`.
    function totalRoleStake(uint8 role) external view returns (uint256) {
        return _roleStake[role];
    }

    /// @notice Sum of the active stake of every node (the governance quorum base).
    function totalActiveStake() public view returns (uint256) {
        return _roleStake[ROLE_INFERENCE] + _roleStake[ROLE_VERIFIER];
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

    /// @notice A governance proposal.
    function getProposal(uint256 proposalId)
        external
        view
        returns (
            address proposer,
            bytes32 measurement,
            bool approve,
            uint64 createdAt,
            uint64 votingEnds,
            uint256 yesVotes,
            uint256 noVotes,
            bool executed
        )
    {
        Proposal storage p = _proposal(proposalId);
        return (
            p.proposer,
            p.measurement,
            p.approve,
            p.createdAt,
            p.createdAt + votingDelay,
            p.yesVotes,
            p.noVotes,
            p.executed
        );
    }

    // ------------------------------------------------------------------ internals

    function _registered(address node) private view returns (Node storage n) {
        n = _nodes[node];
        if (n.role == 0) revert NodeNotRegistered(node);
    }

    function _proposal(uint256 proposalId) private view returns (Proposal storage p) {
        p = _proposals[proposalId];
        if (p.proposer == address(0)) revert UnknownProposal(proposalId);
    }

    function _bind(address node, Node storage n, address attester, bytes32 measurement) private {
        if (attester == address(0)) {
            if (n.role == ROLE_INFERENCE) revert ZeroAttester();
        } else {
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

    function _active(Node storage n) private view returns (uint256) {
        return _value(n, n.poolShares - n.unbondingShares);
    }

    /// @dev Keep the per-role aggregate equal to the sum of every node's `_active`.
    function _syncRoleStake(Node storage n, uint256 before) private {
        uint256 afterward = _active(n);
        if (afterward > before) _roleStake[n.role] += afterward - before;
        else if (before > afterward) _roleStake[n.role] -= before - afterward;
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
        uint256 before = _active(n);
        n.poolShares += shares;
        n.poolAssets += amount;
        _shares[node][holder] += shares;
        _syncRoleStake(n, before);
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
        uint256 before = _active(n);
        _shares[node][holder] = held - shares;
        n.unbondingShares += shares;
        _syncRoleStake(n, before);
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

    function _setMeasurement(bytes32 measurement, bool approve, uint256 proposalId) private {
        isMeasurementApproved[measurement] = approve;
        if (approve) {
            emit MeasurementApproved(measurement, proposalId, block.number, block.timestamp);
        } else {
            emit MeasurementRevoked(measurement, proposalId, block.number, block.timestamp);
        }
    }
}
