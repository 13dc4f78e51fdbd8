//! `Connector`: a checked configuration's connection parameters (host,
//! port, headers, TLS, protocol limits) and the one way to open a socket
//! with them, used by the client for the first connection and by a
//! session's I/O task for every reconnect.

use std::sync::Arc;

use steward_redact::redact_url;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, handshake::client::Request};
use tracing::Instrument;

use crate::Error;
use crate::config::{ClientConfig, validate};
use crate::error::BoxError;
use crate::tls::{self, Transport};

/// Bytes read from the socket per attempt.
const READ_BUFFER: usize = 32 * 1024;

/// What every connection of one client uses.
pub(crate) struct Connector {
    pub(crate) config: ClientConfig,
    /// The URL without query string or user info, for logs and errors.
    pub(crate) url: String,
    host: String,
    port: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    ws_config: WebSocketConfig,
}

impl Connector {
    /// Checks `config` (see [`validate`]) and the URL and headers, and
    /// loads the TLS roots for a wss:// URL (the configured ones plus the
    /// extra PEM and DER roots).
    pub(crate) fn new(
        config: ClientConfig,
        extra_roots_pem: &[Vec<u8>],
        extra_roots_der: &[Vec<u8>],
    ) -> Result<Self, Error> {
        validate(&config)?;
        let url = redact_url(&config.url);
        let uri: Uri = config.url.parse().map_err(|e| Error::Config {
            what: format!("url `{url}` is not a valid URI"),
            source: Some(Box::new(e)),
        })?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => {
                return Err(Error::Config {
                    what: format!("url `{url}` must start with ws:// or wss://"),
                    source: None,
                });
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Config {
                what: format!("url `{url}` has no host"),
                source: None,
            })?;
        // rustls and the resolver want IPv6 literals without brackets.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            let header_name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| Error::Config {
                    what: format!("header name `{name}` is invalid"),
                    source: Some(Box::new(e)),
                })?;
            // The value is a secret: the error names the header, never the value.
            let mut header_value = HeaderValue::from_str(value).map_err(|e| Error::Config {
                what: format!("value of header `{name}` is invalid"),
                source: Some(Box::new(e)),
            })?;
            header_value.set_sensitive(true);
            headers.push((header_name, header_value));
        }
        let tls = if secure {
            Some(tls::client_config(
                &url,
                &config.root_certificates,
                extra_roots_pem,
                extra_roots_der,
            )?)
        } else {
            None
        };
        let max_frame = config.max_frame_size.min(config.max_message_size);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(max_frame))
            // Our outbound queue is the bound; tungstenite's buffer holds at
            // most the message being written plus a ping and a pong.
            .max_write_buffer_size(config.max_message_size.saturating_add(256 * 1024))
            .write_buffer_size(0)
            // The protocol layer zero-fills this much before every read
            // attempt; realtime events are small, so 32 KiB (not 128) keeps
            // that cost low while large messages still read in big chunks.
            .read_buffer_size(READ_BUFFER);
        Ok(Self {
            config,
            url,
            host,
            port,
            headers,
            tls,
            ws_config,
        })
    }

    /// TCP connect, TLS, HTTP upgrade, all under the connect timeout.
    pub(crate) async fn open(&self) -> Result<WebSocketStream<Transport>, Error> {
        let span = tracing::debug_span!("ws_connect", url = %self.url);
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.open_inner().instrument(span)).await {
            Ok(result) => result,
            Err(_) => Err(Error::ConnectTimeout {
                url: self.url.clone(),
                timeout,
            }),
        }
    }

    async fn open_inner(&self) -> Result<WebSocketStream<Transport>, Error> {
        let connect_err = |source: BoxError| Error::Connect {
            url: self.url.clone(),
            source,
        };
        let request = self.request()?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect_err(Box::new(e)))?;
        // Realtime traffic: small events must not wait for Nagle.
        tcp.set_nodelay(true)
            .map_err(|e| connect_err(Box::new(e)))?;
        let transport = match &self.tls {
            None => Transport::Plain(tcp),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| connect_err(Box::new(e)))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect_err(Box::new(e)))?;
                Transport::Tls(Box::new(tls))
            }
        };
        match tokio_tungstenite::client_async_with_config(request, transport, Some(self.ws_config))
            .await
        {
            Ok((ws, _response)) => {
                tracing::debug!(url = %self.url, "connected");
                Ok(ws)
            }
            Err(tungstenite::Error::Http(response)) => Err(Error::Http {
                url: self.url.clone(),
                status: response.status().as_u16(),
            }),
            Err(e) => Err(connect_err(Box::new(e))),
        }
    }

    fn request(&self) -> Result<Request, Error> {
        let mut request = self
            .config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config {
                what: format!("url `{}` cannot start a WebSocket request", self.url),
                source: Some(Box::new(e)),
            })?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        Ok(request)
    }
}
