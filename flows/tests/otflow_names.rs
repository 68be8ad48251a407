//! OT-Flow's parameters carry the `state_dict` names and PyTorch shapes of Onken et al.'s
//! `Phi` module, so such a checkpoint loads by name into a potential built without a random
//! generator, and Φ then means what it means there.

use std::path::PathBuf;

use flows::nn::Zeros;
use flows::otflow::{OtPotential, Potential};
use flows::prelude::*;

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_otflow_names");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The names and file shapes of `Phi(nTh = layers, m, d)`'s `state_dict`, in its order.
fn torch_layout(d: usize, m: usize, layers: usize) -> Vec<(String, Vec<usize>)> {
    let r = (d + 1).min(10);
    let mut v = vec![
        ("A".to_string(), vec![r, d + 1]),
        ("c.weight".to_string(), vec![1, d + 1]),
        ("c.bias".to_string(), vec![1]),
        ("w.weight".to_string(), vec![1, m]),
    ];
    for i in 0..layers {
        let fan_in = if i == 0 { d + 1 } else { m };
        v.push((format!("N.layers.{i}.weight"), vec![m, fan_in]));
        v.push((format!("N.layers.{i}.bias"), vec![m]));
    }
    v
}

/// σ(x) = log(eˣ + e⁻ˣ), OT-Flow's `antiderivTanh`.
fn sigma(x: f64) -> f64 {
    x.abs() + (1.0 + (-2.0 * x.abs()).exp()).ln()
}

/// `y = x Wᵀ + b` for one row, `w` an `out × in` tensor.
fn linear(w: &Tensor<f64>, b: &Tensor<f64>, x: &[f64]) -> Vec<f64> {
    (0..w.rows())
        .map(|o| (0..w.cols()).map(|i| w.get(o, i) * x[i]).sum::<f64>() + b.get(0, o))
        .collect()
}

/// Φ(s) for one `s = [x, t]` computed from a state_dict as the OT-Flow code does.
fn phi_reference(file: &Params<f64>, s: &[f64], layers: usize) -> f64 {
    let get = |n: &str| file.get(n).unwrap();
    let h = if layers > 1 {
        1.0 / (layers - 1) as f64
    } else {
        1.0
    };
    let mut u: Vec<f64> = linear(get("N.layers.0.weight"), get("N.layers.0.bias"), s)
        .into_iter()
        .map(sigma)
        .collect();
    for i in 1..layers {
        let z = linear(
            get(&format!("N.layers.{i}.weight")),
            get(&format!("N.layers.{i}.bias")),
            &u,
        );
        for (ui, zi) in u.iter_mut().zip(z) {
            *ui += h * sigma(zi);
        }
    }
    let w = get("w.weight");
    let wn: f64 = (0..u.len()).map(|k| w.get(0, k) * u[k]).sum();
    let a = get("A");
    let quad: f64 = (0..a.rows())
        .map(|r| {
            (0..s.len())
                .map(|k| a.get(r, k) * s[k])
                .sum::<f64>()
                .powi(2)
        })
        .sum::<f64>()
        * 0.5;
    let c = get("c.weight");
    let lin: f64 = (0..s.len()).map(|k| c.get(0, k) * s[k]).sum::<f64>() + get("c.bias").item();
    wn + quad + lin
}

#[test]
fn the_potential_uses_the_otflow_state_dict_names_and_pytorch_shapes() {
    for (d, m, layers) in [(2, 5, 2), (3, 4, 3), (12, 6, 1)] {
        let mut params = Params::<f64>::new();
        let mut rng = Pcg64::seed_from_u64(1);
        OtPotential::new(&mut params, "", d, m, layers, &mut rng);
        let want = torch_layout(d, m, layers);
        let got: Vec<(String, Vec<usize>)> = (0..params.len())
            .map(|i| (params.name(i).to_string(), params.file_shape(i).to_vec()))
            .collect();
        assert_eq!(got, want, "d = {d}, m = {m}, M = {layers}");
        // A prefix only goes in front.
        let mut prefixed = Params::<f64>::new();
        OtPotential::new(&mut prefixed, "phi", d, m, layers, &mut Zeros);
        assert!(prefixed
            .names()
            .zip(params.names())
            .all(|(p, n)| p == format!("phi.{n}")));
    }
}

#[test]
fn an_otflow_checkpoint_loads_by_name_into_a_potential_built_without_an_rng() {
    let (d, m, layers) = (3, 6, 3);
    // A checkpoint as the OT-Flow code would write it: its names, its shapes, other values.
    let mut rng = Pcg64::seed_from_u64(5);
    let mut file = Params::<f64>::new();
    for (name, shape) in torch_layout(d, m, layers) {
        let (r, c) = match shape[..] {
            [n] => (1, n),
            [r, c] => (r, c),
            _ => unreachable!(),
        };
        let mut t = Tensor::randn(r, c, &mut rng);
        t.scale(0.5);
        file.add_with_file_shape(name, t, shape);
    }
    let path = tmp("phi.safetensors");
    file.save(&path).unwrap();

    let mut params = Params::<f64>::new();
    let net = OtPotential::new(&mut params, "", d, m, layers, &mut Zeros);
    // Zeros everywhere but w (ones, as in the OT-Flow code): nothing was drawn.
    for (name, t) in params.iter() {
        let fill = if name == "w.weight" { 1.0 } else { 0.0 };
        assert!(t.as_slice().iter().all(|&v| v == fill), "{name}");
    }
    params.load_into(&path).unwrap();
    for (name, t) in file.iter() {
        assert_eq!(params.get(name), Some(t), "{name}");
    }

    // Φ of the loaded potential is the OT-Flow code's Φ of the checkpoint.
    let n = 4;
    let x = Tensor::<f64>::randn(n, d, &mut rng);
    let ts = Tensor::<f64>::from_fn(n, 1, |i, _| 0.2 * i as f64);
    let tape = Tape::<f64>::new();
    let p = params.vars(&tape);
    let phi = net
        .phi(tape.constant(ts.clone()), tape.constant(x.clone()), &p)
        .unwrap()
        .value();
    for i in 0..n {
        let mut s: Vec<f64> = x.row(i).to_vec();
        s.push(ts.get(i, 0));
        let want = phi_reference(&file, &s, layers);
        assert!(
            (phi.get(i, 0) - want).abs() < 1e-12 * want.abs().max(1.0),
            "row {i}: {} vs {want}",
            phi.get(i, 0)
        );
    }

    // A checkpoint of another width is refused by name and shape.
    let mut wrong = Params::<f64>::new();
    OtPotential::new(&mut wrong, "", d, m + 1, layers, &mut Zeros);
    let err = wrong.load_into(&path).unwrap_err();
    assert!(
        matches!(&err, FlowError::ShapeMismatch { name, .. } if name.starts_with("w.") || name.starts_with("N.")),
        "{err}"
    );
}
