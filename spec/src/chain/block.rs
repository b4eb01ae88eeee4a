//! Decoding a token's blocks (§3 "Token layout"): Biscuit's own protobuf
//! schema and symbol tables, so every string is read as the term it is
//! (never re-parsed from printed Datalog, which Biscuit prints without
//! escaping). Decoding does not verify signatures: the verifier does that
//! with Biscuit first; `inspect` without a root key says it did not.

use crate::SpecError;
use biscuit_auth::builder::{Check, Convert, Fact, Scope};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::{convert::proto_block_to_token_block, schema};
use biscuit_auth::{Biscuit, PublicKey};
use prost::Message;

/// The content of one block, decoded.
#[derive(Debug, Clone)]
pub struct BlockContent {
    /// Position in the token (0 = authority).
    pub index: usize,
    /// The key that signed this block as a third-party block, if any.
    pub external_key: Option<PublicKey>,
    /// That key's signature (over the block and the previous block's
    /// signature), if any: unlike the revocation id, the holder cannot
    /// change it by appending the same block again.
    pub external_signature: Option<Vec<u8>>,
    /// The block's facts.
    pub facts: Vec<Fact>,
    /// Names of the predicates the block's rules produce.
    pub rule_heads: Vec<String>,
    /// The block's checks.
    pub checks: Vec<Check>,
    /// The block's own scope annotations (`trusting …` on the block); empty
    /// for every block Mandate writes.
    pub scopes: Vec<Scope>,
    /// The block's revocation id (its signature, 64 bytes for Ed25519).
    pub revocation_id: Vec<u8>,
    /// How many symbols (strings) the block adds to a symbol table: a
    /// verifier's Datalog engine looks strings up by scanning its table
    /// (§6 rule 1c counts them).
    pub symbols: usize,
}

/// Decodes every block of a serialized token (raw bytes, not base64).
pub fn decode_blocks(token: &[u8]) -> Result<Vec<BlockContent>, SpecError> {
    decode(token, None)
}

/// [`decode_blocks`] for a token Biscuit has already parsed from the same
/// bytes (`Biscuit::from`, which verified every signature): each third-party
/// signer key is taken from `verified` rather than decoded a second time
/// (an Ed25519 point decompression per hop). A key that does not match the
/// bytes is decoded from the bytes, so the result is always that of
/// [`decode_blocks`].
pub fn decode_verified_blocks(
    token: &[u8],
    verified: &Biscuit,
) -> Result<Vec<BlockContent>, SpecError> {
    decode(token, Some(verified))
}

fn decode(token: &[u8], verified: Option<&Biscuit>) -> Result<Vec<BlockContent>, SpecError> {
    let container = schema::Biscuit::decode(token)
        .map_err(|e| SpecError::Biscuit(format!("token does not decode: {e}")))?;
    let mut token_symbols = SymbolTable::new();
    let mut out = Vec::with_capacity(1 + container.blocks.len());
    for (index, signed) in std::iter::once(&container.authority)
        .chain(container.blocks.iter())
        .enumerate()
    {
        let proto = schema::Block::decode(signed.block.as_slice())
            .map_err(|e| SpecError::Biscuit(format!("block {index} does not decode: {e}")))?;
        // Only Ed25519 (§8): ECDSA signatures are malleable, so a P-256 next
        // key would let a bearer change the last block's revocation id.
        let ed25519 = schema::public_key::Algorithm::Ed25519 as i32;
        if signed.next_key.algorithm != ed25519
            || signed
                .external_signature
                .as_ref()
                .is_some_and(|e| e.public_key.algorithm != ed25519)
        {
            return Err(SpecError::Token(format!(
                "block {index} uses a key that is not Ed25519; Mandate accepts only Ed25519"
            )));
        }
        let external_key = match &signed.external_signature {
            Some(ext) => Some(signer_key(index, &ext.public_key, verified)?),
            None => None,
        };
        let block = proto_block_to_token_block(&proto, external_key)?;
        // Third-party blocks carry their own symbol table; first-party blocks
        // extend the token's (Biscuit's rule, format v3).
        let own;
        let symbols = if external_key.is_some() {
            let mut t = SymbolTable::new();
            t.extend(&block.symbols)?;
            own = t;
            &own
        } else {
            token_symbols.extend(&block.symbols)?;
            &token_symbols
        };
        let facts = block
            .facts
            .iter()
            .map(|f| Fact::convert_from(f, symbols))
            .collect::<Result<Vec<_>, _>>()?;
        let rule_heads = block
            .rules
            .iter()
            .map(|r| symbols.print_symbol(r.head.name).map_err(SpecError::from))
            .collect::<Result<Vec<_>, _>>()?;
        let checks = block
            .checks
            .iter()
            .map(|c| Check::convert_from(c, symbols))
            .collect::<Result<Vec<_>, _>>()?;
        let scopes = block
            .scopes
            .iter()
            .map(|s| Scope::convert_from(s, symbols))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(BlockContent {
            index,
            external_key,
            external_signature: signed
                .external_signature
                .as_ref()
                .map(|e| e.signature.clone()),
            facts,
            rule_heads,
            checks,
            scopes,
            revocation_id: signed.signature.clone(),
            symbols: proto.symbols.len(),
        });
    }
    Ok(out)
}

/// The third-party signer key of block `index`: Biscuit's, when it parsed the
/// same key, else decoded from `proto`.
fn signer_key(
    index: usize,
    proto: &schema::PublicKey,
    verified: Option<&Biscuit>,
) -> Result<PublicKey, SpecError> {
    match verified.and_then(|b| b.block_external_key(index).ok().flatten()) {
        Some(key) if key.to_proto() == *proto => Ok(key),
        _ => Ok(PublicKey::from_proto(proto)?),
    }
}
