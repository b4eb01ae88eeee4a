//! The TLS client configuration Mandate's outgoing https calls share:
//! approval notifications to webhooks (`service/notify.rs`) and the approval
//! client of the gateway and `mandate request-approval`. rustls with ring
//! (the stack async-nats already builds), TLS 1.2 and 1.3, and the system's
//! CA certificates (`rustls-native-certs`: the platform's store, or the
//! PEM file `SSL_CERT_FILE` names, e.g. a private CA).

use std::sync::Arc;
use tokio_rustls::rustls;

/// A client configuration trusting the system's CA certificates (or
/// `SSL_CERT_FILE`'s). `what` names the caller in the error: none found is
/// an error (nothing could be verified), said in one line.
pub fn client_config(what: &str) -> Result<rustls::ClientConfig, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "{what} is https, and no CA certificate was found on this system (install \
             ca-certificates, or name a PEM file in SSL_CERT_FILE){errors}"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for {what}: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
