//! Graph models and composite blocks, checked with finite differences.

use convnet::blocks::{Inception, Residual};
use convnet::gradcheck::{check_layer, random_tensor, GradCheck};
use convnet::layer::Slot;
use convnet::model::GraphBuilder;
use convnet::prelude::*;

fn conv(i: usize, o: usize, k: usize, p: usize, seed: u64) -> Conv2d<f64> {
    Conv2d::new(Conv2dConfig::new(i, o, k).padding(p).seed(seed)).unwrap()
}

/// x ─conv_a─ a ─relu─ r ─┬─ conv_b ─ b ─┐
///                        │              add ─ s ─┐
///                        └──────────────┘        concat ─ out
///  x ─────────────── conv_c ─ c ─────────────────┘
/// `r` feeds two nodes and `x` feeds two nodes, so their gradients must sum.
fn dag() -> convnet::model::Graph<f64> {
    GraphBuilder::new("x")
        .layer("conv_a", "x", conv(2, 3, 3, 1, 1))
        .layer("relu", "conv_a", ReLU::new())
        .layer("conv_b", "relu", conv(3, 3, 3, 1, 2))
        .merge("add", &["relu", "conv_b"], Add::new())
        .layer("conv_c", "x", conv(2, 2, 1, 0, 3))
        .merge("cat", &["add", "conv_c"], Concat::new())
        .output("cat")
        .build(&[1, 2, 5, 5])
        .unwrap()
}

#[test]
fn dag_with_fan_out_add_and_concat_matches_finite_differences() {
    let mut g = dag();
    assert_eq!(g.output_shape(&[2, 2, 5, 5]).unwrap(), vec![2, 5, 5, 5]);
    let names: Vec<String> = convnet::io::state_dict(&g)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"conv_b.weight".to_string()) && names.contains(&"conv_c.bias".to_string()),
        "{names:?}"
    );
    for seed in 0..3 {
        check_layer(
            &mut g,
            &random_tensor(&[2, 2, 5, 5], seed),
            GradCheck {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
    }
}

#[test]
fn several_outputs_each_carry_their_gradient() {
    let mut g = GraphBuilder::<f64>::new("x")
        .layer("a", "x", conv(1, 2, 3, 1, 4))
        .layer("b", "a", Tanh::new())
        .layer("head", "b", Flatten::new(FlattenConfig::new()).unwrap())
        .output("b")
        .output("head")
        .build(&[1, 1, 4, 4])
        .unwrap();
    let x = random_tensor(&[1, 1, 4, 4], 9);
    let outs = g.forward_all(&x).unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[1].shape(), &[1, 32]);
    let g0 = random_tensor(outs[0].shape(), 1);
    let g1 = random_tensor(outs[1].shape(), 2);
    g.zero_grad();
    let dx_both = g.backward_all(&[Some(&g0), Some(&g1)]).unwrap();
    g.forward_all(&x).unwrap();
    let dx0 = g.backward_all(&[Some(&g0), None]).unwrap();
    g.forward_all(&x).unwrap();
    let dx1 = g.backward_all(&[None, Some(&g1)]).unwrap();
    // Backward is linear in the upstream gradients.
    let diff = (&dx_both - &(&dx0 + &dx1))
        .mapv(f64::abs)
        .fold(0.0f64, |m, &v| m.max(v));
    assert!(diff < 1e-12, "{diff}");
}

/// Layers that keep (Conv2d, BatchNorm2d) or overwrite (ReLU, BatchNorm2d's gradient) what
/// they are handed, a node read by two nodes (`relu`), a merge reading one node twice
/// (`conv_b`), and an output (`relu2`) that two other nodes read too.
fn handover_dag(keep: bool) -> convnet::model::Graph<f64> {
    GraphBuilder::new("x")
        .layer("conv_a", "x", conv(2, 3, 3, 1, 1))
        .layer(
            "bn",
            "conv_a",
            BatchNorm2d::new(BatchNorm2dConfig::new(3)).unwrap(),
        )
        .layer("relu", "bn", ReLU::new())
        .layer("conv_b", "relu", conv(3, 3, 3, 1, 2))
        .merge("add", &["relu", "conv_b", "conv_b"], Add::new())
        .layer("relu2", "add", ReLU::new())
        .layer("conv_c", "x", conv(2, 3, 1, 0, 3))
        .merge("cat", &["relu2", "conv_c"], Concat::new())
        .layer("head", "relu2", Tanh::new())
        .output("cat")
        .output("relu2")
        .output("head")
        .keep_values(keep)
        .build(&[1, 2, 5, 5])
        .unwrap()
}

/// Every parameter gradient and buffer of a model, by name.
fn grads_and_buffers(model: &dyn Layer<f64>) -> Vec<(String, Tensor<f64>)> {
    let mut out = Vec::new();
    model.visit(&mut |name, slot| match slot {
        Slot::Param(p) => out.push((format!("{name}.grad"), p.grad.clone())),
        Slot::Buffer(b) => out.push((name.to_string(), b.clone())),
    });
    out
}

#[test]
fn handing_values_on_gives_the_kept_values_numbers() {
    let (mut kept, mut lean) = (handover_dag(true), handover_dag(false));
    assert!(kept.keeps_values() && !lean.keeps_values());
    for step in 0..2u64 {
        let x = random_tensor(&[2, 2, 5, 5], 10 + step);
        let outs = kept.forward_all(&x).unwrap();
        assert_eq!(lean.forward_all(&x).unwrap(), outs, "step {step}");
        let grads: Vec<Tensor<f64>> = outs
            .iter()
            .enumerate()
            .map(|(i, o)| random_tensor(o.shape(), 20 + i as u64))
            .collect();
        let given = [Some(&grads[0]), Some(&grads[1]), Some(&grads[2])];
        let dx = kept.backward_all(&given).unwrap();
        assert_eq!(lean.backward_all(&given).unwrap(), dx, "step {step}");
        assert_eq!(grads_and_buffers(&lean), grads_and_buffers(&kept));
        // Only the graph that keeps its values can show them.
        assert!(kept.node_output("relu").is_some());
        assert!(lean.node_output("relu").is_none());
        // An output that reaches no loss: the nodes that feed only it send nothing back.
        kept.forward_all(&x).unwrap();
        lean.forward_all(&x).unwrap();
        let (dx_k, at_k) = kept
            .backward_all_at(&[Some(&grads[0]), None, None], "head")
            .unwrap();
        let (dx_l, at_l) = lean
            .backward_all_at(&[Some(&grads[0]), None, None], "head")
            .unwrap();
        assert_eq!((dx_l, at_l), (dx_k, at_k.clone()));
        assert!(at_k.iter().all(|&v| v == 0.0));
    }
    // As a layer (first output), by reference and by value.
    let x = random_tensor(&[2, 2, 5, 5], 3);
    let y = kept.forward(&x).unwrap();
    assert_eq!(lean.forward_owned(x.clone()).unwrap(), y);
    let g = random_tensor(y.shape(), 4);
    assert_eq!(
        lean.backward_owned(g.clone()).unwrap(),
        kept.backward(&g).unwrap()
    );
    assert_eq!(grads_and_buffers(&lean), grads_and_buffers(&kept));
}

#[test]
fn a_graph_that_hands_values_on_matches_finite_differences() {
    // `relu` and `x` feed two nodes each and `conv_b` one merge twice: each gradient must
    // arrive in full although the values were handed on and dropped.
    let mut g = handover_dag(false);
    for seed in 0..2 {
        check_layer(
            &mut g,
            &random_tensor(&[2, 2, 5, 5], seed),
            GradCheck {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
    }
}

#[test]
fn build_errors_name_the_node() {
    let unknown = GraphBuilder::<f64>::new("x")
        .layer("a", "nope", ReLU::new())
        .output("a")
        .build(&[1, 1, 2, 2]);
    let msg = unknown.err().unwrap().to_string();
    assert!(msg.contains("`a`") && msg.contains("`nope`"), "{msg}");

    let cycle = GraphBuilder::<f64>::new("x")
        .layer("a", "b", ReLU::new())
        .layer("b", "a", ReLU::new())
        .output("b")
        .build(&[1, 1, 2, 2]);
    assert!(cycle.err().unwrap().to_string().contains("cycle"));

    let shapes = GraphBuilder::<f64>::new("x")
        .layer("wide", "x", conv(1, 4, 1, 0, 1))
        .layer("narrow", "x", conv(1, 2, 1, 0, 2))
        .merge("sum", &["wide", "narrow"], Add::new())
        .output("sum")
        .build(&[1, 1, 3, 3]);
    let msg = shapes.err().unwrap().to_string();
    assert!(msg.contains("`sum`"), "{msg}");

    let dup = GraphBuilder::<f64>::new("x")
        .layer("a", "x", ReLU::new())
        .layer("a", "x", ReLU::new())
        .output("a")
        .build(&[1, 1, 2, 2]);
    assert!(dup.err().unwrap().to_string().contains("twice"));
}

#[test]
fn residual_blocks_match_finite_differences() {
    // Identity shortcut with a ReLU after the sum.
    let body = Sequential::new()
        .add(conv(3, 3, 3, 1, 1))
        .add(Tanh::new())
        .add(conv(3, 3, 3, 1, 2));
    let mut block = Residual::new(body).post(ReLU::new()).unwrap();
    check_layer(
        &mut block,
        &random_tensor(&[2, 3, 4, 4], 1),
        GradCheck::default(),
    )
    .unwrap();

    // Projection shortcut that changes channels and resolution, with batch norm in it.
    let body = Sequential::new()
        .add_named(
            "conv1",
            Conv2d::new(Conv2dConfig::new(2, 4, 3).stride(2).padding(1).seed(3)).unwrap(),
        )
        .unwrap()
        .add_named("bn1", BatchNorm2d::new(BatchNorm2dConfig::new(4)).unwrap())
        .unwrap();
    let shortcut = Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(2, 4, 1).stride(2).bias(false).seed(4)).unwrap())
        .add(BatchNorm2d::new(BatchNorm2dConfig::new(4)).unwrap());
    let mut block = Residual::new(body)
        .shortcut("downsample", shortcut)
        .unwrap();
    let names: Vec<String> = convnet::io::state_dict(&block)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"conv1.weight".into())
            && names.contains(&"downsample.1.running_var".into()),
        "{names:?}"
    );
    check_layer(
        &mut block,
        &random_tensor(&[3, 2, 5, 5], 2),
        GradCheck::default(),
    )
    .unwrap();
    // A shortcut that does not match the body's shape is a shape error, not a panic.
    let bad = Residual::new(conv(2, 3, 3, 1, 5));
    assert!(matches!(
        bad.output_shape(&[1, 2, 4, 4]),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn inception_matches_finite_differences() {
    let mut block = Inception::new()
        .branch("branch1", conv(3, 2, 1, 0, 1))
        .unwrap()
        .branch(
            "branch2",
            Sequential::new()
                .add(conv(3, 2, 1, 0, 2))
                .add(ReLU::new())
                .add(conv(2, 3, 3, 1, 3)),
        )
        .unwrap()
        .branch(
            "branch4",
            Sequential::new()
                .add(
                    MaxPool2d::new(MaxPool2dConfig::new(3).stride(1).padding(1).ceil_mode(true))
                        .unwrap(),
                )
                .add(conv(3, 1, 1, 0, 4)),
        )
        .unwrap();
    assert_eq!(block.output_shape(&[2, 3, 5, 5]).unwrap(), vec![2, 6, 5, 5]);
    // Distinct values keep max pooling away from ties.
    let x = random_tensor(&[2, 3, 5, 5], 7);
    check_layer(&mut block, &x, GradCheck::default()).unwrap();
}

/// Sequentials nested two deep with a convolution first, a residual block and a classifier.
fn nested(seed: u64) -> Sequential<f64> {
    let stem = Sequential::new()
        .add(conv(2, 4, 3, 1, seed))
        .add(BatchNorm2d::new(BatchNorm2dConfig::new(4)).unwrap())
        .add(ReLU::new());
    let block = Residual::new(Sequential::new().add(conv(4, 4, 3, 1, seed + 1)));
    Sequential::new()
        .add(stem)
        .add(block)
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(4 * 5 * 5, 3).seed(seed + 2)).unwrap())
}

#[test]
fn backward_params_gives_the_parameter_gradients_of_backward() {
    let x = random_tensor(&[3, 2, 5, 5], 1);
    let g = random_tensor(&[3, 3], 2);
    let (mut full, mut params_only) = (nested(10), nested(10));
    full.forward(&x).unwrap();
    params_only.forward(&x).unwrap();
    full.backward(&g).unwrap();
    params_only.backward_params(&g).unwrap();
    let (a, b) = (grads_and_buffers(&full), grads_and_buffers(&params_only));
    assert_eq!(a.len(), b.len());
    for ((name, u), (_, v)) in a.iter().zip(&b) {
        assert_eq!(u, v, "{name}");
    }
    assert!(a
        .iter()
        .any(|(n, t)| n.ends_with("weight.grad") && t.iter().any(|v| *v != 0.0)));
    // A single layer, and no layers at all.
    let mut one = Sequential::new().add(conv(2, 3, 3, 1, 4));
    let mut alone = conv(2, 3, 3, 1, 4);
    let y = one.forward(&x).unwrap();
    alone.forward(&x).unwrap();
    let gy = random_tensor(y.shape(), 3);
    one.backward_params(&gy).unwrap();
    alone.backward(&gy).unwrap();
    assert_eq!(grads_and_buffers(&one)[0].1, grads_and_buffers(&alone)[0].1);
    let mut empty = Sequential::<f64>::new();
    empty.forward(&x).unwrap();
    empty.backward_params(&x).unwrap();
}

#[test]
fn graph_backward_params_gives_the_parameter_gradients_of_backward() {
    // `dag` has two nodes fed by the input (conv_a, conv_c); a merge of the input with
    // itself and a node of several outputs cover the other ways a node can sit on the input.
    let x = random_tensor(&[2, 2, 5, 5], 5);
    let self_sum = || {
        GraphBuilder::new("x")
            .merge("twice", &["x", "x"], Add::new())
            .layer("conv", "twice", conv(2, 3, 3, 1, 6))
            .layer("side", "x", conv(2, 3, 3, 1, 7))
            .merge("cat", &["conv", "side"], Concat::new())
            .output("cat")
            .output("side")
            .build(&[1, 2, 5, 5])
            .unwrap()
    };
    let pairs = [("dag", dag(), dag()), ("self_sum", self_sum(), self_sum())];
    for (what, mut full, mut params_only) in pairs {
        let y = full.forward(&x).unwrap();
        params_only.forward(&x).unwrap();
        let g = random_tensor(y.shape(), 8);
        full.backward(&g).unwrap();
        params_only.backward_params(&g).unwrap();
        let (a, b) = (grads_and_buffers(&full), grads_and_buffers(&params_only));
        assert_eq!(a.len(), b.len(), "{what}");
        for ((name, u), (_, v)) in a.iter().zip(&b) {
            assert_eq!(u, v, "{what}: {name}");
        }
        assert!(
            a.iter()
                .filter(|(n, _)| n.ends_with("weight.grad"))
                .all(|(_, t)| t.iter().any(|v| *v != 0.0)),
            "{what}: every weight gets a gradient"
        );
    }
    // Before any forward pass: the typed error of `backward`.
    assert!(matches!(
        dag().backward_params(&random_tensor(&[2, 5, 5, 5], 9)),
        Err(Error::BackwardBeforeForward { .. })
    ));
}
