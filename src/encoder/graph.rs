//! The encoder's computation, built as an ONNX Runtime graph from mibot's model file.
//!
//! ONNX Runtime does the matrix work: its int8 kernels (the `DynamicQuantizeMatMul` contrib op)
//! run the layers' products on the CPU's integer units, several times faster than f32. The graph
//! takes a padded batch: `embeds` `[batch, length, hidden]` (token, position and type
//! embeddings summed, which mibot does: a table lookup) and `bias` `[batch, 1, 1, length]` (0
//! for a real token, −10000 for padding), and returns the last hidden states. Each layer is
//! BERT's: self-attention over the heads, then a GELU feed-forward, each followed by a residual
//! sum and layer normalisation.

use std::path::Path;

use ort::editor::{Graph, Model, Node, ONNX_DOMAIN, Opset};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{
    Outlet, PrimitiveTensorElementType, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType,
};

use super::model::{ModelError, Weights};

/// The ONNX Runtime environment: the runtime allows one per process, so every encoder in the
/// process shares it.
static RUNTIME: std::sync::OnceLock<Result<ort::environment::Environment, String>> =
    std::sync::OnceLock::new();

/// The graph could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// ONNX Runtime refused or failed.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// A tensor is missing from the model file.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl<R> From<ort::Error<R>> for GraphError {
    fn from(e: ort::Error<R>) -> Self {
        Self::Runtime(e.to_string())
    }
}

/// Loads the runtime library (once per process) and returns its environment.
pub fn runtime(library: &Path) -> Result<ort::environment::Environment, GraphError> {
    RUNTIME
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| e.to_string())?
                .with_name("mibot")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(GraphError::Runtime)
}

/// Builds one inference session over `weights`, running on the calling thread.
pub fn session(env: &ort::environment::Environment, weights: &Weights) -> Result<Session, GraphError> {
    let a = &weights.architecture;
    let (hidden, heads) = (a.hidden as i64, a.heads as i64);
    let mut g = Builder { graph: Graph::new()?, nodes: 0 };
    let dims = |names: &[&str]| SymbolicDimensions::new(names.iter().map(|n| (*n).to_owned()));
    let float = |shape: &[i64], names: &[&str]| ValueType::Tensor {
        ty: TensorElementType::Float32,
        shape: Shape::new(shape.iter().copied()),
        dimension_symbols: dims(names),
    };
    g.graph.set_inputs([
        Outlet::new("embeds", float(&[-1, -1, hidden], &["batch", "length", ""])),
        Outlet::new("bias", float(&[-1, 1, 1, -1], &["batch", "", "", "length"])),
    ])?;
    g.graph.set_outputs([Outlet::new("hidden", float(&[-1, -1, hidden], &["batch", "length", ""]))])?;

    g.initializer("heads.shape", &[4], &[0, 0, heads, hidden / heads])?;
    g.initializer("hidden.shape", &[3], &[0, 0, hidden])?;
    g.initializer("qkv.split", &[3], &[hidden, hidden, hidden])?;
    g.initializer("scale", &[], &[1.0 / ((hidden / heads) as f32).sqrt()])?;
    g.layer_norm("embeds", "embed.norm", "x0", weights)?;
    let mut x = "x0".to_owned();
    for l in 0..a.layers {
        let p = |s: &str| format!("l{l}.{s}");
        g.linear(&x, &p("qkv"), &p("qkv"), weights)?;
        g.node("Split", &[&p("qkv"), "qkv.split"], &[&p("q"), &p("k"), &p("v")], vec![int("axis", -1)?])?;
        for t in ["q", "k", "v"] {
            g.node("Reshape", &[&p(t), "heads.shape"], &[&p(&format!("{t}.heads"))], vec![])?;
        }
        // q, v: [batch, heads, length, head]; k: [batch, heads, head, length].
        g.node("Transpose", &[&p("q.heads")], &[&p("q.t")], vec![ints("perm", &[0, 2, 1, 3])?])?;
        g.node("Transpose", &[&p("k.heads")], &[&p("k.t")], vec![ints("perm", &[0, 2, 3, 1])?])?;
        g.node("Transpose", &[&p("v.heads")], &[&p("v.t")], vec![ints("perm", &[0, 2, 1, 3])?])?;
        g.node("MatMul", &[&p("q.t"), &p("k.t")], &[&p("scores")], vec![])?;
        g.node("Mul", &[&p("scores"), "scale"], &[&p("scaled")], vec![])?;
        g.node("Add", &[&p("scaled"), "bias"], &[&p("masked")], vec![])?;
        g.node("Softmax", &[&p("masked")], &[&p("attention")], vec![int("axis", -1)?])?;
        g.node("MatMul", &[&p("attention"), &p("v.t")], &[&p("context.t")], vec![])?;
        g.node("Transpose", &[&p("context.t")], &[&p("context.heads")], vec![ints("perm", &[0, 2, 1, 3])?])?;
        g.node("Reshape", &[&p("context.heads"), "hidden.shape"], &[&p("context")], vec![])?;
        g.linear(&p("context"), &p("out"), &p("attended"), weights)?;
        g.node("Add", &[&p("attended"), &x], &[&p("residual1")], vec![])?;
        g.layer_norm(&p("residual1"), &p("attn_norm"), &p("x1"), weights)?;
        g.linear(&p("x1"), &p("up"), &p("up"), weights)?;
        g.contrib("Gelu", &[&p("up")], &[&p("gelu")])?;
        g.linear(&p("gelu"), &p("down"), &p("down"), weights)?;
        g.node("Add", &[&p("down"), &p("x1")], &[&p("residual2")], vec![])?;
        let out = if l + 1 == a.layers { "hidden".to_owned() } else { p("x2") };
        g.layer_norm(&p("residual2"), &p("ffn_norm"), &out, weights)?;
        x = out;
    }

    let mut model = Model::new([Opset::new(ONNX_DOMAIN, 17)?, Opset::new("com.microsoft", 1)?])?;
    model.set_graph(g.graph)?;
    let options = SessionBuilder::new(env)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        // The fused skip-and-normalise kernel measured several times slower here than the plain
        // sum and LayerNormalization it replaces.
        .with_disabled_optimizers("SkipLayerNormFusion")?;
    Ok(model.into_session(&options)?)
}

fn int(name: &str, value: i64) -> Result<Attribute, GraphError> {
    Ok(Attribute::new(name, value)?)
}

fn ints(name: &str, values: &[i64]) -> Result<Attribute, GraphError> {
    Ok(Attribute::new(name, values.to_vec())?)
}

struct Builder {
    graph: Graph,
    nodes: usize,
}

impl Builder {
    fn add(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attribute>,
    ) -> Result<(), GraphError> {
        self.nodes += 1;
        self.graph.add_node(Node::new(op, domain, format!("n{}", self.nodes), inputs, outputs, attrs)?)?;
        Ok(())
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attribute>,
    ) -> Result<(), GraphError> {
        self.add(op, ONNX_DOMAIN, inputs, outputs, attrs)
    }

    fn contrib(&mut self, op: &str, inputs: &[&str], outputs: &[&str]) -> Result<(), GraphError> {
        self.add(op, "com.microsoft", inputs, outputs, vec![])
    }

    fn initializer<T: PrimitiveTensorElementType + Copy + std::fmt::Debug>(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[T],
    ) -> Result<(), GraphError> {
        let mut tensor =
            Tensor::<T>::new(&Allocator::default(), shape.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
        let (_, data) = tensor.extract_tensor_mut();
        if data.len() != values.len() {
            return Err(GraphError::Runtime(format!("{name}: {} values for shape {shape:?}", values.len())));
        }
        data.copy_from_slice(values);
        self.graph.add_initializer(name, tensor, false)?;
        Ok(())
    }

    /// `output = input · weight + bias`, the weight int8 with a scale per output column.
    fn linear(&mut self, input: &str, name: &str, output: &str, w: &Weights) -> Result<(), GraphError> {
        let [weight, scale, bias] = [".weight", ".scale", ".bias"].map(|s| format!("{name}{s}"));
        self.initializer(&weight, w.shape(&weight)?, w.i8(&weight)?)?;
        self.initializer(&scale, w.shape(&scale)?, w.f32(&scale)?)?;
        self.initializer(&bias, w.shape(&bias)?, w.f32(&bias)?)?;
        self.add(
            "DynamicQuantizeMatMul",
            "com.microsoft",
            &[input, &weight, &scale, "", &bias],
            &[output],
            vec![],
        )
    }

    fn layer_norm(&mut self, input: &str, name: &str, output: &str, w: &Weights) -> Result<(), GraphError> {
        let [weight, bias] = [".weight", ".bias"].map(|s| format!("{name}{s}"));
        self.initializer(&weight, w.shape(&weight)?, w.f32(&weight)?)?;
        self.initializer(&bias, w.shape(&bias)?, w.f32(&bias)?)?;
        let attrs = vec![Attribute::new("epsilon", w.architecture.eps)?, int("axis", -1)?];
        self.node("LayerNormalization", &[input, &weight, &bias], &[output], attrs)
    }
}
