//! The parts of `onnx.proto` a CNN needs, decoded from the wire format.
//!
//! Field numbers are those of `onnx/onnx.proto` (IR version 3 to 10). Fields this importer
//! does not use (doc strings, metadata, training info, functions, sub-graphs of `If`/`Loop`)
//! are skipped; a field it uses with the wrong wire type is an error.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::wire::Reader;
use super::OnnxError;

/// `ModelProto`: the file's root message.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub ir_version: i64,
    /// `(domain, version)`; the empty domain is the default `ai.onnx` operator set.
    pub opsets: Vec<(String, i64)>,
    pub graph: Option<Graph>,
}

/// `GraphProto`.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<TensorProto>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

/// `NodeProto`.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

/// `AttributeProto` (the kinds a CNN operator uses; graphs and sparse tensors are skipped).
#[derive(Debug, Default)]
pub(crate) struct Attribute {
    pub name: String,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<Vec<u8>>,
    pub t: Option<TensorProto>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
}

/// `TensorProto`: a constant tensor, its data inline or in an external file.
#[derive(Debug, Default)]
pub(crate) struct TensorProto {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i64,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i64>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    pub raw_data: Option<Vec<u8>>,
    /// `(key, value)` pairs: `location`, `offset`, `length`, `checksum`.
    pub external_data: Vec<(String, String)>,
    /// 0 = DEFAULT (inline), 1 = EXTERNAL.
    pub data_location: i64,
}

/// `ValueInfoProto`: a graph input or output with its (possibly symbolic) shape.
#[derive(Debug, Default)]
pub(crate) struct ValueInfo {
    pub name: String,
    /// Element type (`TensorProto.DataType`), 0 when not given.
    pub elem_type: i64,
    /// `None` when the shape is not given; each dim is `None` when symbolic or unknown.
    pub shape: Option<Vec<Option<i64>>>,
}

impl Model {
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, OnnxError> {
        let mut r = Reader::new(buf, "ModelProto");
        let mut m = Model::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                1 => m.ir_version = r.int(f, &v)?,
                7 => m.graph = Some(Graph::decode(r.bytes(f, &v)?)?),
                8 => {
                    let mut o = Reader::new(r.bytes(f, &v)?, "OperatorSetIdProto");
                    let (mut domain, mut version) = (String::new(), 0);
                    while let Some((f, v)) = o.next_field()? {
                        match f {
                            1 => domain = o.string(f, &v)?,
                            2 => version = o.int(f, &v)?,
                            _ => {}
                        }
                    }
                    m.opsets.push((domain, version));
                }
                _ => {}
            }
        }
        Ok(m)
    }
}

impl Graph {
    fn decode(buf: &[u8]) -> Result<Self, OnnxError> {
        let mut r = Reader::new(buf, "GraphProto");
        let mut g = Graph::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                1 => g.nodes.push(Node::decode(r.bytes(f, &v)?)?),
                2 => g.name = r.string(f, &v)?,
                5 => g.initializers.push(TensorProto::decode(r.bytes(f, &v)?)?),
                11 => g.inputs.push(ValueInfo::decode(r.bytes(f, &v)?)?),
                12 => g.outputs.push(ValueInfo::decode(r.bytes(f, &v)?)?),
                15 => {
                    return Err(OnnxError::Unsupported(
                        "sparse initializers (GraphProto.sparse_initializer)".into(),
                    ))
                }
                _ => {}
            }
        }
        Ok(g)
    }
}

impl Node {
    fn decode(buf: &[u8]) -> Result<Self, OnnxError> {
        let mut r = Reader::new(buf, "NodeProto");
        let mut n = Node::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                1 => n.inputs.push(r.string(f, &v)?),
                2 => n.outputs.push(r.string(f, &v)?),
                3 => n.name = r.string(f, &v)?,
                4 => n.op_type = r.string(f, &v)?,
                5 => n.attributes.push(Attribute::decode(r.bytes(f, &v)?)?),
                7 => n.domain = r.string(f, &v)?,
                _ => {}
            }
        }
        Ok(n)
    }
}

impl Attribute {
    fn decode(buf: &[u8]) -> Result<Self, OnnxError> {
        let mut r = Reader::new(buf, "AttributeProto");
        let mut a = Attribute::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                1 => a.name = r.string(f, &v)?,
                2 => a.f = Some(r.float(f, &v)?),
                3 => a.i = Some(r.int(f, &v)?),
                4 => a.s = Some(r.bytes(f, &v)?.to_vec()),
                5 => a.t = Some(TensorProto::decode(r.bytes(f, &v)?)?),
                7 => r.floats(f, &v, &mut a.floats)?,
                8 => r.ints(f, &v, &mut a.ints)?,
                _ => {}
            }
        }
        Ok(a)
    }
}

impl TensorProto {
    fn decode(buf: &[u8]) -> Result<Self, OnnxError> {
        let mut r = Reader::new(buf, "TensorProto");
        let mut t = TensorProto::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                1 => r.ints(f, &v, &mut t.dims)?,
                2 => t.data_type = r.int(f, &v)?,
                3 => {
                    return Err(OnnxError::Unsupported(
                        "segmented tensors (TensorProto.segment)".into(),
                    ))
                }
                4 => r.floats(f, &v, &mut t.float_data)?,
                5 => r.ints(f, &v, &mut t.int32_data)?,
                7 => r.ints(f, &v, &mut t.int64_data)?,
                8 => t.name = r.string(f, &v)?,
                9 => t.raw_data = Some(r.bytes(f, &v)?.to_vec()),
                10 => r.doubles(f, &v, &mut t.double_data)?,
                13 => {
                    let mut e = Reader::new(r.bytes(f, &v)?, "StringStringEntryProto");
                    let (mut key, mut value) = (String::new(), String::new());
                    while let Some((f, v)) = e.next_field()? {
                        match f {
                            1 => key = e.string(f, &v)?,
                            2 => value = e.string(f, &v)?,
                            _ => {}
                        }
                    }
                    t.external_data.push((key, value));
                }
                14 => t.data_location = r.int(f, &v)?,
                _ => {}
            }
        }
        Ok(t)
    }
}

impl ValueInfo {
    fn decode(buf: &[u8]) -> Result<Self, OnnxError> {
        let mut r = Reader::new(buf, "ValueInfoProto");
        let mut info = ValueInfo::default();
        while let Some((f, v)) = r.next_field()? {
            match f {
                1 => info.name = r.string(f, &v)?,
                2 => {
                    // TypeProto: field 1 is TypeProto.Tensor (elem_type 1, shape 2).
                    let mut ty = Reader::new(r.bytes(f, &v)?, "TypeProto");
                    while let Some((f, v)) = ty.next_field()? {
                        if f != 1 {
                            continue;
                        }
                        let mut tensor = Reader::new(ty.bytes(f, &v)?, "TypeProto.Tensor");
                        while let Some((f, v)) = tensor.next_field()? {
                            match f {
                                1 => info.elem_type = tensor.int(f, &v)?,
                                2 => info.shape = Some(decode_shape(tensor.bytes(f, &v)?)?),
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// `TensorShapeProto`: dims with `dim_value` (1) or `dim_param` (2, symbolic → `None`).
fn decode_shape(buf: &[u8]) -> Result<Vec<Option<i64>>, OnnxError> {
    let mut r = Reader::new(buf, "TensorShapeProto");
    let mut dims = Vec::new();
    while let Some((f, v)) = r.next_field()? {
        if f != 1 {
            continue;
        }
        let mut d = Reader::new(r.bytes(f, &v)?, "TensorShapeProto.Dimension");
        let mut value = None;
        while let Some((f, v)) = d.next_field()? {
            match f {
                1 => value = Some(d.int(f, &v)?),
                2 => {
                    d.string(f, &v)?;
                    value = None;
                }
                _ => {}
            }
        }
        dims.push(value);
    }
    Ok(dims)
}
