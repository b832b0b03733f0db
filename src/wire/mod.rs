//! The wire protocol: a versioned envelope around every message nodes exchange, and the one
//! place where bytes become messages (bincode, bounded, no trailing garbage).
//!
//! Everything else in the crate speaks in [`Envelope`]s; swapping the encoding touches only
//! this file.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

mod lifecycle;

pub use lifecycle::{RefreshOf, RepairOf, RepairSigma, ReshareOf};

/// Protocol version carried in every envelope. Unknown versions are rejected.
///
/// Version 2: refusals carry a typed [`ErrorKind`] instead of a free-form string.
/// Version 3: client tokens travel with key generation and signing requests.
/// Version 4: DKG certificates.
/// Version 5: every DKG participant contributes to the id its round messages travel under
/// ([`Body::DkgJoin`], [`Body::DkgBegin`]); a participant missing a message asks its sender
/// ([`Body::DkgPull`]).
/// Version 6: key epochs: a DKG session may refresh an existing key ([`DkgStart::refresh`]),
/// and signing requests name the epoch of the shares they use.
/// Version 7: resharing to a new threshold and participant set ([`DkgStart::reshare`]);
/// preprocessed nonces ([`Body::Presign`], [`Body::SignNow`]).
/// Version 8: a signing session signs a batch of messages (one commitment, signing package
/// and share per message).
pub const WIRE_VERSION: u8 = 8;
/// GossipSub topic for DKG broadcasts.
pub const DKG_TOPIC: &str = "frostnode/dkg/1";
/// Request-response protocol name for unicasts.
pub const RPC_PROTOCOL: &str = "/frostnode/rpc/1";
/// Hard upper bound on any decode, whatever the configured limit says.
const DECODE_LIMIT: usize = 16 * 1024 * 1024;

/// A node's numeric id (`1..=65535`), also its FROST identifier.
pub type NodeId = u16;

/// Binds every message to one DKG or signing session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// Full lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for SessionId {
    /// Short form (first 8 bytes) for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// Secret bytes (a round-2 share): never printed, wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The outer frame of every message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`WIRE_VERSION`] when sent by this build.
    pub version: u8,
    /// Session the body belongs to.
    pub session: SessionId,
    /// Claimed sender id; checked against the authenticated PeerId on receipt.
    pub from: NodeId,
    /// The message itself.
    pub body: Body,
}

impl Envelope {
    /// Builds an envelope of the current version.
    pub fn new(session: SessionId, from: NodeId, body: Body) -> Self {
        Self {
            version: WIRE_VERSION,
            session,
            from,
            body,
        }
    }
}

/// Parameters of a DKG, sent by the initiator to every participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgStart {
    /// Name of the key in every participant's key store.
    pub key_id: String,
    /// Sorted participant ids.
    pub participants: Vec<NodeId>,
    /// Signing threshold `t`.
    pub threshold: u16,
    /// The client's keygen token, checked by every participant against its own config.
    pub token: Option<String>,
    /// Set when the session starts from an existing key's epoch rather than creating a key: a
    /// refresh, or with `repair` a repair or enrolment.
    pub refresh: Option<RefreshOf>,
    /// Set for a repair or enrolment.
    pub repair: Option<RepairOf>,
    /// Set for a reshare (with `refresh` naming the key and epoch it starts from; `threshold`
    /// is then the new threshold).
    pub reshare: Option<ReshareOf>,
}

/// A participant's signed statement of the DKG result it computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// Digest of the round-1 transcript (every participant's round-1 package).
    pub transcript: [u8; 32],
    /// The group public key (compressed Edwards point).
    pub group_public_key: [u8; 32],
    /// SHA-256 of the serialized public key package.
    pub public_key_package_hash: [u8; 32],
    /// Signature by the sender's node identity key over the fields above and the session.
    pub signature: Vec<u8>,
}

/// Why a request was refused or a session failed: the machine-readable class carried in
/// [`Body::Refused`] and in the node's errors. [`ErrorKind::as_str`] is the `kind` field of
/// API errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is malformed or not allowed.
    BadRequest,
    /// No such key.
    NotFound,
    /// The key id exists or a session for it is running.
    Conflict,
    /// Participants cannot be reached.
    Unavailable,
    /// Too many sessions in flight for this sender.
    Busy,
    /// Participants did not answer in time.
    Timeout,
    /// The receiver holds a different group key under the same key id.
    KeyMismatch,
    /// Signers sent invalid signature shares and no honest replacement was left.
    InvalidShares,
    /// The aggregate signature did not verify.
    BadSignature,
    /// The FROST library refused.
    Frost,
    /// A DKG aborted.
    DkgFailed,
    /// Participants stored different group keys.
    Inconsistent,
    /// Anything else.
    Internal,
    /// No valid client token (who is asking is not established).
    Unauthorized,
    /// The request is not allowed by a node's clients or policy.
    Refused,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::BadRequest,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Busy,
        ErrorKind::Timeout,
        ErrorKind::KeyMismatch,
        ErrorKind::InvalidShares,
        ErrorKind::BadSignature,
        ErrorKind::Frost,
        ErrorKind::DkgFailed,
        ErrorKind::Inconsistent,
        ErrorKind::Internal,
        ErrorKind::Unauthorized,
        ErrorKind::Refused,
    ];

    /// Whether a node declined the request itself (its clients or policy), as opposed to
    /// failing at it: such a signer is replaced and named in `refused_by`.
    pub fn is_refusal(self) -> bool {
        matches!(self, ErrorKind::Refused | ErrorKind::Unauthorized)
    }

    /// The stable name used in API errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Busy => "busy",
            ErrorKind::Timeout => "timeout",
            ErrorKind::KeyMismatch => "key_mismatch",
            ErrorKind::InvalidShares => "invalid_shares",
            ErrorKind::BadSignature => "bad_signature",
            ErrorKind::Frost => "frost",
            ErrorKind::DkgFailed => "dkg_failed",
            ErrorKind::Inconsistent => "inconsistent",
            ErrorKind::Internal => "internal",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Refused => "refused",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome a participant reports to the DKG initiator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DkgOutcome {
    /// The key is confirmed and stored under this group key.
    Stored {
        /// The group public key.
        group_public_key: [u8; 32],
    },
    /// The session failed on that participant.
    Failed {
        /// Human-readable reason.
        reason: String,
        /// Ids the participant blamed.
        culprits: Vec<NodeId>,
        /// Ids the participant was still waiting for, on a timeout.
        missing: Vec<NodeId>,
    },
}

/// Every message body. Requests and gossip share one enum so a session's traffic is in one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// RPC, initiator → participant: prepare a DKG session.
    DkgStart(DkgStart),
    /// Gossip, initiator → all (under the setup session id): every participant joined; run
    /// round 1. Every later DKG message travels under the round id derived from the setup id
    /// and these contributions, so none from an earlier session can be replayed into this one.
    DkgBegin {
        /// Every participant's [`Body::DkgJoin`] contribution, in participant order.
        contributions: Vec<(NodeId, [u8; 32])>,
    },
    /// Gossip: a serialized `frost::keys::dkg::round1::Package`.
    DkgRound1 {
        /// frost serialization of the package.
        package: Vec<u8>,
    },
    /// RPC, to one recipient only: a serialized `round2::Package` (a secret share).
    DkgRound2 {
        /// frost serialization of the package.
        package: SecretBytes,
    },
    /// Gossip: the hash of every round-1 package the sender used, for equivocation checks.
    DkgEcho {
        /// `(sender id, SHA-256 of its round-1 package)` for every participant.
        round1_hashes: Vec<(NodeId, [u8; 32])>,
    },
    /// Gossip: the sender's signed view of the result.
    DkgConfirm(Confirmation),
    /// Gossip: the sender aborted the session.
    DkgAbort {
        /// Human-readable reason.
        reason: String,
        /// Ids blamed, if any.
        culprits: Vec<NodeId>,
    },
    /// RPC, participant → initiator: how the session ended there.
    DkgResult(DkgOutcome),
    /// RPC, any node → the coordinator it elected: coordinate this signing request. The
    /// envelope's session is the request id; the answer is `SignDone` or `Refused`.
    SignForward {
        /// Key to sign with.
        key_id: String,
        /// The group key the sender holds under `key_id`; a coordinator holding another refuses.
        group_public_key: [u8; 32],
        /// Messages to sign (one, or a batch), in order.
        messages: Vec<Vec<u8>>,
        /// The client's signing token.
        token: Option<String>,
    },
    /// RPC response to `SignForward`: the finished signatures.
    SignDone {
        /// One 64-byte Ed25519 signature per message, in order.
        signatures: Vec<Vec<u8>>,
        /// Signers whose shares were aggregated.
        signers: Vec<NodeId>,
        /// The coordinator.
        coordinator: NodeId,
    },
    /// RPC, coordinator → signer: commit to fresh nonces for these messages (a pair each).
    CommitRequest {
        /// Attempt number within the session.
        attempt: u8,
        /// Key to sign with.
        key_id: String,
        /// The group key the coordinator holds under `key_id`; a signer holding another refuses.
        group_public_key: [u8; 32],
        /// The epoch of the shares the signature is made with; a signer that does not hold
        /// it (yet, or any more) refuses.
        epoch: u64,
        /// Messages that will be signed, in order.
        messages: Vec<Vec<u8>>,
        /// The request id the coordinator's session derives from (a client token is bound to
        /// one request).
        request_id: SessionId,
        /// The client's signing token, checked by every signer against its own config.
        token: Option<String>,
    },
    /// RPC response to `CommitRequest`: serialized `SigningCommitments`, one per message.
    Commitment {
        /// Attempt number.
        attempt: u8,
        /// frost serializations, in message order.
        commitments: Vec<Vec<u8>>,
    },
    /// RPC, coordinator → signer: the signing packages to sign, one per message.
    SignRequest {
        /// Attempt number.
        attempt: u8,
        /// frost serializations of the `SigningPackage`s, in message order.
        signing_packages: Vec<Vec<u8>>,
    },
    /// RPC, signer → coordinator: commitments to nonces this signer holds for this
    /// coordinator alone, numbered, of the signer's run `boot` (answered `Ack`).
    Presign {
        /// The signer's boot id.
        boot: [u8; 16],
        /// The signer started its pool for this coordinator afresh (it reconnected): whatever
        /// the coordinator holds of it is void.
        reset: bool,
        /// Each commitment's number and frost serialization.
        commitments: Vec<(u64, Vec<u8>)>,
    },
    /// RPC, coordinator → signer: sign in one round, with the preprocessed nonces `seqs` of run
    /// `boot` the signer issued to this coordinator (one per message); the signer checks the
    /// request as it checks a `CommitRequest`, then signs (answered `Share`).
    SignNow {
        /// Attempt number.
        attempt: u8,
        /// Key to sign with.
        key_id: String,
        /// The group key the coordinator holds under `key_id`.
        group_public_key: [u8; 32],
        /// The epoch of the shares the signature is made with.
        epoch: u64,
        /// The messages, in order (the signing packages must carry the same).
        messages: Vec<Vec<u8>>,
        /// The request id the coordinator's session derives from.
        request_id: SessionId,
        /// The client's signing token.
        token: Option<String>,
        /// The signer's run the nonces belong to.
        boot: [u8; 16],
        /// The nonces' numbers, in message order.
        seqs: Vec<u64>,
        /// frost serializations of the `SigningPackage`s, in message order.
        signing_packages: Vec<Vec<u8>>,
    },
    /// RPC response to `SignRequest` and `SignNow`: serialized `SignatureShare`s, one per
    /// message.
    Share {
        /// Attempt number.
        attempt: u8,
        /// frost serializations, in message order.
        shares: Vec<Vec<u8>>,
    },
    /// RPC response to `SignForward`: fewer than `t` signers approved the request.
    SignRefused {
        /// Each refusing signer and its reason.
        refused_by: Vec<(NodeId, String)>,
    },
    /// RPC response: accepted.
    Ack,
    /// RPC response: refused, with the reason.
    Refused {
        /// Machine-readable class of the refusal.
        kind: ErrorKind,
        /// Human-readable reason.
        reason: String,
    },
    /// Gossip (or RPC): every participant's signed confirmation, in participant order: proof
    /// that all of them agreed, sent by a participant that stored the key, so that one that
    /// missed a confirmation activates the key too.
    DkgCertificate(Vec<(NodeId, Confirmation)>),
    /// RPC response to `DkgStart`: joined, with this participant's fresh random contribution
    /// to the session's round id.
    DkgJoin {
        /// 32 random bytes drawn for this session.
        contribution: [u8; 32],
    },
    /// RPC, participant → participant: send me your message of this step again (a broadcast
    /// that did not arrive, or a round-2 share). The answer is that message, exactly as it
    /// would have arrived, and is checked like it; or `Refused` when there is none yet.
    DkgPull {
        /// Which message.
        want: DkgStep,
    },
}

/// A DKG step whose message a participant can ask its sender for ([`Body::DkgPull`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DkgStep {
    /// The initiator's `DkgBegin` (asked under the setup id).
    Begin,
    /// The sender's round-1 package.
    Round1,
    /// The sender's round-2 package for the asker.
    Round2,
    /// The sender's echo.
    Echo,
    /// The sender's confirmation.
    Confirm,
}

impl DkgStep {
    /// Short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DkgStep::Begin => "begin",
            DkgStep::Round1 => "round1",
            DkgStep::Round2 => "round2",
            DkgStep::Echo => "echo",
            DkgStep::Confirm => "confirm",
        }
    }
}

impl Body {
    /// A refusal of `kind` with a human-readable reason.
    pub fn refused(kind: ErrorKind, reason: impl Into<String>) -> Body {
        Body::Refused {
            kind,
            reason: reason.into(),
        }
    }

    /// Short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::DkgStart(_) => "DkgStart",
            Body::DkgBegin { .. } => "DkgBegin",
            Body::DkgRound1 { .. } => "DkgRound1",
            Body::DkgRound2 { .. } => "DkgRound2",
            Body::DkgEcho { .. } => "DkgEcho",
            Body::DkgConfirm(_) => "DkgConfirm",
            Body::DkgAbort { .. } => "DkgAbort",
            Body::DkgResult(_) => "DkgResult",
            Body::SignForward { .. } => "SignForward",
            Body::SignDone { .. } => "SignDone",
            Body::SignRefused { .. } => "SignRefused",
            Body::CommitRequest { .. } => "CommitRequest",
            Body::Commitment { .. } => "Commitment",
            Body::SignRequest { .. } => "SignRequest",
            Body::Presign { .. } => "Presign",
            Body::SignNow { .. } => "SignNow",
            Body::Share { .. } => "Share",
            Body::Ack => "Ack",
            Body::Refused { .. } => "Refused",
            Body::DkgCertificate(_) => "DkgCertificate",
            Body::DkgJoin { .. } => "DkgJoin",
            Body::DkgPull { .. } => "DkgPull",
        }
    }
}

/// Why bytes could not become an [`Envelope`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Longer than the configured maximum; nothing was decoded.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length received.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// Not a valid encoding of an envelope.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Decoded, but bytes were left over.
    #[error("malformed message: {0} trailing bytes")]
    Trailing(usize),
    /// A version this build does not speak.
    #[error("unsupported wire version {0} (this node speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// Encoding failed (should not happen for well-formed values).
    #[error("encoding failed: {0}")]
    Encode(String),
}

pub(crate) fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes an envelope.
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(envelope, bincode_config())
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Decodes an envelope, checking the size first, then the encoding, then the version.
pub fn decode(bytes: &[u8], max_len: usize) -> Result<Envelope, WireError> {
    if bytes.len() > max_len {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    // The version is the first byte of the encoding: reject unknown versions before
    // interpreting the rest with a layout that may not apply.
    match bytes.first() {
        None => return Err(WireError::Malformed("empty message".into())),
        Some(&v) if v != WIRE_VERSION => return Err(WireError::UnsupportedVersion(v)),
        Some(_) => {}
    }
    let (envelope, used): (Envelope, usize) =
        bincode::serde::decode_from_slice(bytes, bincode_config())
            .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::Trailing(bytes.len() - used));
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests;
