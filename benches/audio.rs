//! The per-callback cost of turning 10 ms of 48 kHz stereo f32 device audio
//! into 24 kHz mono PCM16: ours (preallocated, rubato FFT resampler) against
//! a naive per-sample implementation (per-sample format dispatch, fresh
//! vectors, direct-form FIR low-pass and decimation) in the same run.
//!
//! Also writes `$STEWARD_BENCH_DIR/extra/audio.json`: the fraction of the
//! buffer's 10 ms real time each whole path takes (target: under 2 %).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steward_audio::convert::{CaptureConverter, PcmSample, PlaybackConverter};

const FRAMES: usize = 480; // 10 ms at 48 kHz
const BUFFER_NS: f64 = 10_000_000.0;

fn device_buffer() -> Vec<f32> {
    (0..FRAMES)
        .flat_map(|i| {
            let x = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin() * 0.5;
            [x, x * 0.9]
        })
        .collect()
}

/// The textbook way: dispatch on the format per sample, collect into new
/// vectors, then low-pass with a windowed-sinc FIR and keep every other
/// sample, then quantise into a new byte vector.
struct Naive {
    taps: Vec<f32>,
    history: Vec<f32>,
}

#[derive(Clone, Copy)]
enum Format {
    F32,
    #[allow(dead_code)]
    I16,
}

impl Naive {
    fn new() -> Self {
        let n = 64;
        let cutoff = 0.45 * 24_000.0 / 48_000.0; // relative to the input rate
        let taps: Vec<f32> = (0..n)
            .map(|i| {
                let m = i as f32 - (n - 1) as f32 / 2.0;
                let sinc = if m == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f32::consts::PI * cutoff * m).sin() / (std::f32::consts::PI * m)
                };
                let w =
                    0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (n - 1) as f32).cos();
                sinc * w
            })
            .collect();
        Self {
            history: vec![0.0; n],
            taps,
        }
    }

    fn sample(format: Format, raw: &[f32], i: usize) -> f32 {
        match format {
            Format::F32 => raw[i],
            Format::I16 => raw[i] * 32_768.0 / 32_768.0,
        }
    }

    fn process(&mut self, raw: &[f32], channels: usize, format: Format) -> Vec<u8> {
        let mut samples = Vec::new();
        for i in 0..raw.len() {
            samples.push(Self::sample(format, raw, i));
        }
        let mut mono = Vec::new();
        for frame in samples.chunks(channels) {
            let mut sum = 0.0;
            for s in frame {
                sum += s;
            }
            mono.push(sum / channels as f32);
        }
        self.history.extend_from_slice(&mono);
        let n = self.taps.len();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + n <= self.history.len() {
            let mut acc = 0.0;
            for k in 0..n {
                acc += self.history[pos + k] * self.taps[k];
            }
            let v = (acc * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
            for b in v.to_le_bytes() {
                out.push(b);
            }
            pos += 2;
        }
        self.history.drain(..pos);
        out
    }
}

fn mean_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iters {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn convert(c: &mut Criterion) {
    let input = device_buffer();
    let mut group = c.benchmark_group("audio/convert_10ms_48k_stereo_f32_to_24k_mono_pcm16");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(60);

    let mut ours = CaptureConverter::new(48_000, 2, 24_000).expect("converter");
    let mut out = Vec::with_capacity(4 * FRAMES);
    group.bench_function("steward", |b| {
        b.iter(|| {
            out.clear();
            ours.push_interleaved(black_box(&input), &mut out);
            black_box(out.len())
        });
    });

    let mut naive = Naive::new();
    group.bench_function("naive_per_sample", |b| {
        b.iter(|| black_box(naive.process(black_box(&input), 2, Format::F32)).len());
    });
    group.finish();

    write_extra(&input);
}

/// Non-timing figures: the whole path's share of the buffer's real time.
fn write_extra(input: &[f32]) {
    let mut capture = CaptureConverter::new(48_000, 2, 24_000).expect("converter");
    let mut out = Vec::with_capacity(4 * FRAMES);
    let capture_ns = mean_ns(20_000, || {
        out.clear();
        capture.push_interleaved(black_box(input), &mut out);
    });
    // Playback direction: 10 ms of 24 kHz PCM16 to 48 kHz stereo f32.
    let pcm: Vec<u8> = input
        .chunks(4)
        .flat_map(|f| i16::from_f32(f[0]).to_le_bytes())
        .collect();
    let mut playback = PlaybackConverter::new(24_000, 48_000).expect("converter");
    let mut device = vec![0.0_f32; 2 * FRAMES * 2];
    let playback_ns = mean_ns(20_000, || {
        let mut n = 0;
        playback.push_pcm16(black_box(&pcm), &mut |s: &[f32]| {
            n += steward_audio::convert::upmix_into(s, 2, &mut device[n * 2..]);
        });
        black_box(n);
    });
    let entry = |name: &str, ns: f64| {
        let fraction = ns / BUFFER_NS;
        format!(
            "{{\"name\": \"{name}\", \"ns_per_10ms_buffer\": {ns:.0}, \"fraction_of_real_time\": {fraction:.6}, \"target_fraction\": 0.02, \"meets_target\": {}, \"statistic\": \"mean\"}}",
            fraction < 0.02
        )
    };
    let json = format!(
        "[\n  {},\n  {}\n]\n",
        entry(
            "audio/capture_path_10ms_48k_stereo_f32_fraction_of_real_time",
            capture_ns
        ),
        entry(
            "audio/playback_path_10ms_24k_pcm16_to_48k_stereo_fraction_of_real_time",
            playback_ns
        )
    );
    let dir = std::env::var_os("STEWARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/bench"))
        .join("extra");
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("audio.json"), &json))
    {
        eprintln!("audio bench: cannot write {}: {e}", dir.display());
    }
    println!("{json}");
}

criterion_group!(benches, convert);
criterion_main!(benches);
