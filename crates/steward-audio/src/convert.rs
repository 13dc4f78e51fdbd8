//! Sample conversion, channel mixing, resampling and the base64 helpers.
//!
//! Everything here is usable without a sound card: [`CaptureConverter`] turns
//! whatever a device gives into PCM16 little-endian mono at the target rate,
//! [`PlaybackConverter`] does the reverse. Both preallocate their buffers at
//! construction; processing allocates only when the caller's output `Vec`
//! has to grow (reserve it once and it never does).

use base64::Engine as _;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

use crate::error::{Error, Result};

/// A sample type a device may use. Conversions go through `f32` in `-1.0..=1.0`.
///
/// Integer formats scale by a power of two, so `i16 -> f32 -> i16` is exact.
/// Conversions to integers round to nearest and saturate; NaN becomes silence.
pub trait PcmSample: Copy + Send + 'static {
    /// Silence in this format.
    const SILENCE: Self;
    /// This sample as `f32` in `-1.0..=1.0` (integers: `-1.0..1.0`).
    fn to_f32(self) -> f32;
    /// The nearest sample for `x`, saturating outside `-1.0..=1.0`.
    fn from_f32(x: f32) -> Self;
}

/// Scales `x` by `scale`, rounds, and saturates to `min..=max`; NaN is 0.
#[inline]
fn quantize(x: f32, scale: f32, min: f32, max: f32) -> f32 {
    if x.is_nan() {
        return 0.0;
    }
    (x * scale).round().clamp(min, max)
}

impl PcmSample for i16 {
    const SILENCE: Self = 0;
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from(self) / 32_768.0
    }
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // clamped to the i16 range first
    fn from_f32(x: f32) -> Self {
        quantize(x, 32_768.0, -32_768.0, 32_767.0) as i16
    }
}

impl PcmSample for u16 {
    const SILENCE: Self = 32_768;
    #[inline]
    fn to_f32(self) -> f32 {
        (f32::from(self) - 32_768.0) / 32_768.0
    }
    #[inline]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
    fn from_f32(x: f32) -> Self {
        (quantize(x, 32_768.0, -32_768.0, 32_767.0) + 32_768.0) as u16
    }
}

impl PcmSample for i8 {
    const SILENCE: Self = 0;
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from(self) / 128.0
    }
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // clamped first
    fn from_f32(x: f32) -> Self {
        quantize(x, 128.0, -128.0, 127.0) as i8
    }
}

impl PcmSample for u8 {
    const SILENCE: Self = 128;
    #[inline]
    fn to_f32(self) -> f32 {
        (f32::from(self) - 128.0) / 128.0
    }
    #[inline]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
    fn from_f32(x: f32) -> Self {
        (quantize(x, 128.0, -128.0, 127.0) + 128.0) as u8
    }
}

impl PcmSample for i32 {
    const SILENCE: Self = 0;
    #[inline]
    #[allow(clippy::cast_precision_loss)] // f32 keeps 24 bits, enough for audio
    fn to_f32(self) -> f32 {
        (f64::from(self) / 2_147_483_648.0) as f32
    }
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // clamped first
    fn from_f32(x: f32) -> Self {
        if x.is_nan() {
            return 0;
        }
        (f64::from(x) * 2_147_483_648.0)
            .round()
            .clamp(-2_147_483_648.0, 2_147_483_647.0) as i32
    }
}

impl PcmSample for u32 {
    const SILENCE: Self = 1 << 31;
    #[inline]
    fn to_f32(self) -> f32 {
        ((f64::from(self) - 2_147_483_648.0) / 2_147_483_648.0) as f32
    }
    #[inline]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
    fn from_f32(x: f32) -> Self {
        if x.is_nan() {
            return Self::SILENCE;
        }
        ((f64::from(x) * 2_147_483_648.0)
            .round()
            .clamp(-2_147_483_648.0, 2_147_483_647.0)
            + 2_147_483_648.0) as u32
    }
}

impl PcmSample for f32 {
    const SILENCE: Self = 0.0;
    #[inline]
    fn to_f32(self) -> f32 {
        // A device never should, but a NaN must not poison the resampler.
        if self.is_nan() { 0.0 } else { self }
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
    }
}

impl PcmSample for f64 {
    const SILENCE: Self = 0.0;
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // audio precision
    fn to_f32(self) -> f32 {
        if self.is_nan() { 0.0 } else { self as f32 }
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        if x.is_nan() {
            0.0
        } else {
            f64::from(x.clamp(-1.0, 1.0))
        }
    }
}

/// Averages one interleaved frame to a mono sample.
///
/// Exact when all channels hold the same value (two channels: the halving is
/// exact; more: the sum is taken in `f64`, where it is exact).
#[inline]
pub fn mix_frame<T: PcmSample>(frame: &[T]) -> f32 {
    match frame {
        [] => 0.0,
        [a] => a.to_f32(),
        [a, b] => (a.to_f32() + b.to_f32()) * 0.5,
        many => {
            let sum: f64 = many.iter().map(|s| f64::from(s.to_f32())).sum();
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let mean = (sum / many.len() as f64) as f32;
            mean
        }
    }
}

/// Downmixes interleaved `input` with `channels` channels into `out`, one
/// sample per whole frame; returns the number of frames written.
///
/// Stops at the shorter of the two; a trailing partial frame is ignored.
pub fn downmix_into<T: PcmSample>(input: &[T], channels: usize, out: &mut [f32]) -> usize {
    let channels = channels.max(1);
    let mut n = 0;
    for (frame, slot) in input.chunks_exact(channels).zip(out.iter_mut()) {
        *slot = mix_frame(frame);
        n += 1;
    }
    n
}

/// Writes each mono sample to every channel of the interleaved `out`; returns
/// the number of frames written (the shorter of the two).
pub fn upmix_into<T: PcmSample>(mono: &[f32], channels: usize, out: &mut [T]) -> usize {
    let channels = channels.max(1);
    let mut n = 0;
    for (frame, &s) in out.chunks_exact_mut(channels).zip(mono) {
        frame.fill(T::from_f32(s));
        n += 1;
    }
    n
}

/// Decodes PCM16 little-endian bytes into samples appended to `out`.
///
/// # Errors
/// [`Error::OddPcm16Length`] when `bytes` has an odd length (nothing is appended).
pub fn pcm16_from_bytes(bytes: &[u8], out: &mut Vec<i16>) -> Result<()> {
    if !bytes.len().is_multiple_of(2) {
        return Err(Error::OddPcm16Length { len: bytes.len() });
    }
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
    Ok(())
}

/// Appends samples to `out` as PCM16 little-endian bytes.
pub fn pcm16_to_bytes(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Encodes PCM16 bytes as standard base64, the form the realtime API's
/// `input_audio_buffer.append` event carries.
#[must_use]
pub fn pcm16_to_base64(pcm16: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(pcm16)
}

/// Decodes a base64 audio payload (a realtime API `response.audio.delta`) to
/// PCM16 bytes.
///
/// # Errors
/// [`Error::Base64`] for invalid base64, [`Error::OddPcm16Length`] when the
/// decoded byte count is odd.
pub fn base64_to_pcm16(b64: &str) -> Result<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::Base64 {
            len: b64.len(),
            source: crate::error::BackendError::from_display(&e),
        })?;
    if !bytes.len().is_multiple_of(2) {
        return Err(Error::OddPcm16Length { len: bytes.len() });
    }
    Ok(bytes)
}

/// Fixed-ratio mono resampler with preallocated buffers (rubato's FFT
/// resampler), or a pass-through when the rates are equal.
struct MonoResampler {
    inner: Option<Box<Fft<f32>>>,
    /// Input collected until a whole chunk is there.
    pending: Vec<f32>,
    chunk_in: usize,
    out: Vec<f32>,
    from: u32,
    to: u32,
}

impl MonoResampler {
    fn new(from: u32, to: u32) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(Error::Resampler {
                from,
                to,
                message: "sample rates must be above zero".into(),
            });
        }
        if from == to {
            return Ok(Self {
                inner: None,
                pending: Vec::new(),
                chunk_in: 0,
                out: Vec::new(),
                from,
                to,
            });
        }
        // Chunks of about 10 ms on the input side (low delay), rounded up to
        // a whole FFT block so every chunk produces output at once. Rates
        // with a tiny common divisor would need huge blocks: keep 10 ms then
        // and let rubato split it.
        let (f, t) = (from as usize, to as usize);
        let block = f / gcd(f, t);
        let ten_ms = (f / 100).max(16);
        let chunk = if block <= f / 10 {
            ten_ms.div_ceil(block) * block
        } else {
            ten_ms
        };
        let fft = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input).map_err(
            |e| Error::Resampler {
                from,
                to,
                message: e.to_string(),
            },
        )?;
        let chunk_in = fft.input_frames_next();
        let out_max = fft.output_frames_max();
        Ok(Self {
            inner: Some(Box::new(fft)),
            pending: Vec::with_capacity(chunk_in),
            chunk_in,
            out: vec![0.0; out_max],
            from,
            to,
        })
    }

    /// Resamples `input`, calling `sink` with each run of output samples.
    fn process(&mut self, mut input: &[f32], sink: &mut impl FnMut(&[f32])) {
        let Some(fft) = self.inner.as_deref_mut() else {
            sink(input);
            return;
        };
        while !input.is_empty() {
            // Whole chunks straight from the input when nothing is pending: no copy.
            if self.pending.is_empty() && input.len() >= self.chunk_in {
                let (chunk, rest) = input.split_at(self.chunk_in);
                Self::run(fft, chunk, None, &mut self.out, sink);
                input = rest;
                continue;
            }
            let take = (self.chunk_in - self.pending.len()).min(input.len());
            let (head, rest) = input.split_at(take);
            self.pending.extend_from_slice(head);
            input = rest;
            if self.pending.len() == self.chunk_in {
                Self::run(fft, &self.pending, None, &mut self.out, sink);
                self.pending.clear();
            }
        }
    }

    /// Input frames still to push before `out_frames` more output frames
    /// come out (whole chunks; at least one frame).
    fn input_needed(&self, out_frames: usize) -> usize {
        let raw = (out_frames as u64 * u64::from(self.from)).div_ceil(u64::from(self.to).max(1));
        let raw = usize::try_from(raw).unwrap_or(usize::MAX);
        if self.inner.is_none() || self.chunk_in == 0 {
            return raw.max(1);
        }
        raw.div_ceil(self.chunk_in)
            .saturating_mul(self.chunk_in)
            .saturating_sub(self.pending.len())
            .max(1)
    }

    /// Pushes out what is pending plus the resampler's delay, padded with
    /// silence, so the tail of a stream is heard. Continuity with later input
    /// is kept (the resampler is not reset), at the price of that silence.
    fn flush(&mut self, sink: &mut impl FnMut(&[f32])) {
        let Some(fft) = self.inner.as_deref_mut() else {
            return;
        };
        let partial = self.pending.len();
        self.pending.resize(self.chunk_in, 0.0);
        Self::run(fft, &self.pending, Some(partial), &mut self.out, sink);
        // One chunk of silence pushes the delayed samples out.
        self.pending.fill(0.0);
        Self::run(fft, &self.pending, Some(0), &mut self.out, sink);
        self.pending.clear();
    }

    fn run(
        fft: &mut Fft<f32>,
        chunk: &[f32],
        partial: Option<usize>,
        out: &mut [f32],
        sink: &mut impl FnMut(&[f32]),
    ) {
        let frames_out = out.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(chunk, 1, chunk.len()),
            InterleavedSlice::new_mut(out, 1, frames_out),
        ) else {
            return;
        };
        let indexing = partial.map(|p| Indexing {
            partial_len: Some(p),
            ..Indexing::default()
        });
        // Sizes are fixed at construction, so this cannot fail; if it ever
        // did, dropping one chunk beats panicking in a stream thread.
        if let Ok((_, produced)) = fft.process_into_buffer(&input, &mut output, indexing.as_ref()) {
            sink(&out[..produced.min(frames_out)]);
        }
    }

    fn reset(&mut self) {
        if let Some(fft) = self.inner.as_deref_mut() {
            fft.reset();
        }
        self.pending.clear();
    }

    /// Samples held inside (not yet emitted), in input frames.
    fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl std::fmt::Debug for MonoResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonoResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("chunk_in", &self.chunk_in)
            .finish_non_exhaustive()
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Scratch size for downmixing, in frames: bounded so a huge device buffer is
/// processed in slices instead of growing a buffer.
const MIX_SCRATCH: usize = 1024;

/// Device audio (any sample type, rate and channel count) to PCM16
/// little-endian mono at the target rate.
///
/// ```
/// use steward_audio::convert::CaptureConverter;
/// // 10 ms of 48 kHz stereo f32 becomes 24 kHz mono PCM16.
/// let mut conv = CaptureConverter::new(48_000, 2, 24_000)?;
/// let input = vec![0.25_f32; 480 * 2];
/// let mut out = Vec::new();
/// for _ in 0..10 {
///     conv.push_interleaved(&input, &mut out);
/// }
/// // 100 ms in, about 100 ms out (the resampler holds a few ms back).
/// assert!(out.len() >= 2 * 2_000 && out.len() <= 2 * 2_400);
/// # Ok::<(), steward_audio::Error>(())
/// ```
#[derive(Debug)]
pub struct CaptureConverter {
    channels: usize,
    resampler: MonoResampler,
    mono: Vec<f32>,
}

impl CaptureConverter {
    /// A converter for a device at `device_rate` Hz with `channels` channels.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero channels, [`Error::Resampler`] for a
    /// zero rate.
    pub fn new(device_rate: u32, channels: u16, target_rate: u32) -> Result<Self> {
        if channels == 0 {
            return Err(Error::InvalidConfig {
                field: "device_channels",
                message: "must be at least 1".into(),
            });
        }
        Ok(Self {
            channels: usize::from(channels),
            resampler: MonoResampler::new(device_rate, target_rate)?,
            mono: vec![0.0; MIX_SCRATCH],
        })
    }

    /// Converts interleaved device samples, appending PCM16LE bytes to `out`.
    /// A trailing partial frame is ignored.
    pub fn push_interleaved<T: PcmSample>(&mut self, data: &[T], out: &mut Vec<u8>) {
        for block in data.chunks(MIX_SCRATCH * self.channels) {
            let n = downmix_into(block, self.channels, &mut self.mono);
            Self::emit(&mut self.resampler, &self.mono[..n], out);
        }
    }

    /// Converts mono `f32` samples at the device rate, appending PCM16LE bytes.
    pub fn push_mono(&mut self, mono: &[f32], out: &mut Vec<u8>) {
        Self::emit(&mut self.resampler, mono, out);
    }

    /// Mono device frames still to push before `frames` more PCM16 frames
    /// come out (at least one).
    pub(crate) fn input_needed(&self, frames: usize) -> usize {
        self.resampler.input_needed(frames)
    }

    /// Pushes out the samples the resampler holds back, padded with silence.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        self.resampler.flush(&mut |s: &[f32]| write_pcm16(s, out));
    }

    fn emit(resampler: &mut MonoResampler, mono: &[f32], out: &mut Vec<u8>) {
        resampler.process(mono, &mut |s: &[f32]| write_pcm16(s, out));
    }
}

/// Appends `f32` samples as PCM16LE bytes.
#[inline]
fn write_pcm16(samples: &[f32], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for &s in samples {
        out.extend_from_slice(&i16::from_f32(s).to_le_bytes());
    }
}

/// PCM16 little-endian mono at the source rate to mono `f32` at the device
/// rate (the playback callback then upmixes it to the device's channels and
/// sample type).
#[derive(Debug)]
pub struct PlaybackConverter {
    resampler: MonoResampler,
    mono: Vec<f32>,
    /// An odd byte left over from the previous call.
    carry: Option<u8>,
}

impl PlaybackConverter {
    /// A converter from `source_rate` Hz PCM16 mono to `device_rate` Hz.
    ///
    /// # Errors
    /// [`Error::Resampler`] for a zero rate.
    pub fn new(source_rate: u32, device_rate: u32) -> Result<Self> {
        Ok(Self {
            resampler: MonoResampler::new(source_rate, device_rate)?,
            mono: vec![0.0; MIX_SCRATCH],
            carry: None,
        })
    }

    /// Converts PCM16LE bytes, calling `sink` with runs of device-rate mono
    /// samples. An odd trailing byte is kept for the next call, so a stream
    /// may be split anywhere.
    pub fn push_pcm16(&mut self, mut bytes: &[u8], sink: &mut impl FnMut(&[f32])) {
        if let (Some(lo), Some((&hi, rest))) = (self.carry, bytes.split_first()) {
            self.carry = None;
            self.mono[0] = i16::from_le_bytes([lo, hi]).to_f32();
            self.resampler.process(&self.mono[..1], sink);
            bytes = rest;
        }
        let mut chunks = bytes.chunks_exact(MIX_SCRATCH * 2);
        for block in &mut chunks {
            self.decode_and_process(block, sink);
        }
        let rest = chunks.remainder();
        let even = rest.len() & !1;
        self.decode_and_process(&rest[..even], sink);
        if rest.len() > even {
            self.carry = rest.last().copied();
        }
    }

    fn decode_and_process(&mut self, block: &[u8], sink: &mut impl FnMut(&[f32])) {
        let mut n = 0;
        for (pair, slot) in block.chunks_exact(2).zip(self.mono.iter_mut()) {
            *slot = i16::from_le_bytes([pair[0], pair[1]]).to_f32();
            n += 1;
        }
        if n > 0 {
            self.resampler.process(&self.mono[..n], sink);
        }
    }

    /// Pushes out what the resampler holds back, padded with silence.
    pub fn flush(&mut self, sink: &mut impl FnMut(&[f32])) {
        self.resampler.flush(sink);
    }

    /// No resampling: the rates are equal.
    #[must_use]
    pub fn is_passthrough(&self) -> bool {
        self.resampler.inner.is_none()
    }

    /// Forgets everything held (after a barge-in `clear()`).
    pub fn reset(&mut self) {
        self.resampler.reset();
        self.carry = None;
    }

    /// Input samples held back waiting for a whole resampler chunk.
    #[must_use]
    pub fn pending_frames(&self) -> usize {
        self.resampler.pending()
    }
}
