//! Membership changes without a restart: the node takes the `[[peers]]` and `[[clients]]` of
//! its config file read again (on `SIGHUP` or `POST /v1/reload`) or of a config handed to it.
//! New peers are allow-listed and dialled, removed ones disconnected and refused, a peer whose
//! `peer_id` changed (a new disk, a new identity) is known by its new identity from now on,
//! and the client list is replaced (tokens already seen stay remembered). Settings other than
//! peers and clients need a restart; a reload that changes them says so in the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::error::NodeError;
use super::Node;
use crate::config::Config;
use crate::identity::{peer_public_key, NodeKeys};
use crate::wire::NodeId;

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Peers now configured that were not before.
    pub added: Vec<NodeId>,
    /// Peers no longer configured.
    pub removed: Vec<NodeId>,
    /// Peers whose identity (`peer_id`) or address changed.
    pub changed: Vec<NodeId>,
    /// How many clients this node now serves.
    pub clients: usize,
}

impl Node {
    /// Applies the peers and clients of `new` (or of the config file read again).
    pub(super) fn reload(&mut self, new: Option<Config>) -> Result<ReloadReport, NodeError> {
        let old = self.shared.config.clone();
        let new = match new {
            Some(c) => c,
            None => {
                let Some(path) = &old.source else {
                    return Err(NodeError::BadRequest(
                        "this node was not started from a config file: nothing to reload".into(),
                    ));
                };
                Config::load(path).map_err(|e| NodeError::BadRequest(e.to_string()))?
            }
        };
        if new.id != old.id {
            return Err(NodeError::BadRequest(format!(
                "the config file is now for node {}, not node {}: restart to change a node's id",
                new.id, old.id
            )));
        }
        let mut keys = BTreeMap::new();
        for p in &new.peers {
            let key = peer_public_key(&p.peer_id).ok_or_else(|| {
                NodeError::BadRequest(format!("peer {}'s peer_id holds no public key", p.id))
            })?;
            keys.insert(p.id, key);
        }
        if new.listen != old.listen
            || new.api_listen != old.api_listen
            || new.data_dir != old.data_dir
        {
            warn!("listen addresses and data_dir take effect at the next restart only");
        }
        let before: HashMap<NodeId, _> = old
            .peers
            .iter()
            .map(|p| (p.id, (p.peer_id, &p.addr)))
            .collect();
        let mut report = ReloadReport {
            clients: new.clients.len(),
            ..ReloadReport::default()
        };
        for p in &new.peers {
            match before.get(&p.id) {
                None => report.added.push(p.id),
                Some((pid, addr)) if *pid != p.peer_id || **addr != p.addr => {
                    report.changed.push(p.id)
                }
                Some(_) => {}
            }
        }
        report.removed = old
            .peers
            .iter()
            .map(|p| p.id)
            .filter(|id| !new.peers.iter().any(|p| p.id == *id))
            .collect();
        let mut merged = (*old).clone();
        merged.peers = new.peers;
        merged.clients = new.clients;
        let net_peers = merged
            .peers
            .iter()
            .map(|p| (p.peer_id, p.addr.clone()))
            .collect();
        self.shared
            .outbox
            .set_peers(merged.peers.iter().map(|p| (p.id, p.peer_id)).collect());
        self.shared.peers.set_peers(&merged);
        self.shared
            .metrics
            .known_peers(merged.peers.iter().map(|p| p.id));
        self.shared.auth.set_clients(merged.clients.clone());
        self.dkg
            .set_keys(Arc::new(NodeKeys::new(self.keypair.clone(), keys)));
        self.shared.config = Arc::new(merged);
        self.shared
            .outbox
            .net()
            .set_peers(net_peers)
            .map_err(|e| NodeError::Internal(format!("network layer: {e}")))?;
        info!(
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            clients = report.clients,
            "configuration reloaded"
        );
        Ok(report)
    }
}
