//! Network input: every gossip message and request is authenticated against the peer book,
//! checked for its transport (secret shares never arrive by gossip), and routed to the component
//! it belongs to; requests get their answer through the outbox.

use libp2p::gossipsub::MessageAcceptance;
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;

use super::context::Ctx;
use super::coordinator::{CoordinateRequest, Responder};
use super::dkg::DkgDriver;
use super::policy::{self, Held};
use super::roles::Roles;
use crate::net;
use crate::peer_warn;
use crate::wire::{Body, ErrorKind};

/// Routes one network message (connection changes are the peer book's, already applied).
pub fn on_net(ctx: &mut Ctx<'_>, dkg: &mut DkgDriver, roles: &mut Roles<'_>, event: net::Event) {
    match event {
        net::Event::Gossip {
            source,
            propagation_source,
            message_id,
            data,
        } => {
            let verdict = match ctx.peers.authenticate(source, &data) {
                Err(reason) => {
                    peer_warn!(ctx.limits.peers, propagation_source, ctx.now, peer = %source, from = %propagation_source, %reason, "broadcast rejected");
                    MessageAcceptance::Reject
                }
                Ok(env) if !is_broadcast(&env.body) => {
                    peer_warn!(ctx.limits.peers, propagation_source, ctx.now, peer = %source, kind = env.body.kind(), "message type not allowed as a broadcast; rejected");
                    MessageAcceptance::Reject
                }
                // Valid messages are not relayed: every participant is directly connected to
                // every other (checked before a session starts) and flood publishing reaches
                // each of them directly, so a relay would only cost bandwidth and CPU.
                Ok(env) if ctx.outbox.drops_gossip(&env.body) => MessageAcceptance::Ignore,
                Ok(env) => match dkg.on_message(ctx, env) {
                    MessageAcceptance::Accept => MessageAcceptance::Ignore,
                    verdict => verdict,
                },
            };
            ctx.outbox.validate(message_id, propagation_source, verdict);
        }
        net::Event::Request {
            peer,
            data,
            channel,
        } => {
            let Some(channel) = ctx.outbox.admit_request(channel) else {
                return;
            };
            if !ctx.limits.peers.admit(&peer, ctx.now) {
                // Refused unread: a flooding peer costs a bucket check per request.
                peer_warn!(ctx.limits.peers, peer, ctx.now, %peer, "request rate exceeded; refused");
                let body = Body::refused(ErrorKind::Busy, "request rate exceeded");
                ctx.outbox.refuse_unauthenticated(channel, body);
                return;
            }
            on_request(ctx, dkg, roles, peer, data, channel);
        }
        _ => {}
    }
}

fn on_request(
    ctx: &mut Ctx<'_>,
    dkg: &mut DkgDriver,
    roles: &mut Roles<'_>,
    peer: PeerId,
    data: Vec<u8>,
    channel: ResponseChannel<Vec<u8>>,
) {
    let env = match ctx.peers.authenticate(peer, &data) {
        Ok(env) => env,
        Err(reason) => {
            peer_warn!(ctx.limits.peers, peer, ctx.now, %peer, %reason, "request rejected");
            let body = Body::refused(ErrorKind::BadRequest, reason.to_string());
            ctx.outbox.refuse_unauthenticated(channel, body);
            return;
        }
    };
    let (sid, from) = (env.session, env.from);
    let reply = match env.body {
        Body::SignForward {
            key_id,
            group_public_key,
            messages,
            token,
        } => {
            // Answered when the signature is done.
            let req = CoordinateRequest {
                request: sid,
                key_id,
                expected_key: Some(group_public_key),
                messages,
                token,
                responder: Responder::Peer { channel, to: from },
            };
            roles.coordinate(ctx, Some(req));
            return;
        }
        Body::Presign {
            boot,
            reset,
            commitments,
        } => roles
            .coordinator
            .on_presign(ctx, from, boot, reset, &commitments),
        body @ (Body::CommitRequest { .. } | Body::SignNow { .. }) => {
            // Answered once this node's policy (if any) has decided.
            let held = Held::Commit {
                session: sid,
                from,
                body,
                channel,
            };
            if let Some(held) = policy::admit(ctx, held) {
                policy::release(ctx, roles, held);
            }
            return;
        }
        body @ Body::SignRequest { .. } => {
            // Answered once the shares are made.
            roles.signer.serve(ctx, sid, from, body, channel);
            return;
        }
        Body::DkgStart(start) => dkg.on_dkg_start(ctx, sid, from, start),
        Body::DkgPull { want } => dkg.on_pull(ctx, sid, from, want),
        Body::DkgResult(outcome) => {
            dkg.on_report(ctx, sid, from, outcome);
            Body::Ack
        }
        // Confirmations and certificates are signed statements: they count however they come.
        // So are aborts: an initiator calls off a session it cannot begin directly.
        Body::DkgRound2 { .. }
        | Body::DkgConfirm(_)
        | Body::DkgCertificate(_)
        | Body::DkgAbort { .. } => match dkg.on_message(ctx, env) {
            MessageAcceptance::Reject => Body::refused(ErrorKind::BadRequest, "message refused"),
            _ => Body::Ack,
        },
        other => {
            peer_warn!(ctx.limits.nodes, from, ctx.now, session = %sid, peer = from, kind = other.kind(), "unexpected request");
            Body::refused(
                ErrorKind::BadRequest,
                format!("{} is not a request", other.kind()),
            )
        }
    };
    ctx.outbox.respond(channel, sid, from, reply);
}

/// Bodies that may travel by GossipSub. Everything else (secret shares above all) is unicast.
fn is_broadcast(body: &Body) -> bool {
    matches!(
        body,
        Body::DkgBegin { .. }
            | Body::DkgRound1 { .. }
            | Body::DkgEcho { .. }
            | Body::DkgConfirm(_)
            | Body::DkgCertificate(_)
            | Body::DkgAbort { .. }
    )
}
