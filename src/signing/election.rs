//! Coordinator election by rendezvous hashing: every node ranks a key's participants for a
//! request the same way, `SHA-256(request_id || id)` highest first, without talking to anyone.
//! The highest-ranked reachable participant coordinates; when it fails, the next takes over.
//! Different requests land on different coordinators, which spreads the load.

use sha2::{Digest, Sha256};

use crate::wire::NodeId;

fn score(request_id: &[u8; 32], id: NodeId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"frostnode/election/v1");
    h.update(request_id);
    h.update(id.to_be_bytes());
    h.finalize().into()
}

/// The signing session id of `coordinator` for a request: unique per request and coordinator,
/// so a signer can check which request a coordinator's session belongs to.
pub fn session_id(request_id: &[u8; 32], coordinator: NodeId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"frostnode/sign-session/v1");
    h.update(request_id);
    h.update(coordinator.to_be_bytes());
    h.finalize().into()
}

/// The participants in coordinator order for this request (best first).
pub fn rank(request_id: &[u8; 32], participants: &[NodeId]) -> Vec<NodeId> {
    let mut scored: Vec<([u8; 32], NodeId)> = participants
        .iter()
        .map(|&id| (score(request_id, id), id))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.dedup_by_key(|(_, id)| *id);
    scored.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_deterministic_and_a_permutation() {
        let ids = [1, 2, 3, 4, 5];
        let r = rank(&[9; 32], &ids);
        assert_eq!(
            r,
            rank(&[9; 32], &[5, 4, 3, 2, 1]),
            "input order does not matter"
        );
        let mut sorted = r.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ids);
    }

    #[test]
    fn removing_a_node_keeps_the_others_order() {
        let ids = [1, 2, 3, 4, 5, 6, 7];
        for seed in 0..50u8 {
            let full = rank(&[seed; 32], &ids);
            let gone = full[0];
            let rest: Vec<NodeId> = ids.iter().copied().filter(|&i| i != gone).collect();
            assert_eq!(rank(&[seed; 32], &rest), full[1..].to_vec());
        }
    }

    #[test]
    fn load_spreads_over_coordinators() {
        let ids = [1, 2, 3, 4, 5];
        let mut counts = [0usize; 6];
        for i in 0..1000u32 {
            let mut req = [0u8; 32];
            req[..4].copy_from_slice(&i.to_be_bytes());
            counts[usize::from(rank(&req, &ids)[0])] += 1;
        }
        for (id, c) in counts.iter().enumerate().skip(1) {
            assert!((120..=280).contains(c), "node {id} coordinates {c} of 1000");
        }
    }
}
