//! The arithmetic floor of a DKG: what frost's own functions cost one participant of an
//! `n`-node, threshold-`t` DKG on this machine (no network, no node), measured by running
//! them. `bench dkg` prints it next to its timings, so a figure can be read against the least
//! any implementation on frost's API could take here.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use frost_ed25519::keys::dkg::{self, round1, round2};
use frost_ed25519::Identifier;

/// One participant's share of the arithmetic, by step.
#[derive(Clone, Copy, Debug)]
pub struct DkgFloor {
    /// `part1` (its polynomial, commitment and proof of knowledge).
    pub part1: Duration,
    /// Decoding the `n - 1` other round-1 packages (every commitment point is checked).
    pub decode: Duration,
    /// `part2` (the proofs of knowledge, the shares for the others).
    pub part2: Duration,
    /// Decoding its `n - 1` round-2 packages and `part3` (every share checked against its
    /// sender's commitment; every participant's verifying share computed).
    pub part3: Duration,
}

impl DkgFloor {
    /// The four steps together.
    pub fn total(&self) -> Duration {
        self.part1 + self.decode + self.part2 + self.part3
    }
}

/// Runs one participant's DKG arithmetic for `n` participants and threshold `t` (the other
/// participants' inputs are made first, untimed).
pub fn measure(n: u16, t: u16) -> Result<DkgFloor, String> {
    let err = |e: frost_ed25519::Error| e.to_string();
    let rng = rand::rngs::OsRng;
    let ids: Vec<Identifier> = (1..=n)
        .map(|i| Identifier::try_from(i).map_err(err))
        .collect::<Result<_, _>>()?;
    let me = ids[0];
    let mut secrets = BTreeMap::new();
    let mut encoded = BTreeMap::new();
    let mut part1 = Duration::ZERO;
    for &id in &ids {
        let started = Instant::now();
        let (secret, package) = dkg::part1(id, n, t, rng).map_err(err)?;
        let bytes = package.serialize().map_err(err)?;
        if id == me {
            part1 = started.elapsed();
        }
        secrets.insert(id, secret);
        encoded.insert(id, bytes);
    }
    let started = Instant::now();
    let mut received = BTreeMap::new();
    for (&id, bytes) in encoded.iter().filter(|(id, _)| **id != me) {
        received.insert(id, round1::Package::deserialize(bytes).map_err(err)?);
    }
    let decode = started.elapsed();
    let all: BTreeMap<Identifier, round1::Package> = encoded
        .iter()
        .map(|(&id, b)| Ok((id, round1::Package::deserialize(b).map_err(err)?)))
        .collect::<Result<_, String>>()?;
    let mut own_secret = None;
    let mut part2 = Duration::ZERO;
    let mut for_me = Vec::new();
    for (id, secret) in secrets {
        let others: BTreeMap<_, _> = all
            .iter()
            .filter(|(k, _)| **k != id)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let started = Instant::now();
        let (secret2, out) = dkg::part2(secret, &others).map_err(err)?;
        if id == me {
            part2 = started.elapsed();
            own_secret = Some(secret2);
        } else if let Some(p) = out.get(&me) {
            for_me.push((id, p.serialize().map_err(err)?));
        }
    }
    let own_secret = own_secret.ok_or("no round-2 secret")?;
    let started = Instant::now();
    let mut round2_packages = BTreeMap::new();
    for (id, bytes) in &for_me {
        round2_packages.insert(*id, round2::Package::deserialize(bytes).map_err(err)?);
    }
    dkg::part3(&own_secret, &received, &round2_packages).map_err(err)?;
    let part3 = started.elapsed();
    Ok(DkgFloor {
        part1,
        decode,
        part2,
        part3,
    })
}
