//! Memory of the adjoint does not grow with the number of steps (Backsolve, Checkpointed);
//! discretise-then-optimise (Direct) does. Measured with a counting allocator and the tape's
//! own byte count, never with a timer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, odeint, Adjoint, Dynamics, Method, Options};
use rand::SeedableRng;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (tape bytes after forward + backward, peak bytes allocated above the start) for `steps`
/// fixed RK4 steps with the given adjoint.
fn footprint(adjoint: Adjoint, steps: usize) -> (usize, usize) {
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, _t, z, p| {
        Ok(vec![(z[0].matmul(p[0]) + p[1]).tanh().matmul(p[2])])
    }));
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
    let xs = [
        Tensor::randn(64, 2, &mut rng),
        Tensor::randn(2, 16, &mut rng),
        Tensor::randn(1, 16, &mut rng),
        Tensor::randn(16, 2, &mut rng),
    ];
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let opts = Options::fixed(Method::Rk4, steps).adjoint(adjoint);
    let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 1.0], &opts).unwrap();
    let loss = sol.last()[0].square().sum();
    let g = tape.grad(loss, &v).unwrap();
    assert!(g.iter().all(|g| g.all_finite()));
    let tape_bytes = tape.bytes();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    (tape_bytes, peak)
}

#[test]
fn adjoint_memory_is_flat_in_the_number_of_steps_and_direct_is_not() {
    // The first solve pays one-time allocations (thread-local GEMM buffers and the like).
    let _ = footprint(Adjoint::Backsolve, 10);

    let (tape_b10, peak_b10) = footprint(Adjoint::Backsolve, 10);
    let (tape_b1000, peak_b1000) = footprint(Adjoint::Backsolve, 1000);
    assert_eq!(tape_b10, tape_b1000, "Backsolve tape bytes");
    assert!(
        peak_b1000 < peak_b10 + peak_b10 / 5,
        "Backsolve peak {peak_b10} -> {peak_b1000}"
    );

    // Checkpointed keeps `checkpoints` states per recursion level (logarithmically many levels)
    // and one trajectory of at most a few steps: bounded, whatever the number of steps.
    let ckpt = Adjoint::Checkpointed { checkpoints: 4 };
    let (tape_c10, peak_c10) = footprint(ckpt, 10);
    let (tape_c1000, peak_c1000) = footprint(ckpt, 1000);
    let (tape_c3000, peak_c3000) = footprint(ckpt, 3000);
    assert_eq!(tape_c10, tape_c1000, "Checkpointed tape bytes");
    assert_eq!(tape_c10, tape_c3000, "Checkpointed tape bytes");
    assert!(
        peak_c1000 < 2 * peak_c10,
        "Checkpointed peak {peak_c10} -> {peak_c1000}"
    );
    assert!(
        peak_c3000 < peak_c1000 + peak_c1000 / 5,
        "Checkpointed peak {peak_c1000} -> {peak_c3000}"
    );

    let (tape_d10, peak_d10) = footprint(Adjoint::Direct, 10);
    let (tape_d1000, peak_d1000) = footprint(Adjoint::Direct, 1000);
    assert!(
        tape_d1000 > 50 * tape_d10,
        "Direct tape bytes {tape_d10} -> {tape_d1000}"
    );
    assert!(
        peak_d1000 > 50 * peak_d10,
        "Direct peak {peak_d10} -> {peak_d1000}"
    );
}
