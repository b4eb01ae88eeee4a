//! The Datalog vocabulary of Mandate tokens and requests (specification §2).
//!
//! Request predicates are supplied by the verifier only; no token block may
//! define them (a block that does is refused, see [`RESERVED`]).

/// `operation($action)`: the request's action. Biscuit's conventional name,
/// and a default symbol, so it costs no bytes in a block.
pub const OPERATION: &str = "operation";
/// `resource($resource)`: the request's resource.
pub const RESOURCE: &str = "resource";
/// `resource_parent($dir)`: the request resource's directory, up to and
/// including its last `/`, present only when the last segment is non-empty.
pub const RESOURCE_PARENT: &str = "resource_parent";
/// `param($name, $value)`: one typed request parameter.
pub const PARAM: &str = "param";
/// `time($t)`: the request time.
pub const TIME: &str = "time";

/// Predicates that only the verifier may supply.
pub const RESERVED: [&str; 5] = [OPERATION, RESOURCE, RESOURCE_PARENT, PARAM, TIME];

/// `token($id)` (root only): the token id, a UUID v4 string.
pub const TOKEN: &str = "token";
/// `principal($p)` (root only): who the token acts for, e.g. `user:alice`.
pub const PRINCIPAL: &str = "principal";
/// `issued_at($t)` (root only): when the root token was minted.
pub const ISSUED_AT: &str = "issued_at";
/// `max_depth($n)` (root only, optional): most delegation hops allowed.
pub const MAX_DEPTH: &str = "max_depth";
/// `agent($id, $key)`: the agent this block hands the token to, with its
/// Ed25519 public key as 32 bytes. Exactly one in the root and in each
/// delegation hop; none in any other block.
pub const AGENT: &str = "agent";
/// `purpose($text)` (optional, at most one per hop): why the hop was made.
pub const PURPOSE: &str = "purpose";

/// Variable bound to the request time in grant checks.
pub(crate) const VAR_TIME: &str = "t";
/// Variable bound to the action.
pub(crate) const VAR_OPERATION: &str = "o";
/// Variable bound to the resource.
pub(crate) const VAR_RESOURCE: &str = "r";
