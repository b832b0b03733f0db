//! The three signing roles of a node and how they hand work to each other: the forwarder elects
//! this node's own coordinator for some requests, the coordinator asks this node's signer first,
//! and the coordinator's answer to a request received here goes back to the forwarder.

use super::context::Ctx;
use super::coordinator::{CoordinateRequest, CoordinatorDriver, LocalAnswer};
use super::forwarder::Forwarder;
use super::offload::Finished;
use super::policy::{self, Held};
use super::signer::SignerDriver;

/// The three signing roles, which hand requests and answers to each other.
pub struct Roles<'a> {
    pub forwarder: &'a mut Forwarder,
    pub coordinator: &'a mut CoordinatorDriver,
    pub signer: &'a mut SignerDriver,
}

impl Roles<'_> {
    /// Coordinates requests this node elected itself for, until none is left.
    pub fn coordinate(&mut self, ctx: &mut Ctx<'_>, mut next: Option<CoordinateRequest>) {
        while let Some(req) = next.take() {
            // This node signs first: with a policy command, it waits for its verdict.
            let Some(Held::Coordinate(req)) = policy::admit(ctx, Held::Coordinate(req)) else {
                break;
            };
            let answer = self.coordinator.start(ctx, self.signer, req);
            next = self.deliver(ctx, answer);
        }
    }

    /// Passes this node's coordinator's answer to its forwarder.
    pub fn answered(&mut self, ctx: &mut Ctx<'_>, answer: Option<LocalAnswer>) {
        let next = self.deliver(ctx, answer);
        self.coordinate(ctx, next);
    }

    /// Signing arithmetic finished on the worker pool: a reply goes to its remote
    /// coordinator, shares and aggregates to this node's coordinator.
    pub fn on_finished(&mut self, ctx: &mut Ctx<'_>, finished: Finished) {
        match finished {
            Finished::Reply {
                session,
                to,
                channel,
                result,
                asking,
            } => self.signer.reply(ctx, session, to, channel, result, asking),
            Finished::OwnShares {
                session,
                attempt,
                result,
            } => {
                let answer =
                    self.coordinator
                        .on_own_shares(ctx, self.signer, session, attempt, result);
                self.answered(ctx, answer);
            }
            Finished::Aggregated { session, done } => {
                let answer = self
                    .coordinator
                    .on_aggregated(ctx, self.signer, session, done);
                self.answered(ctx, answer);
            }
        }
    }

    fn deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        answer: Option<LocalAnswer>,
    ) -> Option<CoordinateRequest> {
        let answer = answer?;
        let me = ctx.me();
        self.forwarder
            .on_reply(ctx, answer.request, me, Ok(answer.body))
    }
}
