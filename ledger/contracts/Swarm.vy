# pragma version ~=0.4.3
# pragma evm-version cancun
"""
@title Swarm
@notice Membership, per-round commitments and leader election of one swarm.
@dev Every replica runs this contract. A round's block carries exactly one
     `sealRound` call from its proposer; the contract itself refuses a
     proposer it did not elect. The signed commitments travel as one packed
     blob in calldata (checked off-chain, signature by signature, by every
     replica); only their keccak root is stored, so the cost of a round does
     not grow with one storage write per site.
"""

MAX_SITES: constant(uint256) = 4096
MAX_VIEW: constant(uint256) = 64
MAX_ENROLL: constant(uint256) = 64
MAX_LISTEN: constant(uint256) = 262  # host (253) : port
# site (20) | parent (32) | update hash (32) | num examples (8) | signature (65)
RECORD_BYTES: constant(uint256) = 157
MAX_BLOB: constant(uint256) = 643072  # MAX_SITES * RECORD_BYTES

NORMAL: constant(uint8) = 0
LEADER_TIMEOUT: constant(uint8) = 1
BAD_MERGE: constant(uint8) = 2


struct Round:
    seed: bytes32
    view: uint256
    reason: uint8
    leader: address
    commitmentsRoot: bytes32
    numCommitments: uint256
    modelHash: bytes32
    stateHash: bytes32


event Enrolled:
    site: indexed(address)
    fingerprint: bytes32
    listen: String[MAX_LISTEN]


event Left:
    round: indexed(uint256)
    site: indexed(address)


event Fault:
    round: indexed(uint256)
    site: indexed(address)
    reason: uint8


event Sealed:
    round: indexed(uint256)
    leader: indexed(address)
    view: uint256
    reason: uint8
    commitmentsRoot: bytes32
    modelHash: bytes32


fingerprint: public(HashMap[address, bytes32])
numSites: public(uint256)
live: public(DynArray[address, MAX_SITES])
liveIndex: HashMap[address, uint256]  # position in `live` plus one; 0 = not live
seed: public(bytes32)
# Fair rotation: an epoch is a run of rounds in which each live site leads
# once, in live-list order from an offset drawn from the seed at its start.
epochStart: public(uint256)  # the epoch's first round
epochSize: public(uint256)  # live sites when it started: its length in rounds
epochOffset: uint256
lastRound: public(uint256)
rounds: public(HashMap[uint256, Round])
totalRounds: public(uint256)
roundTimeout: public(uint256)
minPeers: public(uint256)
strategy: public(String[64])


@deploy
def __init__(
    sites: DynArray[address, MAX_SITES],
    fingerprints: DynArray[bytes32, MAX_SITES],
    initialModelHash: bytes32,
    totalRounds: uint256,
    roundTimeout: uint256,
    minPeers: uint256,
    strategy: String[64],
):
    assert len(sites) > 0, "no founding sites"
    assert len(sites) == len(fingerprints), "one fingerprint per site"
    for i: uint256 in range(len(sites), bound=MAX_SITES):
        self._enroll(sites[i], fingerprints[i], "")
        self._revive(sites[i])
    self.totalRounds = totalRounds
    self.roundTimeout = roundTimeout
    self.minPeers = minPeers
    self.strategy = strategy
    self.seed = keccak256(concat(b"swarmflower/seed", initialModelHash))
    self._start_epoch(1)
    self.rounds[0] = Round(
        seed=empty(bytes32),
        view=0,
        reason=NORMAL,
        leader=empty(address),
        commitmentsRoot=empty(bytes32),
        numCommitments=0,
        modelHash=initialModelHash,
        stateHash=empty(bytes32),
    )


@internal
def _enroll(site: address, fingerprint: bytes32, listen: String[MAX_LISTEN]):
    """A member from now on; electable once it has contributed (`revived`),
    except founding sites, which are electable from the start."""
    assert site != empty(address), "zero address"
    assert fingerprint != empty(bytes32), "empty fingerprint"
    assert self.fingerprint[site] == empty(bytes32), "already enrolled"
    self.fingerprint[site] = fingerprint
    self.numSites += 1
    log Enrolled(site=site, fingerprint=fingerprint, listen=listen)


@internal
def _leave(round: uint256, site: address):
    """No longer a member: neither electable nor counted (its signed request
    is checked off-chain by every replica, as commitments are)."""
    assert self.fingerprint[site] != empty(bytes32), "leaving site not enrolled"
    self._retire(site)
    self.fingerprint[site] = empty(bytes32)
    self.numSites -= 1
    log Left(round=round, site=site)


@internal
def _revive(site: address):
    if self.liveIndex[site] == 0:
        self.live.append(site)
        self.liveIndex[site] = len(self.live)


@internal
def _retire(site: address):
    """Swap-remove `site` from the live list (O(1))."""
    pos: uint256 = self.liveIndex[site]
    if pos == 0:
        return
    last: address = self.live.pop()
    if last != site:
        self.live[pos - 1] = last
        self.liveIndex[last] = pos
    self.liveIndex[site] = 0


@internal
def _start_epoch(first: uint256):
    """A new epoch from round `first`: the current seed draws its offset."""
    n: uint256 = len(self.live)
    self.epochStart = first
    self.epochSize = n
    self.epochOffset = convert(self.seed, uint256) % n


@internal
@view
def _position(view: uint256) -> uint256:
    """Where in `live` the electee of `view` for the next round stands."""
    n: uint256 = len(self.live)
    turn: uint256 = self.lastRound + 1 - self.epochStart
    return (self.epochOffset + turn + view % n) % n


@internal
@view
def _electee(view: uint256) -> address:
    return self.live[self._position(view)]


@external
@view
def electee(view: uint256) -> address:
    """The site elected to seal the next round at `view` (0 = leader)."""
    return self._electee(view)


@external
@view
def electees(count: uint256) -> DynArray[address, MAX_SITES]:
    """Leader then ordered backups of the next round."""
    n: uint256 = len(self.live)
    start: uint256 = self._position(0)
    out: DynArray[address, MAX_SITES] = []
    for v: uint256 in range(min(count, n), bound=MAX_SITES):
        out.append(self.live[(start + v) % n])
    return out


@external
@view
def numLive() -> uint256:
    return len(self.live)


@external
@view
def isLive(site: address) -> bool:
    return self.liveIndex[site] != 0


@external
def sealRound(
    round: uint256,
    view: uint256,
    reason: uint8,
    modelHash: bytes32,
    stateHash: bytes32,
    commitments: Bytes[MAX_BLOB],
    revived: DynArray[address, MAX_SITES],
    newSites: DynArray[address, MAX_ENROLL],
    newFingerprints: DynArray[bytes32, MAX_ENROLL],
    newListen: DynArray[String[MAX_LISTEN], MAX_ENROLL],
    leaving: DynArray[address, MAX_ENROLL],
    leaveSignatures: DynArray[Bytes[65], MAX_ENROLL],
):
    """Record round `round`; only the electee of `view` may call it."""
    assert round == self.lastRound + 1, "round out of order"
    assert round == block.number, "round is not the block height"
    assert msg.sender == block.coinbase, "sender is not the block proposer"
    n: uint256 = len(self.live)
    assert view < n and view < MAX_VIEW, "view beyond the backups"
    assert reason <= BAD_MERGE, "unknown reason"
    assert (view == 0) == (reason == NORMAL), "reason does not match view"
    assert msg.sender == self._electee(view), "not the elected proposer"
    assert len(commitments) % RECORD_BYTES == 0, "ragged commitments"
    k: uint256 = len(commitments) // RECORD_BYTES
    assert k >= self.minPeers, "fewer commitments than min_peers"
    assert len(newSites) == len(newFingerprints), "one fingerprint per site"
    assert len(newSites) == len(newListen), "one listen address per site"
    assert len(leaving) == len(leaveSignatures), "one signature per leave"

    # The electees skipped by a raised view lose liveness until they contribute.
    skipped: DynArray[address, MAX_VIEW] = []
    start: uint256 = self._position(0)
    for v: uint256 in range(view, bound=MAX_VIEW):
        skipped.append(self.live[(start + v) % n])
    for site: address in skipped:
        self._retire(site)
        log Fault(round=round, site=site, reason=reason)
    for site: address in revived:
        assert self.fingerprint[site] != empty(bytes32), "revived site not enrolled"
        assert self.liveIndex[site] == 0, "revived site already live"
        self._revive(site)
    for i: uint256 in range(len(newSites), bound=MAX_ENROLL):
        self._enroll(newSites[i], newFingerprints[i], newListen[i])
    for site: address in leaving:
        self._leave(round, site)
    assert len(self.live) > 0, "no electable site left"

    root: bytes32 = keccak256(commitments)
    self.rounds[round] = Round(
        seed=self.seed,
        view=view,
        reason=reason,
        leader=msg.sender,
        commitmentsRoot=root,
        numCommitments=k,
        modelHash=modelHash,
        stateHash=stateHash,
    )
    # The next seed depends on nothing a proposer chooses (not the block
    # hash, not which commitments it merged), so no site can grind its way
    # into leading; liveness changes above are the only other input.
    self.seed = keccak256(concat(self.seed, convert(round, bytes32)))
    self.lastRound = round
    # A changed live list, or every site having led, starts a new epoch.
    changed: bool = len(skipped) + len(revived) + len(leaving) > 0
    if changed or round + 1 - self.epochStart >= self.epochSize:
        self._start_epoch(round + 1)
    log Sealed(
        round=round,
        leader=msg.sender,
        view=view,
        reason=reason,
        commitmentsRoot=root,
        modelHash=modelHash,
    )
