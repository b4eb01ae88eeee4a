//! The Datalog vocabulary of Mandate tokens and requests (specification §2).
//!
//! Request predicates are supplied by the verifier only; no token block may
//! define them (a block that does is refused, see [`RESERVED`]).

/// `operation($action)`: the request's action. Biscuit's conventional name,
/// and a default symbol, so it costs no bytes in a block.
pub const OPERATION: &str = "operation";
/// `resource($resource)`: the request's resource. The verifier also supplies
/// the two-term `resource($dir, $name)`: the resource split after its last
/// `/` (present only for a path whose last segment is non-empty);
/// `PREFIX/*` patterns match on it. Biscuit treats the two arities as
/// different predicates, so there is still exactly one `resource($r)` fact.
pub const RESOURCE: &str = "resource";
/// `param($name, $value)`: one typed request parameter.
pub const PARAM: &str = "param";
/// `time($t)`: the request time.
pub const TIME: &str = "time";

/// `request_digest($bytes)`: SHA-256 of the request's action, resource and
/// parameters, which an approval names (§14).
pub const REQUEST_DIGEST: &str = "request_digest";
/// `holder($key)`: the final holder's Ed25519 key, supplied only when the
/// request carries a valid proof of possession signed by it (§15).
pub const HOLDER: &str = "holder";

/// `limits_enforced(1)`: supplied by a verifier that enforces the usage
/// limits of §18 (version 1), for tokens whose blocks set limits. Each block
/// with limits carries `check if limits_enforced(1)`, so a verifier that
/// does not know limits (plain Biscuit Datalog) denies instead of ignoring
/// them.
pub const LIMITS_ENFORCED: &str = "limits_enforced";

/// Predicates that only the verifier may supply.
pub const RESERVED: [&str; 7] = [
    OPERATION,
    RESOURCE,
    PARAM,
    TIME,
    REQUEST_DIGEST,
    HOLDER,
    LIMITS_ENFORCED,
];

/// `limit($actions, $max, $window)` (root or hop): a count limit, §18.
/// `$actions` is a set of strings, `$max` and `$window` (seconds) integers.
pub const LIMIT: &str = "limit";
/// `budget($actions, $param, $max, $window)` (root or hop): a budget over
/// integer parameter `$param`, §18.
pub const BUDGET: &str = "budget";

/// `approval($digest, $expires)`: the one fact of an approval block, a
/// third-party block signed by the approver (§14).
pub const APPROVAL: &str = "approval";
/// `approver($name, $key)` (root or hop, optional): the name of an approver
/// key the block's approval rules use, for people.
pub const APPROVER: &str = "approver";

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

// Variables in grant checks are named after default symbols, so naming them
// costs no bytes in a block.
/// Variable bound to the request time in grant checks.
pub(crate) const VAR_TIME: &str = "time";
/// Variable bound to the action.
pub(crate) const VAR_OPERATION: &str = "operation";
/// Variable bound to the resource (or its last segment).
pub(crate) const VAR_RESOURCE: &str = "resource";
/// Variable bound to the request digest in approval queries.
pub(crate) const VAR_DIGEST: &str = "digest";
/// Variable bound to an approval's expiry.
pub(crate) const VAR_APPROVAL_EXPIRY: &str = "approved_until";
/// Variable bound to the proven holder key.
pub(crate) const VAR_HOLDER: &str = "holder";
