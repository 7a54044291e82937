//! Egress policy of a confined context: the rules live with the policy they are parsed from
//! ([`crate::model::egress`], so a bad `net.allow` entry is an error at load with its file, line
//! and column); the planning and the proxy use them from here.

pub use crate::model::egress::*;
