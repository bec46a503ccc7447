//! Checkpoint files: atomic and concurrency-safe saves, checksummed loads. The file handling
//! does not depend on the executor, so these tests use the f32 reference executor (no GPU
//! work); tests/graph_train.rs round-trips a GPU plan.

mod common;
use common::{checkpoint_model as model, saved_contents as contents};
use eigengrad::graph::checkpoint;
use eigengrad::graph::Plan;
use eigengrad::Error;
use std::path::{Path, PathBuf};

/// A fresh, empty directory of its own for each test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "eigengrad-checkpoint-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Loading `path` into a model of the same architecture fails with `BadFile` naming the file,
/// and leaves the model as it was.
fn assert_refused(path: &Path, what: &str) {
    let (mut plan, saved) = model(99, 0);
    let before = contents(&plan, &saved);
    let err = checkpoint::load(&mut plan, path).unwrap_err();
    match &err {
        Error::BadFile { path: p, .. } => assert_eq!(p, &path.display().to_string(), "{what}"),
        other => panic!("{what}: expected BadFile, got {other}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(contents(&plan, &saved), before, "{what}: half-loaded");
}

/// Two threads save two models with the same tensor names to `a.x` and `a.y` (which a
/// temporary named from the target's stem would share) and read them back, many times: each
/// file always holds its own model, whole, and no temporary file is left behind.
#[test]
fn concurrent_saves_to_different_paths_never_mix() {
    let dir = temp_dir("concurrent");
    let rounds = 40;
    std::thread::scope(|s| {
        for (k, ext) in ["x", "y"].into_iter().enumerate() {
            let path = dir.join(format!("a.{ext}"));
            s.spawn(move || {
                let (plan, saved) = model(k as u64 + 1, 10 + k as u64);
                let expected = contents(&plan, &saved);
                let (mut check, _) = model(50 + k as u64, 0);
                for round in 0..rounds {
                    checkpoint::save(&plan, &path).unwrap();
                    checkpoint::load(&mut check, &path).unwrap();
                    assert_eq!(
                        contents(&check, &saved),
                        expected,
                        "{} holds another model's data in round {round}",
                        path.display()
                    );
                }
            });
        }
    });
    assert_eq!(listing(&dir), ["a.x", "a.y"]);
}

/// One flipped bit in the tensor data, or one step-count digit changed into another digit
/// (still a valid header and a valid number), is refused by the checksum.
#[test]
fn a_flipped_data_byte_or_step_digit_is_refused() {
    let dir = temp_dir("flips");
    let (plan, _) = model(1, 1234);
    let path = dir.join("model.safetensors");
    checkpoint::save(&plan, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    // safetensors: an 8-byte little-endian header length, the JSON header, then the data.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data_start = 8 + header_len;
    assert!(bytes.len() > data_start);
    for (k, at) in [data_start, (data_start + bytes.len()) / 2, bytes.len() - 1]
        .into_iter()
        .enumerate()
    {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        let bad = dir.join(format!("data-flip-{k}.safetensors"));
        std::fs::write(&bad, &flipped).unwrap();
        assert_refused(&bad, &format!("data byte {at} flipped"));
    }

    let header = std::str::from_utf8(&bytes[8..data_start]).unwrap();
    let digits = header
        .find("\"1234\"")
        .expect("the step count in the header")
        + 8
        + 1;
    for (k, (at, digit)) in [(digits, b'5'), (digits + 3, b'0')].into_iter().enumerate() {
        let mut changed = bytes.clone();
        changed[at] = digit;
        let bad = dir.join(format!("step-digit-{k}.safetensors"));
        std::fs::write(&bad, &changed).unwrap();
        assert_refused(&bad, &format!("step digit at byte {at} changed"));
    }

    // The untouched file still loads, step count included.
    let (mut restored, _) = model(2, 0);
    checkpoint::load(&mut restored, &path).unwrap();
    assert_eq!(restored.steps(), 1234);
}

/// A save whose final rename fails (the target is a directory) is an error, leaves the
/// directory as it was and removes its temporary file.
#[test]
fn a_failed_rename_leaves_no_temporary_file() {
    let dir = temp_dir("rename");
    let target = dir.join("model.safetensors");
    std::fs::create_dir(&target).unwrap();
    let (plan, _) = model(1, 3);
    let err = checkpoint::save(&plan, &target).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(target.is_dir());
    assert_eq!(listing(&dir), ["model.safetensors"]);
    assert!(listing(&target).is_empty());
}

/// A target whose name ends in `.tmp` is written through a temporary file like any other
/// (it used to be written in place), and overwriting an existing checkpoint replaces it.
#[test]
fn a_tmp_target_and_an_overwrite_work() {
    let dir = temp_dir("tmp-target");
    let path = dir.join("model.tmp");
    let (first, saved) = model(1, 5);
    checkpoint::save(&first, &path).unwrap();
    let (second, _) = model(2, 6);
    checkpoint::save(&second, &path).unwrap();
    assert_eq!(listing(&dir), ["model.tmp"]);
    let (mut restored, _) = model(3, 0);
    checkpoint::load(&mut restored, &path).unwrap();
    assert_eq!(contents(&restored, &saved), contents(&second, &saved));
}
