//! What the suite's tests share beyond the runner ([`crate::harness`]): test policies built from
//! context templates ([`policy`]), calls into a context and `ctx stop` ([`run`]), and one HTTP
//! client for the servers tests talk to ([`http`]).

pub mod http;
pub mod policy;
pub mod run;

pub use policy::Policy;
pub use run::{run_in, stop};
