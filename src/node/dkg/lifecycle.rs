//! Refreshing a key (new shares of the same group key, the next epoch), repairing a lost share
//! and enrolling a new node are DKG sessions of other kinds: this file holds what differs for
//! the driver. The initiator fills the session from the stored key (and, for a repair, picks
//! the helpers), each participant hands its session the shares it starts from, and the epoch a
//! completed session replaced is retired from memory once the signing sessions that may still
//! use it are over (its file is already gone: the new epoch's write replaced it).

use sha2::{Digest, Sha256};
use tracing::info;

use super::DkgDriver;
use crate::dkg::{DkgError, DkgParams, PriorKey};
use crate::keystore::{KeyStore, StoredKey};
use crate::node::context::Ctx;
use crate::node::error::NodeError;
use crate::node::initiator::KeygenReply;
use crate::node::requests::{RefreshRequest, RepairRequest, ReshareRequest};
use crate::node::timers::Timer;
use crate::signing::election;
use crate::wire::{DkgStart, NodeId, RefreshOf, RepairOf, ReshareOf};

/// The shares a refresh session starts from: this node's share of the epoch it names.
pub(super) fn prior_key(keystore: &KeyStore, params: &DkgParams) -> Result<PriorKey, DkgError> {
    let missing = || DkgError::InvalidParams(format!("no key {:?} here", params.key_id));
    let key = keystore.get(&params.key_id).ok_or_else(missing)?;
    match params.refresh {
        Some(r) if r.epoch == key.epoch => {}
        _ => {
            return Err(DkgError::InvalidParams(format!(
                "key {:?} is at epoch {} here",
                params.key_id, key.epoch
            )))
        }
    }
    Ok(PriorKey {
        key_package: key.key_package.clone(),
        public_key_package: key.public_key_package.clone(),
        group_commitment: key.group_commitment().map_err(DkgError::Storage)?,
    })
}

/// The key `key_id` as this node holds it, and the epoch a session starting from it names.
fn current<'k>(
    keystore: &'k KeyStore,
    me: NodeId,
    key_id: &str,
) -> Result<(&'k StoredKey, RefreshOf), NodeError> {
    let key = keystore
        .get(key_id)
        .ok_or_else(|| NodeError::NotFound(format!("no key {key_id:?} on node {me}")))?;
    let group_public_key = super::checks::group_key_bytes(&key.group_public_key)
        .ok_or_else(|| NodeError::Internal("stored group key is corrupt".into()))?;
    let epoch = RefreshOf {
        group_public_key,
        epoch: key.epoch,
    };
    Ok((key, epoch))
}

impl DkgDriver {
    /// Starts refreshing a key with this node as initiator; `reply` gets the key's new info.
    pub fn start_refresh(&mut self, ctx: &mut Ctx<'_>, req: RefreshRequest, reply: KeygenReply) {
        let (key, of) = match current(ctx.keystore, ctx.me(), &req.key_id) {
            Ok(k) => k,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut participants: Vec<NodeId> =
            req.participants.unwrap_or_else(|| key.participants.clone());
        participants.sort_unstable();
        let start = DkgStart {
            key_id: req.key_id,
            participants,
            threshold: key.threshold,
            token: req.token,
            refresh: Some(of),
            repair: None,
            reshare: None,
        };
        self.initiate(ctx, start, reply);
    }

    /// Starts rebuilding (repair) or making (enrolment) node `req.node`'s share of a key held
    /// here, with this node as initiator; `reply` gets the key's next epoch.
    pub fn start_repair(&mut self, ctx: &mut Ctx<'_>, req: RepairRequest, reply: KeygenReply) {
        let me = ctx.me();
        let refuse = |reply: KeygenReply, e: NodeError| {
            let _ = reply.send(Err(e));
        };
        let (key, of) = match current(ctx.keystore, me, &req.key_id) {
            Ok(k) => k,
            Err(e) => return refuse(reply, e),
        };
        if req.node == me {
            let message = format!(
                "node {me} holds its share: ask another participant to {} it",
                if req.enrol { "enrol" } else { "repair" }
            );
            return refuse(reply, NodeError::BadRequest(message));
        }
        // Helpers: the first t reachable current participants (this node among them) in an
        // order drawn from the request, so repeated repairs spread the work.
        let mut seed = [0u8; 32];
        ctx.rng.fill_bytes(&mut seed);
        let candidates: Vec<NodeId> = key
            .participants
            .iter()
            .copied()
            .filter(|&id| id != req.node && (id == me || ctx.peers.not_ready(&[id]).is_empty()))
            .collect();
        let t = usize::from(key.threshold);
        let mut helpers: Vec<NodeId> = std::iter::once(me)
            .chain(
                election::rank(&seed, &candidates)
                    .into_iter()
                    .filter(|&id| id != me),
            )
            .take(t)
            .collect();
        if helpers.len() < t || !candidates.contains(&me) {
            let message = format!(
                "a {} needs {t} reachable participants holding the key; reachable: {candidates:?}",
                if req.enrol { "enrolment" } else { "repair" }
            );
            return refuse(
                reply,
                NodeError::Unavailable {
                    message,
                    missing: Vec::new(),
                },
            );
        }
        helpers.sort_unstable();
        let mut participants = key.participants.clone();
        if req.enrol && !participants.contains(&req.node) {
            participants.push(req.node);
            participants.sort_unstable();
        }
        let start = DkgStart {
            key_id: req.key_id,
            participants,
            threshold: key.threshold,
            token: req.token,
            refresh: Some(of),
            repair: Some(RepairOf {
                target: req.node,
                helpers,
                enrol: req.enrol,
            }),
            reshare: None,
        };
        self.initiate(ctx, start, reply);
    }

    /// Starts resharing a key held here to a new threshold and participants, with this node
    /// as initiator and one of the dealers; `reply` gets the key's next epoch.
    pub fn start_reshare(&mut self, ctx: &mut Ctx<'_>, req: ReshareRequest, reply: KeygenReply) {
        let me = ctx.me();
        let (key, of) = match current(ctx.keystore, me, &req.key_id) {
            Ok(k) => k,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        match reshare_plan(key, me, &req, |id| {
            id == me || ctx.peers.not_ready(&[id]).is_empty()
        }) {
            Ok((participants, reshare)) => {
                let start = DkgStart {
                    key_id: req.key_id,
                    participants,
                    threshold: req.threshold,
                    token: req.token,
                    refresh: Some(of),
                    repair: None,
                    reshare: Some(reshare),
                };
                self.initiate(ctx, start, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Keeps `key_id`'s replaced epoch `epoch` in memory until every signing session that may
    /// have begun on it is over.
    pub(super) fn retire_later(&mut self, ctx: &mut Ctx<'_>, key_id: String, epoch: u64) {
        // A coordination lasts at most `sign_timeout`; a signer's nonces for it no longer.
        let at = ctx.now + ctx.config.sign_timeout + ctx.config.request_timeout;
        self.retiring.push_back((at, key_id, epoch));
        ctx.timers
            .set(Timer::Retire, self.retiring.front().map(|(at, ..)| *at));
    }

    /// Retires the replaced epochs whose time has come.
    pub(super) fn retire_due(&mut self, ctx: &mut Ctx<'_>) {
        while let Some((at, ..)) = self.retiring.front() {
            if *at > ctx.now {
                break;
            }
            let Some((_, key_id, epoch)) = self.retiring.pop_front() else {
                break;
            };
            if ctx.keystore.retire(&key_id, epoch) {
                info!(key_id = %key_id, epoch, "replaced epoch retired: its share is gone from this node");
            }
        }
        ctx.timers
            .set(Timer::Retire, self.retiring.front().map(|(at, ..)| *at));
    }
}

/// Who takes part in a reshare of `key` asked of node `me`: the session's participants and
/// its dealers and members. The dealers are `t` reachable holders of the current epoch, this
/// node first, then those that stay, in an order drawn from the request (so that repeated
/// reshares spread the work); the participants are the members, the dealers and every other
/// reachable holder (which deletes its share once the next epoch is certified). Refused when
/// the holders left out, unreachable, could still sign with the current epoch on their own.
fn reshare_plan(
    key: &StoredKey,
    me: NodeId,
    req: &ReshareRequest,
    reachable: impl Fn(NodeId) -> bool,
) -> Result<(Vec<NodeId>, ReshareOf), NodeError> {
    let mut members = req.participants.clone();
    members.sort_unstable();
    members.dedup();
    if members.len() != req.participants.len() {
        return Err(NodeError::BadRequest(
            "participants contain duplicates".into(),
        ));
    }
    if !members.contains(&me) {
        return Err(NodeError::BadRequest(format!(
            "node {me} is not among the new participants {members:?}: send the request to one of them that holds the key"
        )));
    }
    let t = usize::from(key.threshold);
    let holders: Vec<NodeId> = key
        .participants
        .iter()
        .copied()
        .filter(|&id| reachable(id))
        .collect();
    // The order is drawn from the request itself (key, epoch, new threshold and members).
    let mut h = Sha256::new();
    h.update(b"frostnode/reshare-dealers/v1");
    h.update(req.key_id.as_bytes());
    h.update(key.epoch.to_be_bytes());
    h.update(req.threshold.to_be_bytes());
    for id in &members {
        h.update(id.to_be_bytes());
    }
    let seed: [u8; 32] = h.finalize().into();
    let (staying, going): (Vec<NodeId>, Vec<NodeId>) = holders
        .iter()
        .filter(|&&id| id != me)
        .partition(|id| members.contains(id));
    let mut dealers: Vec<NodeId> = std::iter::once(me)
        .chain(election::rank(&seed, &staying))
        .chain(election::rank(&seed, &going))
        .take(t)
        .collect();
    if dealers.len() < t {
        return Err(NodeError::Unavailable {
            message: format!(
                "a reshare needs {t} reachable holders of the key to deal; reachable: {holders:?}"
            ),
            missing: Vec::new(),
        });
    }
    dealers.sort_unstable();
    let left_out: Vec<NodeId> = key
        .participants
        .iter()
        .copied()
        .filter(|id| !holders.contains(id) && !members.contains(id))
        .collect();
    if left_out.len() >= t {
        return Err(NodeError::Unavailable {
            message: format!(
                "nodes {left_out:?} hold the key and are not reachable: they would keep {} shares of the current epoch, enough to sign without the others; reshare when at most {} of them are away",
                left_out.len(),
                t - 1
            ),
            missing: left_out,
        });
    }
    let mut participants: Vec<NodeId> = members.iter().chain(holders.iter()).copied().collect();
    participants.sort_unstable();
    participants.dedup();
    Ok((participants, ReshareOf { dealers, members }))
}
