//! The DKG session state machine (sans-IO): FROST distributed key generation over
//! `frost_ed25519::keys::dkg::{part1, part2, part3}`, plus the checks that make it safe on a
//! real network.
//!
//! Steps (one [`DkgSession`] per participant and session):
//! 1. `Prepared`: created on `DkgStart` (the *setup* id, drawn by the initiator); the node
//!    answers with a fresh random contribution.
//! 2. `Round1`: `DkgBegin` carries every participant's contribution; they fix the *round* id
//!    ([`round_id`]) that every later message travels under and that the confirmations sign,
//!    so no message from an earlier session can be replayed into this one (whoever chose the
//!    setup id). Then run `part1` and broadcast the round-1 package.
//! 3. `Round2`: with every other round-1 package, run `part2`, send each round-2 package to its
//!    recipient alone, and broadcast an *echo*: the hash of every round-1 package used. An echo
//!    that disagrees with ours exposes a sender that showed different packages to different
//!    peers.
//! 4. `Confirming`: with every round-2 package and every echo, run `part3`, then broadcast a
//!    confirmation signed with the node identity key over (session, transcript, group key,
//!    public key package hash).
//! 5. `Done`: every participant confirmed the same result. Only now is the key handed out to
//!    be stored.
//!
//! The same machine refreshes an existing key ([`DkgParams::refresh`], [`PriorKey`]): frost's
//! `refresh_dkg_part1/part2/shares` take the place of `part1/part2/part3`, every polynomial
//! has a zero constant term (so the group key cannot change), and the result is the key's
//! next epoch, for the participants of the session only: a member left out holds a share
//! that combines with none of the new ones.
//!
//! It also reshares a key to a new threshold and participant set (`reshare.rs`): `t` dealers
//! deal their Lagrange-weighted shares to the new members, everyone checks the dealings
//! against the key's public data, and the group key stays the same.
//!
//! The machine takes messages, time and randomness as arguments and returns [`Effect`]s; it
//! never touches the network, clocks or disk. Its costly arithmetic (decoding round-1
//! packages, `part2`, `part3`) comes out as [`Effect::Compute`] for the driver to run on a
//! worker thread; the result comes back through [`DkgSession::computed`]. Confirmations are signed and checked through
//! [`ConfirmationKeys`], so the machine knows nothing of how node identities are kept.

mod commitment;
mod confirm;
mod error;
mod intake;
mod phase;
mod pulls;
mod repair;
mod reshare;
mod rounds;
mod session;
mod types;
mod work;

pub use commitment::{verifying_share_of, CommitmentError};
pub use error::{DkgError, Rejection};
pub use phase::Phase;
pub use session::DkgSession;
pub use types::{
    confirmation_message, round_id, ConfirmationKeys, DkgOutput, DkgParams, Effect, PriorKey,
};
pub use work::{Done, Work};
