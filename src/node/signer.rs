//! The signer driver: this node's answers to the coordinators that ask it for nonce
//! commitments and signature shares, and to its own coordinator (without encoding round
//! trips). The nonces themselves live in the sans-IO [`Signer`] and, preprocessed for each
//! coordinator, in [`NoncePools`]; this driver checks the client's token, the operator's policy
//! verdict and the key (one check, shared with the coordinator), lends the state machines time
//! and randomness, sends each connected coordinator a fresh batch of commitments when its pool
//! runs low, and keeps the nonce-expiry deadline up to date.

use frost_ed25519::round1::SigningCommitments;
use frost_ed25519::SigningPackage;

use super::checks;
use super::context::Ctx;
use super::error::Refusal;
use super::timers::Timer;
use crate::auth::{MessageBinding, Request};
use crate::signing::election;
use crate::signing::participant::{
    self, Authorization, Commit, NonceObserver, ShareRef, Signer, SignerError, Slot,
};
use crate::signing::presign::{BootId, NoncePools};
use crate::wire::{Body, ErrorKind, NodeId, SessionId};

fn refusal(e: &SignerError) -> Refusal {
    let kind = match e {
        SignerError::Busy => ErrorKind::Busy,
        SignerError::Frost(_) => ErrorKind::Frost,
        _ => ErrorKind::BadRequest,
    };
    Refusal::new(kind, e.to_string())
}

/// A coordinator's request for commitments, as this node's signer checks it.
pub struct CommitAsk<'a> {
    /// Key name.
    pub key_id: &'a str,
    /// The epoch of the key's shares the coordinator signs with.
    pub epoch: u64,
    /// The group key the coordinator holds (none when this node coordinates).
    pub expected_key: Option<[u8; 32]>,
    /// The messages.
    pub messages: &'a [Vec<u8>],
    /// The request the coordinator's session derives from.
    pub request_id: SessionId,
    /// The client's token.
    pub token: Option<String>,
}

/// A coordinator's one-round request, as this node's signer checks it.
struct SignNowAsk {
    attempt: u8,
    key_id: String,
    group_public_key: [u8; 32],
    epoch: u64,
    messages: Vec<Vec<u8>>,
    request_id: SessionId,
    token: Option<String>,
    boot: BootId,
    seqs: Vec<u64>,
    signing_packages: Vec<Vec<u8>>,
}

/// This node as a signer.
#[derive(Debug)]
pub struct SignerDriver {
    signer: Signer,
    pools: NoncePools,
}

impl SignerDriver {
    /// A signer with no nonces, of run `boot`, preprocessing `presign` nonces per coordinator
    /// (0: none); the observers (tests only) see every nonce made.
    pub fn new(
        observer: Option<NonceObserver>,
        pool_observer: Option<NonceObserver>,
        boot: BootId,
        presign: usize,
    ) -> Self {
        let mut signer = Signer::new();
        if let Some(o) = observer {
            signer.observe_nonces(o);
        }
        let mut pools = NoncePools::new(boot, presign, presign / 2);
        if let Some(o) = pool_observer {
            pools.observe_nonces(o);
        }
        SignerDriver { signer, pools }
    }

    fn schedule(&self, ctx: &mut Ctx<'_>) {
        let next = match (self.signer.next_expiry(), self.pools.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ctx.timers.set(Timer::Nonces, next);
    }

    /// Preprocessed nonces held for all coordinators.
    pub fn presigned(&self) -> usize {
        self.pools.held_total()
    }

    /// Sends `coordinator` a batch of fresh commitments if its pool here is low.
    pub fn refill(&mut self, ctx: &mut Ctx<'_>, coordinator: NodeId) {
        self.send_batch(ctx, coordinator, false);
    }

    fn send_batch(&mut self, ctx: &mut Ctx<'_>, coordinator: NodeId, reset: bool) {
        if coordinator == ctx.me() || !self.pools.enabled() || !ctx.peers.is_connected(coordinator)
        {
            return;
        }
        let issued = self.pools.refill(ctx.now, coordinator, &mut ctx.rng);
        if issued.is_empty() {
            return;
        }
        let commitments: Vec<(u64, Vec<u8>)> = issued
            .iter()
            .filter_map(|(seq, c)| c.serialize().ok().map(|b| (*seq, b)))
            .collect();
        let body = Body::Presign {
            boot: self.pools.boot(),
            reset,
            commitments,
        };
        ctx.outbox.send(SessionId([0; 32]), coordinator, body);
        self.schedule(ctx);
    }

    /// A peer connected: it may coordinate, so it gets a pool, started afresh (whatever it
    /// still holds of an earlier one is void: the batch says so).
    pub fn on_peer_ready(&mut self, ctx: &mut Ctx<'_>, peer: NodeId) {
        self.pools.drop_coordinator(peer);
        self.send_batch(ctx, peer, true);
    }

    /// A peer's last connection closed: if it comes back it may have restarted without the
    /// commitments it held, so its pool is forgotten (and refilled when it is back).
    pub fn on_peer_lost(&mut self, peer: NodeId) {
        self.pools.drop_coordinator(peer);
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
                epoch,
                messages,
                request_id,
                token,
            } => {
                let slot = Slot {
                    coordinator,
                    session: sid,
                    attempt,
                };
                let ask = CommitAsk {
                    key_id: &key_id,
                    epoch,
                    expected_key: Some(group_public_key),
                    messages: &messages,
                    request_id,
                    token,
                };
                self.commit(ctx, slot, ask).and_then(|c| {
                    c.iter()
                        .map(|c| c.serialize())
                        .collect::<Result<Vec<_>, _>>()
                        .map(|commitments| Body::Commitment {
                            attempt,
                            commitments,
                        })
                        .map_err(|e| Refusal::new(ErrorKind::Frost, e.to_string()))
                })
            }
            Body::SignRequest {
                attempt,
                signing_packages,
            } => {
                let slot = Slot {
                    coordinator,
                    session: sid,
                    attempt,
                };
                self.sign(ctx, slot, Package::Encoded(&signing_packages))
                    .map(|shares| Body::Share { attempt, shares })
            }
            Body::SignNow {
                attempt,
                key_id,
                group_public_key,
                epoch,
                messages,
                request_id,
                token,
                boot,
                seqs,
                signing_packages,
            } => {
                let ask = SignNowAsk {
                    attempt,
                    key_id,
                    group_public_key,
                    epoch,
                    messages,
                    request_id,
                    token,
                    boot,
                    seqs,
                    signing_packages,
                };
                let result = self.sign_now(ctx, sid, coordinator, ask);
                self.refill(ctx, coordinator);
                result
            }
            other => Err(Refusal::new(
                ErrorKind::BadRequest,
                format!("{} is not a signer request", other.kind()),
            )),
        };
        result.unwrap_or_else(|r| {
            crate::peer_warn!(ctx.limits.nodes, coordinator, ctx.now, session = %sid, coordinator, kind = %r.kind, reason = %r.reason, "signer refused");
            r.to_body()
        })
    }

    /// Signs in one round with nonces `seqs` issued to `coordinator`: the nonces leave their
    /// pool first (they are gone whatever follows), then the request is checked as a
    /// `CommitRequest` would be, then the packages are signed.
    fn sign_now(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        coordinator: NodeId,
        ask: SignNowAsk,
    ) -> Result<Body, Refusal> {
        let taken = self
            .pools
            .take_all(ctx.now, coordinator, ask.boot, &ask.seqs);
        self.schedule(ctx);
        let nonces = taken.map_err(|e| Refusal::new(ErrorKind::Conflict, e.to_string()))?;
        checks::batch_size(&ask.messages)?;
        let packages =
            participant::decode_packages(&ask.signing_packages).map_err(|e| refusal(&e))?;
        if packages.len() != ask.messages.len()
            || packages
                .iter()
                .zip(&ask.messages)
                .any(|(p, m)| p.message() != m.as_slice())
        {
            return Err(refusal(&SignerError::MessageMismatch));
        }
        let me = ctx.me();
        let messages = &ask.messages;
        let request = Asked {
            session: sid,
            coordinator,
            key_id: &ask.key_id,
            messages: MessageBinding::of(messages),
            request_id: ask.request_id,
            token: ask.token.as_deref(),
        };
        admit(ctx, request)?;
        let (key, _) = checks::signing_key(
            ctx.keystore,
            me,
            &ask.key_id,
            Some(ask.group_public_key),
            Some(coordinator),
            messages,
            Some(ask.epoch),
        )?;
        let share = ShareRef {
            key: &key.key_package,
            participants: &key.participants,
        };
        let shares = participant::sign_all(&nonces, &packages, share).map_err(|e| refusal(&e))?;
        Ok(Body::Share {
            attempt: ask.attempt,
            shares,
        })
    }

    /// Fresh nonces for `slot`, after the client's token and the key are checked.
    pub fn commit(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: Slot,
        ask: CommitAsk<'_>,
    ) -> Result<Vec<SigningCommitments>, Refusal> {
        let me = ctx.me();
        // Sizes first: the binding hashes every message.
        checks::batch_size(ask.messages)?;
        let request = Asked {
            session: slot.session,
            coordinator: slot.coordinator,
            key_id: ask.key_id,
            messages: MessageBinding::of(ask.messages),
            request_id: ask.request_id,
            token: ask.token.as_deref(),
        };
        admit(ctx, request)?;
        let (key, _) = checks::signing_key(
            ctx.keystore,
            me,
            ask.key_id,
            ask.expected_key,
            Some(slot.coordinator),
            ask.messages,
            Some(ask.epoch),
        )?;
        let what = Commit {
            key_id: ask.key_id,
            epoch: ask.epoch,
            messages: ask.messages,
            key: &key.key_package,
        };
        let authorization = ask.token.map(|token| Authorization {
            request_id: ask.request_id,
            token,
        });
        let result = self
            .signer
            .commit(ctx.now, slot, what, authorization, &mut ctx.rng);
        self.schedule(ctx);
        result.map_err(|e| refusal(&e))
    }

    /// This node's signature shares for `slot`, one per message (its nonces are consumed
    /// whatever happens).
    pub fn sign(
        &mut self,
        ctx: &mut Ctx<'_>,
        slot: Slot,
        packages: Package<'_>,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let unknown = || {
            refusal(&SignerError::UnknownSession {
                session: slot.session,
                attempt: slot.attempt,
            })
        };
        let committed = self.signer.committed(&slot).ok_or_else(unknown)?;
        let key_id = committed.key_id;
        // The client's token is checked again before the share leaves (it may have expired
        // since the commitment), and so is the policy's verdict.
        let request_id = committed
            .authorization
            .map_or(SessionId([0; 32]), |a| a.request_id);
        let request = || Request::sign(key_id, committed.messages, request_id.0);
        let token = committed.authorization.map(|a| a.token.as_str());
        let now_unix = ctx.unix_seconds();
        let checked = checks::authorize(ctx.config, ctx.auth, now_unix, token, request)
            .and_then(|_| ctx.policy.check(request_id, token));
        if let Err(refusal) = checked {
            self.signer
                .forget(slot.coordinator, slot.session, slot.attempt);
            self.schedule(ctx);
            return Err(refusal);
        }
        // The share of the epoch the commitment was made for, whatever the current one is now:
        // a signature never mixes two epochs' shares.
        let Some(key) = ctx.keystore.get_epoch(key_id, committed.epoch) else {
            let refusal = Refusal::new(
                ErrorKind::NotFound,
                format!(
                    "epoch {} of key {key_id:?} was retired on this node",
                    committed.epoch
                ),
            );
            self.signer
                .forget(slot.coordinator, slot.session, slot.attempt);
            self.schedule(ctx);
            return Err(refusal);
        };
        let share = ShareRef {
            key: &key.key_package,
            participants: &key.participants,
        };
        let result = match packages {
            Package::Encoded(bytes) => self.signer.sign(ctx.now, slot, bytes, share),
            Package::Decoded(p) => self.signer.sign_packages(ctx.now, slot, p, share),
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
        self.pools.expire(ctx.now);
        // A coordinator whose nonces expired unused gets fresh ones.
        for coordinator in self.pools.coordinators() {
            if ctx.peers.is_connected(coordinator) {
                self.refill(ctx, coordinator);
            }
        }
        self.schedule(ctx);
    }
}

/// A session's signing packages (one per message) as they arrive: from the network, or from
/// this node's own coordinator.
pub enum Package<'a> {
    /// frost serializations.
    Encoded(&'a [Vec<u8>]),
    /// Already decoded.
    Decoded(&'a [SigningPackage]),
}

/// What a coordinator asks this node's nonces for.
struct Asked<'a> {
    session: SessionId,
    coordinator: NodeId,
    key_id: &'a str,
    messages: MessageBinding,
    request_id: SessionId,
    token: Option<&'a str>,
}

/// The checks every coordinator's request for this node's nonces passes, in one round or
/// two: the session is the coordinator's for the request, the client's token allows signing
/// this message with this key here, and the operator's policy approved it.
fn admit(ctx: &mut Ctx<'_>, asked: Asked<'_>) -> Result<(), Refusal> {
    if asked.session.0 != election::session_id(&asked.request_id.0, asked.coordinator) {
        return Err(Refusal::new(
            ErrorKind::BadRequest,
            format!(
                "session {} is not coordinator {}'s session for request {}",
                asked.session, asked.coordinator, asked.request_id
            ),
        ));
    }
    let request = || Request::sign(asked.key_id, asked.messages, asked.request_id.0);
    let now_unix = ctx.unix_seconds();
    checks::authorize(ctx.config, ctx.auth, now_unix, asked.token, request)?;
    ctx.policy.check(asked.request_id, asked.token)
}
