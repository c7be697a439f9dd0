//! A/B updates on the Raspberry Pi firmware's `tryboot`: which boot
//! partition is active and which is on trial ([`autoboot`], the card's
//! `autoboot.txt`), and an image written to the inactive partition and
//! checked against its signed manifest ([`writer`]), where this boot came
//! from ([`boot`]), and the transfer, trial and commit ([`updater`]).

pub mod autoboot;
pub mod boot;
pub mod updater;
pub mod writer;

pub use updater::{Action, UpdateSettings, Updater};
