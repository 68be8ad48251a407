//! Saving replaces files atomically: a write that fails part-way leaves the old file intact
//! and no temporary behind.

use std::path::{Path, PathBuf};

use autodiff::Tensor;
use flows::plot::Image;
use flows::{data, io, FlowError, Params};

/// A fresh, empty directory for one test (tests run in parallel, and each checks that no
/// temporaries are left, so none may share a directory).
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("flows_atomic_write")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_successful_write_replaces_the_file_and_leaves_no_temporary() {
    let dir = fresh_dir("success");
    let path = dir.join("f.bin");
    std::fs::write(&path, b"old contents").unwrap();
    io::write_atomic(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    io::write_atomic_with(&path, |w| {
        w.write_all(b"newer").map_err(|e| FlowError::io(&path, e))
    })
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"newer");
    assert_eq!(entries(&dir), ["f.bin"]);
}

#[test]
fn a_writer_that_fails_part_way_leaves_the_old_file_and_no_temporary() {
    let dir = fresh_dir("writer_error");
    let path = dir.join("f.bin");
    std::fs::write(&path, b"old contents").unwrap();
    // More than a BufWriter buffer, so part of it really reaches the temporary file.
    let partial = vec![7u8; 100_000];
    let err = io::write_atomic_with(&path, |w| {
        w.write_all(&partial).map_err(|e| FlowError::io(&path, e))?;
        Err(FlowError::BadFile {
            path: path.clone(),
            reason: "the writer gave up".into(),
        })
    })
    .unwrap_err();
    assert!(
        matches!(&err, FlowError::BadFile { reason, .. } if reason == "the writer gave up"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    assert_eq!(entries(&dir), ["f.bin"]);
}

#[test]
fn a_writer_that_panics_leaves_the_old_file_and_no_temporary() {
    let dir = fresh_dir("writer_panic");
    let path = dir.join("f.bin");
    std::fs::write(&path, b"old contents").unwrap();
    let caught = std::panic::catch_unwind(|| {
        let _ = io::write_atomic_with(&path, |w| {
            w.write_all(&[1; 20_000]).unwrap();
            panic!("encoder bug");
        });
    });
    assert!(caught.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    assert_eq!(entries(&dir), ["f.bin"]);
}

#[test]
fn a_failed_png_encoding_leaves_the_old_picture() {
    let dir = fresh_dir("png_encoding");
    let path = dir.join("pic.png");
    Image::filled(4, 3, [1, 2, 3]).save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // PNG has no zero-width images: the encoder refuses after the file was opened.
    let err = Image::filled(0, 3, [0, 0, 0]).save(&path).unwrap_err();
    assert!(
        matches!(&err, FlowError::BadFile { path: p, .. } if p == &path),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(entries(&dir), ["pic.png"]);
}

#[test]
fn writing_into_a_missing_directory_is_an_io_error_naming_the_file() {
    let dir = fresh_dir("missing_dir");
    let path = dir.join("no_such_dir").join("w.safetensors");
    let err = Params::<f32>::new().save(&path).unwrap_err();
    assert!(
        matches!(&err, FlowError::Io { path: p, .. } if p == &path),
        "{err}"
    );
    assert!(err.to_string().contains("no_such_dir"), "{err}");
}

#[cfg(unix)]
#[test]
fn replacing_a_file_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("permissions");
    let path = dir.join("x.npy");
    data::save_npy(&path, &Tensor::<f64>::zeros(2, 2)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    data::save_npy(&path, &Tensor::<f64>::ones(3, 3)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(data::load_npy(&path).unwrap().shape(), (3, 3));
}

/// A real failure part-way through a write: a child process (this test binary, re-run on this
/// test alone) lowers its file-size limit below the size of the new files and saves them over
/// small good files, so `write` fails with `EFBIG` after part of the data is on disk.
#[cfg(target_os = "linux")]
mod file_size_limit {
    use super::*;

    /// Set in the child to the directory holding the files to overwrite.
    const CHILD_ENV: &str = "FLOWS_ATOMIC_WRITE_FSIZE_CHILD";
    /// The child's file-size limit in bytes: larger than the good files, far smaller than the
    /// new ones.
    const LIMIT: u64 = 4096;
    /// What the child prints when every save failed as expected.
    const CHILD_OK: &str = "child: all three saves failed with EFBIG";

    fn small_params() -> Params<f32> {
        let mut p = Params::new();
        p.add(
            "lin.weight",
            Tensor::from_f64s(2, 2, &[1.0, -2.0, 3.0, 0.5]),
        );
        p.add("lin.bias", Tensor::from_f64s(1, 2, &[0.25, -0.75]));
        p
    }

    /// An image whose PNG cannot compress far below its raw 3·w·h bytes.
    fn noisy_image(side: usize) -> Image {
        let mut img = Image::filled(side, side, [0, 0, 0]);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for b in &mut img.rgb {
            // xorshift64: cheap bytes with no structure for the encoder to exploit.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = (state >> 24) as u8;
        }
        img
    }

    fn expect_efbig(what: &str, target: &Path, r: Result<(), FlowError>) {
        match r {
            Err(FlowError::Io { path, source }) => {
                assert_eq!(path, target, "{what}: the error names the target");
                assert_eq!(
                    source.raw_os_error(),
                    Some(libc::EFBIG),
                    "{what}: expected EFBIG, got {source}"
                );
            }
            other => panic!("{what}: expected an Io error with EFBIG, got {other:?}"),
        }
    }

    /// Runs in the child: limit the file size, then try to save large files over the good ones.
    fn child(dir: &Path) {
        // SAFETY: plain libc calls with valid arguments. The signal is ignored first so an
        // oversized write returns EFBIG instead of killing the process with SIGXFSZ.
        unsafe {
            assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
            lim.rlim_cur = LIMIT as libc::rlim_t;
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
        let mut big = Params::<f32>::new();
        big.add("lin.weight", Tensor::ones(200, 100));
        big.add("lin.bias", Tensor::zeros(1, 200));
        let target = dir.join("w.safetensors");
        expect_efbig("Params::save", &target, big.save(&target));
        let target = dir.join("x.npy");
        expect_efbig(
            "save_npy",
            &target,
            data::save_npy(&target, &Tensor::<f64>::ones(100, 100)),
        );
        let target = dir.join("pic.png");
        expect_efbig("Image::save", &target, noisy_image(100).save(&target));
        println!("{CHILD_OK}");
    }

    #[test]
    fn a_save_cut_short_by_the_file_size_limit_keeps_the_old_files() {
        if let Some(dir) = std::env::var_os(CHILD_ENV) {
            child(Path::new(&dir));
            return;
        }
        let dir = fresh_dir("fsize_limit");
        let small = small_params();
        small.save(dir.join("w.safetensors")).unwrap();
        data::save_npy(
            dir.join("x.npy"),
            &Tensor::<f64>::from_f64s(1, 3, &[1.0, 2.0, 3.0]),
        )
        .unwrap();
        noisy_image(8).save(dir.join("pic.png")).unwrap();
        let names = ["pic.png", "w.safetensors", "x.npy"];
        let before: Vec<Vec<u8>> = names
            .iter()
            .map(|n| std::fs::read(dir.join(n)).unwrap())
            .collect();
        assert!(before.iter().all(|b| (b.len() as u64) < LIMIT));

        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "file_size_limit::a_save_cut_short_by_the_file_size_limit_keeps_the_old_files",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(CHILD_OK),
            "child failed ({}):\n{stdout}\n{stderr}",
            out.status
        );

        // The old files are byte for byte what they were, still load, and nothing else is left.
        for (n, b) in names.iter().zip(&before) {
            assert_eq!(&std::fs::read(dir.join(n)).unwrap(), b, "{n} changed");
        }
        assert_eq!(
            Params::<f32>::load(dir.join("w.safetensors")).unwrap(),
            small
        );
        assert_eq!(
            data::load_npy(dir.join("x.npy")).unwrap().as_slice(),
            &[1.0, 2.0, 3.0]
        );
        assert_eq!(entries(&dir), names);
    }
}
