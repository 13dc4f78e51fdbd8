//! Where the assistant's audio comes from: the default input device, a WAV
//! file (converted to PCM16 24 kHz mono and paced in real time) or
//! generated silence (paced the same way).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward::audio::convert::CaptureConverter;
use steward::audio::{AudioConfig, Capture};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::Error;

/// Longest WAV input accepted (it is converted up front).
const MAX_WAV: Duration = Duration::from_secs(30 * 60);
/// Output rate: PCM16 mono at 24 kHz.
const RATE: u32 = 24_000;

/// What the assistant listens to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Input {
    /// The default input device (or `AssistantConfig::input_device`); on a
    /// machine without a microphone, a sound server's null source.
    #[default]
    Device,
    /// A WAV file (any rate, channels, PCM integer or float samples),
    /// converted to PCM16 24 kHz mono and played in real time; silence
    /// follows once it ends.
    Wav(PathBuf),
    /// Generated silence, paced in real time (no sound server needed).
    Silence,
}

/// A chunk from the source, or the end of a WAV file.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// PCM16LE mono 24 kHz audio.
    Audio(Vec<u8>),
    /// The WAV file just ended (silence follows).
    End,
}

/// The running source.
pub(crate) enum Source {
    /// Shared with the steward, which sheds its queue at `Critical`.
    Device(Arc<Capture>),
    Paced(Paced),
}

/// WAV audio then silence (or silence only), one chunk per tick.
pub(crate) struct Paced {
    wav: Vec<u8>,
    offset: usize,
    ended: bool,
    chunk_bytes: usize,
    ticks: Interval,
}

impl Source {
    /// Opens `input` with chunks of `chunk_ms`.
    pub(crate) fn open(
        input: &Input,
        chunk_ms: u32,
        device: Option<&str>,
    ) -> Result<Source, Error> {
        let chunk = Duration::from_millis(u64::from(chunk_ms.max(5)));
        match input {
            Input::Device => {
                let mut config = AudioConfig::default();
                config.set_chunk_duration(chunk);
                config.input_device = device.map(str::to_string);
                let capture = Capture::open(&config).map_err(|source| Error::Audio {
                    what: format!("capture on {}", device.unwrap_or("the default input")),
                    source,
                })?;
                tracing::info!(device = capture.device(), "capturing from the input device");
                Ok(Source::Device(Arc::new(capture)))
            }
            Input::Wav(path) => {
                let wav = read_wav(path)?;
                tracing::info!(path = %path.display(), ms = wav.len() / 48, "playing a WAV file as input");
                Ok(Source::Paced(Paced::new(wav, chunk)))
            }
            Input::Silence => Ok(Source::Paced(Paced::new(Vec::new(), chunk))),
        }
    }

    /// The next chunk. Cancel safe (a capture chunk leaves its queue only
    /// when returned; a paced tick not taken is taken next time).
    pub(crate) async fn next(&mut self) -> Result<Chunk, Error> {
        match self {
            Source::Device(capture) => {
                let device = capture.device().to_string();
                capture
                    .recv_chunk()
                    .await
                    .map(Chunk::Audio)
                    .map_err(|source| Error::Audio {
                        what: format!("capture on {device}"),
                        source,
                    })
            }
            Source::Paced(paced) => {
                paced.ticks.tick().await;
                Ok(paced.take())
            }
        }
    }

    /// The capture stream, for the steward's wiring.
    pub(crate) fn capture(&self) -> Option<&Arc<Capture>> {
        match self {
            Source::Device(capture) => Some(capture),
            Source::Paced(_) => None,
        }
    }

    /// Capture overflow so far, in frames (device input only).
    pub(crate) fn overflow_frames(&self) -> u64 {
        match self {
            Source::Device(capture) => capture.stats().overflow_frames,
            Source::Paced(_) => 0,
        }
    }

    /// Stops the device stream (joins its thread).
    pub(crate) fn close(self) {
        if let Source::Device(capture) = self
            && let Err(e) = capture.close()
        {
            tracing::warn!(error = %e, "capture close failed");
        }
    }
}

impl Paced {
    fn new(wav: Vec<u8>, chunk: Duration) -> Self {
        let chunk_bytes = (chunk.as_millis() as usize * 48).max(2);
        let mut ticks = tokio::time::interval_at(Instant::now() + chunk, chunk);
        // A stalled runtime should not make a burst of catch-up chunks.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            wav,
            offset: 0,
            ended: false,
            chunk_bytes,
            ticks,
        }
    }

    fn take(&mut self) -> Chunk {
        if self.offset < self.wav.len() {
            let end = (self.offset + self.chunk_bytes).min(self.wav.len());
            let mut chunk = self.wav[self.offset..end].to_vec();
            chunk.resize(self.chunk_bytes, 0);
            self.offset = end;
            return Chunk::Audio(chunk);
        }
        if !self.wav.is_empty() && !self.ended {
            self.ended = true;
            self.wav = Vec::new();
            return Chunk::End;
        }
        Chunk::Audio(vec![0; self.chunk_bytes])
    }
}

/// Reads a whole WAV file as PCM16LE mono 24 kHz bytes.
pub(crate) fn read_wav(path: &Path) -> Result<Vec<u8>, Error> {
    let bad = |message: String, source: Option<hound::Error>| Error::Wav {
        path: path.to_path_buf(),
        message,
        source,
    };
    let mut reader =
        hound::WavReader::open(path).map_err(|e| bad("cannot open as WAV".into(), Some(e)))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(bad("no channels or a zero sample rate".into(), None));
    }
    let frames = u64::from(reader.duration());
    if frames > MAX_WAV.as_secs() * u64::from(spec.sample_rate) {
        return Err(bad(
            format!("longer than {} minutes", MAX_WAV.as_secs() / 60),
            None,
        ));
    }
    let mut converter = CaptureConverter::new(spec.sample_rate, spec.channels, RATE)
        .map_err(|e| bad(format!("cannot convert: {e}"), None))?;
    let mut out = Vec::with_capacity(
        (frames * 2 * u64::from(RATE) / u64::from(spec.sample_rate)) as usize + 4096,
    );
    // Convert in blocks so that a huge file is never held twice as samples.
    const BLOCK: usize = 8192;
    match spec.sample_format {
        hound::SampleFormat::Float => {
            let mut block = Vec::with_capacity(BLOCK);
            for sample in reader.samples::<f32>() {
                block.push(sample.map_err(|e| bad("damaged sample data".into(), Some(e)))?);
                if block.len() == BLOCK * usize::from(spec.channels) {
                    converter.push_interleaved(&block, &mut out);
                    block.clear();
                }
            }
            converter.push_interleaved(&block, &mut out);
        }
        hound::SampleFormat::Int => {
            // Any integer width, scaled to f32 in -1..1.
            let scale = 1.0 / (1_i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            let mut block = Vec::with_capacity(BLOCK);
            for sample in reader.samples::<i32>() {
                let s = sample.map_err(|e| bad("damaged sample data".into(), Some(e)))?;
                block.push(s as f32 * scale);
                if block.len() == BLOCK * usize::from(spec.channels) {
                    converter.push_interleaved(&block, &mut out);
                    block.clear();
                }
            }
            converter.push_interleaved(&block, &mut out);
        }
    }
    converter.flush(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create");
        let frames = (rate as f32 * seconds) as u32;
        for i in 0..frames {
            let s = ((i as f32 * 0.05).sin() * 8000.0) as i16;
            for _ in 0..channels {
                w.write_sample(s).expect("sample");
            }
        }
        w.finalize().expect("finalize");
    }

    #[test]
    fn a_stereo_48k_wav_becomes_24k_mono() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.wav");
        write_wav(&path, 48_000, 2, 1.0);
        let pcm = read_wav(&path).expect("read");
        // One second at 24 kHz mono, give or take the resampler's padding.
        assert!((47_000..=50_000).contains(&pcm.len()), "{}", pcm.len());
        assert!(pcm.len().is_multiple_of(2));
    }

    #[test]
    fn a_file_that_is_not_wav_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not.wav");
        std::fs::write(&path, b"hello").expect("write");
        let err = read_wav(&path).expect_err("not a WAV");
        assert!(err.to_string().contains("not.wav"), "{err}");
    }
}
