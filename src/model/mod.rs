//! Ways of composing layers into models, and their summaries.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod graph;
mod replicated;
mod sequential;

pub use graph::{Graph, GraphBuilder};
pub use replicated::Replicated;
pub use sequential::{infer_chain, Sequential};
// The summary types live beside the `Layer` trait (which builds summaries), re-exported here.
pub use crate::summary::{course_shape, thousands, Summary, SummaryRow};
