//! Why a DKG session aborts ([`DkgError`], naming the culprit where there is one) and why a
//! single message is refused without changing the session ([`Rejection`]).

use crate::wire::{NodeId, SessionId};

use super::phase::Phase;

/// Why a session aborted. Every variant caused by a participant names it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DkgError {
    /// Bad session parameters.
    #[error("invalid DKG parameters: {0}")]
    InvalidParams(String),
    /// A package that does not decode or has the wrong shape.
    #[error("node {culprit} sent a malformed {what}")]
    Malformed {
        /// Sender.
        culprit: NodeId,
        /// What was malformed.
        what: &'static str,
    },
    /// frost rejected a round-1 proof of knowledge.
    #[error("node {culprit} sent an invalid proof of knowledge")]
    InvalidProofOfKnowledge {
        /// Sender.
        culprit: NodeId,
    },
    /// frost rejected a round-2 share.
    #[error("node {culprit} sent an invalid secret share")]
    InvalidSecretShare {
        /// Sender.
        culprit: NodeId,
    },
    /// A participant sent conflicting packages (to us twice, or different ones to different peers).
    #[error("node {culprit} equivocated: conflicting {what} (reported by node {reported_by})")]
    Equivocation {
        /// The equivocating sender.
        culprit: NodeId,
        /// Which message.
        what: &'static str,
        /// Who noticed.
        reported_by: NodeId,
    },
    /// Another participant's echo disagrees with ours about a third participant's round-1
    /// package: either the sender showed different packages to different peers, or the
    /// reporter lies about what it received. Both are suspects.
    #[error("node {reporter} reports a different round-1 package from node {sender} than this node received (one of them is lying)")]
    EchoMismatch {
        /// Whose package is disputed.
        sender: NodeId,
        /// Who reported the other version.
        reporter: NodeId,
    },
    /// The share a repair or enrolment rebuilt is not the one the key's public data implies:
    /// one of the helpers sent a wrong value (which one cannot be told from the sums).
    #[error("the share rebuilt from helpers {helpers:?} does not match the key's verifying share for node {target}: one of the helpers sent a wrong value; nothing was stored")]
    RepairMismatch {
        /// The participant whose share was rebuilt.
        target: NodeId,
        /// The helpers, one of whom at least sent a wrong value.
        helpers: Vec<NodeId>,
    },
    /// A reshare dealer's commitment does not commit to its part of the key: its constant
    /// term is not `λ_i · Y_i` (its Lagrange coefficient times its verifying share).
    #[error("dealer {culprit} dealt something other than its share of the key (its commitment's constant term is not λ·Y_{culprit})")]
    InvalidDealing {
        /// The dealer.
        culprit: NodeId,
    },
    /// The dealers' commitments do not add up to the group key (seen by a new participant,
    /// which holds no verifying shares to tell which dealer is wrong).
    #[error("the commitments of dealers {dealers:?} do not add up to the group key: one of them dealt a wrong value; nothing was stored")]
    DealingMismatch {
        /// The dealers, one of whom at least dealt a wrong value.
        dealers: Vec<NodeId>,
    },
    /// A confirmation whose signature does not verify.
    #[error("node {culprit} sent a confirmation with an invalid signature")]
    InvalidConfirmation {
        /// Sender.
        culprit: NodeId,
    },
    /// Participants signed a confirmation of another result than ours (their signature is the
    /// evidence) and never confirmed ours before the deadline.
    #[error("nodes {culprits:?} confirmed a different group key or transcript")]
    ConfirmationMismatch {
        /// Those that disagree with us.
        culprits: Vec<NodeId>,
    },
    /// Another participant aborted the session.
    #[error("node {by} aborted the session: {reason} (it blames {culprits:?})")]
    PeerAborted {
        /// Who aborted.
        by: NodeId,
        /// Their reason.
        reason: String,
        /// Whom they blamed.
        culprits: Vec<NodeId>,
    },
    /// The deadline passed.
    #[error("timed out in {phase} waiting for nodes {missing:?}")]
    Timeout {
        /// Phase at the deadline.
        phase: Phase,
        /// Participants we were still waiting for.
        missing: Vec<NodeId>,
    },
    /// A participant's connection dropped mid-session: the DKG cannot complete without it.
    #[error("participant {node} disconnected during the DKG")]
    Disconnected {
        /// The lost participant.
        node: NodeId,
    },
    /// The key was confirmed by all, but this node could not store it.
    #[error("could not store the key: {0}")]
    Storage(String),
    /// Any other frost error.
    #[error("frost: {0}")]
    Frost(String),
}

impl DkgError {
    /// The participants this error blames.
    pub fn culprits(&self) -> Vec<NodeId> {
        match self {
            DkgError::Malformed { culprit, .. }
            | DkgError::InvalidProofOfKnowledge { culprit }
            | DkgError::InvalidSecretShare { culprit }
            | DkgError::Equivocation { culprit, .. }
            | DkgError::InvalidConfirmation { culprit }
            | DkgError::InvalidDealing { culprit } => vec![*culprit],
            DkgError::EchoMismatch { sender, reporter } => vec![*sender, *reporter],
            DkgError::ConfirmationMismatch { culprits } => culprits.clone(),
            // Another node's accusation is not evidence: it is in the message, not here.
            _ => Vec::new(),
        }
    }

    /// The participants that did not answer, for a timeout.
    pub fn missing(&self) -> Vec<NodeId> {
        match self {
            DkgError::Timeout { missing, .. } => missing.clone(),
            DkgError::Disconnected { node } => vec![*node],
            _ => Vec::new(),
        }
    }

    /// Short machine-readable class, used in metrics and API errors.
    pub fn kind(&self) -> &'static str {
        match self {
            DkgError::InvalidParams(_) => "invalid_params",
            DkgError::RepairMismatch { .. } => "repair_mismatch",
            DkgError::InvalidDealing { .. } | DkgError::DealingMismatch { .. } => "invalid_dealing",
            DkgError::Malformed { .. } => "malformed",
            DkgError::InvalidProofOfKnowledge { .. } => "invalid_proof_of_knowledge",
            DkgError::InvalidSecretShare { .. } => "invalid_secret_share",
            DkgError::Equivocation { .. } => "equivocation",
            DkgError::EchoMismatch { .. } => "equivocation",
            DkgError::InvalidConfirmation { .. } => "invalid_confirmation",
            DkgError::ConfirmationMismatch { .. } => "confirmation_mismatch",
            DkgError::PeerAborted { .. } => "peer_aborted",
            DkgError::Timeout { .. } => "timeout",
            DkgError::Disconnected { .. } => "disconnected",
            DkgError::Storage(_) => "storage",
            DkgError::Frost(_) => "frost",
        }
    }
}

/// A message the machine refused without changing its state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The envelope belongs to another session.
    #[error("message for session {got}, not {expected}")]
    WrongSession {
        /// This session.
        expected: SessionId,
        /// The envelope's.
        got: SessionId,
    },
    /// The sender is not a participant.
    #[error("node {0} is not a participant of this session")]
    NotParticipant(NodeId),
    /// The message claims to come from this node.
    #[error("message claims to come from this node")]
    FromSelf,
    /// A message that has no place in a DKG from this sender.
    #[error("unexpected {kind} from node {from}")]
    Unexpected {
        /// Sender.
        from: NodeId,
        /// Message kind.
        kind: &'static str,
    },
    /// A confirmation refused after this node confirmed (it waits for a valid one instead of
    /// aborting).
    #[error("confirmation from node {from} refused: {reason}")]
    BadConfirmation {
        /// Sender.
        from: NodeId,
        /// What is wrong.
        reason: String,
    },
    /// A `DkgBegin` that does not fix this session's round id (a stale or forged one).
    #[error("DkgBegin from node {from} refused: {reason}")]
    BadBegin {
        /// Sender (the initiator).
        from: NodeId,
        /// What is wrong.
        reason: String,
    },
    /// A certificate that does not prove agreement.
    #[error("certificate from node {from} refused: {reason}")]
    BadCertificate {
        /// Sender.
        from: NodeId,
        /// What is wrong.
        reason: String,
    },
}
