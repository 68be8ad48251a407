//! Saving and loading parameter stores as safetensors.

use std::collections::HashMap;
use std::path::PathBuf;

use autodiff::Tensor;
use flows::nn::{Act, Linear, OdeNet};
use flows::{FlowError, Params};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_params");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn net_params(seed: u64) -> Params<f64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut p = Params::new();
    OdeNet::concat_squash(&mut p, "odefunc", 2, &[8, 8], Act::Tanh, &mut rng);
    p
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn round_trip_preserves_names_order_values_and_file_shapes() {
    let p = net_params(1);
    let path = tmp("round_trip.safetensors");
    p.save(&path).unwrap();
    let q = Params::<f64>::load(&path).unwrap();
    assert_eq!(p, q);
    assert_eq!(p.names().collect::<Vec<_>>(), q.names().collect::<Vec<_>>());

    // load_into overwrites a differently initialised store of the same layout.
    let mut r = net_params(2);
    assert_ne!(p, r);
    r.load_into(&path).unwrap();
    assert_eq!(p, r);
}

#[test]
fn biases_are_written_one_dimensional_weights_two_dimensional() {
    let p = net_params(3);
    let bytes = p.to_safetensors().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let w = st.tensor("odefunc.layers.0._layer.weight").unwrap();
    assert_eq!(w.shape(), &[8, 2]); // [out, in]
    assert_eq!(w.dtype(), Dtype::F64);
    assert_eq!(
        st.tensor("odefunc.layers.0._layer.bias").unwrap().shape(),
        &[8]
    );
    assert_eq!(
        st.tensor("odefunc.layers.0._hyper_gate.weight")
            .unwrap()
            .shape(),
        &[8, 1]
    );
    assert_eq!(
        st.tensor("odefunc.layers.2._hyper_gate.bias")
            .unwrap()
            .shape(),
        &[2]
    );
    assert!(st.tensor("odefunc.layers.0._hyper_bias.bias").is_err());
}

#[test]
fn pytorch_style_f32_file_loads_into_f64_store() {
    // What `safetensors.torch.save_file(nn.Linear(2, 3).state_dict())` would write.
    let w: Vec<f32> = vec![0.1, -0.2, 0.3, -0.4, 0.5, -0.6];
    let b: Vec<f32> = vec![0.7, -0.8, 0.9];
    let (wb, bb) = (f32_bytes(&w), f32_bytes(&b));
    let views = vec![
        (
            "lin.weight",
            TensorView::new(Dtype::F32, vec![3, 2], &wb).unwrap(),
        ),
        (
            "lin.bias",
            TensorView::new(Dtype::F32, vec![3], &bb).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(views, None).unwrap();
    let path = tmp("torch_linear.safetensors");
    std::fs::write(&path, bytes).unwrap();

    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = Params::<f64>::new();
    let lin = Linear::new(&mut p, "lin", 2, 3, true, &mut rng);
    p.load_into(&path).unwrap();
    let wt = p.tensor(lin.weight_index());
    assert_eq!(wt.shape(), (3, 2));
    for (a, &e) in wt.as_slice().iter().zip(&w) {
        assert_eq!(*a, e as f64); // widening is exact
    }
    let bt = p.tensor(lin.bias_index().unwrap());
    assert_eq!(bt.shape(), (1, 3));
    assert_eq!(bt.get(0, 2), 0.9f32 as f64);

    // A file without recorded order loads with sorted names.
    let q = Params::<f32>::load(&path).unwrap();
    assert_eq!(
        q.names().collect::<Vec<_>>(),
        vec!["lin.bias", "lin.weight"]
    );
    assert_eq!(q.file_shape(0), &[3]);
}

#[test]
fn f64_store_saved_as_f32_round_trips_to_rounded_values() {
    let p = net_params(4);
    let path = tmp("as_f32.safetensors");
    p.cast::<f32>().save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.iter().all(|(_, v)| v.dtype() == Dtype::F32));
    let mut q = net_params(5);
    q.load_into(&path).unwrap();
    for ((_, a), (_, b)) in p.iter().zip(q.iter()) {
        let rounded = a.cast::<f32>().cast::<f64>();
        assert_eq!(&rounded, b);
    }
}

#[test]
fn two_dimensional_bias_is_accepted_too() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = Params::<f64>::new();
    Linear::new(&mut p, "l", 2, 2, true, &mut rng);
    let wb: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bb: Vec<u8> = [5.0f64, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let views = vec![
        (
            "l.weight",
            TensorView::new(Dtype::F64, vec![2, 2], &wb).unwrap(),
        ),
        (
            "l.bias",
            TensorView::new(Dtype::F64, vec![1, 2], &bb).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(views, None).unwrap();
    p.load_from_safetensors(&bytes, "mem", true).unwrap();
    assert_eq!(p.get("l.bias").unwrap().as_slice(), &[5.0, 6.0]);
}

#[test]
fn missing_parameter_is_named() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut small = Params::<f64>::new();
    Linear::new(&mut small, "a", 2, 2, true, &mut rng);
    let path = tmp("small.safetensors");
    small.save(&path).unwrap();

    let mut big = Params::<f64>::new();
    Linear::new(&mut big, "a", 2, 2, true, &mut rng);
    Linear::new(&mut big, "b", 2, 2, false, &mut rng);
    let before = big.clone();
    match big.load_into(&path) {
        Err(FlowError::MissingParam { name }) => assert_eq!(name, "b.weight"),
        other => panic!("expected MissingParam, got {other:?}"),
    }
    assert_eq!(big, before, "a failed load must leave the store unchanged");
}

#[test]
fn unexpected_parameter_is_rejected_when_strict_and_reported_when_lenient() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut big = Params::<f64>::new();
    Linear::new(&mut big, "a", 2, 2, true, &mut rng);
    big.add("sqrt_end_time", Tensor::scalar(0.5));
    let path = tmp("big.safetensors");
    big.save(&path).unwrap();

    let mut small = Params::<f64>::new();
    Linear::new(&mut small, "a", 2, 2, true, &mut rng);
    match small.load_into(&path) {
        Err(FlowError::UnexpectedParam { name }) => assert_eq!(name, "sqrt_end_time"),
        other => panic!("expected UnexpectedParam, got {other:?}"),
    }
    let unused = small.load_into_lenient(&path).unwrap();
    assert_eq!(unused, vec!["sqrt_end_time".to_string()]);
    assert_eq!(small.get("a.weight"), big.get("a.weight"));
}

#[test]
fn wrong_shape_names_param_and_both_shapes() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut a = Params::<f64>::new();
    Linear::new(&mut a, "l", 3, 2, true, &mut rng);
    let path = tmp("shape.safetensors");
    a.save(&path).unwrap();

    let mut b = Params::<f64>::new();
    Linear::new(&mut b, "l", 2, 3, true, &mut rng);
    let err = b.load_into(&path).unwrap_err();
    match &err {
        FlowError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "l.weight");
            assert_eq!(expected, &vec![3, 2]);
            assert_eq!(found, &vec![2, 3]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("l.weight") && msg.contains("[3, 2]") && msg.contains("[2, 3]"));
}

#[test]
fn corrupt_and_missing_files_are_typed_errors() {
    let p = net_params(6);
    let bytes = p.to_safetensors().unwrap();

    let truncated = tmp("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Params::<f64>::load(&truncated),
        Err(FlowError::BadFile { .. })
    ));
    let mut q = net_params(7);
    assert!(matches!(
        q.load_into(&truncated),
        Err(FlowError::BadFile { .. })
    ));

    let garbage = tmp("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let err = Params::<f64>::load(&garbage).unwrap_err();
    assert!(matches!(&err, FlowError::BadFile { path, .. } if path == &garbage));

    let missing = tmp("does_not_exist.safetensors");
    assert!(matches!(
        Params::<f64>::load(&missing),
        Err(FlowError::Io { .. })
    ));
}

#[test]
fn unsupported_dtype_and_rank_are_bad_files() {
    let ib: Vec<u8> = [1i64, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = safetensors::serialize(
        vec![("steps", TensorView::new(Dtype::I64, vec![2], &ib).unwrap())],
        None::<HashMap<String, String>>,
    )
    .unwrap();
    let err = Params::<f64>::from_safetensors(&bytes, "mem").unwrap_err();
    assert!(err.to_string().contains("I64"), "{err}");

    let fb = f32_bytes(&[0.0; 8]);
    let bytes = safetensors::serialize(
        vec![(
            "conv",
            TensorView::new(Dtype::F32, vec![2, 2, 2], &fb).unwrap(),
        )],
        None,
    )
    .unwrap();
    let err = Params::<f64>::from_safetensors(&bytes, "mem").unwrap_err();
    assert!(matches!(err, FlowError::BadFile { .. }));
}

#[test]
fn scalar_file_shape_round_trips_zero_dimensional() {
    let mut p = Params::<f32>::new();
    p.add_with_file_shape("sqrt_end_time", Tensor::scalar(0.75), vec![]);
    let bytes = p.to_safetensors().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensor("sqrt_end_time").unwrap().shape().is_empty());
    let q = Params::<f32>::from_safetensors(&bytes, "mem").unwrap();
    assert_eq!(q, p);
}

#[test]
#[should_panic(expected = "already exists")]
fn duplicate_name_panics() {
    let mut p = Params::<f64>::new();
    p.add("w", Tensor::zeros(1, 1));
    p.add("w", Tensor::zeros(1, 1));
}

#[test]
fn vars_follow_store_order() {
    let p = net_params(8);
    let tape = autodiff::Tape::new();
    let v = p.vars(&tape);
    assert_eq!(v.len(), p.len());
    for (i, var) in v.iter().enumerate() {
        assert_eq!(var.value(), *p.tensor(i));
        assert!(var.requires_grad());
    }
    assert!(p.constants(&tape).iter().all(|c| !c.requires_grad()));
}

/// Safetensors bytes holding one `F64` tensor `name` of shape `[1, values.len()]`.
fn f64_file(name: &str, values: &[f64]) -> Vec<u8> {
    let b: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    safetensors::serialize(
        vec![(
            name,
            TensorView::new(Dtype::F64, vec![1, values.len()], &b).unwrap(),
        )],
        None,
    )
    .unwrap()
}

#[test]
fn f64_values_beyond_f32_range_are_an_error_naming_the_tensor() {
    let bytes = f64_file("odefunc.scale", &[1.0, -3e39, 2.0]);
    let path = tmp("beyond_f32.safetensors");
    std::fs::write(&path, &bytes).unwrap();

    let err = Params::<f32>::load(&path).unwrap_err();
    match &err {
        FlowError::BadFile { path: p, reason } => {
            assert_eq!(p, &path);
            assert!(reason.contains("`odefunc.scale`"), "{reason}");
            assert!(
                reason.contains("element 1") && reason.contains("-3e39"),
                "{reason}"
            );
            assert!(reason.contains("f32"), "{reason}");
        }
        other => panic!("expected BadFile, got {other:?}"),
    }
    assert!(err.to_string().contains("beyond_f32.safetensors"), "{err}");

    // Loading into an existing f32 store fails the same way and leaves it unchanged.
    let mut store = Params::<f32>::new();
    store.add("odefunc.scale", Tensor::from_f64s(1, 3, &[0.5, 0.5, 0.5]));
    let before = store.clone();
    let err = store.load_into(&path).unwrap_err();
    assert!(
        matches!(&err, FlowError::BadFile { reason, .. } if reason.contains("`odefunc.scale`")),
        "{err}"
    );
    assert_eq!(store, before);

    // The same file is fine in f64, and so is an f64 value that rounds to f32::MAX.
    let q = Params::<f64>::load(&path).unwrap();
    assert_eq!(q.tensor(0).as_slice(), &[1.0, -3e39, 2.0]);
    let edge = f64_file("m", &[f32::MAX as f64, -(f32::MAX as f64)]);
    let r = Params::<f32>::from_safetensors(&edge, "mem").unwrap();
    assert_eq!(r.tensor(0).as_slice(), &[f32::MAX, -f32::MAX]);
}

#[test]
fn nan_and_infinity_in_an_f64_file_load_into_f32_as_they_are() {
    let bytes = f64_file("w", &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-50]);
    let p = Params::<f32>::from_safetensors(&bytes, "mem").unwrap();
    let v = p.tensor(0).as_slice();
    assert!(v[0].is_nan());
    assert_eq!(&v[1..], &[f32::INFINITY, f32::NEG_INFINITY, 0.0]);
}
