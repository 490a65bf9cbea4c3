//! The batch pipeline: every job answered, failures alone, completion order, bounded memory.

use callrec_engine::{AudioSource, Engine, EngineConfig, JobInput, ProcessConfig};
use callrec_fixtures::{CallShape, WavEncoding, WavOptions, synth_call, write_wav};
use std::path::PathBuf;

fn call(ms: u64, seed: u64) -> AudioSource {
    let shape = CallShape::telephone(ms, seed);
    AudioSource::from_bytes(write_wav(
        &synth_call(&shape),
        8000,
        &WavOptions::new(WavEncoding::I16),
    ))
}

fn two_workers() -> Engine {
    Engine::new(EngineConfig {
        threads: 2,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

#[test]
fn every_job_is_answered_and_failures_stay_alone() {
    let engine = two_workers();
    let mut jobs: Vec<(usize, JobInput)> = (0..20)
        .map(|i| (i, JobInput::Source(call(2000 + 100 * i as u64, i as u64))))
        .collect();
    jobs.push((20, JobInput::File(fixture("bad/truncated_data.wav"))));
    jobs.push((21, JobInput::File(fixture("bad/no_such_file.wav"))));
    jobs.push((22, JobInput::File(fixture("audio/ulaw_8k_mono.wav"))));
    let mut seen = vec![None; 23];
    let stats = engine.process_batch(
        jobs,
        &ProcessConfig::default(),
        |_, outcome| {
            let ok = outcome.is_ok();
            (
                outcome
                    .map(|p| p.report.output.sha256)
                    .map_err(|e| e.kind()),
                ok,
            )
        },
        |tag, result| seen[tag] = Some(result),
    );
    assert_eq!(stats.jobs, 23);
    assert_eq!(stats.failed, 2);
    assert_eq!(seen[20], Some(Err("truncated")));
    assert_eq!(seen[21], Some(Err("io")));
    for (i, result) in seen
        .iter()
        .enumerate()
        .filter(|(i, _)| ![20, 21].contains(i))
    {
        assert!(
            matches!(result, Some(Ok(sha)) if sha.len() == 64),
            "job {i}: {result:?}"
        );
    }
}

/// Files written by the workers are synced and renamed into place before `finish` sees their
/// outcome (on a committing thread): the bytes at the path are the ones the report describes,
/// no temporary file is left beside them, and a failed job leaves nothing.
#[test]
fn file_outputs_are_in_place_when_finish_sees_them() {
    use callrec_engine::JobOutput;
    use sha2::{Digest, Sha256};
    let engine = two_workers();
    let dir = tempfile::tempdir().unwrap();
    let mut jobs: Vec<(usize, JobInput)> = (0..12)
        .map(|i| {
            (
                i,
                JobInput::Source(call(3000 + 250 * i as u64, 40 + i as u64)),
            )
        })
        .collect();
    jobs.push((12, JobInput::File(fixture("bad/truncated_data.wav"))));
    let path = |i: usize| dir.path().join(format!("out-{i}.wav"));
    let mut answered = 0;
    let stats = engine.process_batch_to(
        jobs,
        &ProcessConfig::default(),
        |&i| JobOutput::File(path(i)),
        |&i, outcome| match outcome {
            Ok(processed) => {
                let bytes = std::fs::read(path(i)).expect("the output is in place");
                let sha: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(sha, processed.report.output.sha256, "job {i}");
                (true, true)
            }
            Err(_) => {
                assert!(!path(i).exists(), "job {i} failed and left its output");
                (false, false)
            }
        },
        |_, _| answered += 1,
    );
    assert_eq!((stats.jobs, stats.failed, answered), (13, 1, 13));
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let expected: Vec<String> = {
        let mut names: Vec<String> = (0..12).map(|i| format!("out-{i}.wav")).collect();
        names.sort();
        names
    };
    assert_eq!(left, expected, "only the outputs, no temporary files");
}

#[test]
fn results_leave_in_completion_order() {
    let engine = two_workers();
    // One long call first, then short ones: with two workers the short ones finish first.
    let mut jobs = vec![(0usize, JobInput::Source(call(240_000, 1)))];
    jobs.extend((1..6).map(|i| (i, JobInput::Source(call(1000, i as u64)))));
    let mut order = Vec::new();
    engine.process_batch(
        jobs,
        &ProcessConfig::default(),
        |_, r| ((), r.is_ok()),
        |tag, ()| order.push(tag),
    );
    assert_eq!(order.len(), 6);
    assert_ne!(order[0], 0, "the long job came back first: {order:?}");
    assert_eq!(*order.last().unwrap(), 0, "{order:?}");
}

#[test]
fn in_flight_bytes_stay_under_the_budget() {
    let each = callrec_engine::batch::memory_estimate(
        &call(3000, 0),
        &ProcessConfig::default(),
        &callrec_engine::JobOutput::Memory,
    );
    // Room for two jobs at a time, with four workers wanting more.
    let engine = Engine::new(EngineConfig {
        threads: 4,
        queue_depth: 2,
        max_in_flight_bytes: 2 * each + each / 2,
    })
    .unwrap();
    let jobs: Vec<(u64, JobInput)> = (0..12)
        .map(|i| (i, JobInput::Source(call(3000, i))))
        .collect();
    let stats = engine.process_batch(
        jobs,
        &ProcessConfig::default(),
        |_, r| ((), r.is_ok()),
        |_, ()| {},
    );
    assert_eq!((stats.jobs, stats.failed), (12, 0));
    assert!(
        stats.peak_in_flight_bytes <= 2 * each + each / 2,
        "{stats:?}"
    );
    assert!(stats.peak_in_flight_bytes >= each, "{stats:?}");
    // A job larger than the whole budget still runs, alone.
    let engine = Engine::new(EngineConfig {
        threads: 2,
        queue_depth: 1,
        max_in_flight_bytes: 10,
    })
    .unwrap();
    let jobs = vec![
        (0, JobInput::Source(call(3000, 1))),
        (1, JobInput::Source(call(3000, 2))),
    ];
    let stats = engine.process_batch(
        jobs,
        &ProcessConfig::default(),
        |_, r| ((), r.is_ok()),
        |_, ()| {},
    );
    assert_eq!((stats.jobs, stats.failed), (2, 0));
    assert_eq!(stats.peak_in_flight_bytes, each, "one at a time");
}

#[test]
fn a_flac_bomb_is_charged_for_what_it_decodes_to() {
    use callrec_engine::JobOutput;
    use callrec_engine::batch::{STREAMING_OVERHEAD_BYTES, memory_estimate};
    // Ten minutes of 8 kHz silence in ~14 KB: charged for 4.8 M decoded samples, not 14 KB.
    let frames = 10 * 60 * 8000;
    let bomb = callrec_fixtures::flac::silence(8000, 1, frames);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let source = AudioSource::from_bytes(bomb);
    let limits = callrec_engine::limits::Limits::default();
    let streamed = ProcessConfig::default();
    let spill = streamed.spill.memory_bytes as u64;
    let held = source.len();
    // Streamed to memory: the spill's budget, the frame statistics and the output.
    assert_eq!(
        memory_estimate(&source, &streamed, &JobOutput::Memory),
        STREAMING_OVERHEAD_BYTES + held + spill + frames / 8 + 2 * frames
    );
    // Streamed to a file: no output held.
    assert_eq!(
        memory_estimate(&source, &streamed, &JobOutput::File("x".into())),
        STREAMING_OVERHEAD_BYTES + held + spill + frames / 8
    );
    // Encoded to FLAC (streamed too): its frames wait in a spool of a quarter of the spill
    // budget, and to memory the output is charged as PCM16 plus FLAC's frame headers.
    let flac = ProcessConfig {
        format: callrec_engine::OutputFormat::Flac,
        ..ProcessConfig::default()
    };
    let encoded = 2 * frames + frames / 256;
    assert_eq!(
        memory_estimate(&source, &flac, &JobOutput::File("x".into())),
        STREAMING_OVERHEAD_BYTES + held + spill + frames / 8 + spill / 4
    );
    assert_eq!(
        memory_estimate(&source, &flac, &JobOutput::Memory),
        STREAMING_OVERHEAD_BYTES + held + spill + frames / 8 + spill / 4 + encoded
    );
    // It is the FLAC it claims to be: every frame decodes.
    let decoded = callrec_engine::decode::decode(&source, &limits).unwrap();
    assert_eq!(decoded.frames() as u64, frames);
    assert!(decoded.planes[0].iter().all(|&s| s == 0.0));
}
