//! Where the assistant's audio comes from: the default input device, a WAV
//! file (converted to PCM16 24 kHz mono and paced in real time), generated
//! silence or generated talking (paced the same way).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use steward::audio::convert::CaptureConverter;
use steward::audio::{AudioConfig, Capture};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::Error;

/// Longest WAV input accepted (it is converted up front).
const MAX_WAV: Duration = Duration::from_secs(30 * 60);
/// Output rate: PCM16 mono at 24 kHz.
const RATE: u32 = 24_000;
/// The talker's seed: every run talks the same way.
const TALK_SEED: u64 = 0x7a1c;

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
    /// Generated talking, paced in real time (no sound server needed):
    /// bursts of voiced noise 0.6 to 2.5 s long, loud enough for a server
    /// VAD (RMS about 0.2 of full scale), separated by pauses of silence of
    /// 0.2 to 2.5 s, from a fixed seed. Pauses are often shorter than an
    /// answer, so many bursts start while the previous answer still plays:
    /// barge-ins happen.
    Talk,
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

/// WAV audio then silence (or silence, or talking), one chunk per tick.
pub(crate) struct Paced {
    wav: Vec<u8>,
    offset: usize,
    ended: bool,
    chunk_bytes: usize,
    ticks: Interval,
    talker: Option<Box<Talker>>,
}

impl Source {
    /// Opens `input` with chunks of `chunk_ms` (a device on `host`).
    pub(crate) fn open(
        input: &Input,
        chunk_ms: u32,
        device: Option<&str>,
        host: steward::audio::AudioHost,
    ) -> Result<Source, Error> {
        let chunk = Duration::from_millis(u64::from(chunk_ms.max(5)));
        match input {
            Input::Device => {
                let mut config = AudioConfig::default();
                config.set_chunk_duration(chunk);
                config.input_device = device.map(str::to_string);
                config.host = host;
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
            Input::Talk => {
                let mut paced = Paced::new(Vec::new(), chunk);
                paced.talker = Some(Box::new(Talker::new(TALK_SEED)));
                tracing::info!("talking generated bursts of voiced noise as input");
                Ok(Source::Paced(paced))
            }
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
            talker: None,
        }
    }

    fn take(&mut self) -> Chunk {
        if let Some(talker) = &mut self.talker {
            let mut chunk = Vec::with_capacity(self.chunk_bytes);
            talker.fill(&mut chunk, self.chunk_bytes / 2);
            return Chunk::Audio(chunk);
        }
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

/// Generated talking: bursts of voiced noise between pauses (see
/// [`Input::Talk`]).
pub(crate) struct Talker {
    rng: StdRng,
    /// Samples left in the current burst or pause.
    left: u32,
    /// Samples in the current burst (0 in a pause).
    burst: u32,
    /// Pitch of the burst (Hz), its gain, and the sawtooth's phase (0..1).
    pitch: f64,
    gain: f64,
    phase: f64,
}

/// Fade in and out of a burst, in samples (10 ms).
const TALK_RAMP: u32 = 240;

impl Talker {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let left = rng.random_range(200..=1000) * (RATE / 1000);
        Self {
            rng,
            left,
            burst: 0,
            pitch: 150.0,
            gain: 0.0,
            phase: 0.0,
        }
    }

    /// Appends `samples` PCM16LE samples to `out`.
    fn fill(&mut self, out: &mut Vec<u8>, samples: usize) {
        for _ in 0..samples {
            if self.left == 0 {
                self.next_segment();
            }
            self.left -= 1;
            let sample = if self.burst == 0 {
                0.0
            } else {
                // A sawtooth at the voice's pitch plus noise, faded at both ends.
                let done = self.burst - self.left;
                let fade = f64::from(done.min(self.left).min(TALK_RAMP)) / f64::from(TALK_RAMP);
                self.phase = (self.phase + self.pitch / f64::from(RATE)) % 1.0;
                let saw = 2.0 * self.phase - 1.0;
                let noise = self.rng.random_range(-1.0..=1.0);
                self.gain * fade * (0.6 * saw + 0.4 * noise)
            };
            let s = (sample.clamp(-1.0, 1.0) * f64::from(i16::MAX)) as i16;
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    /// Switches between a burst (0.6 to 2.5 s) and a pause (0.2 to 2.5 s).
    fn next_segment(&mut self) {
        let per_ms = RATE / 1000;
        if self.burst == 0 {
            self.burst = self.rng.random_range(600..=2500) * per_ms;
            self.left = self.burst;
            self.pitch = self.rng.random_range(100.0..=220.0);
            // RMS 0.17 to 0.25 of full scale.
            self.gain = self.rng.random_range(0.4..=0.6);
        } else {
            self.burst = 0;
            self.left = self.rng.random_range(200..=2500) * per_ms;
        }
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

    /// RMS of each 20 ms frame, as a fraction of full scale.
    fn frame_levels(pcm: &[u8]) -> Vec<f64> {
        pcm.chunks_exact(960)
            .map(|frame| {
                let sum: f64 = frame
                    .chunks_exact(2)
                    .map(|p| (f64::from(i16::from_le_bytes([p[0], p[1]])) / 32_768.0).powi(2))
                    .sum();
                (sum / 480.0).sqrt()
            })
            .collect()
    }

    #[test]
    fn the_talker_alternates_loud_bursts_and_pauses_of_the_promised_lengths() {
        let mut talker = Talker::new(TALK_SEED);
        let mut pcm = Vec::new();
        // Two minutes, in uneven chunks.
        for n in 0..6000 {
            talker.fill(&mut pcm, 480 + (n % 3) * 120);
        }
        let levels = frame_levels(&pcm);
        // Runs of frames above and below the stand-in VAD's default level.
        let mut runs: Vec<(bool, usize)> = Vec::new();
        for level in levels {
            let loud = level >= 0.05;
            match runs.last_mut() {
                Some((kind, n)) if *kind == loud => *n += 1,
                _ => runs.push((loud, 1)),
            }
        }
        runs.pop(); // the last run is cut off
        let bursts: Vec<usize> = runs.iter().filter(|r| r.0).map(|r| r.1 * 20).collect();
        let pauses: Vec<usize> = runs
            .iter()
            .skip(1)
            .filter(|r| !r.0)
            .map(|r| r.1 * 20)
            .collect();
        assert!(bursts.len() >= 20, "{bursts:?}");
        // Fades take up to a frame at each end.
        assert!(
            bursts.iter().all(|ms| (560..=2520).contains(ms)),
            "{bursts:?}"
        );
        assert!(
            pauses.iter().all(|ms| (180..=2540).contains(ms)),
            "{pauses:?}"
        );
        assert!(
            pauses.iter().any(|&ms| ms < 800),
            "some pauses are short: {pauses:?}"
        );
        // The same seed talks the same way.
        let mut again = Talker::new(TALK_SEED);
        let mut first = Vec::new();
        again.fill(&mut first, 48_000);
        assert_eq!(first, pcm[..96_000]);
    }

    #[test]
    fn talk_is_spelled_talk() {
        assert_eq!(
            serde_json::to_string(&Input::Talk).expect("json"),
            "\"talk\""
        );
        let back: Input = serde_json::from_str("\"talk\"").expect("parse");
        assert_eq!(back, Input::Talk);
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
