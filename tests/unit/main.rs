//! Unit-level tests that live outside `src/`: property tests of every parser (fuzz_tests), the
//! generated man pages and completions (docs_gen), the policy documentation against the policy
//! types (policy_docs), the `src/…` paths the documentation names (doc_paths), the module
//! layering of `src/` (layers), and the length of its functions and files (sizes). They use the
//! library's parts directly; the integration suite (`tests/suite`) runs the real binary.

mod doc_paths;
mod docs_gen;
mod fuzz_tests;
mod layers;
mod policy_docs;
mod sizes;
