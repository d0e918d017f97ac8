// Elementwise kernels over matrices [rows, cols] given as views (element offset + row stride each), computed in
// f32 and rounded to Y:
//   swiglu:   y = silu(a) * b              the gated FFN, a = w1·x (gate), b = w3·x (up)
//   gelu_erf: y = 0.5 * a * (1 + erf(a/√2)) exact GELU of the vision-language adapter
//   add:      y = a + b                    residual add
// One thread per element; rows x cols may exceed the 65535-workgroup limit, so the grid folds into 2D.

struct Params {
  rows: u32,
  cols: u32,
  a_off: u32,
  a_stride: u32,
  b_off: u32,
  b_stride: u32,
  y_off: u32,
  y_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<X>;
@group(0) @binding(2) var<storage, read> b: array<X>;
@group(0) @binding(3) var<storage, read_write> y: array<Y>;

const WG: u32 = 256u;

// erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), enough for f32.
fn erf(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return sign(x) * (1.0 - r);
}

struct Element {
  valid: bool,
  a: u32,
  b: u32,
  y: u32,
}

fn element(gid: vec3<u32>, ng: vec3<u32>) -> Element {
  let i = gid.x + gid.y * ng.x * WG;
  let row = i / max(p.cols, 1u);
  let col = i % max(p.cols, 1u);
  return Element(
    row < p.rows,
    p.a_off + row * p.a_stride + col,
    p.b_off + row * p.b_stride + col,
    p.y_off + row * p.y_stride + col,
  );
}

@compute @workgroup_size(WG)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let e = element(gid, ng);
  if (e.valid) {
    let g = f32(a[e.a]);
    y[e.y] = Y(g / (1.0 + exp(-g)) * f32(b[e.b]));
  }
}

@compute @workgroup_size(WG)
fn gelu_erf(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let e = element(gid, ng);
  if (e.valid) {
    let v = f32(a[e.a]);
    y[e.y] = Y(0.5 * v * (1.0 + erf(v * 0.707106781)));
  }
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let e = element(gid, ng);
  if (e.valid) {
    y[e.y] = Y(f32(a[e.a]) + f32(b[e.b]));
  }
}
