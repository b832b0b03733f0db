//! The checks that decide whether this node takes part in a session, shared by every role:
//! one admission check for a DKG (run by the initiator before it asks anyone, and by each
//! participant when asked) and one key check for signing (run by the coordinator and by each
//! signer). Each refuses with a typed [`Refusal`].

use crate::auth::{self, AuthError};
use crate::config::Config;
use crate::keystore::{self, KeyStore, StoredKey};
use crate::wire::{DkgStart, ErrorKind, NodeId, RefreshOf, RepairOf, SessionId};

use super::context::Ctx;
use super::error::Refusal;
use super::requests::{MAX_BATCH, MAX_SIGN_MESSAGE};

/// Whether this node can take part in the DKG `start` (session `session`), started by
/// `initiator`: its client token first, then the parameters. `busy` says whether a DKG for the
/// same key id is already running here.
pub fn admit_dkg(
    ctx: &mut Ctx<'_>,
    session: SessionId,
    start: &DkgStart,
    initiator: NodeId,
    busy: bool,
) -> Result<(), Refusal> {
    let (config, peers) = (ctx.config, ctx.peers);
    let me = config.id;
    let bad = |reason: String| Refusal::new(ErrorKind::BadRequest, reason);
    keystore::validate_key_id(&start.key_id).map_err(|e| bad(e.to_string()))?;
    let now = ctx.unix_seconds();
    // A repair or enrolment token may fix the node it is for, as its only participant.
    let target = start.repair.as_ref().map(|r| [r.target]);
    let request = || auth::Request {
        act: match (&start.refresh, &start.repair) {
            _ if start.reshare.is_some() => auth::Action::Reshare,
            (None, _) => auth::Action::Keygen,
            (Some(_), None) => auth::Action::Refresh,
            (Some(_), Some(r)) if r.enrol => auth::Action::Enrol,
            (Some(_), Some(_)) => auth::Action::Repair,
        },
        key_id: &start.key_id,
        message_hash: None,
        batch: None,
        threshold: Some(start.threshold),
        participants: Some(match (&target, &start.reshare) {
            (Some(t), _) => &t[..],
            (None, Some(r)) => &r.members[..],
            (None, None) => &start.participants[..],
        }),
        binding: session.0,
    };
    authorize(config, ctx.auth, now, start.token.as_deref(), request)?;
    let keystore: &KeyStore = ctx.keystore;
    match (&start.refresh, &start.repair) {
        (None, _) if keystore.contains(&start.key_id) => {
            return Err(Refusal::new(
                ErrorKind::Conflict,
                format!("key {:?} already exists on node {me}", start.key_id),
            ));
        }
        (None, _) => {}
        (Some(_), Some(repair)) if repair.target == me => {
            if keystore.contains(&start.key_id) {
                return Err(Refusal::new(
                    ErrorKind::Conflict,
                    format!(
                        "node {me} holds a share of {:?}: nothing to rebuild (if its file is damaged, remove it with `frostnode keys forget` first)",
                        start.key_id
                    ),
                ));
            }
        }
        (Some(refresh), None) if start.reshare.is_some() => {
            admit_reshare(keystore, me, start, refresh)?
        }
        (Some(refresh), repair) => admit_refresh(keystore, me, start, refresh, repair.as_ref())?,
    }
    if busy {
        return Err(Refusal::new(
            ErrorKind::Conflict,
            format!(
                "a DKG or refresh of key {:?} is already running on node {me}",
                start.key_id
            ),
        ));
    }
    let mut sorted = start.participants.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != start.participants.len() {
        return Err(bad("participants contain duplicates".into()));
    }
    let all = config.all_ids();
    let unknown: Vec<NodeId> = sorted
        .iter()
        .copied()
        .filter(|id| !all.contains(id))
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "unknown participants {unknown:?}: nodes configured on node {me} are {all:?}"
        )));
    }
    if !sorted.contains(&me) {
        return Err(bad(format!(
            "this node ({me}) must be among the participants; send the request to one of {sorted:?}"
        )));
    }
    if !sorted.contains(&initiator) {
        return Err(bad("the initiator must be a participant".into()));
    }
    let n = start
        .reshare
        .as_ref()
        .map_or(sorted.len(), |r| r.members.len());
    if n < 2 {
        return Err(bad("a key needs at least 2 participants".into()));
    }
    let t = start.threshold;
    if t < 2 || usize::from(t) > n {
        return Err(bad(format!(
            "threshold must satisfy 2 <= threshold <= participants ({n}), got {t}"
        )));
    }
    let missing = peers.not_ready(&sorted);
    if !missing.is_empty() {
        return Err(Refusal::unavailable(
            format!("participants {missing:?} are not reachable from node {me}"),
            missing,
        ));
    }
    Ok(())
}

/// Whether this node holds exactly the key and epoch a refresh (or repair, or enrolment)
/// starts from, and the session keeps its threshold and the right participants: current ones
/// only for a refresh, all current ones for a repair, and those plus the new one for an
/// enrolment.
fn admit_refresh(
    keystore: &KeyStore,
    me: NodeId,
    start: &DkgStart,
    refresh: &RefreshOf,
    repair: Option<&RepairOf>,
) -> Result<(), Refusal> {
    let key_id = &start.key_id;
    let Some(key) = keystore.get(key_id) else {
        return Err(Refusal::new(
            ErrorKind::NotFound,
            format!("no key {key_id:?} on node {me}"),
        ));
    };
    same_key_and_epoch(key, me, refresh)?;
    if start.threshold != key.threshold {
        return Err(Refusal::new(
            ErrorKind::BadRequest,
            format!(
                "a refresh keeps the threshold ({}); got {}",
                key.threshold, start.threshold
            ),
        ));
    }
    if let Some(repair) = repair {
        return admit_repair(key, me, start, repair);
    }
    let strangers: Vec<NodeId> = start
        .participants
        .iter()
        .copied()
        .filter(|id| !key.participants.contains(id))
        .collect();
    if !strangers.is_empty() {
        return Err(Refusal::new(
            ErrorKind::BadRequest,
            format!(
                "nodes {strangers:?} hold no share of {key_id:?} (its participants are {:?}): a refresh renews existing shares; enrol new nodes",
                key.participants
            ),
        ));
    }
    Ok(())
}

/// Whether `key` is the group key and epoch a session starting from an existing key names.
fn same_key_and_epoch(key: &StoredKey, me: NodeId, of: &RefreshOf) -> Result<(), Refusal> {
    let key_id = &key.key_id;
    if group_key_bytes(&key.group_public_key) != Some(of.group_public_key) {
        return Err(Refusal::new(
            ErrorKind::KeyMismatch,
            format!("node {me} holds a different group key under {key_id:?}"),
        ));
    }
    if key.epoch != of.epoch {
        return Err(Refusal::new(
            ErrorKind::Conflict,
            format!(
                "node {me} holds epoch {} of {key_id:?}, the session starts from epoch {}",
                key.epoch, of.epoch
            ),
        ));
    }
    Ok(())
}

/// A reshare: a node that holds no share of the key may only be a new member; a holder must
/// hold exactly the epoch named, every dealer must be a holder and there must be as many as
/// the key's threshold, new nodes can only be members, and the holders left out of the
/// session must be too few to sign with the current epoch on their own.
fn admit_reshare(
    keystore: &KeyStore,
    me: NodeId,
    start: &DkgStart,
    refresh: &RefreshOf,
) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::new(ErrorKind::BadRequest, reason));
    let key_id = &start.key_id;
    let Some(reshare) = &start.reshare else {
        return Ok(());
    };
    let Some(key) = keystore.get(key_id) else {
        if reshare.members.contains(&me) && !reshare.dealers.contains(&me) {
            // A new member: it learns the key from the session and the certificate.
            return Ok(());
        }
        return Err(Refusal::new(
            ErrorKind::NotFound,
            format!("no key {key_id:?} on node {me}"),
        ));
    };
    same_key_and_epoch(key, me, refresh)?;
    if reshare.dealers.len() != usize::from(key.threshold) {
        return bad(format!(
            "a reshare of {key_id:?} (threshold {}) needs as many dealers, got {:?}",
            key.threshold, reshare.dealers
        ));
    }
    let strangers: Vec<NodeId> = start
        .participants
        .iter()
        .copied()
        .filter(|id| !key.participants.contains(id))
        .collect();
    if let Some(d) = reshare.dealers.iter().find(|d| strangers.contains(d)) {
        return bad(format!("dealer {d} holds no share of {key_id:?}"));
    }
    if let Some(s) = strangers.iter().find(|s| !reshare.members.contains(s)) {
        return bad(format!(
            "node {s} holds no share of {key_id:?} and is not a new participant"
        ));
    }
    let left_out = key
        .participants
        .iter()
        .filter(|id| !start.participants.contains(id))
        .count();
    if left_out >= usize::from(key.threshold) {
        return bad(format!(
            "{left_out} holders of {key_id:?} are left out of the reshare: they could still sign with epoch {} on their own",
            key.epoch
        ));
    }
    Ok(())
}

/// A repair rebuilds a current participant's share, an enrolment makes one for a new node;
/// every current participant takes part either way.
fn admit_repair(
    key: &StoredKey,
    me: NodeId,
    start: &DkgStart,
    repair: &RepairOf,
) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::new(ErrorKind::BadRequest, reason));
    let key_id = &start.key_id;
    let member = key.participants.contains(&repair.target);
    if repair.enrol && member {
        return bad(format!(
            "node {} already holds a share of {key_id:?} (repair it instead)",
            repair.target
        ));
    }
    if !repair.enrol && !member {
        return bad(format!(
            "node {} holds no share of {key_id:?} to repair (enrol it instead)",
            repair.target
        ));
    }
    let mut expected = key.participants.clone();
    if repair.enrol {
        expected.push(repair.target);
        expected.sort_unstable();
        if key.group_commitment.is_empty() {
            return bad(format!(
                "key {key_id:?} was made before group commitments were kept: no new share can be checked"
            ));
        }
    }
    if start.participants != expected {
        return bad(format!(
            "a {} of {key_id:?} on node {me} involves nodes {expected:?}, not {:?}",
            if repair.enrol { "enrolment" } else { "repair" },
            start.participants
        ));
    }
    Ok(())
}

/// The key this node signs `key_id` with, and its group key, if it may: the key exists (at
/// `epoch`, when the requester names one; else its current epoch), is the group key the
/// requester expects (when it says), `requester` (if any) is one of its participants, and the
/// message is not too long.
pub fn signing_key<'k>(
    keystore: &'k KeyStore,
    me: NodeId,
    key_id: &str,
    expected_group_key: Option<[u8; 32]>,
    requester: Option<NodeId>,
    messages: &[impl AsRef<[u8]>],
    epoch: Option<u64>,
) -> Result<(&'k StoredKey, [u8; 32]), Refusal> {
    let current = keystore.get(key_id);
    let key = match (epoch, current) {
        (None, Some(current)) => current,
        // A node a reshare just left out still holds the epoch before (in memory) for the
        // sessions that began on it.
        (Some(epoch), _) => keystore.get_epoch(key_id, epoch).ok_or_else(|| {
            // Retryable: a refresh is completing, and this node is ahead of or behind the
            // coordinator; the coordinator picks another signer.
            Refusal::new(
                ErrorKind::NotFound,
                match current {
                    Some(current) => format!(
                        "node {me} does not hold epoch {epoch} of key {key_id:?} (it holds epoch {})",
                        current.epoch
                    ),
                    None => format!("no key {key_id:?} on node {me}"),
                },
            )
        })?,
        (None, None) => {
            return Err(Refusal::new(
                ErrorKind::NotFound,
                format!("no key {key_id:?} on node {me}"),
            ))
        }
    };
    let Some(ours) = group_key_bytes(&key.group_public_key) else {
        return Err(Refusal::new(
            ErrorKind::Internal,
            "stored group key is corrupt",
        ));
    };
    if expected_group_key.is_some_and(|g| g != ours) {
        return Err(Refusal::new(
            ErrorKind::KeyMismatch,
            format!("node {me} holds a different group key under {key_id:?}"),
        ));
    }
    if let Some(r) = requester {
        if !key.participants.contains(&r) {
            return Err(Refusal::new(
                ErrorKind::BadRequest,
                format!("node {r} is not a participant of {key_id:?}"),
            ));
        }
    }
    batch_size(messages)?;
    Ok((key, ours))
}

/// An upper bound on the bytes one signer's request of a session over `messages` takes on the
/// wire for a `threshold`-of-n key: a signing package per message (each signer's identifier
/// and two points, and the message) and the messages themselves again.
pub fn batch_wire_bytes(messages: &[impl AsRef<[u8]>], threshold: u16) -> usize {
    let per_message = 32 + 2 * 16 + usize::from(threshold) * 110;
    messages
        .iter()
        .map(|m| per_message + 2 * m.as_ref().len())
        .sum::<usize>()
        + BATCH_WIRE_FIXED
}

/// The part of [`batch_wire_bytes`] that does not grow with the messages: the envelope, the
/// key id, the client token.
pub const BATCH_WIRE_FIXED: usize = 2048;

/// A batch holds at most [`MAX_BATCH`] messages.
pub fn batch_count(messages: usize) -> Result<(), String> {
    if messages > MAX_BATCH {
        return Err(format!(
            "a batch of {messages} messages exceeds the limit of {MAX_BATCH}"
        ));
    }
    Ok(())
}

/// A signing request carries one to [`MAX_BATCH`] messages, of [`MAX_SIGN_MESSAGE`] bytes at
/// most in all.
pub fn batch_size(messages: &[impl AsRef<[u8]>]) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::new(ErrorKind::BadRequest, reason));
    if messages.is_empty() {
        return bad("no message to sign".into());
    }
    batch_count(messages.len()).or_else(bad)?;
    let total: usize = messages.iter().map(|m| m.as_ref().len()).sum();
    if total > MAX_SIGN_MESSAGE {
        let what = if messages.len() == 1 {
            "message"
        } else {
            "batch"
        };
        return bad(format!(
            "{what} of {total} bytes exceeds the limit of {MAX_SIGN_MESSAGE} bytes"
        ));
    }
    Ok(())
}

/// The 32 bytes of a hex group key.
pub fn group_key_bytes(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

/// Checks a client token for the request `request` describes against this node's own clients
/// (`request` is built only when there is a token to check); returns the client's name. A node
/// with no `[[clients]]` serves no one: it refuses every request.
pub fn authorize<'r>(
    config: &Config,
    authorizer: &mut auth::Authorizer,
    now_unix: u64,
    token: Option<&str>,
    request: impl FnOnce() -> auth::Request<'r>,
) -> Result<String, Refusal> {
    if config.clients.is_empty() {
        return Err(Refusal::new(
            ErrorKind::Unauthorized,
            format!(
                "node {} lists no [[clients]]: it signs and creates keys for no one",
                config.id
            ),
        ));
    }
    let Some(token) = token else {
        return Err(Refusal::new(ErrorKind::Unauthorized, "no client token"));
    };
    authorizer
        .verify(token, now_unix, &request())
        .map(|v| v.client)
        .map_err(|e: AuthError| {
            let kind = if e.is_authentication() {
                ErrorKind::Unauthorized
            } else {
                ErrorKind::Refused
            };
            Refusal::new(kind, e.to_string())
        })
}
