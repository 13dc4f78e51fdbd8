//! Benches: one sample through the `/proc` fast path against a `sysinfo`
//! refresh of this process, plus what this machine's cgroup and PSI look like.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use steward_monitor::{SampleSource, SystemSource};
use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate};

fn sample(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor/sample");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(50);

    let mut fast = SystemSource::new().expect("system source");
    assert!(fast.uses_fast_path(), "the fast path is Linux only");
    group.bench_function("steward_fast_path", |b| {
        b.iter(|| black_box(fast.read_memory().expect("statm").rss_bytes));
    });

    let mut system = sysinfo::System::new().expect("sysinfo");
    let pid = sysinfo::get_current_pid().expect("pid");
    let kind = ProcessRefreshKind::nothing().with_memory().without_tasks();
    group.bench_function("sysinfo_refresh_process", |b| {
        b.iter(|| {
            system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, kind);
            black_box(system.process(pid).map(sysinfo::Process::memory))
        });
    });
    group.finish();

    // A whole sample (process, limit, available memory, cgroup, PSI) against
    // sysinfo refreshing the process and RAM and reading the process's
    // cgroup limits (sysinfo has no PSI).
    let mut group = c.benchmark_group("monitor/full_sample");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(50);
    group.bench_function("steward_sample", |b| {
        b.iter(|| black_box(fast.sample().expect("sample").rss_bytes));
    });
    group.bench_function("sysinfo_process_ram_cgroup", |b| {
        b.iter(|| {
            system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, kind);
            system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            let process = system.process(pid);
            black_box((
                process.map(sysinfo::Process::memory),
                system.available_memory(),
                process
                    .and_then(sysinfo::Process::cgroup_limits)
                    .map(|l| l.total_memory),
            ))
        });
    });
    group.finish();

    write_machine(&mut fast);
}

/// What this machine's cgroup and PSI look like, for the bench summary.
fn write_machine(source: &mut SystemSource) {
    let sample = source.sample().expect("sample");
    let location = source.cgroup_location();
    let entry = json!({
        "name": "monitor/machine",
        // A description of the machine, not a timing.
        "statistic": "one_reading",
        "fast_path": source.uses_fast_path(),
        "cgroup": location.map(|l| json!({
            "version": l.version,
            "dir": l.dir,
            "limit_bytes": sample.cgroup.as_ref().and_then(|c| c.limit_bytes),
            "usage_bytes": sample.cgroup.as_ref().and_then(|c| c.usage_bytes),
        })),
        "psi_file": source.psi_path(),
        "psi": sample.psi,
        "limit_bytes": sample.limit_bytes,
        "limit_source": sample.limit_source,
        "physical_bytes": sample.physical_bytes,
        "available_bytes": sample.available_bytes,
        "rss_bytes": sample.rss_bytes,
    });
    let dir = std::env::var_os("STEWARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/bench"))
        .join("extra");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            dir.join("monitor.json"),
            serde_json::to_string_pretty(&Value::Array(vec![entry]))? + "\n",
        )
    });
    if let Err(e) = written {
        eprintln!("monitor bench: cannot write {}: {e}", dir.display());
    }
}

criterion_group!(benches, sample);
criterion_main!(benches);
