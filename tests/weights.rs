//! Saving and loading weights as safetensors with PyTorch names.

use convnet::io::{load_weights, read_tensors, save_weights, state_dict, write_tensors};
use convnet::prelude::*;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-weights-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small_net<T: Float>(seed: u64) -> Sequential<T> {
    Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 4, 3).padding(1).seed(seed)).unwrap())
        .add(BatchNorm2d::new(BatchNorm2dConfig::new(4)).unwrap())
        .add(ReLU::new())
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(4 * 4 * 4, 3).seed(seed + 1)).unwrap())
}

#[test]
fn round_trip_restores_every_parameter_and_buffer() {
    let dir = tmp("roundtrip");
    let path = dir.join("net.safetensors");
    let mut a = small_net::<f32>(1);
    // Move the batch-norm statistics away from their initial values.
    a.forward(&convnet::gradcheck::random_tensor(&[4, 1, 4, 4], 3).mapv(|v| v as f32))
        .unwrap();
    save_weights(&a, &path).unwrap();

    let names: Vec<String> = read_tensors::<f32>(&path)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "0.bias",
            "0.weight",
            "1.bias",
            "1.num_batches_tracked",
            "1.running_mean",
            "1.running_var",
            "1.weight",
            "4.bias",
            "4.weight"
        ]
    );

    let mut b = small_net::<f32>(99);
    load_weights(&mut b, &path).unwrap();
    assert_eq!(state_dict(&a), state_dict(&b));

    // An f32 file loads into an f64 model.
    let mut c = small_net::<f64>(7);
    load_weights(&mut c, &path).unwrap();
    for ((na, ta), (nc, tc)) in state_dict(&a).into_iter().zip(state_dict(&c)) {
        assert_eq!(na, nc);
        assert!(ta.iter().zip(tc.iter()).all(|(x, y)| *x as f64 == *y));
    }

    // ...and an f64 file loads into an f32 model, rounding each value once.
    let path64 = dir.join("net64.safetensors");
    save_weights(&c, &path64).unwrap();
    let mut d = small_net::<f32>(5);
    load_weights(&mut d, &path64).unwrap();
    assert_eq!(state_dict(&a), state_dict(&d));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mismatched_files_are_typed_errors_that_list_the_keys() {
    let dir = tmp("mismatch");
    let path = dir.join("bad.safetensors");
    let mut tensors = state_dict(&small_net::<f64>(1));
    tensors.retain(|(n, _)| n != "0.bias");
    tensors.push(("extra.weight".into(), Tensor::zeros(ndarray::IxDyn(&[2]))));
    for (n, t) in tensors.iter_mut() {
        if n == "4.weight" {
            *t = Tensor::zeros(ndarray::IxDyn(&[3, 5]));
        }
    }
    write_tensors(&path, &tensors, None).unwrap();
    let mut model = small_net::<f64>(2);
    let before = state_dict(&model);
    match load_weights(&mut model, &path) {
        Err(Error::StateDict {
            missing,
            unexpected,
            mismatched,
            ..
        }) => {
            assert_eq!(missing, vec!["0.bias".to_string()]);
            assert_eq!(unexpected, vec!["extra.weight".to_string()]);
            assert_eq!(
                mismatched,
                vec![("4.weight".to_string(), vec![3, 64], vec![3, 5])]
            );
        }
        other => panic!("expected a StateDict error, got {other:?}"),
    }
    assert_eq!(
        before,
        state_dict(&model),
        "a failed load must change nothing"
    );

    // A corrupt file and a missing file are errors naming the file.
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let msg = load_weights(&mut model, &corrupt).unwrap_err().to_string();
    assert!(msg.contains("corrupt.safetensors"), "{msg}");
    let msg = load_weights(&mut model, &dir.join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("absent.safetensors"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
