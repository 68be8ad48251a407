//! The examples' flag checks: the shared parsers (`examples/common/cli.rs`) and, when the
//! example binaries have been built (as `cargo test` does), that `ffjord_toy` rejects bad
//! flags before it trains, naming the flag.

#[allow(dead_code)]
#[path = "../examples/common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("example_cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `parse(s)` fails with a message that quotes `s`.
fn rejects<T: std::fmt::Debug>(parse: impl Fn(&str) -> Result<T, String>, s: &str) -> String {
    match parse(s) {
        Ok(v) => panic!("'{s}' was accepted as {v:?}"),
        Err(msg) => {
            assert!(
                msg.contains(&format!("'{s}'")),
                "message does not quote the value: {msg}"
            );
            msg
        }
    }
}

#[test]
fn positive_integers() {
    assert_eq!(cli::positive_usize("1"), Ok(1));
    assert_eq!(cli::positive_usize("512"), Ok(512));
    for s in ["0", "-1", "", "abc", "1.5", "1e3"] {
        let msg = rejects(cli::positive_usize, s);
        assert!(msg.contains("positive integer"), "{msg}");
    }
    assert_eq!(cli::usize_in("2", 2, 999), Ok(2));
    assert_eq!(cli::usize_in("999", 2, 999), Ok(999));
    for s in ["1", "1000", "x"] {
        let msg = rejects(|s| cli::usize_in(s, 2, 999), s);
        assert!(msg.contains("from 2 to 999"), "{msg}");
    }
}

#[test]
fn hidden_widths() {
    let w = cli::hidden_widths("64-64-64").unwrap();
    assert_eq!(w.0, vec![64, 64, 64]);
    assert_eq!(w.to_string(), "64-64-64");
    assert_eq!(cli::hidden_widths("32").unwrap().0, vec![32]);
    for s in [
        "garbage", "0", "64-0-64", "64--64", "", "-64", "64-", "64,64",
    ] {
        let msg = rejects(cli::hidden_widths, s);
        assert!(msg.contains("like 64-64-64"), "{msg}");
    }
    assert_eq!(
        cli::hidden_widths("garbage").unwrap_err(),
        "expected hidden widths like 64-64-64 (positive integers joined by '-'), got 'garbage'"
    );
}

#[test]
fn real_numbers() {
    assert_eq!(cli::positive_f64("0.5"), Ok(0.5));
    assert_eq!(cli::positive_f64("1e-5"), Ok(1e-5));
    for s in ["0", "-0.5", "nan", "inf", "x", ""] {
        rejects(cli::positive_f64, s);
    }
    assert_eq!(cli::non_negative_f64("0"), Ok(0.0));
    for s in ["-1e-9", "NaN", "-inf"] {
        rejects(cli::non_negative_f64, s);
    }
    assert_eq!(cli::fraction("0"), Ok(0.0));
    assert_eq!(cli::fraction("1"), Ok(1.0));
    assert_eq!(cli::fraction("0.7"), Ok(0.7));
    for s in ["1.5", "-0.1", "nan"] {
        rejects(cli::fraction, s);
    }
}

#[test]
fn three_weights() {
    assert_eq!(cli::three_weights("1,100,5"), Ok([1.0, 100.0, 5.0]));
    assert_eq!(cli::three_weights(" 1 , 0 ,2.5"), Ok([1.0, 0.0, 2.5]));
    for s in ["1,2", "1,2,3,4", "1,x,3", "1,-2,3", "", "1,,3"] {
        let msg = rejects(cli::three_weights, s);
        assert!(msg.contains("three numbers"), "{msg}");
    }
}

#[test]
fn toy_names() {
    for name in flows::data::TOY_NAMES {
        assert_eq!(cli::toy_name(name).as_deref(), Ok(name));
    }
    let msg = rejects(cli::toy_name, "8gausians");
    assert!(
        msg.contains("8gaussians") && msg.contains("checkerboard"),
        "{msg}"
    );
}

#[test]
fn output_dir_is_created_and_probed_without_leaving_files() {
    let dir = tmp("out_ok").join("nested").join("deeper");
    let _ = std::fs::remove_dir_all(tmp("out_ok"));
    cli::prepare_output_dir("--out", &dir).unwrap();
    assert!(dir.is_dir());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // An existing directory is fine too.
    cli::prepare_output_dir("--out", &dir).unwrap();
}

#[test]
fn unusable_output_dir_is_an_error_naming_flag_and_path() {
    // A directory cannot be created under a regular file (not even by root).
    let file = tmp("a_file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("sub");
    let err = cli::prepare_output_dir("--out", &dir).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("--out: "), "{msg}");
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
}

#[cfg(target_os = "linux")]
#[test]
fn output_dir_that_exists_but_takes_no_files_is_rejected() {
    // procfs exists as a directory, but no one (root included) can create a file in it: only
    // the probe file notices.
    let err = cli::prepare_output_dir("--out", Path::new("/proc")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("--out: cannot write files in /proc"),
        "{msg}"
    );
}

/// The built example binary `name`, next to this test's binary (`target/<profile>/deps/..`
/// → `target/<profile>/examples/name`), if cargo has built it.
fn example_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.is_file().then_some(path)
}

#[test]
fn ffjord_toy_rejects_bad_flags_before_training() {
    let Some(bin) = example_binary("ffjord_toy") else {
        // `cargo test --test example_cli` alone does not build examples; the whole test
        // suite does. The parsers themselves are tested above either way.
        eprintln!("ffjord_toy example not built; skipping its command-line checks");
        return;
    };
    let run = |args: &[&str]| {
        let out = Command::new(&bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Rejected by clap (status 2), naming the flag and the value.
    for (flag, value, needle) in [
        ("--log-every", "0", "positive integer"),
        ("--batch", "0", "positive integer"),
        ("--dims", "garbage", "like 64-64-64"),
        ("--dims", "0", "like 64-64-64"),
        ("--end-time", "-1", "greater than 0"),
        ("--data", "nope", "unknown dataset"),
    ] {
        let (code, stdout, stderr) = run(&[flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stdout.is_empty(), "{flag} {value} started: {stdout}");
        assert!(
            stderr.contains(&format!("'{value}' for '{flag}")) && stderr.contains(needle),
            "{flag} {value}: {stderr}"
        );
    }
    // An output folder that cannot be created: the example stops before its banner line
    // (printed before training), with a Display message naming the flag and the path.
    let file = tmp("not_a_dir");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("out");
    let (code, stdout, stderr) = run(&["--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "training started: {stdout}");
    assert!(stderr.starts_with("error: --out: "), "{stderr}");
    assert!(stderr.contains(out.to_str().unwrap()), "{stderr}");
    assert!(!stderr.contains("Os {"), "Debug formatting: {stderr}");
}

#[test]
fn ffjord_toy_checks_its_train_toy_flags_before_training() {
    let Some(bin) = example_binary("ffjord_toy") else {
        eprintln!("ffjord_toy example not built; skipping its command-line checks");
        return;
    };
    let run = |args: &[&str]| {
        let out = Command::new(&bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Rejected by clap (status 2), naming the flag and the value.
    for (flag, value, needle) in [
        ("--num-blocks", "0", "from 1 to 16"),
        ("--weight-decay", "-1", "at least 0"),
        ("--l1int", "-0.5", "at least 0"),
        ("--l2int", "nan", "at least 0"),
        ("--dl2int", "x", "at least 0"),
        ("--jfrobint", "-0.001", "at least 0"),
        ("--test-tol", "0", "greater than 0"),
        ("--tol", "-1", "greater than 0"),
        ("--ema", "1.5", "from 0 to 1"),
        ("--nonlinearity", "sine", "possible values"),
        ("--layer-type", "hyper", "possible values"),
        ("--test-solver", "euler", "possible values"),
        ("--train-t", "maybe", "possible values"),
        ("--iters", "0", "positive integer"),
    ] {
        let (code, stdout, stderr) = run(&[flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stdout.is_empty(), "{flag} {value} started: {stdout}");
        assert!(
            stderr.contains(&format!("'{value}' for '{flag}")) && stderr.contains(needle),
            "{flag} {value}: {stderr}"
        );
    }
    // Combinations clap cannot check: refused with status 1 before the banner line.
    let out = tmp("ffjord_flags");
    let out = out.to_str().unwrap();
    for (args, flag) in [
        (vec!["--patience", "3"], "--patience"),
        (vec!["--ema", "1"], "--ema"),
    ] {
        let mut all = args.clone();
        all.extend(["--out", out]);
        let (code, stdout, stderr) = run(&all);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: training started: {stdout}");
        assert!(stderr.starts_with(&format!("error: {flag}: ")), "{stderr}");
    }
}
