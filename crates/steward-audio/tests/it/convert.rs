//! Conversions, mixing, resampling and base64: exact where exact is
//! possible, properties against simple models elsewhere.

use proptest::prelude::*;
use steward_audio::convert::{
    CaptureConverter, PcmSample, PlaybackConverter, downmix_into, mix_frame, pcm16_from_bytes,
    pcm16_to_bytes, upmix_into,
};
use steward_audio::{Error, base64_to_pcm16, pcm16_to_base64};

use crate::common::{samples, tone, zero_crossing_freq};

#[test]
fn every_i16_round_trips_through_f32_exactly() {
    for s in i16::MIN..=i16::MAX {
        let f = s.to_f32();
        assert!((-1.0..1.0).contains(&f), "{s} -> {f}");
        assert_eq!(i16::from_f32(f), s);
    }
}

#[test]
fn every_u16_i8_u8_round_trips_exactly() {
    for s in u16::MIN..=u16::MAX {
        assert_eq!(u16::from_f32(s.to_f32()), s);
    }
    for s in i8::MIN..=i8::MAX {
        assert_eq!(i8::from_f32(s.to_f32()), s);
    }
    for s in u8::MIN..=u8::MAX {
        assert_eq!(u8::from_f32(s.to_f32()), s);
    }
    // Signed and unsigned agree on the same level.
    assert_eq!(0_i16.to_f32(), 32_768_u16.to_f32());
    assert_eq!(i16::MIN.to_f32(), 0_u16.to_f32());
}

#[test]
fn conversions_saturate_and_silence_nan() {
    assert_eq!(i16::from_f32(1.0), i16::MAX);
    assert_eq!(i16::from_f32(7.5), i16::MAX);
    assert_eq!(i16::from_f32(-1.0), i16::MIN);
    assert_eq!(i16::from_f32(f32::NEG_INFINITY), i16::MIN);
    assert_eq!(i16::from_f32(f32::NAN), 0);
    assert_eq!(u16::from_f32(f32::NAN), 32_768);
    assert_eq!(i32::from_f32(2.0), i32::MAX);
    assert_eq!(u32::from_f32(-2.0), 0);
    assert_eq!(f32::from_f32(3.0), 1.0);
    assert_eq!(f32::NAN.to_f32(), 0.0);
    assert_eq!(f64::from_f32(f32::NAN), 0.0);
}

#[test]
fn pcm16_bytes_round_trip_and_odd_lengths_are_refused() {
    let s: Vec<i16> = vec![0, 1, -1, i16::MAX, i16::MIN, 12_345];
    let mut bytes = Vec::new();
    pcm16_to_bytes(&s, &mut bytes);
    assert_eq!(bytes.len(), 12);
    assert_eq!(&bytes[..4], &[0, 0, 1, 0]);
    let mut back = Vec::new();
    pcm16_from_bytes(&bytes, &mut back).unwrap();
    assert_eq!(back, s);
    let err = pcm16_from_bytes(&bytes[..5], &mut back).unwrap_err();
    assert!(matches!(err, Error::OddPcm16Length { len: 5 }), "{err}");
}

#[test]
fn base64_known_vector_and_errors() {
    assert_eq!(pcm16_to_base64(&[0x00, 0x01, 0xff, 0x7f]), "AAH/fw==");
    assert_eq!(
        base64_to_pcm16("AAH/fw==").unwrap(),
        vec![0x00, 0x01, 0xff, 0x7f]
    );
    let err = base64_to_pcm16("not base64!").unwrap_err();
    assert!(matches!(err, Error::Base64 { .. }), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "source is chained"
    );
    // Three bytes decode fine as base64 but are not PCM16.
    let err = base64_to_pcm16(&pcm16_to_base64(&[1, 2, 3])).unwrap_err();
    assert!(err.to_string().contains("even number of bytes"), "{err}");
}

#[test]
fn capture_at_the_target_format_is_the_identity() {
    let input = tone(440.0, 0.8, 24_000, 0.5);
    let mut conv = CaptureConverter::new(24_000, 1, 24_000).unwrap();
    let mut out = Vec::new();
    let s = samples(&input);
    for part in s.chunks(333) {
        conv.push_interleaved(part, &mut out);
    }
    assert_eq!(out, input);
}

#[test]
fn stereo_identical_channels_capture_exactly() {
    let input = samples(&tone(300.0, 0.9, 24_000, 0.2));
    let stereo: Vec<i16> = input.iter().flat_map(|&s| [s, s]).collect();
    let mut conv = CaptureConverter::new(24_000, 2, 24_000).unwrap();
    let mut out = Vec::new();
    conv.push_interleaved(&stereo, &mut out);
    assert_eq!(samples(&out), input);
}

#[test]
fn playback_passthrough_is_the_identity_even_split_on_odd_bytes() {
    let input = tone(440.0, 0.5, 24_000, 0.1);
    let mut conv = PlaybackConverter::new(24_000, 24_000).unwrap();
    assert!(conv.is_passthrough());
    let mut out: Vec<f32> = Vec::new();
    for part in input.chunks(7) {
        conv.push_pcm16(part, &mut |s: &[f32]| out.extend_from_slice(s));
    }
    let back: Vec<i16> = out.iter().map(|&x| i16::from_f32(x)).collect();
    assert_eq!(back, samples(&input));
}

#[test]
fn resampled_tone_keeps_its_frequency_and_level() {
    for (from, ch) in [(48_000_u32, 2_u16), (44_100, 1), (16_000, 1), (96_000, 6)] {
        let mono = samples(&tone(1_000.0, 0.5, from, 1.0));
        let inter: Vec<f32> = mono
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s.to_f32(), usize::from(ch)))
            .collect();
        let mut conv = CaptureConverter::new(from, ch, 24_000).unwrap();
        let mut out = Vec::new();
        for part in inter.chunks(usize::from(ch) * 441) {
            conv.push_interleaved(part, &mut out);
        }
        conv.flush(&mut out);
        let s = samples(&out);
        // One second in gives one second out, give or take the resampler's block.
        assert!(
            (23_500..=24_800).contains(&s.len()),
            "{from}: {} frames",
            s.len()
        );
        let f = zero_crossing_freq(&s, 24_000, 1_000).unwrap();
        assert!((f - 1_000.0).abs() < 5.0, "{from} Hz: measured {f} Hz");
        let mid = &s[4_000..20_000];
        let peak = mid.iter().map(|x| x.unsigned_abs()).max().unwrap();
        assert!((15_500..=17_300).contains(&peak), "{from}: peak {peak}");
    }
}

#[test]
fn playback_upsampling_keeps_frequency() {
    let input = tone(500.0, 0.5, 24_000, 0.5);
    let mut conv = PlaybackConverter::new(24_000, 48_000).unwrap();
    let mut out: Vec<f32> = Vec::new();
    conv.push_pcm16(&input, &mut |s: &[f32]| out.extend_from_slice(s));
    conv.flush(&mut |s: &[f32]| out.extend_from_slice(s));
    let s: Vec<i16> = out.iter().map(|&x| i16::from_f32(x)).collect();
    assert!((23_500..=25_500).contains(&s.len()), "{} frames", s.len());
    let f = zero_crossing_freq(&s, 48_000, 1_000).unwrap();
    assert!((f - 500.0).abs() < 3.0, "measured {f} Hz");
}

#[test]
fn zero_channels_and_zero_rates_are_refused() {
    let err = CaptureConverter::new(48_000, 0, 24_000).unwrap_err();
    assert!(err.to_string().contains("device_channels"), "{err}");
    let err = PlaybackConverter::new(24_000, 0).unwrap_err();
    assert!(err.to_string().contains("0 Hz"), "{err}");
}

const RATES: [u32; 7] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000, 96_000];

/// 64 cases by default (the suite stays fast); `PROPTEST_CASES` raises them.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_downmix_of_identical_channels_is_exact(
        values in prop::collection::vec(-1.0_f32..=1.0, 0..200),
        channels in 1_usize..=8,
    ) {
        let mut inter = vec![0.0_f32; values.len() * channels];
        prop_assert_eq!(upmix_into(&values, channels, &mut inter), values.len());
        let mut back = vec![0.0_f32; values.len()];
        prop_assert_eq!(downmix_into(&inter, channels, &mut back), values.len());
        prop_assert_eq!(back, values);
    }

    #[test]
    fn prop_mix_is_the_mean_within_rounding(frame in prop::collection::vec(-1.0_f32..=1.0, 1..9)) {
        let model = frame.iter().map(|&x| f64::from(x)).sum::<f64>() / frame.len() as f64;
        prop_assert!((f64::from(mix_frame(&frame)) - model).abs() < 1e-6);
    }

    #[test]
    fn prop_to_integer_conversions_are_monotonic_and_saturate(a in any::<f32>(), b in any::<f32>()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if !lo.is_nan() && !hi.is_nan() {
            prop_assert!(i16::from_f32(lo) <= i16::from_f32(hi));
            prop_assert!(u16::from_f32(lo) <= u16::from_f32(hi));
            prop_assert!(i32::from_f32(lo) <= i32::from_f32(hi));
            prop_assert!(u8::from_f32(lo) <= u8::from_f32(hi));
        }
        // The model: scale, round, clamp.
        if a.is_finite() {
            let model = (f64::from(a) * 32_768.0).round().clamp(-32_768.0, 32_767.0);
            prop_assert_eq!(f64::from(i16::from_f32(a)), model);
        }
    }

    #[test]
    fn prop_base64_round_trips(pcm in prop::collection::vec(any::<i16>(), 0..500)) {
        let mut bytes = Vec::new();
        pcm16_to_bytes(&pcm, &mut bytes);
        prop_assert_eq!(base64_to_pcm16(&pcm16_to_base64(&bytes)).unwrap(), bytes);
    }

    /// Output does not depend on how the input is split into callbacks, and
    /// its length follows the rate ratio.
    #[test]
    fn prop_capture_is_split_invariant_and_length_follows_the_ratio(
        from_idx in 0..RATES.len(),
        channels in 1_u16..=4,
        frames in 0_usize..6_000,
        splits in prop::collection::vec(1_usize..900, 1..20),
        seed in any::<u32>(),
    ) {
        let from = RATES[from_idx];
        let ch = usize::from(channels);
        // Deterministic noise, full scale (with overshoot after resampling).
        let mut x = seed | 1;
        let data: Vec<f32> = (0..frames * ch).map(|_| {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        }).collect();
        let mut whole = Vec::new();
        let mut a = CaptureConverter::new(from, channels, 24_000).unwrap();
        a.push_interleaved(&data, &mut whole);
        let mut parts = Vec::new();
        let mut b = CaptureConverter::new(from, channels, 24_000).unwrap();
        let mut rest = &data[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = (splits[i % splits.len()] * ch).min(rest.len());
            b.push_interleaved(&rest[..n], &mut parts);
            rest = &rest[n..];
            i += 1;
        }
        prop_assert_eq!(&whole, &parts);
        prop_assert_eq!(whole.len() % 2, 0);
        let expected = frames as f64 * 24_000.0 / f64::from(from);
        let got = (whole.len() / 2) as f64;
        // Held back: at most a partial 10 ms chunk and one FFT block.
        let slack = 3.0 * 24_000.0 / 100.0 + 64.0;
        prop_assert!(got <= expected + 1.0, "{got} > {expected}");
        prop_assert!(got >= expected - slack, "{got} < {expected} - {slack}");
    }

    #[test]
    fn prop_playback_output_length_follows_the_ratio(
        to_idx in 0..RATES.len(),
        frames in 0_usize..6_000,
        split in 1_usize..1_000,
    ) {
        let to = RATES[to_idx];
        let pcm: Vec<u8> = (0..frames * 2).map(|i| (i * 7 % 251) as u8).collect();
        let mut conv = PlaybackConverter::new(24_000, to).unwrap();
        let mut n = 0_usize;
        for part in pcm.chunks(split) {
            conv.push_pcm16(part, &mut |s: &[f32]| {
                assert!(s.iter().all(|x| x.is_finite()));
                n += s.len();
            });
        }
        let expected = frames as f64 * f64::from(to) / 24_000.0;
        let slack = 3.0 * f64::from(to) / 100.0 + 64.0;
        prop_assert!(n as f64 <= expected + 1.0);
        prop_assert!(n as f64 >= expected - slack, "{n} < {expected} - {slack}");
    }
}
