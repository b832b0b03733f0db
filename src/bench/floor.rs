//! The arithmetic floors the benchmarks are read against, measured by running frost's own
//! functions on this machine (no network, no node): what one participant of an `n`-node,
//! threshold-`t` DKG costs (`bench dkg`), and what one threshold-`t` signature costs with and
//! without frost's decoding of what each party receives (`bench sign`): the least any
//! implementation on frost's API could take here.

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

/// What one `t`-of-`n` signature costs with frost alone on one core: its cryptography (`t`
/// commitments, `t` shares, the aggregate with its verification, one strict verification),
/// and the same with the decoding frost does of what each party receives in a two-round
/// protocol (the coordinator decodes `t - 1` commitments and `t - 1` shares, each remote
/// signer the signing package: every point decompressed and checked) — the *wire floor*.
#[derive(Clone, Copy, Debug)]
pub struct SignFloor {
    /// The cryptography alone.
    pub crypto: Duration,
    /// With the decoding: the least any implementation on frost's API pays per signature.
    pub wire: Duration,
}

/// Measures [`SignFloor`] for threshold `t` over `runs` signatures (median of each).
pub fn measure_sign(t: u16, runs: usize) -> Result<SignFloor, String> {
    use frost_ed25519::{round1, round2, SigningPackage};
    let err = |e: frost_ed25519::Error| e.to_string();
    let mut rng = rand::rngs::OsRng;
    let (shares, public) = frost_ed25519::keys::generate_with_dealer(
        t,
        t,
        frost_ed25519::keys::IdentifierList::Default,
        rng,
    )
    .map_err(err)?;
    let keys: Vec<frost_ed25519::keys::KeyPackage> = shares
        .into_values()
        .map(|s| frost_ed25519::keys::KeyPackage::try_from(s).map_err(err))
        .collect::<Result<_, _>>()?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(
        &public
            .verifying_key()
            .serialize()
            .map_err(err)?
            .try_into()
            .map_err(|_| "group key is not 32 bytes".to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let (mut crypto, mut wire) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs.max(1) {
        let message = [i as u8; 32];
        for decode in [false, true] {
            let started = Instant::now();
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for kp in &keys {
                let (n, c) = round1::commit(kp.signing_share(), &mut rng);
                let c = if decode && kp.identifier() != keys[0].identifier() {
                    round1::SigningCommitments::deserialize(&c.serialize().map_err(err)?)
                        .map_err(err)?
                } else {
                    c
                };
                nonces.insert(*kp.identifier(), n);
                commitments.insert(*kp.identifier(), c);
            }
            let package = SigningPackage::new(commitments, &message);
            let bytes = if decode {
                package.serialize().map_err(err)?
            } else {
                Vec::new()
            };
            let mut sig_shares = BTreeMap::new();
            for kp in &keys {
                let remote = decode && kp.identifier() != keys[0].identifier();
                let share = if remote {
                    let theirs = SigningPackage::deserialize(&bytes).map_err(err)?;
                    let s = round2::sign(&theirs, &nonces[kp.identifier()], kp).map_err(err)?;
                    round2::SignatureShare::deserialize(&s.serialize()).map_err(err)?
                } else {
                    round2::sign(&package, &nonces[kp.identifier()], kp).map_err(err)?
                };
                sig_shares.insert(*kp.identifier(), share);
            }
            let sig = frost_ed25519::aggregate(&package, &sig_shares, &public).map_err(err)?;
            let bytes: [u8; 64] = sig
                .serialize()
                .map_err(err)?
                .try_into()
                .map_err(|_| "signature is not 64 bytes".to_string())?;
            vk.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&bytes))
                .map_err(|e| e.to_string())?;
            let took = started.elapsed();
            if decode {
                wire.push(took);
            } else {
                crypto.push(took);
            }
        }
    }
    crypto.sort();
    wire.sort();
    Ok(SignFloor {
        crypto: crypto[crypto.len() / 2],
        wire: wire[wire.len() / 2],
    })
}

/// The wire floor's throughput with every core busy: `threads` threads measure
/// [`measure_sign`] at once (`runs` signatures each); the ceiling is the sum of their rates.
/// On a machine that slows down when all its cores work, this is the ceiling a cluster on it
/// can reach, where `threads / wire floor` would overstate it.
pub fn measure_ceiling(t: u16, threads: usize, runs: usize) -> Result<f64, String> {
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| std::thread::spawn(move || measure_sign(t, runs)))
        .collect();
    let mut rate = 0.0;
    for h in handles {
        let floor = h
            .join()
            .map_err(|_| "a floor thread panicked".to_string())??;
        rate += 1.0 / floor.wire.as_secs_f64().max(1e-9);
    }
    Ok(rate)
}
