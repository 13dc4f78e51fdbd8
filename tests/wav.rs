//! Speech-like test audio written as a real WAV file with `hound`.

use std::path::Path;

/// Writes `secs` seconds of speech-like audio to `path` as PCM16 mono at
/// `rate` Hz: a 140 Hz voiced buzz through two formant-like partials,
/// shaped into ~4 syllables a second, with a little deterministic noise.
/// Not silence, not a pure tone: level meters and resamplers see something
/// close to a voice.
pub fn write_speech(path: &Path, rate: u32, secs: f64) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for s in speech(rate, secs) {
        writer.write_sample(s)?;
    }
    writer.finalize()
}

/// The samples [`write_speech`] writes.
pub fn speech(rate: u32, secs: f64) -> Vec<i16> {
    let rate_f = f64::from(rate);
    // Whole samples of a non-negative duration: the cast cannot wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (rate_f * secs.max(0.0)) as usize;
    let mut noise_state: u32 = 0x9e37_79b9;
    let tau = std::f64::consts::TAU;
    (0..n)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let t = i as f64 / rate_f;
            // Syllables: a raised sine at 4 Hz, squared, so there are pauses.
            let envelope = (0.5 - 0.5 * (tau * 4.0 * t).cos()).powi(2);
            let voiced = 0.5 * (tau * 140.0 * t).sin()
                + 0.3 * (tau * 700.0 * t).sin()
                + 0.2 * (tau * 1_200.0 * t).sin();
            // xorshift32: deterministic breath noise.
            noise_state ^= noise_state << 13;
            noise_state ^= noise_state >> 17;
            noise_state ^= noise_state << 5;
            let noise = f64::from(noise_state) / f64::from(u32::MAX) - 0.5;
            let x = 0.6 * envelope * voiced + 0.02 * noise;
            // |x| < 1: the product stays inside i16.
            #[allow(clippy::cast_possible_truncation)]
            let s = (x.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_pcm16_wav_with_a_voice_like_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speech.wav");
        write_speech(&path, 24_000, 2.0).unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 24_000, 16)
        );
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 48_000);
        assert_eq!(samples, speech(24_000, 2.0));
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 10_000, "loud enough: {peak}");
        // Pauses between syllables: some 10 ms windows are near silence.
        let quiet = samples
            .chunks(240)
            .filter(|w| w.iter().all(|s| s.unsigned_abs() < 2_000))
            .count();
        assert!(quiet > 0 && quiet < 200 / 2, "{quiet} quiet windows of 200");
    }
}
