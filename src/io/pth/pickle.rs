//! A restricted unpickler for `torch.save`'s `data.pkl`: it builds plain data (dicts, lists,
//! tuples, strings, numbers, booleans, `None`) and torch's tensor descriptions, and nothing
//! else. Python's unpickler calls any function a pickle names; this one only knows a fixed
//! table of globals, each mapped to a Rust constructor of plain data, and refuses any other
//! global at the moment it is named. No code from the file is ever run.
//!
//! Recognised globals: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` (and v1),
//! `torch._utils._rebuild_parameter`, `torch.Size`, and the storage types
//! `torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage` that appear in
//! persistent ids `('storage', type, key, location, numel)`.
//!
//! The machine is a loop over opcodes with an explicit stack (no recursion); containers live
//! in an arena so that memoised references share mutations as in Python, and cloning a
//! [`Value`] is cheap (reference counts, arena indices).

use super::{Dtype, PthError};
use std::collections::HashMap;
use std::sync::Arc;

/// A storage named by a persistent id: its element type, its archive key and its length.
#[derive(Debug)]
pub(super) struct Storage {
    pub dtype: Dtype,
    pub key: String,
    pub numel: usize,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Debug)]
pub(super) struct TensorView {
    pub storage: Arc<Storage>,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The functions a pickle may name; each builds plain data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Size,
    StorageType(Dtype),
}

/// One unpickled value. Lists and dicts are indices into [`Unpickled::objects`].
#[derive(Clone, Debug)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    /// Raw bytes; their content is never needed.
    Bytes,
    Tuple(Arc<[Value]>),
    List(usize),
    Dict(usize),
    Global(Global),
    Storage(Arc<Storage>),
    Tensor(Arc<TensorView>),
}

impl Value {
    /// The value's kind with its article (`"an int"`), for messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a global",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

/// A dict in insertion order; string and integer keys replace earlier equal keys as in Python.
#[derive(Debug, Default)]
pub(super) struct Dict {
    pub entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

#[derive(Debug, Hash, PartialEq, Eq)]
enum Key {
    Str(Arc<str>),
    Int(i64),
}

impl Dict {
    fn insert(&mut self, key: Value, value: Value) {
        let k = match &key {
            Value::Str(s) => Some(Key::Str(s.clone())),
            Value::Int(i) => Some(Key::Int(*i)),
            _ => None,
        };
        match k.as_ref().and_then(|k| self.index.get(k)) {
            Some(&i) if i < self.entries.len() => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = value;
                }
            }
            _ => {
                if let Some(k) = k {
                    self.index.insert(k, self.entries.len());
                }
                self.entries.push((key, value));
            }
        }
    }
}

/// A mutable container.
#[derive(Debug)]
pub(super) enum Object {
    List(Vec<Value>),
    Dict(Dict),
}

/// The result of unpickling: the top-level value and the containers it refers to.
#[derive(Debug)]
pub(super) struct Unpickled {
    pub root: Value,
    pub objects: Vec<Object>,
}

impl Unpickled {
    /// The dict behind `Value::Dict(id)`.
    // Ids are made only by `Unpickler::new_object`, which pushes the object and never removes
    // one, and a `Value::Dict` id is only ever made for a dict: the index is in bounds and the
    // variant right, whatever the file holds.
    #[allow(clippy::indexing_slicing)]
    pub(super) fn dict(&self, id: usize) -> &Dict {
        match &self.objects[id] {
            Object::Dict(d) => d,
            Object::List(_) => unreachable!("Value::Dict always indexes a dict"),
        }
    }
}

/// The name of a pickle opcode, for messages (`"?"` for bytes that are no opcode).
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "?",
    }
}

/// Maps a `module.name` global to what it builds, or refuses it.
fn resolve_global(module: &str, name: &str) -> Result<Global, PthError> {
    let storage = |dtype| Ok(Global::StorageType(dtype));
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("torch", "Size") => Ok(Global::Size),
        ("torch", "FloatStorage") => storage(Dtype::F32),
        ("torch", "DoubleStorage") => storage(Dtype::F64),
        ("torch", "HalfStorage") => storage(Dtype::F16),
        ("torch", "BFloat16Storage") => storage(Dtype::BF16),
        ("torch", "LongStorage") => storage(Dtype::I64),
        ("torch", "IntStorage") => storage(Dtype::I32),
        ("torch", "ShortStorage") => storage(Dtype::I16),
        ("torch", "CharStorage") => storage(Dtype::I8),
        ("torch", "ByteStorage") => storage(Dtype::U8),
        ("torch", "BoolStorage") => storage(Dtype::Bool),
        ("torch", s) if s.ends_with("Storage") => Err(PthError::Unsupported(format!(
            "tensors of type torch.{s} (supported: float, double, half, bfloat16 and integer \
             storages)"
        ))),
        _ => Err(PthError::ForbiddenGlobal {
            module: module.to_string(),
            name: name.to_string(),
        }),
    }
}

/// The unpickler's state.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the opcode being run starts (for messages).
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
}

/// Unpickles `data` (protocols 2 to 5, the binary opcodes) into plain values.
pub(super) fn unpickle(data: &[u8]) -> Result<Unpickled, PthError> {
    let mut m = Machine {
        data,
        pos: 0,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objects: Vec::new(),
    };
    let root = m.run()?;
    Ok(Unpickled {
        root,
        objects: m.objects,
    })
}

impl Machine<'_> {
    fn err(&self, message: impl Into<String>) -> PthError {
        PthError::Pickle {
            offset: self.at,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PthError> {
        if n > self.data.len() - self.pos {
            return Err(self.err(format!(
                "needs {n} more bytes but the pickle ends at byte {}",
                self.data.len()
            )));
        }
        let s = self.data.get(self.pos..).and_then(|rest| rest.get(..n));
        let s = s.ok_or_else(|| self.err("reads past the end of the pickle"))?;
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PthError> {
        Ok(crate::io::byte_array(self.take(N)?))
    }

    fn u8(&mut self) -> Result<u8, PthError> {
        Ok(u8::from_le_bytes(self.array::<1>()?))
    }

    fn u32(&mut self) -> Result<u32, PthError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn len_u64(&mut self) -> Result<usize, PthError> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} is too large")))
    }

    fn line(&mut self) -> Result<String, PthError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let line = rest
            .split(|&b| b == b'\n')
            .next()
            .filter(|line| line.len() < rest.len())
            .ok_or_else(|| self.err("a GLOBAL name is not terminated by a newline"))?;
        let end = line.len();
        let s = String::from_utf8_lossy(line).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, PthError> {
        let at = self.at;
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|e| PthError::Pickle {
            offset: at,
            message: format!("a string is not valid UTF-8: {e}"),
        })?;
        Ok(Value::Str(s.into()))
    }

    fn latin1(&mut self, n: usize) -> Result<Value, PthError> {
        let s: String = self.take(n)?.iter().map(|&b| b as char).collect();
        Ok(Value::Str(s.into()))
    }

    fn bytes(&mut self, n: usize) -> Result<Value, PthError> {
        self.take(n)?;
        Ok(Value::Bytes)
    }

    fn pop(&mut self) -> Result<Value, PthError> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => Err(self.err("the stack is empty")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, PthError> {
        let at = self.at;
        self.stack.last_mut().ok_or(PthError::Pickle {
            offset: at,
            message: "the stack is empty".into(),
        })
    }

    /// Everything pushed since the last MARK, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PthError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK to pop to"))?;
        if mark > self.stack.len() {
            return Err(self.err("the stack shrank below its MARK"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn new_object(&mut self, o: Object) -> usize {
        self.objects.push(o);
        self.objects.len() - 1
    }

    fn list_mut(&mut self, v: &Value) -> Result<&mut Vec<Value>, PthError> {
        match v {
            Value::List(id) => match self.objects.get_mut(*id) {
                Some(Object::List(l)) => Ok(l),
                _ => Err(PthError::Pickle {
                    offset: self.at,
                    message: format!("list {id} is not a list"),
                }),
            },
            other => Err(self.err(format!("APPEND to {}, not a list", other.kind()))),
        }
    }

    fn dict_mut(&mut self, v: &Value) -> Result<&mut Dict, PthError> {
        match v {
            Value::Dict(id) => match self.objects.get_mut(*id) {
                Some(Object::Dict(d)) => Ok(d),
                _ => Err(PthError::Pickle {
                    offset: self.at,
                    message: format!("dict {id} is not a dict"),
                }),
            },
            other => Err(self.err(format!("SETITEM on {}, not a dict", other.kind()))),
        }
    }

    fn set_items(&mut self, target: &Value, items: Vec<Value>) -> Result<(), PthError> {
        if items.len() % 2 != 0 {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let d = self.dict_mut(target)?;
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.insert(k, v);
        }
        Ok(())
    }

    fn memo_get(&self, i: u32) -> Result<Value, PthError> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| self.err(format!("memo entry {i} was never stored")))
    }

    fn memo_put(&mut self, i: u32) -> Result<(), PthError> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn int(&self, v: &Value, what: &str) -> Result<i64, PthError> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(*b as i64),
            other => Err(self.err(format!("{what} should be an int, got {}", other.kind()))),
        }
    }

    fn index(&self, v: &Value, what: &str) -> Result<usize, PthError> {
        let i = self.int(v, what)?;
        usize::try_from(i).map_err(|_| self.err(format!("{what} is negative ({i})")))
    }

    fn indices(&self, v: &Value, what: &str) -> Result<Vec<usize>, PthError> {
        let items: Vec<Value> = match v {
            Value::Tuple(t) => t.to_vec(),
            Value::List(id) => match self.objects.get(*id) {
                Some(Object::List(l)) => l.clone(),
                _ => return Err(self.err(format!("list {id} is not a list"))),
            },
            other => {
                return Err(self.err(format!("{what} should be a tuple, got {}", other.kind())))
            }
        };
        items.iter().map(|x| self.index(x, what)).collect()
    }

    /// `('storage', torch.XStorage, key, location, numel)`: a storage of the archive.
    fn persistent_load(&self, pid: Value) -> Result<Value, PthError> {
        let (kind, dtype, key, numel) = match &pid {
            Value::Tuple(t) => match &t[..] {
                [kind, dtype, key, _location, numel] => (kind, dtype, key, numel),
                _ => {
                    return Err(self.err(format!(
                        "a persistent id should be ('storage', type, key, location, numel), got \
                         a tuple of {}",
                        t.len()
                    )))
                }
            },
            other => {
                return Err(self.err(format!(
                    "a persistent id should be ('storage', type, key, location, numel), got {}",
                    other.kind()
                )))
            }
        };
        match kind {
            Value::Str(s) if &**s == "storage" => {}
            _ => return Err(self.err("a persistent id that is not a 'storage'")),
        }
        let dtype = match dtype {
            Value::Global(Global::StorageType(d)) => *d,
            other => {
                return Err(self.err(format!(
                    "a storage's type should be torch.XStorage, got {}",
                    other.kind()
                )))
            }
        };
        let key = match key {
            Value::Str(s) if !s.is_empty() && !s.contains(['/', '\\']) && &**s != ".." => {
                s.to_string()
            }
            _ => return Err(self.err("a storage key should be a plain name")),
        };
        let numel = self.index(numel, "a storage's length")?;
        Ok(Value::Storage(Arc::new(Storage { dtype, key, numel })))
    }

    /// Calls one of the known globals on `args` (REDUCE and NEWOBJ).
    fn call(&mut self, f: Value, args: Value) -> Result<Value, PthError> {
        let g = match f {
            Value::Global(g) => g,
            other => return Err(self.err(format!("REDUCE calls {}", other.kind()))),
        };
        let args: Arc<[Value]> = match args {
            Value::Tuple(t) => t,
            other => {
                return Err(self.err(format!(
                    "REDUCE arguments should be a tuple, got {}",
                    other.kind()
                )))
            }
        };
        match g {
            Global::OrderedDict => {
                let mut d = Dict::default();
                match args.first() {
                    None => {}
                    Some(Value::List(id)) => {
                        let pairs = match self.objects.get(*id) {
                            Some(Object::List(l)) => l.clone(),
                            _ => return Err(self.err(format!("list {id} is not a list"))),
                        };
                        for p in pairs {
                            match p {
                                Value::Tuple(kv) if kv.len() == 2 => {
                                    if let [k, v] = &kv[..] {
                                        d.insert(k.clone(), v.clone())
                                    }
                                }
                                _ => return Err(self.err("OrderedDict items should be pairs")),
                            }
                        }
                    }
                    Some(other) => {
                        return Err(self.err(format!(
                            "OrderedDict built from {}, not a list of pairs",
                            other.kind()
                        )))
                    }
                }
                Ok(Value::Dict(self.new_object(Object::Dict(d))))
            }
            Global::RebuildTensor => {
                let [storage, offset, size, stride, ..] = &args[..] else {
                    return Err(self.err(format!(
                        "_rebuild_tensor_v2 needs (storage, offset, size, stride, ...), got {} \
                         arguments",
                        args.len()
                    )));
                };
                let storage = match storage {
                    Value::Storage(s) => s.clone(),
                    other => {
                        return Err(self.err(format!(
                            "_rebuild_tensor_v2 on {}, not a storage",
                            other.kind()
                        )))
                    }
                };
                let offset = self.index(offset, "a storage offset")?;
                let size = self.indices(size, "a tensor size")?;
                let stride = self.indices(stride, "a tensor stride")?;
                if size.len() != stride.len() {
                    return Err(self.err(format!(
                        "a tensor with {} sizes and {} strides",
                        size.len(),
                        stride.len()
                    )));
                }
                Ok(Value::Tensor(Arc::new(TensorView {
                    storage,
                    offset,
                    size,
                    stride,
                })))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.err("_rebuild_parameter on something that is not a tensor")),
            },
            Global::Size => match args.first() {
                Some(v) => {
                    let dims = self.indices(v, "a torch.Size")?;
                    Ok(Value::Tuple(
                        dims.into_iter().map(|d| Value::Int(d as i64)).collect(),
                    ))
                }
                None => Ok(Value::Tuple(Arc::new([]))),
            },
            Global::StorageType(_) => Err(self.err("a storage type is called like a function")),
        }
    }

    fn run(&mut self) -> Result<Value, PthError> {
        loop {
            self.at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(self.err(format!(
                            "pickle protocol {proto} (torch.save writes 2 by default; 2 to 5 \
                             are read)"
                        )));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let bytes = self.take(n)?.to_vec();
                    if n > 8 {
                        return Err(
                            self.err(format!("an integer of {n} bytes (at most 8 are read)"))
                        );
                    }
                    // Two's complement, little-endian, sign-extended.
                    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut a = [fill; 8];
                    for (a, b) in a.iter_mut().zip(&bytes) {
                        *a = *b;
                    }
                    self.stack.push(Value::Int(i64::from_le_bytes(a)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n = usize::try_from(n).map_err(|_| self.err("a negative length"))?;
                    let v = self.latin1(n)?;
                    self.stack.push(v);
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.latin1(n)?;
                    self.stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                0x8e => {
                    let n = self.len_u64()?;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                b')' => self.stack.push(Value::Tuple(Arc::new([]))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items.into()));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("the stack is too short for TUPLE"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items.into()));
                }
                b']' => {
                    let id = self.new_object(Object::List(Vec::new()));
                    self.stack.push(Value::List(id));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let id = self.new_object(Object::List(items));
                    self.stack.push(Value::List(id));
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top()?.clone();
                    self.list_mut(&target)?.push(v);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.list_mut(&target)?.extend(items);
                }
                b'}' => {
                    let id = self.new_object(Object::Dict(Dict::default()));
                    self.stack.push(Value::Dict(id));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let id = self.new_object(Object::Dict(Dict::default()));
                    self.set_items(&Value::Dict(id), items)?;
                    self.stack.push(Value::Dict(id));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?.clone();
                    self.dict_mut(&target)?.insert(k, v);
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, items)?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| self.err("too many memo entries"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack
                        .push(Value::Global(resolve_global(&module, &name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = resolve_global(m, n)?;
                            self.stack.push(Value::Global(g));
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.call(f, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // The state of a dict subclass (OrderedDict's `_metadata`: module
                    // versions) is dropped; a BUILD on anything else is refused.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) => {}
                        other => {
                            let kind = other.kind();
                            return Err(self.err(format!("BUILD on {kind}")));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                _ => {
                    return Err(PthError::UnsupportedOpcode {
                        opcode: op,
                        name: opcode_name(op),
                        offset: self.at,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_of(v: &Value) -> &str {
        match v {
            Value::Str(s) => s,
            other => panic!("expected a str, got {other:?}"),
        }
    }

    // The byte strings below were checked with Python's `pickletools.dis` and `pickle.loads`.

    #[test]
    fn plain_data_protocol_2() {
        // pickle.dumps({'a': [1, -2, 300, 70000, 2**40, -2**40], 'b': (1.5, None, True, False), 'c': 'é'}, 2)
        let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xffeX\x01\x00\x00\x00bq\x03(G?\xf8\x00\x00\x00\x00\x00\x00N\x88\x89tq\x04X\x01\x00\x00\x00cq\x05X\x02\x00\x00\x00\xc3\xa9q\x06u.";
        let u = unpickle(bytes).unwrap();
        let Value::Dict(id) = u.root else {
            panic!("root {:?}", u.root)
        };
        let d = u.dict(id);
        assert_eq!(d.entries.len(), 3);
        assert_eq!(str_of(&d.entries[0].0), "a");
        let Value::List(l) = d.entries[0].1 else {
            panic!()
        };
        let Object::List(items) = &u.objects[l] else {
            panic!()
        };
        let ints: Vec<i64> = items
            .iter()
            .map(|v| match v {
                Value::Int(i) => *i,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ints, [1, -2, 300, 70000, 1 << 40, -(1 << 40)]);
        let Value::Tuple(t) = &d.entries[1].1 else {
            panic!()
        };
        assert!(matches!(t[0], Value::Float(x) if x == 1.5));
        assert!(matches!(t[1], Value::None));
        assert!(matches!(t[2], Value::Bool(true)));
        assert!(matches!(t[3], Value::Bool(false)));
        assert_eq!(str_of(&d.entries[2].1), "é");
    }

    #[test]
    fn memo_references_share_mutations() {
        // x = []; y = [x, x]; x.append(5) -- pickled as y: the memoised list is filled after
        // both references were taken. Hand-written: ] q0 ( h0 h0 l ... then append to memo 0.
        let bytes: &[u8] = b"\x80\x02]q\x00(h\x00h\x00lq\x01h\x00K\x05a0.";
        let u = unpickle(bytes).unwrap();
        // The stack after POP holds the outer list [x, x] (memo 1).
        let Value::List(outer) = u.root else {
            panic!("{:?}", u.root)
        };
        let Object::List(items) = &u.objects[outer] else {
            panic!()
        };
        for item in items {
            let Value::List(inner) = item else { panic!() };
            assert!(matches!(&u.objects[*inner], Object::List(v) if v.len() == 1));
        }
    }

    #[test]
    fn forbidden_globals_are_named_and_never_called() {
        // pickle.dumps(os.system-reducer, 2) starts: c posix\nsystem\n
        let bytes: &[u8] =
            b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        match unpickle(bytes) {
            Err(PthError::ForbiddenGlobal { module, name }) => {
                assert_eq!((module.as_str(), name.as_str()), ("posix", "system"))
            }
            other => panic!("{other:?}"),
        }
        // Protocol 4: STACK_GLOBAL from two strings.
        let bytes: &[u8] = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.";
        assert!(matches!(
            unpickle(bytes),
            Err(PthError::ForbiddenGlobal { module, name }) if module == "builtins" && name == "eval"
        ));
    }

    #[test]
    fn unknown_opcodes_and_malformed_streams_are_errors() {
        // INST (text-mode object creation) is not supported.
        match unpickle(b"\x80\x02(iposix\nsystem\n.") {
            Err(PthError::UnsupportedOpcode {
                opcode,
                name,
                offset,
                ..
            }) => {
                assert_eq!((opcode, name, offset), (b'i', "INST", 3));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            unpickle(b"\xff"),
            Err(PthError::UnsupportedOpcode { name: "?", .. })
        ));
        for bad in [
            &b""[..],                                                 // empty
            b"\x80\x02",                                              // no STOP
            b"\x80\x02.",                                             // STOP on an empty stack
            b"\x80\x02t.",                                            // TUPLE without MARK
            b"\x80\x02h\x07.",                                        // memo entry never stored
            b"\x80\x02X\xff\xff\xff\xffab",                           // string longer than the data
            b"\x80\x02K\x01K\x02s.",                                  // SETITEM on an int
            b"\x80\x09N.",                                            // protocol 9
            b"\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", // 72-bit integer
        ] {
            assert!(
                matches!(unpickle(bad), Err(PthError::Pickle { .. })),
                "{bad:?}: {:?}",
                unpickle(bad)
            );
        }
    }

    #[test]
    fn every_prefix_of_a_valid_pickle_fails_cleanly() {
        let bytes: &[u8] =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffeu.";
        assert!(unpickle(bytes).is_ok());
        for cut in 0..bytes.len() {
            assert!(unpickle(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
