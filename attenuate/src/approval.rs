//! Approvals (specification §14): the approver signs a third-party block
//! naming the digest of one request, against the token's third-party
//! request; the holder appends it to the token.

use crate::{biscuit_err, finish, parse, AttenuateError, Attenuated};
use biscuit_auth::builder::{bytes, date, fact};
use biscuit_auth::{BlockBuilder, KeyPair, ThirdPartyRequest};
use mandate_spec::{vocab, Request};
use std::time::SystemTime;

/// Signs an approval of exactly `request` (its action, resource and
/// parameters), valid until `expires`, for the token whose third-party
/// request (base64, from a `needs_approval` decision) is given. Returns the
/// approval block, base64, for [`attach_approval`].
///
/// The digest is computed here from the request the approver was shown,
/// never taken from the one asking: what is signed is what was seen.
pub fn approve(
    third_party_request: &str,
    request: &Request,
    expires: SystemTime,
    approver: &KeyPair,
) -> Result<String, AttenuateError> {
    request.validate()?;
    let tpr =
        ThirdPartyRequest::deserialize_base64(third_party_request.trim()).map_err(biscuit_err)?;
    let block = BlockBuilder::new()
        .fact(fact(
            vocab::APPROVAL,
            &[bytes(&request.approval_digest()), date(&expires)],
        ))
        .map_err(biscuit_err)?;
    tpr.create_block(&approver.private(), block)
        .and_then(|b| b.serialize_base64())
        .map_err(biscuit_err)
}

/// Appends an approval block (from [`approve`]) to the token.
pub fn attach_approval(token: &[u8], approval: &str) -> Result<Attenuated, AttenuateError> {
    let out = parse(token)?
        .append_third_party_base64(approval.trim())
        .map_err(biscuit_err)?;
    finish(out)
}
