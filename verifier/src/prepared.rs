//! A verified token's Datalog, ready to be run against one request.

use crate::verifier::Limits;
use biscuit_auth::datalog::RunLimits;
use biscuit_auth::error::Token;
use biscuit_auth::{AuthorizerBuilder, Biscuit};
use mandate_spec::Request;

/// The token's Datalog, kept with a verified token.
pub(crate) struct Prepared {
    biscuit: Biscuit,
}

impl Prepared {
    pub(crate) fn new(biscuit: Biscuit) -> Prepared {
        Prepared { biscuit }
    }

    /// Runs every check of every block with the request's facts and the
    /// policy `allow if true`, within `limits`.
    pub(crate) fn run(&self, request: &Request, limits: Limits) -> Result<(), Token> {
        let mut builder = AuthorizerBuilder::new();
        for fact in request.facts() {
            builder = builder.fact(fact)?;
        }
        let mut authorizer = builder
            .policy("allow if true")?
            .set_limits(RunLimits {
                max_facts: limits.max_facts,
                max_iterations: limits.max_iterations,
                max_time: limits.max_time,
            })
            .build(&self.biscuit)?;
        authorizer.authorize().map(|_| ())
    }
}
