//! Model summaries in the style of the course's AlexNet listing.
//!
//! The row type sits at the bottom of the crate, beside the [`crate::Layer`] trait whose
//! `summary_rows` fills it, so that module dependencies point one way (layers never import
//! `model`); `convnet::model` re-exports everything here.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;

/// One row of a [`Summary`]: a layer, its output shape and its parameter count.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// The layer kind (`"Conv2d"`).
    pub kind: &'static str,
    /// The layer's own description (`"96 11x11 filters at stride 4, pad 0"`).
    pub description: String,
    /// Output shape including the batch axis.
    pub output_shape: Vec<usize>,
    /// Trainable scalars in the layer.
    pub params: usize,
}

/// A printable table of a model's layers. `Display` renders it; the last line is
/// `Total params: 62,378,344`.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The input shape, batch axis first.
    pub input_shape: Vec<usize>,
    /// One row per layer, in order.
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    /// A summary of the given rows.
    pub fn new(input_shape: Vec<usize>, rows: Vec<SummaryRow>) -> Self {
        Summary { input_shape, rows }
    }

    /// Sum of the rows' parameter counts.
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }

    /// The course's label for each row: convolutions and fully connected layers share one
    /// depth counter (CONV1..CONV5, FC6..FC8), pools and normalisations have their own.
    pub fn labels(&self) -> Vec<String> {
        let (mut depth, mut pool, mut norm) = (0, 0, 0);
        self.rows
            .iter()
            .map(|r| match r.kind {
                "Conv2d" => {
                    depth += 1;
                    format!("CONV{depth}")
                }
                "Linear" => {
                    depth += 1;
                    format!("FC{depth}")
                }
                "MaxPool2d" => {
                    pool += 1;
                    format!("MAX POOL{pool}")
                }
                "AvgPool2d" | "AdaptiveAvgPool2d" => {
                    pool += 1;
                    format!("AVG POOL{pool}")
                }
                "LocalResponseNorm" => {
                    norm += 1;
                    format!("NORM{norm}")
                }
                other => other.to_string(),
            })
            .collect()
    }
}

/// `[55x55x96]` for `[N, 96, 55, 55]`, `[4096]` for `[N, 4096]`.
pub fn course_shape(shape: &[usize]) -> String {
    match shape {
        [_, c, h, w] => format!("[{h}x{w}x{c}]"),
        [_, rest @ ..] if !rest.is_empty() => {
            format!(
                "[{}]",
                rest.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            )
        }
        other => format!("{other:?}"),
    }
}

/// `62378344` as `62,378,344`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels = self.labels();
        let shapes: Vec<String> = self
            .rows
            .iter()
            .map(|r| course_shape(&r.output_shape))
            .collect();
        let input = course_shape(&self.input_shape);
        let shape_w = shapes
            .iter()
            .map(String::len)
            .chain([input.len()])
            .max()
            .unwrap_or(0);
        let texts: Vec<String> = labels
            .iter()
            .zip(&self.rows)
            .map(|(l, r)| {
                if r.description.is_empty() {
                    l.clone()
                } else {
                    format!("{l}: {}", r.description)
                }
            })
            .collect();
        let text_w = texts.iter().map(String::len).max().unwrap_or(0).max(5);
        writeln!(f, "{input:<shape_w$} INPUT")?;
        for ((shape, text), row) in shapes.iter().zip(&texts).zip(&self.rows) {
            let params = if row.params > 0 {
                thousands(row.params)
            } else {
                String::new()
            };
            writeln!(f, "{shape:<shape_w$} {text:<text_w$} {params:>12}")?;
        }
        write!(f, "Total params: {}", thousands(self.total_params()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_course() {
        assert_eq!(course_shape(&[1, 96, 55, 55]), "[55x55x96]");
        assert_eq!(course_shape(&[1, 4096]), "[4096]");
        assert_eq!(thousands(62_378_344), "62,378,344");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(0), "0");
    }

    #[test]
    fn labels_number_conv_and_fc_by_depth() {
        let row = |kind| SummaryRow {
            kind,
            description: String::new(),
            output_shape: vec![1, 1],
            params: 1,
        };
        let s = Summary::new(
            vec![1, 1],
            vec![
                row("Conv2d"),
                row("ReLU"),
                row("MaxPool2d"),
                row("Conv2d"),
                row("Linear"),
            ],
        );
        assert_eq!(
            s.labels(),
            vec!["CONV1", "ReLU", "MAX POOL1", "CONV2", "FC3"]
        );
        assert!(s.to_string().ends_with("Total params: 5"));
    }
}
