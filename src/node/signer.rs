//! The signer driver: this node's answers to the coordinators that ask it for nonce
//! commitments and signature shares, and to its own coordinator (without encoding round
//! trips). The nonces themselves live in the sans-IO [`Signer`] and, preprocessed for each
//! coordinator, in [`NoncePools`]; this driver checks the client's token, the operator's policy
//! verdict and the key (one check, shared with the coordinator), lends the state machines time
//! and randomness, sends each connected coordinator a fresh batch of commitments when its pool
//! runs low, and keeps the nonce-expiry deadline up to date.

use frost_ed25519::round1::SigningCommitments;
use libp2p::request_response::ResponseChannel;

use super::checks;
use super::context::Ctx;
use super::error::Refusal;
use super::journal::{Role, SessionRecord};
use super::offload::Finished;
use super::shares::{Signing, Taken};
use super::timers::Timer;
use crate::auth::{MessageBinding, Request};
use crate::signing::election;
use crate::signing::participant::{
    Authorization, Commit, NonceObserver, Signer, SignerError, Slot,
};
use crate::signing::presign::{BootId, NoncePools};
use crate::wire::{Body, ErrorKind, NodeId, SessionId};

/// A signer's error as the refusal a coordinator is sent.
pub(super) fn refusal(e: &SignerError) -> Refusal {
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

/// A remote coordinator's request, as this node's journal keeps the answer to it.
#[derive(Debug)]
pub struct Asking {
    key_id: String,
    request: SessionId,
    messages: usize,
    started: std::time::Instant,
}

impl Asking {
    /// What `body`, a remote coordinator's request, asks; `None` for a body no signer serves.
    fn of(
        ctx: &Ctx<'_>,
        signer: &Signer,
        coordinator: NodeId,
        sid: SessionId,
        body: &Body,
    ) -> Option<Self> {
        let (key_id, request, messages) = match body {
            Body::CommitRequest {
                key_id,
                messages,
                request_id,
                ..
            }
            | Body::SignNow {
                key_id,
                messages,
                request_id,
                ..
            } => (key_id.clone(), *request_id, messages.len()),
            Body::SignRequest { attempt, .. } => {
                let slot = Slot {
                    coordinator,
                    session: sid,
                    attempt: *attempt,
                };
                let c = signer.committed(&slot)?;
                let request = c.authorization.map_or(sid, |a| a.request_id);
                (
                    c.key_id.to_string(),
                    request,
                    c.messages.batch.map_or(1, usize::from),
                )
            }
            _ => return None,
        };
        Some(Asking {
            key_id,
            request,
            messages,
            started: ctx.now,
        })
    }

    /// Keeps this node's answer to `coordinator` in the journal: shares sent, or a refusal.
    /// Commitments (the first of two rounds) are not an answer yet.
    fn journal(self, ctx: &mut Ctx<'_>, coordinator: NodeId, result: &Result<Body, Refusal>) {
        let (outcome, error) = match result {
            Ok(Body::Share { .. }) => ("ok".to_string(), None),
            Ok(_) => return,
            Err(r) => (r.kind.as_str().to_string(), Some(r.reason.clone())),
        };
        let took = ctx.now.saturating_duration_since(self.started);
        ctx.journal.record(SessionRecord {
            coordinator: Some(coordinator),
            messages: Some(self.messages),
            outcome,
            error,
            ..SessionRecord::ended(
                "sign",
                Role::Signer,
                &self.request.0,
                &self.key_id,
                ctx.unix_seconds(),
                took,
            )
        });
    }
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
        let next = match (self.signer.next_expiry(), self.pools.next_expiry(ctx.now)) {
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

    /// Answers a remote coordinator's `CommitRequest`, `SignRequest` or `SignNow` on
    /// `channel`: commitments at once, shares once the worker pool has made them.
    pub fn serve(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        coordinator: NodeId,
        body: Body,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let asking = Asking::of(ctx, &self.signer, coordinator, sid, &body).map(Box::new);
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
                match self.prepare_sign(ctx, slot) {
                    Ok(signing) => {
                        let shares = (signing, attempt, signing_packages);
                        return sign_later(ctx, sid, coordinator, channel, shares, asking);
                    }
                    Err(r) => Err(r),
                }
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
                match result {
                    Ok(shares) => {
                        return sign_later(ctx, sid, coordinator, channel, shares, asking)
                    }
                    Err(r) => Err(r),
                }
            }
            other => Err(Refusal::new(
                ErrorKind::BadRequest,
                format!("{} is not a signer request", other.kind()),
            )),
        };
        self.reply(ctx, sid, coordinator, channel, result, asking);
    }

    /// Sends a remote coordinator this node's answer (a refusal is logged, rate-limited per
    /// peer) and keeps it in the journal.
    pub fn reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        coordinator: NodeId,
        channel: ResponseChannel<Vec<u8>>,
        result: Result<Body, Refusal>,
        asking: Option<Box<Asking>>,
    ) {
        if let Some(asking) = asking {
            (*asking).journal(ctx, coordinator, &result);
        }
        let body = result.unwrap_or_else(|r| {
            crate::peer_warn!(ctx.limits.nodes, coordinator, ctx.now, session = %sid, coordinator, kind = %r.kind, reason = %r.reason, "signer refused");
            r.to_body()
        });
        ctx.outbox.respond(channel, sid, coordinator, body);
    }

    /// Prepares signing in one round with nonces `seqs` issued to `coordinator`: the nonces
    /// leave their pool first (they are gone whatever follows), then the request is checked as
    /// a `CommitRequest` would be. The packages are decoded and signed on the worker pool.
    fn sign_now(
        &mut self,
        ctx: &mut Ctx<'_>,
        sid: SessionId,
        coordinator: NodeId,
        ask: SignNowAsk,
    ) -> Result<(Signing, u8, Vec<Vec<u8>>), Refusal> {
        let taken = self
            .pools
            .take_all(ctx.now, coordinator, ask.boot, &ask.seqs);
        self.schedule(ctx);
        let nonces = taken.map_err(|e| Refusal::new(ErrorKind::Conflict, e.to_string()))?;
        checks::batch_size(&ask.messages)?;
        if nonces.len() != ask.messages.len() || ask.signing_packages.len() != ask.messages.len() {
            return Err(refusal(&SignerError::WrongCount {
                got: ask.signing_packages.len(),
                want: ask.messages.len(),
            }));
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
        let signing = Signing {
            taken: Taken::Preprocessed {
                nonces,
                messages: ask.messages,
            },
            key_package: key.key_package.clone(),
            participants: key.participants.clone(),
        };
        Ok((signing, ask.attempt, ask.signing_packages))
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

    /// Before this node's shares for `slot` are made: the client's token and the policy's
    /// verdict are checked again (the token may have expired since the commitment) and the
    /// nonces leave their table (they are gone whatever follows). Returns them with what they
    /// sign with, for the arithmetic to run where it may.
    pub fn prepare_sign(&mut self, ctx: &mut Ctx<'_>, slot: Slot) -> Result<Signing, Refusal> {
        let unknown = || {
            refusal(&SignerError::UnknownSession {
                session: slot.session,
                attempt: slot.attempt,
            })
        };
        let committed = self.signer.committed(&slot).ok_or_else(unknown)?;
        let key_id = committed.key_id;
        let request_id = committed
            .authorization
            .map_or(SessionId([0; 32]), |a| a.request_id);
        let request = || Request::sign(key_id, committed.messages, request_id.0);
        let token = committed.authorization.map(|a| a.token.as_str());
        let now_unix = ctx.unix_seconds();
        let checked = checks::authorize(ctx.config, ctx.auth, now_unix, token, request)
            .and_then(|_| ctx.policy.check(request_id, token));
        // The share of the epoch the commitment was made for, whatever the current one is now:
        // a signature never mixes two epochs' shares.
        let key = checked.and_then(|_| {
            ctx.keystore
                .get_epoch(key_id, committed.epoch)
                .ok_or_else(|| {
                    Refusal::new(
                        ErrorKind::NotFound,
                        format!(
                            "epoch {} of key {key_id:?} was retired on this node",
                            committed.epoch
                        ),
                    )
                })
                .map(|k| (k.key_package.clone(), k.participants.clone()))
        });
        let taken = self.signer.take_nonces(ctx.now, slot);
        self.schedule(ctx);
        let (key_package, participants) = key?;
        Ok(Signing {
            taken: Taken::Pool(taken.map_err(|e| refusal(&e))?),
            key_package,
            participants,
        })
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

/// Has the worker pool decode and sign a remote coordinator's packages (`attempt`'s, with
/// `signing`) and answer it on `channel`.
fn sign_later(
    ctx: &mut Ctx<'_>,
    sid: SessionId,
    coordinator: NodeId,
    channel: ResponseChannel<Vec<u8>>,
    (signing, attempt, packages): (Signing, u8, Vec<Vec<u8>>),
    asking: Option<Box<Asking>>,
) {
    ctx.offload("sign", move || Finished::Reply {
        session: sid,
        to: coordinator,
        channel,
        result: signing.encoded(attempt, &packages),
        asking,
    });
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
