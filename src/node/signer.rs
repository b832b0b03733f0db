//! The signer driver: this node's answers to the coordinators that ask it for nonce
//! commitments and signature shares, and to its own coordinator (without encoding round
//! trips). The nonces themselves live in the sans-IO [`Signer`]; this driver checks the key
//! (one check, shared with the coordinator), lends the signer time and randomness, and keeps
//! the nonce-expiry deadline up to date.

use frost_ed25519::round1::SigningCommitments;
use frost_ed25519::SigningPackage;
use tracing::warn;

use super::checks;
use super::context::Ctx;
use super::error::Refusal;
use super::timers::Timer;
use crate::signing::participant::{NonceObserver, ShareRef, Signer, SignerError, Slot};
use crate::wire::{Body, ErrorKind, NodeId, SessionId};

fn refusal(e: &SignerError) -> Refusal {
    let kind = match e {
        SignerError::Busy => ErrorKind::Busy,
        SignerError::Frost(_) => ErrorKind::Frost,
        _ => ErrorKind::BadRequest,
    };
    Refusal::new(kind, e.to_string())
}

/// This node as a signer.
#[derive(Debug, Default)]
pub struct SignerDriver {
    signer: Signer,
}

impl SignerDriver {
    /// A signer with no nonces; `observer` (tests only) sees every nonce made.
    pub fn new(observer: Option<NonceObserver>) -> Self {
        let mut signer = Signer::new();
        if let Some(o) = observer {
            signer.observe_nonces(o);
        }
        SignerDriver { signer }
    }

    fn schedule(&self, ctx: &mut Ctx<'_>) {
        ctx.timers.set(Timer::Nonces, self.signer.next_expiry());
    }

    /// Answers a remote coordinator's `CommitRequest` or `SignRequest`.
    pub fn serve(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        coordinator: NodeId,
        body: Body,
    ) -> Body {
        let result = match body {
            Body::CommitRequest {
                attempt,
                key_id,
                group_public_key,
                message,
            } => {
                let slot = Slot {
                    coordinator,
                    session: sid,
                    attempt,
                };
                self.commit(ctx, slot, &key_id, Some(group_public_key), &message)
                    .and_then(|c| {
                        c.serialize()
                            .map(|commitments| Body::Commitment {
                                attempt,
                                commitments,
                            })
                            .map_err(|e| Refusal::new(ErrorKind::Frost, e.to_string()))
                    })
            }
            Body::SignRequest {
                attempt,
                signing_package,
            } => {
                let slot = Slot {
                    coordinator,
                    session: sid,
                    attempt,
                };
                self.sign(ctx, slot, Package::Encoded(&signing_package))
                    .map(|share| Body::Share { attempt, share })
            }
            other => Err(Refusal::new(
                ErrorKind::BadRequest,
                format!("{} is not a signer request", other.kind()),
            )),
        };
        result.unwrap_or_else(|r| {
            warn!(session = %sid, coordinator, kind = %r.kind, reason = %r.reason, "signer refused");
            r.to_body()
        })
    }

    /// Fresh nonces for `slot`, after the key check; `expected` is the group key the
    /// coordinator holds (none when this node coordinates).
    pub fn commit(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: Slot,
        key_id: &str,
        expected: Option<[u8; 32]>,
        message: &[u8],
    ) -> Result<SigningCommitments, Refusal> {
        let me = ctx.me();
        let key = checks::signing_key(
            ctx.keystore,
            me,
            key_id,
            expected,
            Some(slot.coordinator),
            message.len(),
        )?;
        let result = self.signer.commit(
            ctx.now,
            slot,
            key_id,
            message,
            &key.key_package,
            &mut ctx.rng,
        );
        self.schedule(ctx);
        result.map_err(|e| refusal(&e))
    }

    /// This node's signature share for `slot` (its nonces are consumed whatever happens).
    pub fn sign(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: Slot,
        package: Package<'_>,
    ) -> Result<Vec<u8>, Refusal> {
        let unknown = || {
            refusal(&SignerError::UnknownSession {
                session: slot.session,
                attempt: slot.attempt,
            })
        };
        let key_id = self
            .signer
            .key_of(&slot)
            .map(str::to_string)
            .ok_or_else(unknown)?;
        let Some(key) = ctx.keystore.get(&key_id) else {
            return Err(unknown());
        };
        let share = ShareRef {
            key: &key.key_package,
            participants: &key.participants,
        };
        let result = match package {
            Package::Encoded(bytes) => self.signer.sign(ctx.now, slot, bytes, share),
            Package::Decoded(p) => self.signer.sign_package(ctx.now, slot, p, share),
        };
        self.schedule(ctx);
        result.map_err(|e| refusal(&e))
    }

    /// Drops the nonces of a coordination this node ran, once it is over.
    pub fn forget(&mut self, coordinator: NodeId, session: SessionId, attempts: u8) {
        self.signer.forget(coordinator, session, attempts);
    }

    /// Drops expired nonces.
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.signer.expire(ctx.now);
        self.schedule(ctx);
    }
}

/// A signing package as it arrives: from the network, or from this node's own coordinator.
pub enum Package<'a> {
    /// frost serialization.
    Encoded(&'a [u8]),
    /// Already decoded.
    Decoded(&'a SigningPackage),
}
