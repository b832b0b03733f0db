//! Confirmations and certificates reaching a [`DkgSession`]: each signature is checked against
//! its signer's identity key, whoever relays it; once this node's own confirmation is out,
//! nothing but an agreeing confirmation or certificate can change the session.

use std::collections::BTreeMap;

use super::error::{DkgError, Rejection};
use super::session::DkgSession;
use super::types::{confirmation_message, Effect};
use crate::wire::{Confirmation, NodeId};

impl DkgSession {
    pub(super) fn on_confirm(
        &mut self,
        from: NodeId,
        c: Confirmation,
    ) -> Result<Vec<Effect>, Rejection> {
        let valid = self.keys.verify(
            from,
            &confirmation_message(&self.wire_session(), &c),
            &c.signature,
        );
        if !valid {
            if self.confirmed() {
                return Err(Rejection::BadConfirmation {
                    from,
                    reason: "its signature does not verify".into(),
                });
            }
            return Ok(self.fail(DkgError::InvalidConfirmation { culprit: from }, true));
        }
        if let Some(existing) = self.confirmations.get(&from) {
            if *existing == c {
                return Ok(Vec::new());
            }
            if self.confirmed() {
                return Err(Rejection::BadConfirmation {
                    from,
                    reason: "it differs from the one it sent before".into(),
                });
            }
            return Ok(self.fail(
                DkgError::Equivocation {
                    culprit: from,
                    what: "confirmations",
                    reported_by: self.me,
                },
                true,
            ));
        }
        self.confirmations.insert(from, c);
        Ok(self.progress())
    }

    /// A certificate: every participant's confirmation, relayed by `from`. Each signature is
    /// checked against its signer's key (who relays it does not matter); a certificate that
    /// does not verify is refused without touching the session.
    pub(super) fn on_certificate(
        &mut self,
        from: NodeId,
        list: Vec<(NodeId, Confirmation)>,
    ) -> Result<Vec<Effect>, Rejection> {
        let bad = |reason: String| Rejection::BadCertificate { from, reason };
        let ids: Vec<NodeId> = list.iter().map(|(id, _)| *id).collect();
        if ids != self.params.participants {
            return Err(bad(
                "it does not list every participant once, in order".into()
            ));
        }
        let Some(own) = &self.own_confirmation else {
            return Err(bad(format!(
                "it holds a confirmation of node {}, which has not confirmed",
                self.me
            )));
        };
        let mut certificate = BTreeMap::new();
        for (id, c) in list {
            if id == self.me {
                if c != *own {
                    return Err(bad(format!(
                        "it holds a confirmation of node {id} that node {id} never signed"
                    )));
                }
                continue;
            }
            let known = self.confirmations.get(&id) == Some(&c);
            if !known
                && !self.keys.verify(
                    id,
                    &confirmation_message(&self.wire_session(), &c),
                    &c.signature,
                )
            {
                return Err(bad(format!(
                    "the confirmation of node {id} does not verify"
                )));
            }
            certificate.insert(id, c);
        }
        for (id, c) in &certificate {
            self.confirmations.entry(*id).or_insert_with(|| c.clone());
        }
        self.certificate = Some(certificate);
        Ok(self.progress())
    }
}
