//! Real streams on the PulseAudio null devices (the default devices once
//! the setup script ran) through the native PulseAudio client, and on
//! ALSA's `null` device.

use std::time::Duration;

use steward_audio::{
    AudioConfig, AudioHost, Capture, Error, Playback, SampleFormat, list_devices, list_host_devices,
};

use crate::common::{
    HANG_GUARD, OwnNullDevice, median_freq, native_host, require_sound_server, rms, run_child,
    samples, tone,
};

#[test]
fn devices_are_listed_and_unknown_names_are_refused_with_the_list() {
    require_sound_server();
    // ALSA names its devices itself.
    let alsa = list_host_devices(AudioHost::Alsa).unwrap();
    let names: Vec<&str> = alsa.iter().map(|d| d.name.as_str()).collect();
    assert!(names.contains(&"default"), "{names:?}");
    assert!(names.contains(&"null"), "{names:?}");
    // The native host lists the server's sinks and sources, defaults marked.
    let devices = list_devices().unwrap();
    let default_in = devices
        .iter()
        .find(|d| d.is_default_input && d.supports_input)
        .unwrap_or_else(|| panic!("no default input: {devices:?}"));
    assert!(
        devices
            .iter()
            .any(|d| d.is_default_output && d.supports_output),
        "{devices:?}"
    );

    let err = Capture::builder()
        .device("no-such-device-xyz")
        .build()
        .unwrap_err();
    match &err {
        Error::DeviceNotFound {
            name,
            available,
            direction,
        } => {
            assert_eq!(name, "no-such-device-xyz");
            assert_eq!(*direction, "input");
            assert!(available.contains(&default_in.name), "{available}");
        }
        other => panic!("expected DeviceNotFound, got {other}"),
    }
    assert!(err.to_string().contains("no-such-device-xyz"));
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let mut config = AudioConfig::default();
    config.chunk_frames = 0;
    let err = Capture::open(&config).unwrap_err();
    assert!(err.to_string().contains("chunk_frames"), "{err}");
    let mut config = AudioConfig::default();
    config.playback_queue_ms = 0;
    let err = Playback::open(&config).unwrap_err();
    assert!(err.to_string().contains("playback_queue_ms"), "{err}");
}

#[test]
fn config_is_plain_serde_data() {
    let mut config = AudioConfig::default();
    config.set_chunk_duration(Duration::from_millis(1024 * 1000 / 24_000 + 1));
    config.input_device = Some("pulse".into());
    config.device_sample_format = Some(SampleFormat::I16);
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains("\"i16\""), "{json}");
    let back: AudioConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let partial: AudioConfig = serde_json::from_str(r#"{"chunk_frames": 1024}"#).unwrap();
    assert_eq!(partial.chunk_frames, 1024);
    assert_eq!(partial.sample_rate, 24_000);
    let err = serde_json::from_str::<AudioConfig>(r#"{"chunk_frame": 1}"#).unwrap_err();
    assert!(err.to_string().contains("chunk_frame"), "{err}");
}

/// Reads `n` chunks, each within the hang guard.
fn read_chunks(cap: &mut Capture, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            cap.next_chunk_blocking(HANG_GUARD)
                .unwrap()
                .unwrap_or_else(|| panic!("chunk {i} did not arrive within {HANG_GUARD:?}"))
        })
        .collect()
}

#[test]
fn capture_from_the_default_device_gives_chunks_of_the_configured_size() {
    require_sound_server();
    let mut cap = Capture::builder()
        .chunk_duration(Duration::from_millis(20))
        .build()
        .unwrap();
    let chunks = read_chunks(&mut cap, 25);
    assert!(
        chunks.iter().all(|c| c.len() == 960),
        "20 ms at 24 kHz is 960 bytes"
    );
    let stats = cap.close().unwrap();
    assert_eq!(stats.host, Some(native_host()), "{stats:?}");
    assert!(stats.callbacks > 0);
    assert!(stats.frames_out >= 25 * 480, "{stats:?}");
    let format = stats.format.unwrap();
    // The device frames seen cover at least what was handed out.
    assert!(
        stats.frames_in * 24_000 >= stats.frames_out * u64::from(format.sample_rate),
        "{stats:?}"
    );
    assert!(!stats.device_lost, "{stats:?}");
    // Closed: the queue drains, then reads say so.
    let err = loop {
        match cap.try_next_chunk() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a closed capture must report Closed, not wait"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Closed { .. }), "{err}");
}

#[test]
fn capture_converts_48k_stereo_f32_to_python_sized_chunks() {
    require_sound_server();
    let mut config = AudioConfig::default();
    config.chunk_frames = 1024;
    config.host = AudioHost::PulseAudio;
    config.device_sample_rate = Some(48_000);
    config.device_channels = Some(2);
    config.device_sample_format = Some(SampleFormat::F32);
    let mut cap = Capture::builder().config(config).build().unwrap();
    assert_eq!(cap.host(), AudioHost::PulseAudio);
    let f = cap.device_format();
    assert_eq!(
        (f.sample_rate, f.channels, f.sample_format),
        (48_000, 2, SampleFormat::F32)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let chunks = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..6 {
            let c = tokio::time::timeout(HANG_GUARD, cap.next_chunk()).await;
            v.push(c.expect("chunk within the hang guard").unwrap());
        }
        v
    });
    assert!(chunks.iter().all(|c| c.len() == 2048));
    let stats = cap.close().unwrap();
    // 48 kHz device frames become 24 kHz chunks: about two to one.
    assert!(stats.frames_in >= stats.frames_out * 2, "{stats:?}");
}

#[test]
fn playback_applies_backpressure_then_plays_everything() {
    require_sound_server();
    let pb = Playback::builder()
        .queue(Duration::from_millis(200))
        .build()
        .unwrap();
    let audio = tone(440.0, 0.3, 24_000, 1.0);
    // The queue holds 200 ms: try_write takes at most that much.
    let taken = pb.try_write(&audio).unwrap();
    assert!(taken <= 200 * 24 * 2, "took {taken} bytes");
    assert!(taken > 0);
    // write() waits for room and gets the rest in.
    assert!(pb.write_blocking(&audio[taken..], HANG_GUARD).unwrap());
    assert!(
        pb.drain_blocking(HANG_GUARD).unwrap(),
        "drain within the hang guard"
    );
    let stats = pb.close().unwrap();
    assert_eq!(stats.frames_in, 24_000);
    let rate = u64::from(stats.format.unwrap().sample_rate);
    assert!(stats.frames_out >= rate * 99 / 100, "{stats:?}");
    assert!(stats.callbacks > 0);
    // Written audio ended, so silence followed: counted.
    assert!(stats.silence_frames > 0);
    assert!(matches!(
        pb.try_write(&audio[..2]),
        Err(Error::Closed { .. })
    ));
    assert!(matches!(
        pb.try_write(&audio[..3]),
        Err(Error::OddPcm16Length { len: 3 })
    ));
}

#[test]
fn clear_drops_queued_playback_at_once() {
    require_sound_server();
    let pb = std::sync::Arc::new(
        Playback::builder()
            .device_format(48_000, 2, SampleFormat::F32)
            .queue(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    let audio = tone(440.0, 0.3, 24_000, 5.0);
    assert_eq!(pb.try_write(&audio).unwrap(), audio.len());
    let dropped = pb.clear();
    assert!(dropped > 0, "nothing was queued?");
    // Queue and ring are empty almost at once: drain completes right away
    // instead of after five seconds of audio.
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let stats = pb.stats();
    assert_eq!(stats.frames_in, 5 * 24_000);
    // Played plus dropped accounts for every written frame (24 kHz units).
    let played = stats.frames_out * 24_000 / 48_000;
    assert!(
        played + stats.cleared_frames + 2_400 >= 5 * 24_000,
        "{stats:?}"
    );
    assert!(
        played < 4 * 24_000,
        "clear did not stop playback: {stats:?}"
    );
    // The stream keeps working after a clear.
    pb.write_blocking(&audio[..4_800], HANG_GUARD).unwrap();
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let after = pb.close().unwrap();
    assert!(after.frames_out > stats.frames_out);
}

/// Pinned to ALSA: its own `null` device, and its `default` device (on
/// this machine ALSA's PulseAudio plugin), stay usable.
#[test]
fn alsa_null_device_streams_open_and_close() {
    require_sound_server();
    let mut cap = Capture::builder()
        .host(AudioHost::Alsa)
        .device("null")
        .build()
        .unwrap();
    assert_eq!(cap.device(), "null");
    let pb = Playback::builder()
        .host(AudioHost::Alsa)
        .device("null")
        .build()
        .unwrap();
    pb.write_blocking(&tone(300.0, 0.2, 24_000, 0.1), HANG_GUARD)
        .unwrap();
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let c = cap.next_chunk_blocking(HANG_GUARD).unwrap();
    assert!(c.is_some());
    assert_eq!(cap.close().unwrap().host, Some(AudioHost::Alsa));
    assert_eq!(pb.close().unwrap().host, Some(AudioHost::Alsa));
    let pb = Playback::builder().host(AudioHost::Alsa).build().unwrap();
    pb.write_blocking(&tone(300.0, 0.2, 24_000, 0.1), HANG_GUARD)
        .unwrap();
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let stats = pb.close().unwrap();
    assert_eq!(stats.host, Some(AudioHost::Alsa));
    assert_eq!(stats.device, "default");
    assert!(stats.frames_out > 0, "{stats:?}");
}

/// Polls `cond` every 10 ms until it holds; panics after the hang guard.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {HANG_GUARD:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What is played on a sink of our own is recorded from its monitor.
#[test]
fn capture_overflow_drops_the_oldest_audio() {
    require_sound_server();
    let sink = OwnNullDevice::sink("overflow");
    // A reader that never reads: the queue holds 300 ms.
    let mut cap = Capture::builder()
        .host(AudioHost::PulseAudio)
        .device(sink.monitor())
        .queue(Duration::from_millis(300))
        .build()
        .unwrap();
    let pb = Playback::builder()
        .host(AudioHost::PulseAudio)
        .device(&sink.name)
        .queue(Duration::from_secs(5))
        .build()
        .unwrap();
    // One second of 300 Hz, then two of 1200 Hz.
    let mut audio = tone(300.0, 0.5, 24_000, 1.0);
    audio.extend(tone(1_200.0, 0.5, 24_000, 2.0));
    pb.try_write(&audio).unwrap();
    let rate = u64::from(pb.device_format().sample_rate);
    // Wait until the device played well into the second tone, and the
    // capture saw another 600 ms after that.
    wait_until("playback reaches 1.8 s", || {
        pb.stats().frames_out >= rate * 18 / 10
    });
    let seen = cap.stats().frames_out;
    wait_until("capture records 600 ms more", || {
        cap.stats().frames_out >= seen + 14_400
    });
    let stats = cap.stats();
    assert!(stats.overflow_frames > 0, "{stats:?}");
    assert!(stats.queued_frames <= 300 * 24 + 480, "{stats:?}");
    let mut got = Vec::new();
    while let Some(c) = cap.try_next_chunk().unwrap() {
        got.extend(samples(&c));
    }
    // Everything left is the newest audio: the second tone only.
    let f = median_freq(&got, 24_000, 4_000).expect("queued audio is silent");
    assert!(
        (f - 1_200.0).abs() < 1_200.0 * 0.03,
        "queued audio is at {f} Hz"
    );
    // Every produced frame is either queued, dropped as overflow, or read.
    let end = cap.close().unwrap();
    assert!(end.frames_out >= end.overflow_frames + got.len() as u64);
    pb.close().unwrap();
}

#[test]
fn tone_round_trips_through_the_null_sink_monitor() {
    require_sound_server();
    let sink = OwnNullDevice::sink("roundtrip");
    // Both sides convert: playback upsamples to 48 kHz stereo f32, capture
    // downsamples 44.1 kHz stereo i16.
    let mut cap = Capture::builder()
        .host(AudioHost::PulseAudio)
        .device(sink.monitor())
        .device_format(44_100, 2, SampleFormat::I16)
        .build()
        .unwrap();
    let pb = Playback::builder()
        .host(AudioHost::PulseAudio)
        .device(&sink.name)
        .device_format(48_000, 2, SampleFormat::F32)
        .build()
        .unwrap();
    pb.write_blocking(&tone(440.0, 0.5, 24_000, 1.5), HANG_GUARD)
        .unwrap();
    let mut got = Vec::new();
    // Up to 4 s of audio (real-time paced); stop once the tone has come and gone.
    for _ in 0..200 {
        let Some(c) = cap.next_chunk_blocking(HANG_GUARD).unwrap() else {
            panic!("no chunk within {HANG_GUARD:?}");
        };
        got.extend(samples(&c));
        let loud = got.iter().filter(|x| x.unsigned_abs() > 4_000).count();
        if loud > 24_000 && rms(&got[got.len().saturating_sub(2_400)..]) < 100.0 {
            break;
        }
    }
    pb.drain_blocking(HANG_GUARD).unwrap();
    let f = median_freq(&got, 24_000, 4_000).expect("the tone never arrived");
    println!("round trip: {} samples, {f:.1} Hz", got.len());
    assert!((f - 440.0).abs() < 440.0 * 0.02, "measured {f} Hz");
    let cs = cap.close().unwrap();
    let ps = pb.close().unwrap();
    assert!(!cs.device_lost && !ps.device_lost, "{cs:?} {ps:?}");
    // The native client has none of the ALSA plugin's start-up EIO storm.
    assert_eq!((cs.errors, ps.errors), (0, 0), "{cs:?} {ps:?}");
    assert_eq!(ps.host, Some(AudioHost::PulseAudio));
}

#[test]
fn async_writes_are_whole_or_nothing_when_cancelled_by_a_barge_in() {
    require_sound_server();
    let pb = std::sync::Arc::new(
        Playback::builder()
            .queue(Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    let piece = tone(440.0, 0.3, 24_000, 0.1); // 100 ms = 2,400 frames
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let writer = {
            let pb = std::sync::Arc::clone(&pb);
            let piece = piece.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    pb.write(&piece).await.unwrap();
                }
            })
        };
        // Barge in once playback is under way: stop the writer mid-wait,
        // then drop what is queued.
        let rate = u64::from(pb.device_format().sample_rate);
        let started = tokio::time::Instant::now();
        while pb.stats().frames_out < rate * 3 / 10 {
            assert!(started.elapsed() < HANG_GUARD, "playback did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.abort();
        let _ = writer.await;
        pb.clear();
        tokio::time::timeout(HANG_GUARD, pb.drain())
            .await
            .unwrap()
            .unwrap();
    });
    let stats = pb.close().unwrap();
    // Cancelled writes queued nothing partial: whole pieces only.
    assert_eq!(stats.frames_in % 2_400, 0, "{stats:?}");
    assert!(
        stats.frames_in < 50 * 2_400,
        "the writer was not stopped: {stats:?}"
    );
    assert!(stats.cleared_frames > 0, "{stats:?}");
}

#[test]
fn cancelled_reads_lose_no_chunk() {
    require_sound_server();
    let mut cap = Capture::builder()
        .chunk_duration(Duration::from_millis(10))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut frames_read = 0_u64;
    rt.block_on(async {
        let mut reads = 0;
        let started = tokio::time::Instant::now();
        while reads < 30 {
            assert!(started.elapsed() < HANG_GUARD, "chunks stopped arriving");
            // Most of these time out: the read future is dropped mid-wait.
            if let Ok(chunk) =
                tokio::time::timeout(Duration::from_millis(3), cap.next_chunk()).await
            {
                frames_read += chunk.unwrap().len() as u64 / 2;
                reads += 1;
            }
        }
    });
    let stats = cap.close().unwrap();
    while let Ok(Some(c)) = cap.try_next_chunk() {
        frames_read += c.len() as u64 / 2;
    }
    assert_eq!(
        frames_read + stats.overflow_frames,
        stats.frames_out,
        "chunks were lost: {stats:?}"
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Capture>();
    check::<Playback>();
    check::<steward_audio::Stats>();
    check::<steward_audio::Event>();
    check::<Error>();
}

#[test]
fn without_a_sound_server_open_fails_saying_why() {
    require_sound_server();
    // The native client and libpulse (inside ALSA's default device) both
    // connect where PULSE_SERVER says.
    run_child(
        "streams::child_open_without_server",
        &[("PULSE_SERVER", "unix:/nonexistent/steward-no-server")],
    );
}

#[test]
#[ignore = "helper: run in a child process by without_a_sound_server_open_fails_saying_why"]
fn child_open_without_server() {
    // The native client finds no socket: a typed error saying where it looked.
    let mut native = AudioConfig::default();
    native.host = AudioHost::PulseAudio;
    let err = Playback::open(&native).unwrap_err();
    assert!(matches!(err, Error::HostUnavailable { .. }), "{err}");
    assert!(err.to_string().contains("PULSE_SERVER"), "{err}");
    // The default host falls back to ALSA (a warning), whose plugin fails too.
    let err = Capture::open(&AudioConfig::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`default`"), "{text}");
    assert!(text.contains("sound server"), "{text}");
    assert!(std::error::Error::source(&err).is_some(), "{text}");
    let err = Playback::open(&AudioConfig::default()).unwrap_err();
    assert!(err.to_string().contains("sound server"), "{err}");
}

#[test]
fn without_the_native_socket_the_default_host_falls_back_to_alsa_and_plays() {
    require_sound_server();
    // The native client looks only at the environment: an empty runtime
    // directory hides the server from it. libpulse, inside ALSA's default
    // device, also reads a client configuration, which names the server.
    let set = std::env::var("PULSE_SERVER").ok().filter(|s| !s.is_empty());
    let socket = set.clone().unwrap_or_else(|| {
        let dir = std::env::var("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR is set");
        format!("unix:{dir}/pulse/native")
    });
    let scratch = std::env::temp_dir().join(format!("steward-fallback-{}", std::process::id()));
    let runtime = scratch.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let conf = scratch.join("client.conf");
    std::fs::write(&conf, format!("default-server = {socket}\n")).unwrap();
    let (runtime, conf) = (runtime.to_string_lossy(), conf.to_string_lossy());
    let mut env = vec![
        ("XDG_RUNTIME_DIR", &*runtime),
        ("PULSE_RUNTIME_PATH", &*runtime),
        ("PULSE_CLIENTCONFIG", &*conf),
    ];
    if set.is_some() {
        // Said here, so empty for the child (only the configuration names it).
        env.push(("PULSE_SERVER", ""));
    }
    run_child("streams::child_fallback_to_alsa", &env);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
#[ignore = "helper: run in a child process by without_the_native_socket_the_default_host_falls_back_to_alsa_and_plays"]
fn child_fallback_to_alsa() {
    let mut native = AudioConfig::default();
    native.host = AudioHost::PulseAudio;
    assert!(matches!(
        Playback::open(&native),
        Err(Error::HostUnavailable { .. })
    ));
    let pb = Playback::open(&AudioConfig::default()).unwrap();
    assert_eq!(pb.host(), AudioHost::Alsa);
    let audio = tone(440.0, 0.3, 24_000, 0.4);
    pb.write_blocking(&audio, HANG_GUARD).unwrap();
    assert!(pb.drain_blocking(HANG_GUARD).unwrap());
    let stats = pb.close().unwrap();
    assert_eq!(stats.host, Some(AudioHost::Alsa), "{stats:?}");
    assert!(stats.frames_out > 0, "{stats:?}");
}
