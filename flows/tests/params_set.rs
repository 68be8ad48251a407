//! In-memory `Params::set` and `Params::insert`: same checks as loading, typed errors, store
//! unchanged on error.

use autodiff::{Tape, Tensor};
use flows::nn::Linear;
use flows::{FlowError, Params};
use rand::SeedableRng;
use rand_pcg::Pcg64;

fn store() -> Params<f64> {
    let mut p = Params::new();
    p.add("lin.weight", Tensor::zeros(3, 2));
    p.add("lin.bias", Tensor::zeros(1, 3));
    p
}

#[test]
fn set_replaces_the_value_in_place_and_layers_see_it() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = Params::<f64>::new();
    let lin = Linear::new(&mut p, "lin", 2, 3, true, &mut rng);
    let w = Tensor::from_f64s(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = Tensor::from_f64s(1, 3, &[0.5, -0.5, 0.0]);
    p.set("lin.weight", w.clone()).unwrap();
    p.set("lin.bias", b.clone()).unwrap();
    // Same indices, same file shapes (the bias is still written 1-D).
    assert_eq!(p.index_of("lin.weight"), Some(0));
    assert_eq!(p.file_shape(1), &[3]);
    assert_eq!(p.tensor(0), &w);

    // The layer, which addresses its entries by index, computes with the new values.
    let tape = Tape::new();
    let vars = p.vars(&tape);
    let x = tape.constant(Tensor::from_f64s(1, 2, &[1.0, 1.0]));
    let y = lin.forward(&vars, x).value();
    assert_eq!(y.as_slice(), &[3.5, 6.5, 11.0]);
}

#[test]
fn set_refuses_a_wrong_shape_naming_the_entry_and_both_shapes() {
    let mut p = store();
    let before = p.clone();
    let err = p.set("lin.weight", Tensor::ones(2, 3)).unwrap_err();
    match &err {
        FlowError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "lin.weight");
            assert_eq!(expected, &[3, 2]);
            assert_eq!(found, &[2, 3]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("lin.weight") && msg.contains("[3, 2]") && msg.contains("[2, 3]"));
    // A column where the store holds a row is a different shape too.
    assert!(p.set("lin.bias", Tensor::zeros(3, 1)).is_err());
    assert_eq!(p, before);
}

#[test]
fn set_refuses_an_unknown_name_instead_of_adding_it() {
    let mut p = store();
    let err = p.set("lin.wieght", Tensor::zeros(3, 2)).unwrap_err();
    assert!(matches!(&err, FlowError::UnknownParam { name } if name == "lin.wieght"));
    assert!(err.to_string().contains("lin.wieght"));
    assert_eq!(p.len(), 2);
}

#[test]
fn insert_adds_a_new_entry_or_replaces_with_the_same_checks() {
    let mut p = store();
    // New: appended with the default file-shape rule, index returned.
    let i = p.insert("head.bias", Tensor::ones(1, 4)).unwrap();
    assert_eq!(i, 2);
    assert_eq!(p.file_shape(i), &[4]);
    assert_eq!(p.get("head.bias"), Some(&Tensor::ones(1, 4)));
    // Existing: replaced in place, its index returned.
    let j = p.insert("lin.weight", Tensor::ones(3, 2)).unwrap();
    assert_eq!(j, 0);
    assert_eq!(p.tensor(0), &Tensor::ones(3, 2));
    assert_eq!(p.len(), 3);
    // Existing with another shape: refused, unchanged.
    let before = p.clone();
    let err = p.insert("head.bias", Tensor::ones(1, 5)).unwrap_err();
    assert!(matches!(err, FlowError::ShapeMismatch { ref name, .. } if name == "head.bias"));
    assert_eq!(p, before);
}
