//! Run-time choice of the kernel path from the CPU's features.
//!
//! The crate is built for the target's baseline (x86-64: SSE2, no FMA), so that one build runs
//! anywhere and a downstream crate needs no `-C target-cpu` flag. The hot loops are written
//! once as `#[inline(always)]` generic code ([`Kernel`]) and [`run`] instantiates them inside
//! thin wrappers compiled with `#[target_feature]` for AVX2+FMA and for AVX-512, so LLVM
//! vectorizes each copy for its register width. Which wrapper runs is decided once per process
//! from `is_x86_feature_detected!`, optionally lowered by the `FLOWTAPE_KERNELS` environment
//! variable (for testing and comparisons).
//!
//! Soundness rests on one invariant: a wrapper compiled for features `F` is only called after
//! detection reported every feature of `F` ([`Path::clamp`] never returns a path above
//! [`best`]).

use std::sync::OnceLock;

/// A set of instruction-set extensions the kernels are compiled for, from the most portable
/// to the widest. Each path's requirements include those of the paths before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// The target's baseline (x86-64: SSE2, which LLVM still auto-vectorizes at 128 bits;
    /// aarch64: NEON with FMA). The correct fallback for every CPU.
    Baseline,
    /// x86-64 AVX2 with FMA (Haswell, Zen 1 and later): 256-bit vectors, fused multiply-add.
    Avx2,
    /// x86-64 AVX-512 F/DQ/BW/VL (Skylake-SP, Ice Lake, Zen 4 and later) on top of AVX2+FMA:
    /// 512-bit vectors and masked loads/stores.
    Avx512,
}

impl Path {
    /// Every path, from the most portable to the widest.
    pub const ALL: [Path; 3] = [Path::Baseline, Path::Avx2, Path::Avx512];

    /// The name used by `FLOWTAPE_KERNELS` and reported by
    /// [`active_path`](crate::kernels::active_path): `"baseline"`, `"avx2"` or `"avx512"`.
    pub fn name(self) -> &'static str {
        match self {
            Path::Baseline => "baseline",
            Path::Avx2 => "avx2",
            Path::Avx512 => "avx512",
        }
    }

    /// Parses a path name (as [`name`](Path::name); `"scalar"` is accepted for `"baseline"`),
    /// ignoring ASCII case and surrounding blanks.
    pub fn parse(s: &str) -> Option<Path> {
        match s.trim().to_ascii_lowercase().as_str() {
            "baseline" | "scalar" => Some(Path::Baseline),
            "avx2" => Some(Path::Avx2),
            "avx512" => Some(Path::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU (and OS) supports every feature the path is compiled for.
    pub fn is_supported(self) -> bool {
        self <= best()
    }

    /// The widest supported path not above `self`: what a request for `self` actually runs.
    pub fn clamp(self) -> Path {
        self.min(best())
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`, so width and alignment flags apply.
        f.pad(self.name())
    }
}

/// The widest path the CPU supports (detected once).
pub(crate) fn best() -> Path {
    static BEST: OnceLock<Path> = OnceLock::new();
    *BEST.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Path {
    use std::arch::is_x86_feature_detected as has;
    // std's detection also checks that the OS saves the wider register state (XCR0), so a
    // CPU with AVX-512 under an OS that disabled it is reported as lacking it.
    let avx2 = has!("avx2") && has!("fma");
    if avx2 && has!("avx512f") && has!("avx512dq") && has!("avx512bw") && has!("avx512vl") {
        Path::Avx512
    } else if avx2 {
        Path::Avx2
    } else {
        Path::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Path {
    Path::Baseline
}

/// The name of the environment variable that lowers the path for testing.
pub(crate) const ENV: &str = "FLOWTAPE_KERNELS";

/// The path every kernel uses: the best supported one, or the one `FLOWTAPE_KERNELS` asks for
/// (clamped to what the CPU supports). Read once per process.
pub(crate) fn active() -> Path {
    static ACTIVE: OnceLock<Path> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let Ok(req) = std::env::var(ENV) else {
            return best();
        };
        if req.trim().is_empty() || req.trim().eq_ignore_ascii_case("auto") {
            return best();
        }
        // A library should rarely print, but an override that silently did something else
        // would make a comparison between paths meaningless.
        match Path::parse(&req) {
            Some(p) => {
                if !p.is_supported() {
                    eprintln!(
                        "flowtape: {ENV}={req}: this CPU lacks {}; using {}",
                        p.name(),
                        p.clamp().name()
                    );
                }
                p.clamp()
            }
            None => {
                eprintln!(
                    "flowtape: {ENV}={req} is not one of baseline, scalar, avx2, avx512, auto; \
                     using {}",
                    best().name()
                );
                best()
            }
        }
    })
}

/// The CPU's marketing name (x86: the CPUID brand string with family and model, as `lscpu`
/// numbers them; elsewhere `/proc/cpuinfo`'s model line), or `"unknown"`.
pub(crate) fn cpu_name() -> String {
    #[cfg(target_arch = "x86_64")]
    if let Some(name) = x86_name() {
        return name;
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| {
                    let key = l.split(':').next().unwrap_or("").trim();
                    key == "model name" || key == "Model" || key == "Hardware"
                })
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(target_arch = "x86_64")]
fn x86_name() -> Option<String> {
    use std::arch::x86_64::{__cpuid, CpuidResult};
    // `__cpuid` is an `unsafe fn` on older toolchains and safe on newer ones.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is part of x86-64; leaves above the reported maximum are not queried.
    let id = |leaf: u32| -> CpuidResult { unsafe { __cpuid(leaf) } };
    if id(0x8000_0000).eax < 0x8000_0004 {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002..=0x8000_0004 {
        let r = id(leaf);
        for reg in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&reg.to_le_bytes());
        }
    }
    let brand = String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    if brand.is_empty() {
        return None;
    }
    // Virtual machines often shorten the brand ("AMD EPYC"), so add the family and model,
    // which tell the microarchitecture apart (AMD family 25 = Zen 3/4, 26 = Zen 5).
    let sig = id(1).eax;
    let base_family = (sig >> 8) & 0xf;
    let family = if base_family == 0xf {
        base_family + ((sig >> 20) & 0xff)
    } else {
        base_family
    };
    let model = if base_family == 0xf || base_family == 6 {
        ((sig >> 4) & 0xf) | (((sig >> 16) & 0xf) << 4)
    } else {
        (sig >> 4) & 0xf
    };
    Some(format!("{brand} (family {family}, model {model})"))
}

/// Whether the baseline path may use `mul_add`: only where it is a single instruction (an
/// FMA-enabled build, or aarch64 where FMA is part of the base ISA). Elsewhere `mul_add` is a
/// libm call, which is slow and blocks vectorization.
const BASELINE_FMA: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));

/// A loop compiled once per [`Path`].
///
/// `run` must be `#[inline(always)]` (and everything it calls, down to the per-element code),
/// so that its body is compiled inside the `#[target_feature]` wrapper [`run`] calls it from,
/// with that wrapper's vector width. `FMA` says whether `mul_add` is a hardware instruction on
/// the path.
pub(crate) trait Kernel {
    /// What the loop returns.
    type Output;
    /// The loop.
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// A closure as a [`Kernel`]. Pass an `#[inline(always)]` closure: [`run`] calls it from three
/// wrappers, and a large closure with three call sites might otherwise not be inlined into
/// them (it would then run as compiled for the baseline: correct, but not vectorized wider).
/// The bound is `FnMut`, not `FnOnce`, on purpose: calling a capturing closure through
/// `FnOnce` goes through a shim that is not `#[inline(always)]`, and was measured to stay a
/// separate baseline function even when the closure itself is marked.
pub(crate) struct Call<F>(pub(crate) F);

impl<R, F: FnMut() -> R> Kernel for Call<F> {
    type Output = R;
    #[inline(always)]
    fn run<const FMA: bool>(mut self) -> R {
        (self.0)()
    }
}

/// Runs `k` on `path`, or on the widest supported path below it.
#[inline]
pub(crate) fn run<K: Kernel>(path: Path, k: K) -> K::Output {
    match path.clamp() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` returned Avx512, so detection found every feature `avx512` enables.
        Path::Avx512 => unsafe { x86::avx512(k) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` returned at least Avx2, so AVX2 and FMA were detected.
        Path::Avx2 => unsafe { x86::avx2(k) },
        _ => k.run::<BASELINE_FMA>(),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Kernel;

    /// `k` compiled for AVX2 + FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<K: Kernel>(k: K) -> K::Output {
        k.run::<true>()
    }

    /// `k` compiled for AVX-512 (the x86-64-v4 set) on top of AVX2 + FMA.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, DQ, BW and VL, AVX2 and FMA.
    #[target_feature(enable = "avx2,fma,avx512f,avx512dq,avx512bw,avx512vl")]
    pub(super) unsafe fn avx512<K: Kernel>(k: K) -> K::Output {
        k.run::<true>()
    }
}
