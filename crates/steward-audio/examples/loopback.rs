//! Records from the default input and plays it straight back on the default
//! output for a few seconds, through the realtime API's base64 form, then
//! prints both streams' counters as JSON.
//!
//! `cargo run -p steward-audio --example loopback -- [seconds] [input] [output]`

use std::time::{Duration, Instant};

use steward_audio::{AudioConfig, Capture, Playback, base64_to_pcm16, pcm16_to_base64};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut config = AudioConfig::default();
    config.input_device = args.next();
    config.output_device = args.next();
    let mut mic = Capture::open(&config)?;
    let speaker = Playback::open(&config)?;
    println!(
        "recording from {} ({:?}), playing on {} ({:?})",
        mic.device(),
        mic.device_format(),
        speaker.device(),
        speaker.device_format()
    );
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let Some(chunk) = mic.next_chunk_blocking(Duration::from_secs(2))? else {
            eprintln!("no audio for 2 s");
            break;
        };
        // What would travel to and from the realtime API.
        let wire = pcm16_to_base64(&chunk);
        speaker.write_blocking(&base64_to_pcm16(&wire)?, Duration::from_secs(2))?;
    }
    speaker.drain_blocking(Duration::from_secs(5))?;
    println!("capture:  {}", serde_json::to_string(&mic.close()?)?);
    println!("playback: {}", serde_json::to_string(&speaker.close()?)?);
    Ok(())
}
