//! `-v`: tracing to stderr, with the `log` records of the libraries
//! (tungstenite's) forwarded, except those that carry raw protocol data.

use log::{Log, Metadata, Record};
use tracing_log::LogTracer;

/// Libraries whose trace-level records hold raw protocol data: the
/// WebSocket handshake request with its `Authorization` header, and whole
/// frames (audio, transcripts, memory contents). Their records stop at debug,
/// whatever `RUST_LOG` asks for.
const CAPPED: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// True for a record of a [`CAPPED`] library below debug.
fn capped(metadata: &Metadata<'_>) -> bool {
    metadata.level() > log::Level::Debug
        && CAPPED.iter().any(|name| {
            metadata
                .target()
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// The `log` → tracing bridge, with the capped records dropped first.
struct Bridge(LogTracer);

impl Log for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !capped(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !capped(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// With `verbose`, logs to stderr at `RUST_LOG` (default debug).
pub(crate) fn init(verbose: bool) {
    if !verbose {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    if log::set_boxed_logger(Box::new(Bridge(LogTracer::new()))).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_traces_are_capped_and_the_rest_passes() {
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(capped(&meta(
            log::Level::Trace,
            "tungstenite::handshake::client"
        )));
        assert!(capped(&meta(log::Level::Trace, "tokio_tungstenite")));
        assert!(!capped(&meta(
            log::Level::Debug,
            "tungstenite::handshake::client"
        )));
        assert!(!capped(&meta(log::Level::Trace, "tungstenite_other")));
        assert!(!capped(&meta(log::Level::Trace, "hyper::proto")));
    }
}
