//! The transport under the WebSocket: plain TCP or rustls over TCP.
//!
//! TLS is done here rather than by tokio-tungstenite so that the roots are
//! ours to choose (by feature, plus roots from the configuration) and one
//! crypto provider (ring) is named explicitly: no process-wide default needed.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::Error;

/// Plain or TLS stream; both are `Unpin`, so no projection is needed.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The rustls client configuration: roots from the enabled features plus the
/// extra ones given.
pub(crate) fn client_config(
    url: &str,
    pem_files: &[impl AsRef<Path>],
    pem_texts: &[Vec<u8>],
    ders: &[Vec<u8>],
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for path in pem_files {
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Certificate {
                what: path.display().to_string(),
                source: Box::new(e),
            })?;
        add_all(&mut roots, certs, &path.display().to_string())?;
    }
    for (i, pem) in pem_texts.iter().enumerate() {
        let what = format!("PEM text #{}", i + 1);
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Certificate {
                what: what.clone(),
                source: Box::new(e),
            })?;
        add_all(&mut roots, certs, &what)?;
    }
    for (i, der) in ders.iter().enumerate() {
        let what = format!("DER certificate #{}", i + 1);
        add_all(&mut roots, vec![CertificateDer::from(der.clone())], &what)?;
    }
    add_feature_roots(&mut roots);
    if roots.is_empty() {
        return Err(Error::NoRoots {
            url: url.to_string(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            what: "TLS protocol versions".into(),
            source: Some(Box::new(e)),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn add_all(
    roots: &mut rustls::RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    what: &str,
) -> Result<(), Error> {
    if certs.is_empty() {
        return Err(Error::Certificate {
            what: what.to_string(),
            source: "no certificate found".into(),
        });
    }
    for cert in certs {
        roots.add(cert).map_err(|e| Error::Certificate {
            what: what.to_string(),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

#[allow(unused_variables)]
fn add_feature_roots(roots: &mut rustls::RootCertStore) {
    #[cfg(feature = "native-roots")]
    {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::warn!(errors = ?found.errors, "some system root certificates could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system root certificates loaded");
    }
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
}
