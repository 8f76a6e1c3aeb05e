//! The PostgreSQL HA product built on the engine: what the stack's roles
//! promise ([`contract`]), the cluster CA ([`tls`]), the day-2 operations on
//! a running cluster ([`cluster`]), and the roll-out that follows an apply
//! ([`rollout`]). The engine knows none of this; the command line joins
//! the two.

pub mod cluster;
pub mod contract;
pub mod rollout;
pub mod tls;
